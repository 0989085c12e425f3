"""`samedge train --optimizer NAME`: each optimizer's run resumes after a kill to the uninterrupted
run's metrics exactly (its state travels in the checkpoint), minibatch SAM, the edge and
sharpness columns, and bad optimizer settings as one line, exit 2, before any output. On the
teacher-student task (examples/, no data to fetch), so they run anywhere in seconds."""
import json
import signal

import pandas as pd
import pytest

from samedge.cli import main
from tests.test_train import TIMING, _interrupt_after_first_checkpoint, read_run


def train_args(out, repo_root, lr, rho, extra=()):
    """A run of the `example` profile's teacher task."""
    return ["train", "--task", "teacher", "--lr", str(lr), "--rho", str(rho), "--profile", "example",
            "--params", str(repo_root / "params.yaml"), "--device", "cpu", "--threads", "1", "--out", str(out), *extra]


STEPS = ["--set", "train.max_steps=400", "--set", "train.checkpoint_every_steps=20",
         "--set", "train.measure_every_steps=15"]
CASES = {  # name: (lr, rho, extra arguments)
    "sam-minibatch": (1.0, 0.05, ["--set", "train.batch_size=32"]),
    "usam": (1.0, 0.05, ["--optimizer", "usam"]),
    "momentum-nesterov": (0.2, 0.0, ["--optimizer", "momentum", "--set", "optimizer.nesterov=true"]),
    "adam": (0.01, 0.0, ["--optimizer", "adam"]),
    "rmsprop": (0.001, 0.0, ["--optimizer", "rmsprop", "--set", "optimizer.alpha=0.9"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_killed_run_of_each_optimizer_resumes_to_identical_metrics(case, tmp_path, repo_root):
    lr, rho, extra = CASES[case]
    reference = tmp_path / "reference"
    assert main(train_args(reference, repo_root, lr=lr, rho=rho, extra=[*extra, *STEPS])) == 0
    out = tmp_path / "killed"
    args = train_args(out, repo_root, lr=lr, rho=rho, extra=[*extra, *STEPS])
    assert _interrupt_after_first_checkpoint(args, out, signal.SIGKILL) == -signal.SIGKILL
    assert not (out / "metrics.csv").exists(), "the run finished before it could be killed"
    assert main(args) == 0
    (resumed, record), (expected, _) = read_run(out), read_run(reference)
    assert record["resumes"] == 1 and record["optimizer"]["name"] == (extra[1] if extra[0] == "--optimizer" else "sam")
    pd.testing.assert_frame_equal(resumed.drop(columns=TIMING), expected.drop(columns=TIMING), check_exact=True)
    edge_is_lambda = case.startswith(("sam", "usam", "momentum"))
    assert (expected["sharpness"] == expected["lambda_1"]).all() == edge_is_lambda


def test_momentum_edge_column_and_sam_columns_kept(tmp_path, repo_root):
    out = tmp_path / "run"
    assert main(train_args(out, repo_root, lr=0.1, rho=0.0,
                           extra=["--optimizer", "momentum", "--set", "optimizer.beta=0.5",
                                  "--set", "train.max_steps=40"])) == 0
    metrics, record = read_run(out)
    assert record["optimizer"] == {"name": "momentum", "beta": 0.5, "nesterov": False}
    assert (metrics["edge"] == 3.0 / 0.1).all() and (metrics["gd_edge"] == 2.0 / 0.1).all()
    assert (metrics["sharpness"] == metrics["lambda_1"]).all()


@pytest.mark.parametrize("extra, message", [
    (["--optimizer", "momentum", "--set", "optimizer.beta=1.0"], "optimizer.beta"),
    (["--optimizer", "momentum", "--set", "optimizer.beta=-0.5"], "optimizer.beta"),
    (["--optimizer", "adam", "--set", "optimizer.eps=0"], "optimizer.eps"),
    (["--optimizer", "lion"], "unknown optimizer 'lion'"),
    (["--optimizer", "adam", "--rho", "0.1"], "optimizer 'adam' has no rho"),
    (["--optimizer", "adam", "--set", "optimizer.beta=0.9"], "unknown key 'beta'"),
])
def test_bad_optimizer_settings_are_one_line_exit_2_before_any_output(extra, message, tmp_path, repo_root, capsys):
    out = tmp_path / "run"
    args = train_args(out, repo_root, lr=0.1, rho=0.0)
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()
