"""`samedge train`: every column, resume after SIGKILL/SIGTERM, divergence, and bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from samedge.cli import main
from samedge.train import METRIC_COLUMNS

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


def test_unknown_task_is_refused_by_the_parser(tmp_path, data_dir, repo_root, capsys):
    args = train_args("mnist", tmp_path / "run", data_dir, repo_root)
    args[args.index("--task") + 1] = "imagenet"
    with pytest.raises(SystemExit):
        main(args)
    assert "imagenet" in capsys.readouterr().err and not (tmp_path / "run").exists()
