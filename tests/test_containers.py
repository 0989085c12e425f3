"""The container route: the Apptainer definition and the Dockerfile (parsed with spython) are one
environment: the same default base (the CUDA PyTorch image of the pinned torch, a build argument),
labels, install under the lock file, run-time variables, entry point and self-test (shared scripts,
run here for real); `make container` builds with Apptainer, else podman or docker, and says which
(or names what is missing); `make container-check` says in one line when it cannot run; its
`apptainer` on podman/docker mounts and passes what Apptainer would; its comparison sets timing
aside and nothing else. The default profile runs every job with `--nv`; under `--use-singularity`
Snakemake runs each job through `apptainer exec ... --nv ... <image>` with the image's own samedge;
a missing image stops the run before any job; turning containers on reruns nothing; a failing
container job deletes no other job's outputs. Stand-ins (tests/fakebin) for apptainer and podman
record their calls; the real image is built and checked by `make container-check` (README)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from spython.main.parse.parsers import DockerParser, SingularityParser

from samedge.layout import Layout
from samedge.runs import run_name
from tests.pipeline_workspace import (BIN, REPO, SMOKE, SNAKEMAKE, clone_workspace, copy_repo,
                                      installed_venv, make, newcomer_env, run, smoke_workspace,
                                      tool_env)

BASE_IMAGE = re.compile(r"^pytorch/pytorch:(?P<torch>[\d.]+)-cuda(?P<cuda>[\d.]+)-cudnn\d+-runtime$")
LOCK = "requirements/lock.txt"
IMAGE = "containers/samedge.sif"
FAKEBIN = REPO / "tests/fakebin"
SHIM = REPO / "containers/apptainer-on-engine/apptainer"
SHARED = {"containers/entrypoint.sh": "/usr/local/bin/samedge-entrypoint",
          "containers/self-test.sh": "/usr/local/bin/samedge-self-test"}
HOST_PYTHON = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
ENGINES = ("apptainer", "podman", "docker", "apt-get")


def pinned(requirement_lines: list[str], name: str) -> str:
    pins = [line.split("==", 1)[1].strip() for line in requirement_lines
            if re.match(rf"^{name}\s*==", line.strip(), flags=re.IGNORECASE)]
    assert len(pins) == 1, f"{name}: expected exactly one == pin, got {pins}"
    return pins[0]


@pytest.fixture(scope="module")
def torch_pin() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return pinned(project["dependencies"], "torch")


def definition():
    (recipe,) = SingularityParser(str(REPO / "containers/samedge.def")).recipe.values()
    return recipe


def dockerfile():
    recipe = DockerParser(str(REPO / "containers/Dockerfile")).recipe
    (recipe,) = recipe.values() if isinstance(recipe, dict) else (recipe,)
    return recipe


def def_section(name: str) -> list[str]:
    """The lines of one %section of samedge.def (spython reads neither %arguments nor comments)."""
    text = (REPO / "containers/samedge.def").read_text()
    body = re.search(rf"^%{name}\n(.*?)(?=^%|\Z)", text, flags=re.MULTILINE | re.DOTALL).group(1)
    return [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]


def base_defaults() -> tuple[str, str]:
    """The default base image of samedge.def (%arguments) and of the Dockerfile (ARG)."""
    (def_default,) = [line.split("=", 1)[1] for line in def_section("arguments") if line.startswith("BASE_IMAGE=")]
    text = (REPO / "containers/Dockerfile").read_text()
    (docker_default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    return def_default, docker_default


def test_both_recipes_build_by_default_from_the_cuda_image_of_the_pinned_torch(torch_pin):
    def_default, docker_default = base_defaults()
    assert def_default == docker_default
    base = BASE_IMAGE.match(def_default)
    assert base, f"not an exact CUDA runtime tag of pytorch/pytorch: {def_default}"
    assert base["torch"] == torch_pin
    assert pinned((REPO / LOCK).read_text().splitlines(), "torch") == torch_pin
    text = (REPO / "containers/samedge.def").read_text()
    assert re.search(r"^Bootstrap:\s*docker$", text, flags=re.MULTILINE)
    assert re.search(r"^From:\s*\{\{\s*BASE_IMAGE\s*\}\}$", text, flags=re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", (REPO / "containers/Dockerfile").read_text(), flags=re.MULTILINE)


def labels(recipe) -> dict[str, str]:
    lines = [item if isinstance(item, str) else item[0] for item in recipe.labels]
    pairs = [re.split(r"[= ]", line.rstrip(" \\"), maxsplit=1) for line in lines]
    values = {key: value.strip('"') for key, value in pairs}
    # The base image is the build argument in both: ${BASE_IMAGE} or {{ BASE_IMAGE }}.
    return {key: re.sub(r"\$\{(\w+)\}|\{\{ *(\w+) *\}\}", lambda m: m[1] or m[2], value)
            for key, value in values.items()}


def test_both_recipes_carry_the_same_labels(torch_pin):
    assert labels(definition()) == labels(dockerfile())
    assert labels(definition())["samedge.torch"] == torch_pin
    assert labels(definition())["samedge.base-image"] == "BASE_IMAGE"


def test_both_recipes_install_the_package_under_the_lock_file():
    copied = dict(line.split() for line in definition().files)
    assert copied[LOCK] == f"/opt/samedge/{LOCK}"
    for source in copied:
        assert (REPO / source).exists(), source
    install = next(line for line in definition().install if "-m pip install" in line)
    assert f"--constraint /opt/samedge/{LOCK} /opt/samedge" in install
    install = next(line for line in dockerfile().install if "-m pip install" in line)
    assert f"--constraint {LOCK} ." in install
    assert not [line for line in (REPO / LOCK).read_text().splitlines() if line.startswith("-e")]
    ignore = (REPO / "containers/Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:] and "!.venv" not in ignore
    for source in SHARED:  # in the Docker build context
        assert f"!{source}" in ignore


def test_both_recipes_have_the_same_run_time_environment():
    assert definition().environ == dockerfile().environ
    assert {"PYTHONNOUSERSITE=1", "MPLBACKEND=Agg"} <= set(definition().environ)
    assert not [v for v in definition().environ if v.startswith("PIP_")]  # pip's are build-only
    # Apptainer's exec skips the entry point, so %environment drops host Python settings too.
    assert f"unset {' '.join(HOST_PYTHON)}" in def_section("environment")
    assert f"unset {' '.join(HOST_PYTHON)}" in (REPO / "containers/entrypoint.sh").read_text()


def test_both_recipes_share_the_entry_point_and_the_self_test():
    assert dict(line.split() for line in definition().files if line.split()[0] in SHARED) == SHARED
    assert {source: dest for source, dest in dockerfile().files if source in SHARED} == SHARED
    entry, self_test = SHARED.values()
    assert def_section("runscript") == [f'exec {entry} "$@"']
    assert dockerfile().entrypoint == [entry] and dockerfile().cmd == ["--help"]
    assert def_section("test") == [f"exec {self_test}"]
    # Both builds end by running the self-test (Apptainer runs %test after %post).
    docker_runs = [line for line in dockerfile().install if line.strip() and not line.startswith("#")]
    assert docker_runs[-3] == "&& samedge-self-test"  # the last RUN, then WORKDIR /work


def entry(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The shared entry point run on the host, with this interpreter's samedge and python3 first on PATH."""
    environ = {"PATH": f"{BIN}:/usr/bin:/bin", **env}
    return subprocess.run([str(REPO / "containers/entrypoint.sh"), *args], env=environ,
                          capture_output=True, text=True, timeout=120)


