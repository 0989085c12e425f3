"""`samedge train`: every column, resume after SIGKILL/SIGTERM, divergence, and bad input."""
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from samedge import checkpoint
from samedge.cli import main
from samedge.progress import Progress
from samedge.runs import METRIC_COLUMNS
from tests.drill import disk_full_after_one_checkpoint, with_args

TIMING = ["train_seconds", "wall_seconds"]


def train_args(task, out, data_dir, repo_root, lr=None, rho=0.1, extra=()):
    lr = lr if lr is not None else {"mnist": 0.3, "cifar10": 0.01, "shakespeare": 0.1}[task]
    return ["train", "--task", task, "--lr", str(lr), "--rho", str(rho), "--profile", "smoke",
            "--params", str(repo_root / "params.yaml"), "--data-dir", str(data_dir), "--device", "cpu",
            "--threads", "1", "--out", str(out), *extra]


def read_run(out: Path):
    return pd.read_csv(out / "metrics.csv"), json.loads((out / "run.json").read_text())


@pytest.mark.parametrize("task", ["mnist", "cifar10", "shakespeare"])
def test_a_smoke_run_writes_every_column(task, tmp_path, data_dir, repo_root):
    out = tmp_path / "run"
    assert main(train_args(task, out, data_dir, repo_root)) == 0
    metrics, record = read_run(out)
    assert list(metrics.columns[:len(METRIC_COLUMNS)]) == METRIC_COLUMNS
    assert metrics["step"].tolist()[:2] == [0, 10]
    assert metrics[METRIC_COLUMNS].notna().all().all()
    assert (metrics["lambda_1"] >= metrics["lambda_2"]).all() and (metrics["lambda_2"] >= metrics["lambda_3"]).all()
    assert (metrics["gd_edge"] == 2 / float(train_args(task, out, data_dir, repo_root)[4])).all()
    assert (metrics["sam_edge"] < metrics["gd_edge"]).all()
    assert (metrics["align_grad"] >= 0).all() and metrics["align_sam_grad"].abs().le(1).all()
    assert (metrics["hvp_count"] > 0).all()
    assert record["status"] == "completed" and record["reason"] is None
    assert record["steps"] == record["config"]["train"]["max_steps"]
    assert record["total_hvps"] == metrics["hvp_count"].sum()
    assert {"torch", "numpy", "python"} <= set(record["versions"]) and record["device"].startswith("cpu")
    assert not (tmp_path / "run.ckpt").exists()


def test_gd_sam_edge_equals_two_over_eta(tmp_path, data_dir, repo_root):
    out = tmp_path / "gd"
    assert main(train_args("mnist", out, data_dir, repo_root, rho=0.0)) == 0
    metrics, _ = read_run(out)
    assert (metrics["sam_edge"] == metrics["gd_edge"]).all()
    assert (metrics["align_sam_grad"] == metrics["align_grad"]).all()


def test_same_seed_same_metrics(tmp_path, data_dir, repo_root):
    for name in ("a", "b"):
        assert main(train_args("mnist", tmp_path / name, data_dir, repo_root)) == 0
    a, b = (read_run(tmp_path / n)[0].drop(columns=TIMING) for n in ("a", "b"))
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def _spawn(args):
    return subprocess.Popen([sys.executable, "-m", "samedge.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _interrupt_after_first_checkpoint(args, out: Path, sig: int) -> int:
    proc = _spawn(args)
    checkpoint = out.with_name(out.name + ".ckpt") / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    return proc.returncode


LONG = ["--set", "train.max_steps=300", "--set", "train.checkpoint_every_steps=20",
        "--set", "train.measure_every_steps=15"]


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 143)])
def test_a_killed_run_resumes_to_identical_metrics(sig, code, tmp_path, data_dir, repo_root):
    reference = tmp_path / "reference"
    assert main(train_args("mnist", reference, data_dir, repo_root, extra=LONG)) == 0
    out = tmp_path / "killed"
    args = train_args("mnist", out, data_dir, repo_root, extra=LONG)
    assert _interrupt_after_first_checkpoint(args, out, sig) == code
    assert not (out / "metrics.csv").exists(), "the run finished before it could be killed"
    assert (out.with_name("killed.ckpt") / "checkpoint.pt").exists()
    assert main(args) == 0
    (resumed, record), (expected, _) = read_run(out), read_run(reference)
    assert record["resumes"] == 1
    pd.testing.assert_frame_equal(resumed.drop(columns=TIMING), expected.drop(columns=TIMING), check_exact=True)


