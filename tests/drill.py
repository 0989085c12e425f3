"""The bad-input drill: every case of issue 21 and of the earlier bad-input lists in the tests, tried
in a scratch workspace, printed as a table (case, exit code, first line of stderr, files changed).

    SAMEDGE_DATA_MIRROR=../shared/data python -m tests.drill [--no-dag]

A case passes when the command ends as it should: a refusal is exit 2 with one line naming the file
or value (no traceback) and no file of the workspace changed; a command that must leave the user's
files alone exits 0 and changes none of them. CLI cases run in-process (`samedge.cli.main`, so an
uncaught exception is a traceback); the pipeline's cases run `snakemake -n` on an edited params.yaml.
tests/test_drill.py runs it in CI; the README quotes its count.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import yaml

from samedge import checkpoint
from samedge.aggregate import aggregate
from samedge.cli import main
from samedge.data import fetch
from samedge.data_fetch import MIRROR_ENV
from samedge.io import sha256_file
from samedge.train import CHECKPOINT_KEYS
from tests.synthetic import write_run

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
RESULTS = "results/smoke"  # the smoke profile's folder (samedge.layout)
RUNS = f"{RESULTS}/runs"
RUN = f"{RUNS}/mnist/lr0.3_rho0.1"  # a finished (synthetic) run of the smoke grid
GD = f"{RUNS}/mnist/lr0.3_rho0"
TRAIN = ["train", "--task", "mnist", "--lr", "0.3", "--rho", "0.1", "--profile", "smoke", "--device", "cpu",
         "--threads", "1", "--out", "scratch/run"]
SHORT = ["--set", "train.max_steps=30", "--set", "train.checkpoint_every_steps=10",
         "--set", "train.measure_every_steps=10"]
CKPT = "scratch/run.ckpt/checkpoint.pt"


@dataclass
class Case:
    name: str
    argv: list[str]  # samedge's arguments, or ["snakemake", ...] for the pipeline
    expect: str = ""  # what the one-line refusal must name (a file, flag or value)
    setup: Callable[[Path], None] = lambda ws: None
    exit: int = 2  # 0: a command that must succeed and leave the user's files alone
    may_change: tuple[str, ...] = ()  # paths the command may write (its own outputs); "DIR/": all under DIR
    patch: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


@dataclass
class Outcome:
    case: Case
    code: int | str
    first_line: str
    changed: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        allowed = self.case.may_change
        if self.code != self.case.exit or any(
                not any(p == m or (m.endswith("/") and p.startswith(m)) for m in allowed) for p in self.changed):
            return False
        return self.case.exit == 0 or (self.first_line.startswith("samedge") and ": error: " in self.first_line
                                       and self.case.expect in self.first_line)


# ------------------------------------------------------------------ edits of a workspace
def edit_params(**keys: object) -> Callable[[Path], None]:
    """Set dotted keys of params.yaml's smoke profile."""
    def setup(ws: Path) -> None:
        params = yaml.safe_load((ws / "params.yaml").read_text())
        for dotted, value in keys.items():
            *parents, leaf = dotted.split(".")
            node = params["profiles"]["smoke"]
            for key in parents:
                node = node[key]
            node[leaf] = value
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return setup