def test_entry_point_runs_samedge_commands_and_programs():
    assert "usage: samedge train" in entry("train", "--help").stdout
    assert "usage: samedge" in entry().stdout  # no arguments: samedge --help
    assert "usage: samedge" in entry("--help").stdout
    assert entry("python3", "-c", "print(6 * 7)").stdout == "42\n"
    out = entry("samedge", "no-such-command")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_entry_point_drops_the_host_python_settings():
    probe = "import os; print([os.environ.get(k) for k in %r])" % (HOST_PYTHON,)
    out = entry("python3", "-c", probe, PYTHONPATH="/nowhere", VIRTUAL_ENV="/host/venv")
    assert out.stdout == "[None, None, None]\n", out.stderr


def test_self_test_prints_torch_cuda_and_the_cli(torch_pin):
    out = subprocess.run([str(REPO / "containers/self-test.sh")], env={"PATH": f"{BIN}:/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert re.fullmatch(rf"torch {re.escape(torch_pin)}\S* CUDA available: (True|False)", first)
    assert second == "samedge --help: ok"


def without_engines(tmp_path: Path) -> str:
    """A newcomer's PATH in which apptainer, podman, docker and apt-get do not exist."""
    folder = tmp_path / "bin-without-engines"
    folder.mkdir(exist_ok=True)
    for directory in map(Path, newcomer_env()["PATH"].split(os.pathsep)):
        for tool in directory.iterdir():
            if tool.name not in ENGINES and not (folder / tool.name).exists():
                (folder / tool.name).symlink_to(tool)
    return str(folder)


def podman_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A newcomer with the stand-in podman and nothing else of the engines."""
    return newcomer_env() | {"PATH": f"{FAKEBIN / 'podman-only'}:{without_engines(tmp_path)}",
                             "FAKE_PODMAN_LOG": str(tmp_path / "podman.jsonl"), **extra}


def podman_calls(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "podman.jsonl").read_text().splitlines()]


def test_make_container_without_any_engine_says_so(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    out = make(repo, newcomer_env() | {"PATH": without_engines(tmp_path)}, "container", check=False)
    assert out.returncode == 2 and out.stdout == ""
    message, make_error = out.stderr.splitlines()
    assert message == ("no container engine: neither podman nor docker runs here, and podman cannot "
                       "be installed (needs root and apt-get)")
    assert make_error.startswith("make: ***")
    assert not list((repo / "containers").glob("*.sif"))


def test_make_container_builds_the_dockerfile_with_podman_and_says_so(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    out = make(repo, podman_env(tmp_path, BASE_IMAGE="example.org/base:1"), "container")
    assert out.stderr.splitlines() == [
        "make container: podman builds samedge:0.1.0 from containers/Dockerfile on example.org/base:1"]
    calls = podman_calls(tmp_path)
    assert {call["containers_conf"] for call in calls} == {str(repo / "containers/podman/containers.conf")}
    (build,) = [call["argv"] for call in calls if call["argv"][0] == "build"]
    assert build[-7:] == ["--build-arg", "BASE_IMAGE=example.org/base:1", "-f", "containers/Dockerfile",
                          "-t", "samedge:0.1.0", "."]
    assert "--network" in build and not any(call["argv"][0] == "pull" for call in calls)


def test_make_container_names_a_stand_in_base(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    out = make(repo, podman_env(tmp_path, FAKE_PODMAN_LABEL="true"), "container")
    assert "is a STAND-IN (containers/standin-base.sh), not the official image" in out.stderr.splitlines()[-1]


def test_make_container_stops_when_the_base_cannot_be_pulled(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    out = make(repo, podman_env(tmp_path, FAKE_PODMAN_NO_IMAGES="1"), "container", check=False)
    assert out.returncode == 2
    assert out.stderr.splitlines()[1] == (
        "make container: cannot pull pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime; "
        "`make container-check` builds a labelled stand-in for it")
    (pull,) = [call["argv"] for call in podman_calls(tmp_path) if call["argv"][0] == "pull"]
    assert pull[-1] == "docker.io/pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime"  # no short names
    assert not [call for call in podman_calls(tmp_path) if call["argv"][0] == "build"]


def test_container_check_without_an_engine_says_so_in_one_line(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    installed_venv(repo)
    out = make(repo, newcomer_env() | {"PATH": without_engines(tmp_path)}, "container-check")
    assert out.stderr.splitlines() == [
        "make container-check: skipped: no container engine: neither podman nor docker runs here, "
        "and podman cannot be installed (needs root and apt-get)"]


def shim(cwd: Path, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = podman_env(tmp_path, SAMEDGE_ENGINE="podman", SAMEDGE_ENGINE_IMAGE="samedge:0.1.0", **env)
    return subprocess.run([sys.executable, str(SHIM), *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=60)


def test_apptainer_on_podman_mounts_and_passes_what_apptainer_would(tmp_path):
    ws, mirror_dir = tmp_path / "ws", tmp_path / "mirror"
    (ws / "containers").mkdir(parents=True)
    (ws / IMAGE).write_text("stands for samedge:0.1.0")
    mirror_dir.mkdir()
    out = shim(ws, tmp_path, "--quiet", "exec", "--home", str(ws), "--nv", "--bind", str(mirror_dir),
               "--env", f"SAMEDGE_DATA_MIRROR={mirror_dir}", IMAGE, "bash", "-c", "samedge fetch mnist",
               PYTHONPATH="/host/lib", MPLBACKEND="TkAgg", SINGULARITYENV_SNAKEMAKE_X="1")
    assert out.returncode == 0, out.stderr
    (run_argv,) = [call["argv"] for call in podman_calls(tmp_path) if call["argv"][0] == "run"]
    image_at = run_argv.index("samedge:0.1.0")
    options, command = run_argv[:image_at], run_argv[image_at + 1:]
    assert command == ["bash", "-c", "samedge fetch mnist"]
    pairs = list(zip(options, options[1:]))
    mounts = sorted(v for o, v in pairs if o == "-v")
    assert mounts == sorted([f"{ws}:{ws}", f"{mirror_dir}:{mirror_dir}"])  # the repository, the mirror
    assert ("-w", str(ws)) in pairs and ("--tmpfs", "/tmp") in pairs
    assert ("--user", f"{os.getuid()}:{os.getgid()}") in pairs
    env = [v for o, v in pairs if o == "-e"]
    assert {"HOME=" + str(ws), f"SAMEDGE_DATA_MIRROR={mirror_dir}", "SNAKEMAKE_X=1",
            f"APPTAINER_CONTAINER={ws / IMAGE}"} <= set(env)
    assert "PYTHONPATH" in env  # passed in, as Apptainer does: the image's entry point drops it
    assert "PATH" not in env and "MPLBACKEND" not in env  # the image's own win, as in Apptainer
    assert not [v for v in env if v.startswith("SINGULARITYENV_")]


def test_apptainer_on_podman_refuses_a_missing_image_and_other_commands(tmp_path):
    out = shim(tmp_path, tmp_path, "exec", IMAGE, "true")
    assert out.returncode == 255 and f"could not open image {IMAGE}" in out.stderr
    out = shim(tmp_path, tmp_path, "build", IMAGE, "containers/samedge.def")
    assert out.returncode == 255 and "only `exec` is supported" in out.stderr
    assert shim(tmp_path, tmp_path, "--version").stdout.startswith("apptainer version ")


def compare(host: Path, container: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "containers/compare_results.py"), str(host), str(container)],
                          capture_output=True, text=True, timeout=60)


def write_results(root: Path, loss: float, seconds: float, python: str, png: bytes, codes: bytes) -> None:
    run_dir = root / "results/smoke/runs/mnist/run1"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.csv").write_text(f"step,train_seconds,loss,lambda_2\n0,{seconds},{loss},\n")
    (run_dir / "run.json").write_text(json.dumps({"steps": 1, "wall_seconds": seconds, "reason": None,
                                                  "sharpness": float("nan"), "versions": {"python": python}}))
    (root / "results/smoke/benchmarks/mnist").mkdir(parents=True)
    (root / "results/smoke/benchmarks/mnist/run1.tsv").write_text(f"s\tmax_rss\n{seconds}\t{seconds * 100}\n")
    (root / "results/smoke/figures").mkdir(parents=True)
    (root / "results/smoke/figures/fig01.png").write_bytes(png)
    (root / "data/prepared/mnist").mkdir(parents=True)
    (root / "data/prepared/mnist/codes.npy").write_bytes(codes)
    (root / "data/prepared/mnist/.snakemake_timestamp").write_text(str(seconds))


def test_comparison_sets_timing_aside_and_nothing_else(tmp_path):
    host, same, other = tmp_path / "host", tmp_path / "same", tmp_path / "other"
    write_results(host, loss=0.5, seconds=1.0, python="3.11.7", png=b"a", codes=b"1")
    write_results(same, loss=0.5, seconds=9.0, python="3.11.2", png=b"b", codes=b"1")
    out = compare(host, same)
    assert (out.returncode, out.stdout) == (0, "")
    write_results(other, loss=0.25, seconds=1.0, python="3.11.7", png=b"a", codes=b"2")
    (other / "results/smoke/runs/mnist/run1/run.json").write_text(json.dumps({"steps": 2, "versions": {}}))
    (other / "results/smoke/extra.csv").write_text("a\n1\n")
    (other / "results/smoke/figures/fig01.png").unlink()
    out = compare(host, other)
    assert out.returncode == 1
    assert out.stdout.splitlines() == [
        "results/smoke/figures/fig01.png: only in the host's run",
        "results/smoke/extra.csv: only in the container's run",
        "data/prepared/mnist/codes.npy: bytes differ",
        "results/smoke/runs/mnist/run1/metrics.csv: column loss differs in 1 of 1 rows (first row 0: 0.5 vs 0.25)",
        "results/smoke/runs/mnist/run1/run.json: reason: None vs '(missing)'",
        "results/smoke/runs/mnist/run1/run.json: sharpness: nan vs '(missing)'",
        "results/smoke/runs/mnist/run1/run.json: steps: 1 vs 2",
    ]


def test_default_profile_passes_the_gpu_and_the_mirror():
    profile = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    args = shlex.split(profile["apptainer-args"], posix=False)
    assert "--nv" in args
    assert "software-deployment-method" not in profile  # containers are opt-in (README)
    assert "software-env" not in profile["rerun-triggers"]  # so turning them on reruns nothing
    assert "SAMEDGE_DATA_MIRROR" in profile["apptainer-args"]


def image_bin(tmp_path: Path, log: Path) -> Path:
    """The image's bin directory for the stand-in: a `samedge` that logs its command, then runs ours."""
    folder = tmp_path / "image-bin"
    folder.mkdir()
    (folder / "samedge").write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec {BIN / "samedge"} "$@"\n')
    (folder / "samedge").chmod(0o755)
    return folder


def test_make_container_builds_the_image_once(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    env = newcomer_env() | {"PATH": f"{FAKEBIN}:{newcomer_env()['PATH']}",
                            "FAKE_APPTAINER_LOG": str(tmp_path / "calls.jsonl")}
    make(repo, env, "container")
    assert (repo / IMAGE).read_bytes().startswith(b"stand-in image")
    assert [path.name for path in (repo / "containers").glob("*.sif")] == ["samedge.sif"]
    make(repo, env, "container")  # up to date: not built again
    builds = [json.loads(line)["argv"] for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert builds == [["build", "--force", "containers/samedge.tmp.sif", "containers/samedge.def"]]


def test_missing_image_stops_before_any_job(tmp_path, tmp_path_factory):
    repo = copy_repo(tmp_path / "repo")
    env = tool_env(tmp_path_factory, extra_path=[FAKEBIN]) | {"FAKE_APPTAINER_LOG": str(tmp_path / "calls")}
    out = run([SNAKEMAKE, "--cores", "1", "--use-singularity", *SMOKE], repo, env, check=False)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (f"{IMAGE} not found: build it with `make container`, "
                                           "or run without --use-singularity")
    assert not (repo / "logs").exists() and not (repo / "data").exists()


def digests(root: Path, folders: list[str]) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted((root / folder).rglob("*")) if path.is_file()}


@pytest.fixture
def finished(tmp_path, tmp_path_factory, mirror):
    """A copy of the finished smoke workspace, with a stand-in image."""
    ws = clone_workspace(smoke_workspace(tmp_path_factory, mirror), tmp_path / "repo")
    (ws / IMAGE).write_bytes(b"stand-in image")
    env = tool_env(tmp_path_factory, mirror, extra_path=[FAKEBIN])
    return ws, env | {"FAKE_APPTAINER_LOG": str(tmp_path / "calls.jsonl")}


@pytest.mark.slow
def test_turning_containers_on_reruns_nothing(finished):
    ws, env = finished
    out = run([SNAKEMAKE, "--dry-run", "--use-singularity", *SMOKE], ws, env)
    assert "Nothing to be done" in out.stdout, out.stdout[-3000:]


@pytest.mark.slow
def test_a_failing_container_job_keeps_every_other_output(finished):
    ws, env = finished
    kept = ["data", str(Layout("smoke").runs), str(Layout("smoke").figures), "checkpoints"]
    before = digests(ws, kept)
    out = run([SNAKEMAKE, "--cores", "2", "--use-singularity", "--keep-going", "--forcerun",
               "aggregate", *SMOKE], ws, env | {"FAKE_APPTAINER_FAIL": "1"}, check=False)
    assert out.returncode != 0 and "broken image" in out.stdout + out.stderr
    assert digests(ws, kept) == before


@pytest.mark.slow
def test_snakemake_runs_every_job_through_apptainer_with_the_gpu(tmp_path, tmp_path_factory, mirror):
    repo = copy_repo(tmp_path / "repo")
    (repo / IMAGE).write_bytes(b"stand-in image")  # the stand-in only checks that it exists
    calls = tmp_path / "apptainer-calls.jsonl"
    env = tool_env(tmp_path_factory, mirror, extra_path=[FAKEBIN])
    env["FAKE_APPTAINER_LOG"] = str(calls)
    env["FAKE_APPTAINER_IMAGE_BIN"] = str(image_bin(tmp_path, tmp_path / "image-samedge.log"))
    run_dir = f"{Layout('smoke').runs}/shakespeare/{run_name(0.1, 0.0)}"
    targets = ["data/prepared/shakespeare", f"{run_dir}/run.json"]
    out = run([SNAKEMAKE, "--cores", "2", "--use-singularity", *SMOKE, "--", *targets], repo, env,
              timeout=600)
    execs = [json.loads(line)["argv"] for line in calls.read_text().splitlines()]
    execs = [argv for argv in execs if "exec" in argv]
    assert len(execs) == 2, out.stdout + out.stderr  # fetch, train: one exec per job
    for argv in execs:
        image_at = argv.index(IMAGE)
        options = argv[argv.index("exec") + 1:image_at]
        assert "--nv" in options
        values = {option: [v for o, v in zip(options, options[1:]) if o == option]
                  for option in ("--bind", "--env")}
        assert str(mirror) in values["--bind"] and f"SAMEDGE_DATA_MIRROR={mirror}" in values["--env"]
        assert argv[image_at + 1:image_at + 3] == ["bash", "-c"] and "samedge " in argv[image_at + 3]
    assert {re.search(r"samedge (\w+)", argv[-1]).group(1) for argv in execs} == {"fetch", "train"}
    for target in targets:
        assert (repo / target).exists(), target
    ran = (tmp_path / "image-samedge.log").read_text().split()  # the image's samedge, not the host's
    assert sorted(ran) == ["fetch", "train"]
