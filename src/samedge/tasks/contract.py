"""The task contract, checked once at start-up by a dry step: a task's model, batches and loss
that break it are one line naming the task and the broken part (a TaskError, exit 2), before
anything is written or trained, instead of a traceback from deep inside the first step.

The contract (samedge.tasks.Task): build_model(cfg) returns an nn.Module; batches(...) returns an
object whose .batch(step) gives an (inputs, targets) pair of tensors or a list of such chunks;
the model's outputs have the targets' shape (regression, one-hot) or that shape plus a class
axis (integer class targets); loss(outputs, targets) returns a 0-d floating tensor that depends
on the model's parameters. The dry step runs the first chunk of step 0 through the training
objective's own path (samedge.objective.loss_and_grad) and leaves the model it built unused.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from samedge.errors import ModelError
from samedge.objective import as_chunks, check_output, loss_and_grad
from samedge.tasks import Task, TaskError


def check_task(task: Task, cfg: dict, data: Any, device: torch.device) -> None:
    """One dry step of task on the first chunk of step 0's batch; a broken contract is a TaskError."""
    model = _model(task, cfg)
    inputs, targets = _first_chunk(task, data)
    model = model.to(device)
    outputs = _call(task, "model(inputs)", model, inputs)
    if not isinstance(outputs, Tensor):
        raise TaskError(f"task {task.name}: the model returned {type(outputs).__name__}; expected a tensor")
    _check_shapes(task, outputs, targets)
    _check_loss_signature(task)
    loss = _call(task, "loss(outputs, targets)", task.loss, outputs, targets)
    if not (isinstance(loss, Tensor) and loss.ndim == 0 and loss.is_floating_point()):
        got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
        raise TaskError(f"task {task.name}: loss(outputs, targets) returned {got}; expected the batch mean, "
                        "a 0-d floating tensor")
    _call(task, "the gradient of loss(model(inputs), targets)", loss_and_grad, model, task.loss, (inputs, targets))


def _model(task: Task, cfg: dict) -> nn.Module:
    model = _call(task, "build_model(model_cfg)", task.build_model, cfg["model"])
    if not isinstance(model, nn.Module):
        raise TaskError(f"task {task.name}: build_model returned {type(model).__name__}; "
                        "expected a torch.nn.Module")
    return model


def _first_chunk(task: Task, data: Any) -> tuple[Tensor, Tensor]:
    if not callable(getattr(data, "batch", None)):
        raise TaskError(f"task {task.name}: batches() returned {type(data).__name__}; expected an object with "
                        ".batch(step) (e.g. samedge.batches.FullBatch)")
    batch = _call(task, "batches().batch(0)", data.batch, 0)
    try:
        return as_chunks(batch)[0]
    except (TypeError, ValueError) as exc:
        raise TaskError(f"task {task.name}: batches().batch(0) returned {type(batch).__name__}: {exc}") from exc


def _check_shapes(task: Task, outputs: Tensor, targets: Tensor) -> None:
    """The loss path's own check (samedge.objective.check_output), named as the task's."""
    try:
        check_output(outputs, targets)
    except ModelError as exc:
        raise TaskError(f"task {task.name}: {exc}") from exc


def _check_loss_signature(task: Task) -> None:
    try:
        inspect.signature(task.loss).bind(None, None)
    except TypeError as exc:
        raise TaskError(f"task {task.name}: loss must take (outputs, targets); {exc}") from exc
    except ValueError:  # a builtin without a signature: the call below checks it
        pass


def _call(task: Task, what: str, func: Any, *args: Any) -> Any:
    """func(*args); any exception is the task's code failing its contract, named in one line."""
    try:
        return func(*args)
    except TaskError:
        raise
    except Exception as exc:  # the user's code: any failure is theirs to fix, named here in one line
        raise TaskError(f"task {task.name}: {what} failed on the first batch: {type(exc).__name__}: {exc}") from exc