def test_divergence_stops_keeps_measurements_and_exits_zero(tmp_path, data_dir, repo_root):
    out = tmp_path / "blowup"
    args = train_args("mnist", out, data_dir, repo_root, lr=50.0, rho=0.0,
                      extra=["--set", "train.measure_every_steps=1"])
    assert main(args) == 0
    metrics, record = read_run(out)
    assert record["status"] == "diverged" and "step" in record["reason"]
    assert 0 < record["steps"] < 30 and len(metrics) == record["steps"]
    out = tmp_path / "bound"
    assert main(train_args("mnist", out, data_dir, repo_root, extra=["--set", "train.divergence_loss=0.05"])) == 0
    assert "divergence_loss" in read_run(out)[1]["reason"]


@pytest.mark.parametrize("change, message", [
    (["--lr", "0"], "--lr"), (["--lr", "-1"], "--lr"), (["--rho", "-0.1"], "--rho"),
    (["--profile", "huge"], "huge"), (["--set", "train.nope=1"], "nope"),
    (["--set", "train.max_steps=many"], "train.max_steps"), (["--set", "model.width=2.5"], "model.width"),
    (["--data-dir", "/nonexistent/data"], "samedge fetch"),
])
def test_bad_input_is_a_clear_error_and_leaves_out_untouched(change, message, tmp_path, data_dir, repo_root,
                                                             capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    args = train_args("mnist", out, data_dir, repo_root)
    for flag, value in zip(change[::2], change[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not (tmp_path / "run.ckpt").exists()


def test_unknown_task_is_refused_before_anything(tmp_path, data_dir, repo_root, capsys):
    """Tasks of your own are named in params.yaml, so the task is checked against it, not by the parser."""
    args = train_args("mnist", tmp_path / "run", data_dir, repo_root)
    args[args.index("--task") + 1] = "imagenet"
    assert main(args) == 2
    assert "imagenet" in capsys.readouterr().err and not (tmp_path / "run").exists()


def one_error_line(err: str, *names: str) -> str:
    """The whole of stderr is one line, `samedge train: error: ...`, naming each of names."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("samedge train: error: "), err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def with_out(args: list[str], out: Path) -> list[str]:
    return [str(out) if prev == "--out" else a for prev, a in zip(["", *args], args)]


@pytest.mark.parametrize("extra, names", [
    (["--lr", "inf"], ["--lr inf", "finite"]),
    (["--rho", "inf"], ["--rho inf", "finite"]),
    (["--lr", "1e308"], ["--lr 1e+308", "2/lr"]),  # 2/lr underflows and the SAM edge is 0: 0/0 later
    (["--set", "train.max_steps=["], ["train.max_steps", "YAML"]),
    (["--set", "tracker.tol=.nan"], ["tracker.tol", "finite"]),
    (["--set", "model.init_scale=nan"], ["model.init_scale", "finite"]),
    (["--set", "train.divergence_loss=nan"], ["train.divergence_loss", "finite"]),
    (["--set", "train.max_steps=null", "--set", "train.time_budget_s=inf"], ["train.time_budget_s", "finite"]),
    (["--threads", "0"], ["--threads 0", ">= 1"]),
    (["--seed", "-1"], ["seed", "minimum"]),
    (["--seed", str(2**63)], ["seed", "maximum"]),  # torch's generators take 64-bit seeds, the LM's seed * 1000003
    (["--rho", "1e308"], ["--rho 1e+308", "8 rho/lr is finite"]),  # the SAM edge's term overflows
    (["--set", "tracker.k=100000"], ["tracker.k", "choose k <= 13002"]),
    (["--set", "train.max_steps=null", "--set", "train.time_budget_s=null"], ["max_steps or time_budget_s"]),
    (["--set", "train.measure_every_steps=null"], ["measure_every_steps or measure_every_s"]),
    (["--set", "data.n_train=1000000000"], ["data.n_train", "60000 training examples"]),
])
def test_each_bad_value_is_one_line_and_exit_2_before_any_output(extra, names, tmp_path, data_dir, repo_root,
                                                                 capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    args = train_args("mnist", out, data_dir, repo_root)
    for flag in ("--lr", "--rho", "--threads"):
        if flag in extra:
            del args[args.index(flag):args.index(flag) + 2]
    assert main([*args, *extra]) == 2
    one_error_line(capsys.readouterr().err, *names)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and not (tmp_path / "run.ckpt").exists()


@pytest.mark.parametrize("where", ["out", "parent", "cwd", "inside"])
def test_a_checkpoint_dir_overlapping_out_is_refused(where, tmp_path, data_dir, repo_root, capsys, monkeypatch):
    """The end of a run empties its checkpoint folder: that must never be the results' folder."""
    out = tmp_path / "results" / "run"
    out.mkdir(parents=True)
    (out / "metrics.csv").write_text("an earlier result")
    monkeypatch.chdir(tmp_path)
    checkpoint_dir = {"out": out, "parent": out.parent, "cwd": Path("."), "inside": out / "ckpt"}[where]
    assert main(train_args("mnist", out, data_dir, repo_root, extra=["--checkpoint-dir", str(checkpoint_dir)])) == 2
    one_error_line(capsys.readouterr().err, f"--checkpoint-dir {checkpoint_dir}", "overlaps --out")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "results", "results/run", "results/run/metrics.csv"]


def test_out_is_never_the_current_folder(tmp_path, data_dir, repo_root, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(train_args("mnist", Path("."), data_dir, repo_root)) == 2
    one_error_line(capsys.readouterr().err, "--out .")
    assert list(tmp_path.iterdir()) == []


def test_the_end_of_a_run_removes_only_the_checkpoint_files_it_wrote(tmp_path, data_dir, repo_root):
    checkpoint_dir = tmp_path / "checkpoints"
    checkpoint_dir.mkdir()
    (checkpoint_dir / "notes.txt").write_text("the user's")
    (checkpoint_dir / ".checkpoint.pt.mine.tmp").write_text("the user's, named like a temporary file")
    (checkpoint_dir / ".checkpoint.pt.k1ll3d.tmp").write_bytes(checkpoint.MAGIC + b"0123 a save cut short")
    out = tmp_path / "run"
    assert main(train_args("mnist", out, data_dir, repo_root, extra=["--checkpoint-dir", str(checkpoint_dir)])) == 0
    assert sorted(p.name for p in checkpoint_dir.iterdir()) == [".checkpoint.pt.mine.tmp", "notes.txt"]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "run.json"]  # no lock or stray file


@pytest.mark.parametrize("flag", ["--out", "--checkpoint-dir"])
def test_an_unwritable_folder_is_refused_before_training(flag, tmp_path, data_dir, repo_root, capsys):
    (tmp_path / "a_file").write_text("")
    bad = tmp_path / "a_file" / "sub"  # below a file: unwritable even for root
    out = bad if flag == "--out" else tmp_path / "run"
    extra = ["--checkpoint-dir", str(bad)] if flag == "--checkpoint-dir" else []
    assert main(train_args("mnist", out, data_dir, repo_root, extra=extra)) == 2
    one_error_line(capsys.readouterr().err, f"{flag} {bad}", "cannot write there")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_is_refused_before_training(tmp_path, data_dir, repo_root, capsys):
    out = tmp_path / "run"
    out.mkdir(mode=0o500)
    assert main(train_args("mnist", out, data_dir, repo_root)) == 2
    one_error_line(capsys.readouterr().err, f"--out {out}", "cannot write there")


@pytest.fixture(scope="module")
def preempted(tmp_path_factory, data_dir, repo_root) -> tuple[list[str], bytes]:
    """The args and checkpoint of a run stopped by SIGTERM after its first checkpoint."""
    out = tmp_path_factory.mktemp("preempted") / "run"
    args = train_args("mnist", out, data_dir, repo_root, extra=LONG)
    assert _interrupt_after_first_checkpoint(args, out, signal.SIGTERM) == 143
    return args, (out.with_name("run.ckpt") / "checkpoint.pt").read_bytes()


CORRUPTIONS = {
    "empty": lambda b: b"",
    "truncated": lambda b: b[: len(b) // 2],
    "bit flip": lambda b: b[:-999] + bytes([b[-999] ^ 0x10]) + b[-998:],
    "plain torch file": lambda b: b.partition(b"\n")[2],
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_checkpoint_is_one_line_naming_it(corruption, preempted, tmp_path, capsys):
    args, payload = preempted
    checkpoint = tmp_path / "run.ckpt" / "checkpoint.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(CORRUPTIONS[corruption](payload))
    assert main(with_out(args, tmp_path / "run")) == 2
    one_error_line(capsys.readouterr().err, f"checkpoint {checkpoint}", "delete it")
    assert checkpoint.exists() and not (tmp_path / "run").exists()
    checkpoint.write_bytes(payload)  # the intact checkpoint resumes
    assert main(with_out(args, tmp_path / "run")) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["resumes"] == 1


def test_a_checkpoint_of_another_run_is_one_line_and_exit_2(preempted, tmp_path, capsys):
    args, payload = preempted
    checkpoint = tmp_path / "run.ckpt" / "checkpoint.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(payload)
    other = with_out(args, tmp_path / "run")
    other[other.index("--rho") + 1] = "0.3"
    assert main(other) == 2
    one_error_line(capsys.readouterr().err, f"checkpoint {checkpoint}", "another task/lr/rho/seed/config")
    assert checkpoint.read_bytes() == payload


def test_a_second_run_on_the_same_out_is_refused_while_the_first_runs(tmp_path, data_dir, repo_root, capsys):
    out = tmp_path / "run"
    first = _spawn(train_args("mnist", out, data_dir, repo_root, extra=LONG))
    checkpoint = out.with_name("run.ckpt") / "checkpoint.pt"
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.poll() is None, "the first run ended before the second started"
        assert main(train_args("mnist", out, data_dir, repo_root, rho=0.0)) == 2
        one_error_line(capsys.readouterr().err, f"--out {out}", "another samedge run is writing there")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 143
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]  # no lock file left anywhere


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir, repo_root) -> tuple[list[str], Path]:
    """The args and --out of a finished run (mnist lr 0.3 rho 0.1)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    args = train_args("mnist", out, data_dir, repo_root)
    assert main(args) == 0
    return args, out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("change, names", [
    (["--rho", "0"], ["rho=0.1"]), (["--lr", "0.2"], ["lr=0.3"]), (["--seed", "7"], ["seed=0"]),
    (["--set", "train.max_steps=25"], ["another config"]), (["--task", "cifar10", "--lr", "0.01"], ["task='mnist'"]),
])
def test_an_out_holding_another_runs_results_is_refused(finished, tmp_path, change, names, capsys):
    args, out = finished
    other = with_args(with_out(args, tmp_path / "run"), change)
    shutil.copytree(out, tmp_path / "run")
    before = _files(tmp_path)
    assert main(other) == 2
    one_error_line(capsys.readouterr().err, f"--out {tmp_path / 'run'}", "holds the results of another run", *names)
    assert _files(tmp_path) == before


def test_a_metrics_csv_without_its_run_json_is_not_overwritten(finished, tmp_path, capsys):
    args, out = finished
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.csv").write_text("a result of the user's")
    assert main(with_out(args, tmp_path / "run")) == 2
    one_error_line(capsys.readouterr().err, "--out", "metrics.csv without run.json")
    assert (tmp_path / "run" / "metrics.csv").read_text() == "a result of the user's"


def test_the_same_run_rewrites_its_own_results(finished, tmp_path):
    args, out = finished
    shutil.copytree(out, tmp_path / "run")
    assert main(with_out(args, tmp_path / "run")) == 0
    assert read_run(tmp_path / "run")[0].drop(columns=TIMING).equals(read_run(out)[0].drop(columns=TIMING))


def test_a_checkpoint_path_that_is_a_folder_is_refused_before_training(finished, tmp_path, capsys):
    args, _ = finished
    (tmp_path / "run.ckpt" / "checkpoint.pt").mkdir(parents=True)
    assert main(with_out(args, tmp_path / "run")) == 2
    one_error_line(capsys.readouterr().err, f"checkpoint {tmp_path / 'run.ckpt' / 'checkpoint.pt'}", "is a folder")
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_with_a_valid_digest_but_no_tracker_is_refused(preempted, tmp_path, capsys):
    args, payload = preempted
    path = tmp_path / "run.ckpt" / "checkpoint.pt"
    path.parent.mkdir()
    path.write_bytes(payload)
    content = checkpoint.load(path)
    del content["tracker"]
    checkpoint.save(path, content)
    assert main(with_out(args, tmp_path / "run")) == 2
    one_error_line(capsys.readouterr().err, f"checkpoint {path}", "lacks ['tracker']", "delete it")


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, data_dir, repo_root, capsys):
    out = tmp_path / "run"
    args = train_args("mnist", out, data_dir, repo_root, extra=LONG)
    with disk_full_after_one_checkpoint():
        assert main(args) == 2
    one_error_line(capsys.readouterr().err, f"the folder {tmp_path / 'run.ckpt'} is full", "kept", "run the same command")
    assert sorted(p.name for p in (tmp_path / "run.ckpt").iterdir()) == ["checkpoint.pt"]  # no half-written file
    assert main(args) == 0 and read_run(out)[1]["resumes"] == 1


def test_seed_overrides_the_task_configs_seed(tmp_path, data_dir, repo_root):
    runs = {name: tmp_path / name for name in ("default", "flag", "set")}
    for name, extra in (("default", []), ("flag", ["--seed", "3"]), ("set", ["--set", "seed=3"])):
        assert main(train_args("mnist", runs[name], data_dir, repo_root, extra=extra)) == 0
    (flag, record), (by_set, _), (default, base) = (read_run(runs[n]) for n in ("flag", "set", "default"))
    assert record["seed"] == record["config"]["seed"] == 3 and base["seed"] == base["config"]["seed"]
    pd.testing.assert_frame_equal(flag.drop(columns=TIMING), by_set.drop(columns=TIMING), check_exact=True)
    assert flag["loss"][0] != default["loss"][0]


def test_a_run_logged_to_a_file_shows_progress_with_an_eta_and_no_warning(tmp_path, data_dir, repo_root):
    done = subprocess.run([sys.executable, "-m", "samedge.cli",
                           *train_args("mnist", tmp_path / "run", data_dir, repo_root)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "\r" not in done.stderr
    steps = [int(n) for n in re.findall(r" (\d+)/30 \[\d\d:\d\d<\d\d:\d\d", done.stderr)]
    assert steps == [3 * i for i in range(1, 11)]  # a line at every tenth of the run, the last at 30/30


def test_progress_by_time_budget_counts_training_seconds(caplog):
    caplog.set_level(logging.INFO, logger="samedge.train")
    state = type("State", (), {"step": 0, "train_seconds": 0.0})()
    progress = Progress("run", state, None, 8.0, stream=io.StringIO())
    for second in range(1, 9):
        state.step, state.train_seconds = 10 * second, float(second)
        progress.update()
    progress.close()
    assert [re.search(r"(\S+)/8\.0 training s \[\d\d:\d\d<\d\d:\d\d", r.getMessage())[1] for r in caplog.records] == [
        f"{s:.1f}" for s in range(1, 9)]


def test_a_corrupt_manifest_is_one_line_naming_it(tmp_path, data_dir, repo_root, capsys):
    # links, not copies of 210 MB; the manifest is replaced, never written through its link
    shutil.copytree(data_dir / "prepared" / "mnist", tmp_path / "data" / "prepared" / "mnist",
                    copy_function=os.link)
    manifest = tmp_path / "data" / "prepared" / "mnist" / "manifest.json"
    text = manifest.read_text()
    manifest.unlink()
    manifest.write_text(text[:100])
    assert main(train_args("mnist", tmp_path / "run", tmp_path / "data", repo_root)) == 2
    one_error_line(capsys.readouterr().err, str(manifest), "not valid JSON")
    assert not (tmp_path / "run").exists()
