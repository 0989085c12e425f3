"""Shared by test_pipeline, test_dvc and test_containers: temporary copies of the repository (the
files git would commit) in which Snakemake and DVC run, so the real data/ and results/ stay untouched."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # this interpreter's snakemake, dvc and samedge
SNAKEMAKE = str(BIN / "snakemake")
DVC = str(BIN / "dvc")
SMOKE = ["--config", "profile=smoke"]
GIT_IDENTITY = ["-c", "user.name=samedge tests", "-c", "user.email=tests@samedge.invalid",
                "-c", "commit.gpgsign=false"]


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300,
        check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n"
                             f"{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_IDENTITY, *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


def copy_repo(dest: Path) -> Path:
    """The files git would commit (tracked, and untracked but not ignored), copied into `dest`,
    which becomes a git repository with one commit (DVC needs git; the clone test a commit)."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, check=True, capture_output=True).stdout.decode()
    for rel in filter(None, listing.split("\0")):
        src, target = REPO / rel, dest / rel
        if not os.path.lexists(src):  # deleted in the working tree, still in the index
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)
    git(dest, "init", "-q")
    commit_all(dest, "copy of the working tree")
    return dest


def tool_env(tmp_path_factory: pytest.TempPathFactory, mirror: Path | None = None,
             extra_path: list[Path] = (), activated: bool = False) -> dict[str, str]:
    """The PATH a user has (this interpreter's bin directory taken out: Snakemake and DVC are called
    by absolute path, and jobs must find samedge by themselves), the offline mirror, and a
    `scontrol` that fails at once: the SLURM executor plugin runs `scontrol show config` whenever
    Snakemake starts, which waits ~9 s where a SLURM client is installed but no controller runs.
    `activated`: this interpreter's bin first on PATH, as after `source .venv/bin/activate` (what
    the README asks before DVC commands: DVC stages run `snakemake` from PATH)."""
    stub_dir = tmp_path_factory.getbasetemp() / "no-slurm-controller"
    stub = stub_dir / "scontrol"
    if not stub.exists():
        stub_dir.mkdir(exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 1\n")
        stub.chmod(0o755)
    env = dict(os.environ)
    env.pop("SAMEDGE_DATA_MIRROR", None)
    if mirror is not None:
        env["SAMEDGE_DATA_MIRROR"] = str(mirror)
    user_path = [entry for entry in env["PATH"].split(os.pathsep) if Path(entry) != BIN]
    env["PATH"] = os.pathsep.join([*map(str, extra_path), str(stub_dir),
                                   *([str(BIN)] if activated else []), *user_path])
    env.pop("VIRTUAL_ENV", None)
    return env


NEWCOMER_PATH = "/usr/local/bin:/usr/bin:/bin"


def newcomer_env(mirror: Path | None = None) -> dict[str, str]:
    """A login shell with nothing activated (`env -i HOME=$HOME PATH=/usr/local/bin:/usr/bin:/bin`)."""
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": NEWCOMER_PATH}
    if mirror is not None:
        env["SAMEDGE_DATA_MIRROR"] = str(mirror)
    return env


def installed_venv(repo: Path) -> Path:
    """`repo/.venv` as `make install` leaves it, without reinstalling every wheel: a venv whose
    samedge is repo/src and whose other packages are this interpreter's, with the samedge,
    snakemake and dvc commands in its bin/, and `.installed` newer than the files it depends on."""
    venv = repo / ".venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    ours = sysconfig.get_paths()["purelib"]  # repo/src first: its samedge wins over ours
    (site / "samedge-tests.pth").write_text(f"{repo / 'src'}\nimport site; site.addsitedir({ours!r})\n")
    for name in ("samedge", "snakemake", "dvc"):
        (entry,) = metadata.entry_points(group="console_scripts", name=name)
        script = venv / "bin" / name
        script.write_text(f"#!{venv}/bin/python\nimport sys\nfrom {entry.module} import {entry.attr}\n"
                          f"sys.exit({entry.attr}())\n")
        script.chmod(0o755)
    (venv / ".installed").touch()
    return venv


_BUILT: dict[str, tuple[Path, str]] = {}


def make(repo: Path, env: dict[str, str], *args: str, timeout: int = 900,
         check: bool = True) -> subprocess.CompletedProcess:
    return run(["make", "--no-print-directory", *args], repo, env, timeout=timeout, check=check)


def smoke_run(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> tuple[Path, str]:
    """A repository copy on which the README's first command ran as a newcomer runs it, on the
    smoke profile: `make pipeline PROFILE=smoke` (pipeline, then report) from a shell with nothing
    activated, fetching from the mirror; and its output. Built once per session; tests that change
    it work on their own copy (`clone_workspace`)."""
    if "smoke" not in _BUILT:
        ws = copy_repo(tmp_path_factory.mktemp("smoke") / "repo")
        installed_venv(ws)
        out = make(ws, newcomer_env(mirror), "pipeline", "PROFILE=smoke", "CORES=2")
        _BUILT["smoke"] = ws, out.stdout + out.stderr
    return _BUILT["smoke"]


def smoke_workspace(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    return smoke_run(tmp_path_factory, mirror)[0]


def clone_workspace(ws: Path, dest: Path) -> Path:
    """A byte- and mtime-preserving copy (Snakemake's view of what is up to date survives). DVC's
    cache is hard-linked, not copied (~290 MB): DVC only ever adds or unlinks cache files, so
    nothing done in the clone reaches `ws`. data/ is copied: DVC (cache type copy) re-copies any
    output it finds hard-linked, and the new mtimes would make Snakemake retrain."""
    def link_or_copy(src: str, dst: str) -> None:
        if Path(src).relative_to(ws).parts[:2] == (".dvc", "cache"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(ws, dest, symlinks=True, copy_function=link_or_copy)
    return dest


@contextmanager
def module_scratch(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A folder for a module-scoped workspace, removed when the module is done: each workspace holds
    hundreds of MB of data, and CI machines have a few GB free (per-test folders go by the
    `tmp_path_retention_policy` in pyproject.toml)."""
    base = tmp_path_factory.mktemp(name)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def dry_run_jobs(ws: Path, env: dict[str, str], *args: str) -> list[dict[str, str]]:
    """The jobs of `snakemake --dry-run ARGS` as dicts: rule, and the printed fields (output, log,
    benchmark, wildcards, resources, shell)."""
    out = run([SNAKEMAKE, "--dry-run", "--printshellcmds", *args], ws, env).stdout
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:\n)", out):
        head = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):\n", block)
        if not head:
            continue
        job = {"rule": head.group(1)}
        job.update(re.findall(r"^    (\w+): (.*)$", block, flags=re.MULTILINE))
        shell = re.search(r"^Shell command: (.*)$", block, flags=re.MULTILINE)
        job["shell"] = shell.group(1) if shell else ""
        jobs.append(job)
    return jobs
