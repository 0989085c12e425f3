"""The training objective over one batch or a chunked full batch.

Every loss function here returns the mean over its chunk, so the full-batch value is the
chunk-size-weighted mean of the chunk values; memory is bounded by the chunk size.

Data is validated once, when it becomes a `Chunks` (as_chunks, chunk_data): a training loop that
reuses one `Chunks` every step pays no per-step checks (a finiteness check is a host-device sync).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Union

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from samedge.errors import ModelError

Batch = tuple[Tensor, Tensor]
Data = Union[Batch, Iterable[Batch]]
LossFn = Callable[[Tensor, Tensor], Tensor]


class Chunks(tuple):
    """Validated (inputs, targets) chunks: matched positive lengths, finite floating values.

    Immutable, so it stays valid unless its tensors are edited in place."""


def _is_pair(item: object) -> bool:
    return isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(t, Tensor) for t in item)


def _check_chunk(i: int, chunk: object) -> Batch:
    if not _is_pair(chunk):
        raise ValueError(f"data: chunk {i} is {type(chunk).__name__}; expected a pair (inputs, targets) of tensors")
    inputs, targets = chunk
    if len(inputs) != len(targets) or len(inputs) == 0:
        raise ValueError(f"data: chunk {i} has {len(inputs)} inputs and {len(targets)} targets; "
                         "expected the same positive number")
    check_finite(inputs, f"data chunk {i} inputs")
    check_finite(targets, f"data chunk {i} targets")
    return inputs, targets


def as_chunks(data: Data) -> Chunks:
    """One (inputs, targets) tuple, or an iterable of them, as validated chunks (a `Chunks` passes as is).

    A list [x, y] of two tensors is refused: it reads as two chunks, not as one batch."""
    if isinstance(data, Chunks):
        return data
    if isinstance(data, Tensor):
        raise ValueError("data: got one tensor; expected a batch (inputs, targets) or a list of batches")
    if isinstance(data, tuple) and _is_pair(data):
        items = [data]
    elif isinstance(data, list) and _is_pair(data):
        raise ValueError("data: a list of two tensors is ambiguous; pass a tuple (inputs, targets) for one "
                         "batch, or a list of (inputs, targets) chunks")
    else:
        items = list(data)
    if not items:
        raise ValueError("data: expected a batch (inputs, targets) or a non-empty iterable of batches")
    return Chunks(_check_chunk(i, chunk) for i, chunk in enumerate(items))


def chunk_data(inputs: Tensor, targets: Tensor, chunk_size: int | None) -> Chunks:
    """Split a full batch into validated chunks of at most `chunk_size` examples (None: one chunk)."""
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer or None, got {chunk_size}")
    if len(inputs) != len(targets):
        raise ValueError(f"inputs/targets: {len(inputs)} inputs but {len(targets)} targets")
    size = chunk_size or len(inputs)
    return as_chunks(list(zip(inputs.split(size), targets.split(size))))


def chunk_weights(chunks: Sequence[Batch]) -> list[float]:
    """Each chunk's share of the examples: the weights of the chunk means in the full mean."""
    total = sum(len(x) for x, _ in chunks)
    return [len(x) / total for x, _ in chunks]


def check_finite(values: Tensor, name: str = "inputs") -> None:
    if values.is_floating_point() and not torch.isfinite(values).all():
        raise ValueError(f"{name}: batch contains NaN or Inf")


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters gradients are taken for; a model without any is refused."""
    return [p for _, p in named_trainable(model)]


def named_trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model: has no trainable parameters")
    return named


def check_output(outputs: Tensor, targets: Tensor) -> None:
    """Refuse an output a loss would silently broadcast against its targets: floating targets must
    have the output's shape; integer targets (class indices) its shape without one class dimension."""
    out, tgt = tuple(outputs.shape), tuple(targets.shape)
    if targets.is_floating_point() or targets.is_complex():
        ok = out == tgt
    else:
        ok = len(out) == len(tgt) + 1 and any(out[:i] + out[i + 1:] == tgt for i in range(1, len(out)))
    if not ok:
        raise ModelError(f"model output: shape {out} does not match targets of shape {tgt} "
                         f"({'same shape' if targets.is_floating_point() else 'one class dimension more'} expected)")


def chunk_loss(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor) -> Tensor:
    """loss_fn(model(inputs), targets) with the output's shape checked: every loss evaluation passes here."""
    return checked_loss(loss_fn, model(inputs), targets)


def checked_loss(loss_fn: LossFn, outputs: Tensor, targets: Tensor) -> Tensor:
    check_output(outputs, targets)
    return loss_fn(outputs, targets)


def grad_used(loss: Tensor, named: Sequence[tuple[str, Tensor]], **kwargs) -> tuple[Tensor, ...]:
    """d loss / d params; a trainable parameter the loss does not depend on is refused by name (its
    gradient would be silently zero, or torch's RuntimeError)."""
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True, **kwargs)
    unused = [n for (n, _), g in zip(named, grads) if g is None]
    if unused:
        raise ModelError(f"model: trainable parameter(s) {unused} do not affect the loss; freeze them "
                         "(requires_grad_(False)) or use them")
    return grads


@contextmanager
def frozen_state(model: nn.Module) -> Iterator[None]:
    """Evaluations of the loss that are not training steps (HVPs, SAM's perturbed gradient) leave the
    model's buffers as they were: batch-norm layers in train() mode still normalise with the
    batch's statistics (the training loss) but do not update their running statistics, and any
    other buffer a forward pass changes is restored."""
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    for m in layers:
        m.track_running_stats = False  # _BatchNorm.forward then passes no running statistics
    try:
        yield
    finally:
        for m in layers:
            m.track_running_stats = True
        with torch.no_grad():
            for b, s in saved:
                b.copy_(s)


def loss_and_grad(model: nn.Module, loss_fn: LossFn, data: Data) -> tuple[Tensor, list[Tensor]]:
    """Full-batch loss and gradient w.r.t. the trainable parameters, accumulated chunk by chunk.

    No host-device sync: the loss stays a tensor."""
    chunks = as_chunks(data)
    named = named_trainable(model)
    grads = [torch.zeros_like(p) for _, p in named]
    total = torch.zeros((), dtype=named[0][1].dtype, device=named[0][1].device)
    for weight, (inputs, targets) in zip(chunk_weights(chunks), chunks):
        loss = chunk_loss(model, loss_fn, inputs, targets) * weight
        torch._foreach_add_(grads, grad_used(loss, named))
        total += loss.detach()
    return total, grads


def flat(tensors: Sequence[Tensor]) -> Tensor:
    """Per-parameter tensors as one vector, in parameter order."""
    return torch.cat([t.reshape(-1) for t in tensors])


def loss_value(model: nn.Module, loss_fn: LossFn, data: Data) -> Tensor:
    """Full-batch loss without gradients."""
    chunks = as_chunks(data)
    with torch.no_grad():
        return sum(w * chunk_loss(model, loss_fn, x, y) for w, (x, y) in zip(chunk_weights(chunks), chunks))
