"""The training loop's step makes no host-device sync it does not need (counted CUDA-free by
wrapping every Tensor -> Python conversion), and reading divergence late still reports the exact
first diverging step."""
import json

import pytest
import torch

from samedge import train
from samedge.cli import main
from samedge.sam import SamTensors
from tests.test_train import train_args

SYNCS = ["item", "tolist", "__bool__", "__float__", "__int__", "__index__", "__format__"]


@pytest.fixture
def sync_counter(monkeypatch):
    """Counts Tensor -> Python conversions (each a sync on CUDA) made by the training loop itself:
    inside Trainer.run, outside measurements, checkpoints and the divergence reads (counted apart)."""
    counts = {"step": 0, "reads": 0}
    depth = {"run": 0, "quiet": 0}

    def counting(original):
        def wrapper(self, *args, **kwargs):
            if depth["run"] and not depth["quiet"]:
                counts["step"] += 1
            return original(self, *args, **kwargs)
        return wrapper

    def scoped(method, key, read=False):
        def wrapper(self, *args, **kwargs):
            counts["reads"] += read
            depth[key] += 1
            try:
                return method(self, *args, **kwargs)
            finally:
                depth[key] -= 1
        return wrapper

    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    monkeypatch.setattr(train.Trainer, "run", scoped(train.Trainer.run, "run"))
    for owner, name in ((train.Trainer, "_measure"), (train.Trainer, "save_checkpoint"),
                        (train.Trainer, "finish"), (SamTensors, "synced")):
        monkeypatch.setattr(owner, name, scoped(getattr(owner, name), "quiet"))
    monkeypatch.setattr(train.DivergenceWatch, "first", scoped(train.DivergenceWatch.first, "quiet", read=True))
    return counts


def test_steps_sync_only_to_read_divergence(sync_counter, tmp_path, data_dir, repo_root):
    steps, every = 60, 30
    extra = ["--set", f"train.max_steps={steps}", "--set", f"train.measure_every_steps={every}",
             "--set", "train.checkpoint_every_steps=null"]
    assert main(train_args("mnist", tmp_path / "run", data_dir, repo_root, extra=extra)) == 0
    # reads at steps 0, 20, 30, 40 and at the end; the old loop made >= 3 syncs every step
    assert sync_counter["reads"] == 5
    assert sync_counter["step"] == 0


def test_divergence_read_late_reports_the_exact_first_step(tmp_path, data_dir, repo_root):
    records = []
    for name, every in (("every_step", 1), ("late", 100)):
        extra = ["--set", "train.max_steps=100", "--set", f"train.measure_every_steps={every}",
                 "--set", "train.divergence_loss=1e38", "--set", "train.checkpoint_every_steps=null",
                 "--set", "tracker.max_iters=5"]
        assert main(train_args("mnist", tmp_path / name, data_dir, repo_root, lr=30, rho=0.0, extra=extra)) == 0
        records.append(json.loads((tmp_path / name / "run.json").read_text()))
    assert records[0]["status"] == records[1]["status"] == "diverged"
    assert records[0]["steps"] == records[1]["steps"] > train.DIVERGENCE_CHECK_EVERY  # read late in "late"
    assert records[0]["reason"] == records[1]["reason"]


def test_the_cuda_graph_switch_leaves_a_cpu_run_unchanged(tmp_path, data_dir, repo_root):
    import pandas as pd
    import yaml
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["profiles"]["smoke"]["mnist"]["train"]["cuda_graph"] = True
    for name, task in params.get("tasks", {}).items():  # user task modules: relative to params.yaml
        task["module"] = str(repo_root / task["module"])
    graph_params = tmp_path / "params.yaml"
    graph_params.write_text(yaml.safe_dump(params, sort_keys=False))
    frames = []
    for name, root in (("eager", repo_root), ("graph", tmp_path)):
        args = train_args("mnist", tmp_path / name, data_dir, root)
        assert main(args) == 0
        frames.append(pd.read_csv(tmp_path / name / "metrics.csv").drop(columns=["train_seconds", "wall_seconds"]))
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)
