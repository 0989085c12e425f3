"""EdgeMonitor: a training loop of your own gets the pipeline's metrics.csv rows, exactly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from samedge.aggregate import aggregate
from samedge.cli import main
from samedge import optimizers
from samedge.monitor import EdgeMonitor
from samedge.runs import METRIC_COLUMNS, RunKey, read_run
from samedge.sam import sam_step
from samedge.tasks import get_task, register_user_tasks

REPO = Path(__file__).resolve().parents[1]
TIMING = ["train_seconds", "wall_seconds"]


@pytest.fixture(scope="module", autouse=True)
def teacher_task():
    register_user_tasks({"tasks": {"teacher": {"module": "examples/teacher_student.py"}}}, REPO)


def _trained(tmp_path: Path, *args: str) -> pd.DataFrame:
    """metrics.csv of a `samedge train` run of the example profile's teacher task."""
    out = tmp_path / "trained"
    assert main(["train", "--task", "teacher", "--profile", "example", "--params", str(REPO / "params.yaml"),
                 "--device", "cpu", "--threads", "1", "--out", str(out), *args]) == 0
    return pd.read_csv(out / "metrics.csv")


def _teacher(tmp_path: Path):
    """The teacher task, its model as `samedge train` initialises it, and its full batch."""
    task = get_task("teacher")
    cfg = {"data": {"n_train": 256, "seed": 1}, "train": {"chunk_size": None, "batch_size": None}, "seed": 0}
    torch.manual_seed(0)
    model = task.build_model({"width": 32, "depth": 2})
    return task, model, task.batches(cfg, tmp_path, torch.device("cpu")).batch(0)


def test_own_loop_rows_equal_the_pipeline_rows(tmp_path):
    """The same run through `samedge train` and through a hand-written SAM loop with the monitor."""
    trained = _trained(tmp_path, "--lr", "1.0", "--rho", "0.05", "--set", "train.max_steps=61")
    task, model, data = _teacher(tmp_path)
    monitor = EdgeMonitor(lr=1.0, rho=0.05, every=30, seed=0)
    for step in range(61):
        monitor.observe(step, model, task.loss, data)
        sam_step(model, task.loss, data, lr=1.0, rho=0.05)
    own = monitor.frame()
    assert list(own.columns) == list(trained.columns) and own["step"].tolist() == [0, 30, 60]
    pd.testing.assert_frame_equal(own.drop(columns=TIMING), trained.drop(columns=TIMING), check_exact=True)


@pytest.mark.parametrize("name,lr,make", [
    ("adam", 0.01, lambda params, lr: torch.optim.Adam(params, lr=lr)),
    ("rmsprop", 0.001, lambda params, lr: torch.optim.RMSprop(params, lr=lr)),
    ("momentum", 0.2, lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9)),
])
def test_own_torch_optimizer_loop_rows_equal_the_pipeline_rows(tmp_path, name, lr, make):
    """`samedge train --optimizer NAME` and a plain torch.optim loop with EdgeMonitor(optimizer=...)
    write the same rows, edge and preconditioned sharpness included (Adam's read from its state)."""
    trained = _trained(tmp_path, "--lr", str(lr), "--optimizer", name, "--set", "train.max_steps=21",
                       "--set", "train.measure_every_steps=10")
    task, model, data = _teacher(tmp_path)
    x, y = data[0]
    own = make(model.parameters(), lr)
    view = own if name != "momentum" else optimizers.build({"name": "momentum"}, lr)
    monitor = EdgeMonitor(optimizer=view, every=10, seed=0)
    for step in range(21):
        monitor.observe(step, model, task.loss, (x, y))
        own.zero_grad()
        task.loss(model(x), y).backward()
        own.step()
    mine = monitor.frame()
    assert mine["edge"].iloc[0] == trained["edge"].iloc[0] == monitor.optimizer.edge(0.0)
    if name != "momentum":
        assert (mine["sharpness"] != mine["lambda_1"]).all()
    pd.testing.assert_frame_equal(mine.drop(columns=TIMING), trained.drop(columns=TIMING), rtol=1e-5)


def test_written_run_is_read_by_the_run_contract(tmp_path):
    monitor = EdgeMonitor(lr=0.5, rho=0.0, every=5)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x, y = torch.randn(20, 3), torch.randn(20, 1)
    for step in range(12):
        monitor.observe(step, model, lambda o, t: (o - t).pow(2).mean(), (x, y))
        model.zero_grad()
    key = RunKey("mine", 0.5, 0.0)
    monitor.write(tmp_path / "runs" / key.task / key.name, task="mine")
    run = read_run(tmp_path / "runs", key)
    assert run.record["steps"] == 12 and len(run.metrics) == 3 and list(run.metrics.columns[:len(METRIC_COLUMNS)]) == METRIC_COLUMNS
    aggregate(tmp_path / "runs", tmp_path)
    assert pd.read_csv(tmp_path / "runs.csv")["task"].tolist() == ["mine"]


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0.0}, "lr"), ({"lr": float("inf")}, "lr"), ({"lr": 0.1, "rho": -1.0}, "rho"),
    ({"lr": 0.1, "every": 0}, "every"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EdgeMonitor(**kwargs)


@pytest.mark.slow
def test_the_runnable_example(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "own_training_loop.py"), "--out",
                           str(tmp_path), "--steps", "61"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr
    run = read_run(tmp_path / "runs", RunKey("own", 2.0, 0.0))
    assert run.metrics["step"].tolist() == [0, 30, 60] and run.metrics["lambda_1"].gt(0).all()