def edit_metrics(change: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        frame = change(pd.read_csv(ws / RUN / "metrics.csv"), pd.read_csv(ws / GD / "metrics.csv"))
        frame.to_csv(ws / RUN / "metrics.csv", index=False)
    return setup


def write(rel: str, content: bytes | str) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def edit_json(rel: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        (ws / rel).write_text(json.dumps(change(json.loads((ws / rel).read_text()))))
    return setup


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        for step in setups:
            step(ws)
    return setup


def text_in(col: str) -> Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]:
    return lambda m, gd: m.astype({col: object}).assign(**{col: ["abc", *m[col].iloc[1:]]})


def saved_checkpoint(payload: Callable[[], object], damage: Callable[[bytes], bytes] = lambda b: b):
    def setup(ws: Path) -> None:
        path = ws / CKPT
        checkpoint.save(path, payload())
        path.write_bytes(damage(path.read_bytes()))
    return setup


def full_payload(**identity: object) -> dict:
    return {key: {"task": "other", **identity} if key == "identity" else {} for key in CHECKPOINT_KEYS}


@contextlib.contextmanager
def disk_full_after_one_checkpoint():
    """Every checkpoint save after the first fails as a full disk does (a write() naming no file)."""
    saves, write_bytes = [], Path.write_bytes

    def full(path: Path, data: bytes) -> int:
        if path.name.startswith(".checkpoint.pt."):
            saves.append(path)
            if len(saves) > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_bytes(path, data)

    Path.write_bytes = full
    try:
        yield
    finally:
        Path.write_bytes = write_bytes


# ------------------------------------------------------------------ the cases
EDITS = {
    "lambda_1 scaled": lambda m, gd: m.assign(lambda_1=m["lambda_1"] * 1.01),
    "a loss changed": lambda m, gd: m.assign(loss=m["loss"].where(m.index != 4, 0.5)),
    "a step changed": lambda m, gd: m.assign(step=m["step"].where(m.index != 3, 31)),
    "HVP counts swapped between rows": lambda m, gd: m.assign(hvp_count=[13, 11, *m["hvp_count"].iloc[2:]]),
    "rows reordered": lambda m, gd: m.iloc[[1, 0, *range(2, len(m))]],
    "a row deleted": lambda m, gd: m.drop(index=5),
    "rows truncated": lambda m, gd: m.iloc[:-3],
    "NaN in lambda_2": lambda m, gd: m.assign(lambda_2=m["lambda_2"].where(m.index != 2)),
    "NaN in align_grad": lambda m, gd: m.assign(align_grad=m["align_grad"].where(m.index != 2)),
    "NaN in train_seconds": lambda m, gd: m.assign(train_seconds=m["train_seconds"].where(m.index != 2)),
    "inf in lambda_3": lambda m, gd: m.assign(lambda_3=m["lambda_3"].where(m.index != 2, float("inf"))),
    "text in test_loss": text_in("test_loss"),
    "text in lambda_1": text_in("lambda_1"),
    "a column dropped": lambda m, gd: m.drop(columns="align_sam_grad"),
    "the GD run's metrics.csv copied in": lambda m, gd: gd,
}
NOT_WRITTEN = f"{RUN}/metrics.csv: not the file its run wrote"
MANIFEST = "data/prepared/mnist/manifest.json: no"
AGGREGATE = ["aggregate", "--runs-dir", RUNS, "--out-dir", "scratch/tables"]
FIGURE = ["figure", "2", "--results", RESULTS, "--out"]


def cli_cases() -> list[Case]:
    cases = [
        # Files lost or overwritten
        Case("fetch keeps user files and Snakemake's markers", ["fetch", "mnist", "--data-dir", "data"], "", both(
            write("data/raw/mnist/notes.txt", "the user's"), write("data/prepared/mnist/notes.txt", "the user's"),
            write("data/prepared/mnist/.snakemake_timestamp", "")), exit=0),
        Case("aggregate --out-dir a run's folder", [*AGGREGATE[:3], "--out-dir", RUN], f"--out-dir {RUN}: holds run results"),
        Case("aggregate --out-dir the runs folder", [*AGGREGATE[:3], "--out-dir", RUNS], "holds run results"),
        Case("figure --out a run's folder", [*FIGURE, RUN], f"--out {RUN}: holds run results"),
        Case("train --out another grid point's run", [*TRAIN[:-1], GD], f"--out {GD}: holds the results of another run"),
        Case("train --out a run of another seed", [*TRAIN[:-1], RUN, "--seed", "3"], "holds the results of another run"),
        Case("train --out a metrics.csv without run.json", TRAIN, "metrics.csv without run.json",
             write("scratch/run/metrics.csv", "x")),
        Case("train keeps a user's file named like its temporary file", [*TRAIN, *SHORT], "",
             write("scratch/run.ckpt/.checkpoint.pt.mine.tmp", "the user's"), exit=0,
             may_change=("scratch", "scratch/run", "scratch/run/", "scratch/run.ckpt")),
        # Edited or mixed-up results
        *(Case(f"metrics.csv: {name}", AGGREGATE, NOT_WRITTEN, edit_metrics(change)) for name, change in EDITS.items()),
        Case("metrics.csv: a line cut inside its last column", AGGREGATE, NOT_WRITTEN,
             lambda ws: (ws / RUN / "metrics.csv").write_bytes((ws / RUN / "metrics.csv").read_bytes()[:-3])),
        Case("metrics.csv: binary", AGGREGATE, NOT_WRITTEN, write(f"{RUN}/metrics.csv", b"\x00\xff\x89PNG")),
        Case("metrics.csv: empty", AGGREGATE, NOT_WRITTEN, write(f"{RUN}/metrics.csv", b"")),
        Case("both files copied from the GD run", AGGREGATE, f"{RUN}/run.json: rho is 0.0", lambda ws: [
            shutil.copy(ws / GD / name, ws / RUN / name) for name in ("metrics.csv", "run.json")]),
        Case("run.json: null", AGGREGATE, f"{RUN}/run.json: expected a JSON object", write(f"{RUN}/run.json", "null")),
        Case("run.json: binary", AGGREGATE, f"{RUN}/run.json: not valid JSON", write(f"{RUN}/run.json", b"\x00\xff\xfe")),
        Case('run.json: "lr": "abc"', AGGREGATE, f"{RUN}/run.json: lr is 'abc'", edit_json(f"{RUN}/run.json", lambda r: r | {"lr": "abc"})),
        Case("run.json: no metrics digest", AGGREGATE, f"{RUN}/run.json: no metrics_sha256",
             edit_json(f"{RUN}/run.json", lambda r: {k: v for k, v in r.items() if k != "metrics_sha256"})),
        Case("results/<profile>/metrics.csv edited after aggregation", [*FIGURE, "scratch/figures"],
             f"{RESULTS}/metrics.csv: the rows of run mnist/lr0.3_rho0.1",
             lambda ws: (ws / RESULTS / "metrics.csv").write_text(
                 (ws / RESULTS / "metrics.csv").read_text().replace(",0.3,0.1,", ",0.3,0.2,", 1))),
        # Output folders that are files
        Case("aggregate --out-dir a file", [*AGGREGATE[:3], "--out-dir", "params.yaml"], "params.yaml is a file"),
        Case("aggregate --out-dir under a file", [*AGGREGATE[:3], "--out-dir", "params.yaml/sub"], "params.yaml is a file"),
        Case("figure --out under a file", [*FIGURE, "params.yaml/sub"], "params.yaml is a file"),
        # Values
        Case("--seed 2^63 (MNIST)", [*TRAIN, "--seed", str(2**63)], "seed"),
        Case("--seed 2^63 (language model)", [*TRAIN[:2], "shakespeare", *TRAIN[3:], "--seed", str(2**63)], "seed"),
        Case("--set tracker.k=100000", [*TRAIN, "--set", "tracker.k=100000"], "tracker.k: 100000"),
        Case("--rho 1e308", [*TRAIN[:6], "1e308", *TRAIN[7:]], "--rho 1e+308"),
        Case("--set data.n_train=1000000000", [*TRAIN, "--set", "data.n_train=1000000000"], "n_train: 1000000000"),
        Case("no step and no time budget", [*TRAIN, "--set", "train.max_steps=null", "--set", "train.time_budget_s=null"],
             "set max_steps or time_budget_s"),
        Case("no measurement cadence", [*TRAIN, "--set", "train.measure_every_steps=null"], "set measure_every_steps"),
        Case("argparse: a missing option", ["train", "--task", "mnist"], "required: --lr, --out"),
        # Data
        Case("manifest.json: null", TRAIN, MANIFEST, write("data/prepared/mnist/manifest.json", "null")),
        Case("manifest.json: no outputs", TRAIN, MANIFEST,
             edit_json("data/prepared/mnist/manifest.json", lambda m: {k: v for k, v in m.items() if k != "outputs"})),
        Case("manifest.json: no sha256", TRAIN, MANIFEST, edit_json("data/prepared/mnist/manifest.json", lambda m: m | {
            "outputs": {n: {k: v for k, v in e.items() if k != "sha256"} for n, e in m["outputs"].items()}})),
        Case("manifest.json: an output's entry missing", TRAIN, MANIFEST, edit_json("data/prepared/mnist/manifest.json", lambda m: m | {
            "outputs": {n: e for n, e in m["outputs"].items() if n != "y_train.npy"}})),
        Case("fetch from a mirror without the files", ["fetch", "mnist", "--data-dir", "scratch/data"], "/nonexistent",
             lambda ws: (ws / "scratch").mkdir(), patch=lambda: _env(MIRROR_ENV, "/nonexistent")),
        # Checkpoints
        Case("checkpoint: a folder", TRAIN, f"checkpoint {CKPT} is a folder", lambda ws: (ws / CKPT).mkdir(parents=True)),
        Case("checkpoint: valid digest, no tracker", TRAIN, f"checkpoint {CKPT} lacks ['tracker']",
             saved_checkpoint(lambda: {k: {} for k in CHECKPOINT_KEYS if k != "tracker"})),
        Case("checkpoint: of another run", TRAIN, f"checkpoint {CKPT} belongs to a run with another", saved_checkpoint(full_payload)),
        *(Case(f"checkpoint: {name}", TRAIN, f"checkpoint {CKPT}", saved_checkpoint(full_payload, damage)) for name, damage in {
            "empty": lambda b: b"", "truncated": lambda b: b[: len(b) // 2],
            "bit flip": lambda b: b[:-9] + bytes([b[-9] ^ 0x10]) + b[-8:],
            "plain torch file": lambda b: b.partition(b"\n")[2]}.items()),
        Case("a full disk while checkpointing (the first checkpoint kept)", [*TRAIN, *SHORT],
             "the folder scratch/run.ckpt is full",
             may_change=("scratch", "scratch/run.ckpt", "scratch/run.ckpt/"), patch=disk_full_after_one_checkpoint),
        # The earlier bad-input lists of tests/test_train.py and tests/test_figures.py
        *(Case(f"train {' '.join(extra)}", with_args(TRAIN, extra), _named(extra)) for extra in (
            ["--lr", "0"], ["--lr", "-1"], ["--rho", "-0.1"], ["--profile", "huge"], ["--set", "train.nope=1"],
            ["--set", "train.max_steps=many"], ["--set", "model.width=2.5"], ["--data-dir", "/nonexistent/data"],
            ["--lr", "inf"], ["--rho", "inf"], ["--lr", "1e308"], ["--set", "train.max_steps=["],
            ["--set", "tracker.tol=.nan"], ["--set", "model.init_scale=nan"], ["--set", "train.divergence_loss=nan"],
            ["--set", "train.max_steps=null", "--set", "train.time_budget_s=inf"], ["--threads", "0"],
            ["--seed", "-1"], ["--task", "imagenet"], ["--out", "."], ["--checkpoint-dir", "scratch"])),
        *(Case(" ".join(extra), [*extra, "--results", "results", "--out", "scratch/figures"], _named(extra)) for extra in (
            ["figure", "17"], ["figure", "fig3"], ["figure", "run", "--task", "mnist"])),
    ]
    return cases


def dag_cases() -> list[Case]:
    """What a training job would refuse, refused when the DAG is built (`snakemake -n`): issue 21's
    drill found `snakemake -n` accepting each of the edits; and a finished run edited since."""
    smoke = ["snakemake", "-n", "--cores", "1", "--config", "profile=smoke"]
    edits = {  # name: (params keys of the smoke profile, what the message names)
        "lr 1e308": ({"mnist.grid.lr": [1e308]}, "grid.lr 1e+308"),
        "rho 1e308": ({"mnist.grid.rho": [0.0, 1e308]}, "grid.rho 1e+308"),
        "n_train 1e9": ({"mnist.data.n_train": 1_000_000_000}, "mnist.data.n_train: 1000000000 is more than the 60000"),
        "no step and no time budget": ({"cifar10.train.max_steps": None, "cifar10.train.time_budget_s": None},
                                       "cifar10.train: set max_steps or time_budget_s"),
        "no measurement cadence": ({"mnist.train.measure_every_steps": None, "mnist.train.measure_every_s": None},
                                   "mnist.train: set measure_every_steps or measure_every_s"),
        "lr: [0.3, 0.3]": ({"mnist.grid.lr": [0.3, 0.3]}, "0.3 and 0.3 are the same grid value"),
        "lr: [0.3, 0.30000000000001]": ({"mnist.grid.lr": [0.3, 0.30000000000001]},
                                        "0.3 and 0.30000000000001 are the same grid value"),
        "lr: [-0.3]": ({"mnist.grid.lr": [-0.3]}, "profiles.smoke.mnist.grid.lr.0"),
        "max_steps: many": ({"cifar10.train.max_steps": "many"}, "profiles.smoke.cifar10.train.max_steps"),
        "seed 2^63": ({"mnist.seed": 2**63}, "profiles.smoke.mnist.seed"),
        "tracker without its keys": ({"shakespeare.tracker": {"k": 3}}, "profiles.smoke.shakespeare.tracker"),
    }
    cases = [Case(f"pipeline: {name}", smoke, expect, edit_params(**keys)) for name, (keys, expect) in edits.items()]
    return [*cases,
            Case("pipeline: --config profile=nonesuch", [*smoke[:-1], "profile=nonesuch"], "profile 'nonesuch'"),
            Case("pipeline: --config device=tpu", [*smoke, "device=tpu"], "--config device='tpu'"),
            Case("pipeline: a finished run edited since", smoke,
                 f"{RUN}/metrics.csv: not the file its run wrote", edit_metrics(EDITS["lambda_1 scaled"]))]


def _named(extra: list[str]) -> str:
    """What a refusal of these arguments must name: the flag's value or the --set key."""
    if extra[0] == "figure":
        return f"figure {extra[1]}" if extra[1] == "run" else extra[1]
    flag, value = extra[-2:]
    if flag in ("--lr", "--rho"):
        return f"{flag} {float(value)!r}"  # as the message writes the float
    return value.partition("=")[0] if flag == "--set" else value


def with_args(argv: list[str], extra: list[str]) -> list[str]:
    """argv with each flag of extra set to its value (a --set added)."""
    argv = list(argv)
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in argv and flag != "--set":
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


@contextlib.contextmanager
def _env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name)
        else:
            os.environ[name] = old


# ------------------------------------------------------------------ running them
def build_workspace(root: Path, data: Path) -> Path:
    """params.yaml and workflow of the repository, data fetched once (copied per case), the smoke
    grid's runs (synthetic) and their tables."""
    ws = root / "base"
    ws.mkdir()
    for name in ("params.yaml", "Snakefile", "workflow", "profiles", "examples", "src"):
        (ws / name).symlink_to(REPO / name) if name == "src" else _copy(REPO / name, ws / name)
    shutil.copytree(data, ws / "data", symlinks=True, copy_function=_link_or_copy)
    for task, lr, rho in (("mnist", 0.3, 0.1), ("mnist", 0.3, 0.0)):
        write_run(ws / RUNS, task, lr, rho)
    aggregate(ws / RUNS, ws / RESULTS)
    return ws


def _copy(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest) if src.is_dir() else shutil.copy2(src, dest)


BIG = 1 << 20  # files above this (prepared arrays) are hard-linked into each case, never edited in place


def _link_or_copy(src: str, dest: str) -> None:
    os.link(src, dest) if os.path.getsize(src) > BIG else shutil.copy2(src, dest)


def snapshot(ws: Path) -> dict[str, tuple]:
    """Every file's mtime and content (a big file's inode: it is replaced, never edited in place) and
    every folder; the mtime of data/'s folders too (Snakemake's outputs there are folders)."""
    def state(p: Path) -> tuple:
        if p.is_dir():
            return ("dir", p.stat().st_mtime_ns if p.relative_to(ws).parts[:1] == ("data",) and p.parent != ws
                    else None)
        return (p.stat().st_mtime_ns, p.stat().st_ino if p.stat().st_size > BIG else sha256_file(p))

    return {str(p.relative_to(ws)): state(p) for p in ws.rglob("*")
            if not p.is_symlink() and not {".snakemake", "__pycache__"} & set(p.parts)}


def try_case(case: Case, base: Path, root: Path) -> Outcome:
    ws = root / "case"
    shutil.rmtree(ws, ignore_errors=True)
    shutil.copytree(base, ws, symlinks=True, copy_function=_link_or_copy)
    case.setup(ws)
    before = snapshot(ws)
    if case.argv[0] == "snakemake":
        proc = subprocess.run([SNAKEMAKE, *case.argv[1:]], cwd=ws, capture_output=True, text=True)
        lines = proc.stderr.strip().splitlines()
        errors = [line for line in lines if ": error: " in line] or lines[-1:]
        code, first = proc.returncode, ("traceback: " if "Traceback" in proc.stderr else "") + (errors or [""])[0]
    else:
        code, first = _in_process(case, ws)
    after = snapshot(ws)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    return Outcome(case, code, first, changed)


def _in_process(case: Case, ws: Path) -> tuple[int | str, str]:
    err = io.StringIO()
    cwd = Path.cwd()
    os.chdir(ws)
    try:
        with case.patch(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(case.argv)
            except SystemExit as exc:  # argparse
                code = exc.code
            except Exception:  # a traceback: the drill's failure
                return "traceback", traceback.format_exc().strip().splitlines()[-1]
    finally:
        os.chdir(cwd)
    lines = [line for line in err.getvalue().splitlines() if ": error: " in line or code != 0]
    return code, (lines or [""])[0]


def drill(dag: bool = True, only: str = "", out=sys.stdout) -> list[Outcome]:
    mirror = os.environ.get(MIRROR_ENV) or str(REPO.parent / "shared" / "data")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="samedge-drill-") as tmp, _env(MIRROR_ENV, mirror):
        root = Path(tmp)
        fetch("mnist", root / "data")
        base = build_workspace(root, root / "data")
        outcomes = [try_case(case, base, root) for case in [*cli_cases(), *(dag_cases() if dag else [])]
                    if only in case.name]
    print_table(outcomes, out)
    return outcomes


def print_table(outcomes: list[Outcome], out) -> None:
    width = max(len(o.case.name) for o in outcomes)
    print(f"{'case':<{width}}  exit  ok  files changed  first line", file=out)
    for o in outcomes:
        line = o.first_line if len(o.first_line) <= 110 else o.first_line[:107] + "..."
        print(f"{o.case.name:<{width}}  {o.code!s:>4}  {'ok' if o.clean else 'NO'}  {len(o.changed):>13}  {line}",
              file=out)
        if not o.clean and o.changed:
            print(f"{'':<{width}}  changed: {', '.join(o.changed[:5])}", file=out)
    clean = sum(o.clean for o in outcomes)
    print(f"\n{clean} of {len(outcomes)} cases as they should be: refusals one line naming the file or value, "
          "exit 2, nothing changed; commands that must succeed leave the user's files alone", file=out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-dag", action="store_true", help="skip the pipeline's cases (snakemake -n each)")
    parser.add_argument("--only", default="", help="only the cases whose name contains this text")
    options = parser.parse_args()
    outcomes = drill(dag=not options.no_dag, only=options.only)
    sys.exit(0 if all(o.clean for o in outcomes) else 1)
