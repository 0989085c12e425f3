"""The training objective over one batch or a chunked full batch.

Every loss function here returns the mean over its chunk, so the full-batch value is the
chunk-size-weighted mean of the chunk values; memory is bounded by the chunk size.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Union

import torch
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]
Data = Union[Batch, Iterable[Batch]]
LossFn = Callable[[Tensor, Tensor], Tensor]


def as_chunks(data: Data) -> list[Batch]:
    """One (inputs, targets) batch, or an iterable of them, as a list of chunks."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        chunks = [data]
    else:
        chunks = list(data)
    if not chunks:
        raise ValueError("data: expected a batch (inputs, targets) or a non-empty iterable of batches")
    for i, (inputs, targets) in enumerate(chunks):
        if len(inputs) != len(targets) or len(inputs) == 0:
            raise ValueError(
                f"data: chunk {i} has {len(inputs)} inputs and {len(targets)} targets; "
                "expected the same positive number"
            )
    return chunks


def chunk_data(inputs: Tensor, targets: Tensor, chunk_size: int | None) -> list[Batch]:
    """Split a full batch into chunks of at most `chunk_size` examples (None: one chunk)."""
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer or None, got {chunk_size}")
    if len(inputs) != len(targets):
        raise ValueError(f"inputs/targets: {len(inputs)} inputs but {len(targets)} targets")
    size = chunk_size or len(inputs)
    return list(zip(inputs.split(size), targets.split(size)))


def chunk_weights(chunks: Sequence[Batch]) -> list[float]:
    """Each chunk's share of the examples: the weights of the chunk means in the full mean."""
    total = sum(len(x) for x, _ in chunks)
    return [len(x) / total for x, _ in chunks]


def check_finite(inputs: Tensor, name: str = "inputs") -> None:
    if inputs.is_floating_point() and not torch.isfinite(inputs).all():
        raise ValueError(f"{name}: batch contains NaN or Inf")


def loss_and_grad(model: nn.Module, loss_fn: LossFn, data: Data) -> tuple[Tensor, list[Tensor]]:
    """Full-batch loss and gradient w.r.t. the trainable parameters, accumulated chunk by chunk."""
    chunks = as_chunks(data)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.zeros_like(p) for p in params]
    total = torch.zeros((), dtype=params[0].dtype, device=params[0].device)
    for weight, (inputs, targets) in zip(chunk_weights(chunks), chunks):
        check_finite(inputs)
        loss = loss_fn(model(inputs), targets) * weight
        for acc, g in zip(grads, torch.autograd.grad(loss, params)):
            acc.add_(g)
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
