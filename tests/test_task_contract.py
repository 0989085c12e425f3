"""A task of your own that breaks the contract (samedge.tasks.contract) is one line naming the broken
part, exit 2, before anything is written: through `samedge train`, as a user meets it."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from samedge.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = (REPO / "examples" / "teacher_student.py").read_text()

# (what the user got wrong, the edit to the example task, what the one line must say)
BREAKS = {
    "loss signature": ("def mse(outputs: Tensor, targets: Tensor) -> Tensor:",
                       "def mse(outputs: Tensor, targets: Tensor, weights: Tensor) -> Tensor:",
                       "task mine: loss must take (outputs, targets); missing a required argument: 'weights'"),
    "loss not reduced": ("return (outputs - targets).pow(2).mean()", "return (outputs - targets).pow(2)",
                         "task mine: loss(outputs, targets) returned a tensor of shape (256, 4); expected the "
                         "batch mean, a 0-d floating tensor"),
    "loss not a tensor": ("return (outputs - targets).pow(2).mean()", "return (outputs - targets).pow(2).mean().detach().item()",
                          "task mine: loss(outputs, targets) returned float"),
    "loss detached": ("return (outputs - targets).pow(2).mean()", "return (outputs - targets).pow(2).mean().detach()",
                      "task mine: the gradient of loss(model(inputs), targets) failed on the first batch: RuntimeError"),
    "batches tuple": ("return example_batches(x.to(device), y.to(device), cfg)",
                      "return x.to(device), y.to(device)",
                      "task mine: batches() returned tuple; expected an object with .batch(step)"),
    "model not a module": ("return nn.Sequential(*layers, nn.Linear(sizes[-1], OUT))",
                           "return [*layers, nn.Linear(sizes[-1], OUT)]",
                           "task mine: build_model returned list; expected a torch.nn.Module"),
    "output shape": ("nn.Linear(sizes[-1], OUT))", "nn.Linear(sizes[-1], 1))",
                     "task mine: model output: shape (256, 1) does not match targets of shape (256, 4)"),
    "model fails": ("nn.Linear(sizes[-1], OUT))", "nn.Linear(sizes[-1] + 1, OUT))",
                    "task mine: model(inputs) failed on the first batch: RuntimeError: mat1 and mat2 shapes"),
}


@pytest.mark.parametrize("name", BREAKS)
def test_a_broken_task_contract_is_one_line_before_any_output(tmp_path, capsys, name):
    old, new, message = BREAKS[name]
    assert old in EXAMPLE
    (tmp_path / "mine.py").write_text(EXAMPLE.replace(old, new).replace('name="teacher"', 'name="mine"'))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tasks"] = {"mine": {"module": "mine.py"}}
    params["profiles"] = {"example": {"mine": params["profiles"]["example"]["teacher"]}}  # none names teacher
    params["profile"] = "example"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "run"
    args = ["train", "--task", "mine", "--lr", "1", "--rho", "0.05", "--profile", "example", "--device", "cpu",
            "--params", str(tmp_path / "params.yaml"), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists() and not Path(f"{out}.ckpt").exists()


@pytest.mark.parametrize("task, profile", [("mnist", "smoke"), ("cifar10", "smoke"), ("shakespeare", "smoke"),
                                           ("teacher", "example")])
def test_the_tasks_samedge_ships_keep_the_contract(data_dir, task, profile):
    """The dry check passes every shipped task: one-hot targets (images, teacher), class targets (the LM)."""
    import torch

    from samedge.config import load_run_config
    from samedge.tasks import get_task
    from samedge.tasks.contract import check_task

    cpu = torch.device("cpu")
    cfg = load_run_config(REPO / "params.yaml", profile, task, [])
    check_task(get_task(task), cfg, get_task(task).batches(cfg, data_dir, cpu), cpu)
