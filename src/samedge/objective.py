"""The training objective over one batch or a chunked full batch.

Every loss function here returns the mean over its chunk, so the full-batch value is the
chunk-size-weighted mean of the chunk values; memory is bounded by the chunk size.

Data is validated once, when it becomes a `Chunks` (as_chunks, chunk_data): a training loop that
reuses one `Chunks` every step pays no per-step checks (a finiteness check is a host-device sync).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Union

import torch
from torch import Tensor, nn

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
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model: has no trainable parameters")
    return params


def loss_and_grad(model: nn.Module, loss_fn: LossFn, data: Data) -> tuple[Tensor, list[Tensor]]:
    """Full-batch loss and gradient w.r.t. the trainable parameters, accumulated chunk by chunk.

    No host-device sync: the loss stays a tensor."""
    chunks = as_chunks(data)
    params = trainable(model)
    grads = [torch.zeros_like(p) for p in params]
    total = torch.zeros((), dtype=params[0].dtype, device=params[0].device)
    for weight, (inputs, targets) in zip(chunk_weights(chunks), chunks):
        loss = loss_fn(model(inputs), targets) * weight
        torch._foreach_add_(grads, torch.autograd.grad(loss, params))
        total += loss.detach()
    return total, grads


def flat(tensors: Sequence[Tensor]) -> Tensor:
    """Per-parameter tensors as one vector, in parameter order."""
    return torch.cat([t.reshape(-1) for t in tensors])


def loss_value(model: nn.Module, loss_fn: LossFn, data: Data) -> Tensor:
    """Full-batch loss without gradients."""
    chunks = as_chunks(data)
    with torch.no_grad():
        return sum(w * loss_fn(model(x), y) for w, (x, y) in zip(chunk_weights(chunks), chunks))
