"""The task registry: what a task is, and where each one is defined.

A task is one Python module that defines `TASK = Task(...)`: its model (builder and the JSON schema
of its `model:` block), loss, batches (full batch or minibatches), its data (a Dataset to fetch, or
none when it makes its own), and the paper figures it takes part in. The paper's three tasks live in
this package; a user's task is one more module, named in params.yaml:

    tasks:
      teacher: {module: examples/teacher_student.py}   # a file (relative to params.yaml) or a dotted module

Nothing outside this package branches on a task's name: the workflow, the CLI, aggregation and the
figures ask the registry.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from samedge.errors import ConfigError
from samedge.registry import Registry

BUILTIN: dict[str, str] = {
    "mnist": "samedge.tasks.mnist",
    "cifar10": "samedge.tasks.cifar10",
    "shakespeare": "samedge.tasks.shakespeare",
}


# The `data:` block of a task that reads a prepared data set: n_train takes a prefix of it.
PREFIX_DATA_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["n_train"],
    "properties": {"n_train": {"type": ["integer", "null"], "minimum": 1,
                               "description": "prefix of the training set (null: all)"}},
}


class TaskError(ConfigError):
    """An unknown task, or a task module that does not define a valid TASK."""


@dataclass(frozen=True)
class PaperFigures:
    """How a task appears in the paper's figures (numbered in registry order after figure 1)."""

    rho: float                    # the rho of the paper's SAM figures for this task
    zoom: str = "eigenvalues"     # "eigenvalues" (lambda_1..3) or "opnorm" (max |lambda_i|) in the zoomed figure


@dataclass(frozen=True)
class Task:
    """Everything samedge needs to know about a task.

    build_model(model_cfg) -> nn.Module, drawn from torch's current RNG (the run seeds it).
    loss(outputs, targets) -> the mean over the batch it is given (0-d tensor).
    batches(cfg, data_dir, device) -> an object with .batch(step): the (inputs, targets) batch, or
        list of chunks forming one full batch, that step trains and measures on. A pure function of
        (step, cfg["seed"]), so resumed runs see the same batches.
    data: the samedge.data.Dataset that `samedge fetch` gets and prepares under
        data_dir/prepared/<name> (batches() then reads it with samedge.data.load_task); None when
        batches() makes its data itself (no fetch step).
    minibatch: True for SGD on minibatches (every quantity measured on the current minibatch),
        False for full-batch GD/SAM. The figures call the base optimizer SGD or GD accordingly.
    model_schema, data_schema: JSON schemas of the task's `model:` and `data:` blocks in params.yaml.
    """

    name: str
    label: str
    build_model: Callable[[dict], Any]
    loss: Callable[[Any, Any], Any]
    batches: Callable[[dict, Path, Any], Any]
    data: Any = None
    minibatch: bool = False
    model_schema: dict = field(default_factory=lambda: {"type": "object"})
    data_schema: dict = field(default_factory=lambda: dict(PREFIX_DATA_SCHEMA))
    paper: PaperFigures | None = None

    @property
    def base_optimizer(self) -> str:
        return "SGD" if self.minibatch else "GD"


def register_user_tasks(params: dict, base_dir: str | os.PathLike = ".") -> None:
    """Record the `tasks:` of a params file (module paths relative to base_dir); loaded on first use."""
    REGISTRY.register(params, base_dir)


def task_names() -> list[str]:
    """Every registered task: the built-in ones, then the user's in params order."""
    return REGISTRY.names()


def get_task(name: str) -> Task:
    return REGISTRY.get(name)


def module_file(name: str) -> Path:
    """The file that defines task `name` (the workflow reruns its jobs when it changes)."""
    return REGISTRY.module_file(name)


def _task_of(module: ModuleType, name: str, spec: str) -> Task:
    task = getattr(module, "TASK", None)
    if not isinstance(task, Task):
        raise TaskError(f"task module {spec}: defines no TASK = samedge.tasks.Task(...)")
    if task.name != name:
        raise TaskError(f"task module {spec}: its TASK is named {task.name!r}, params.yaml calls it {name!r}")
    return task


REGISTRY = Registry("task", "tasks", BUILTIN, TaskError, _task_of)
