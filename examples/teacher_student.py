"""A task of your own, in one file: a student MLP learns a random teacher network on Gaussian inputs.

Name it in params.yaml and give it a profile block (params.yaml's `example` profile does both):

    tasks:
      teacher: {module: examples/teacher_student.py}

Then `samedge train --task teacher ...`, the pipeline's training jobs, the tables, the edge-agreement
numbers, the per-run figures and the task's grid figure all work as for the paper's tasks. The data
are generated here from `data.seed` (no fetch step), so the task runs anywhere in seconds.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from samedge.batches import FullBatch, Minibatches, example_batches
from samedge.tasks import Task

IN, OUT = 16, 4  # input and output sizes of teacher and student


def teacher_data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """n Gaussian inputs and the outputs of a random one-hidden-layer tanh teacher, from `seed` alone."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, IN, generator=gen)
    w1 = torch.randn(IN, 32, generator=gen) / IN ** 0.5
    w2 = torch.randn(32, OUT, generator=gen) / 32 ** 0.5
    return x, torch.tanh(x @ w1) @ w2


def build_model(model_cfg: dict) -> nn.Module:
    """The student: `depth` tanh hidden layers of `width` (torch's default initialisation)."""
    sizes = [IN] + [model_cfg["width"]] * model_cfg["depth"]
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], OUT))


def mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean over the batch (and outputs) of the squared error."""
    return (outputs - targets).pow(2).mean()


def batches(cfg: dict, data_dir: Path, device: torch.device) -> FullBatch | Minibatches:
    """The generated set, full batch or minibatches as train.batch_size says (data_dir is unused: nothing to fetch)."""
    x, y = teacher_data(cfg["data"]["n_train"], cfg["data"]["seed"])
    return example_batches(x.to(device), y.to(device), cfg)


TASK = Task(
    name="teacher",
    label="Teacher-student MLP (synthetic)",
    build_model=build_model,
    loss=mse,
    batches=batches,
    model_schema={"type": "object", "additionalProperties": False, "required": ["width", "depth"],
                  "properties": {"width": {"type": "integer", "minimum": 1},
                                 "depth": {"type": "integer", "minimum": 1}}},
    data_schema={"type": "object", "additionalProperties": False, "required": ["n_train", "seed"],
                 "properties": {"n_train": {"type": "integer", "minimum": 1},
                                "seed": {"type": "integer", "minimum": 0}}},
)
