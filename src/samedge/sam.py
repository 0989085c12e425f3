"""One step of SAM, eq. (1): w' = w - eta * grad L(w + rho g/||g||), g = grad L(w). rho = 0 is GD.

The step is split in two so a caller can measure the Hessian at the iterate w_t between the
gradients and the update (the training loop does) without recomputing either gradient.
`sam_gradient_tensors` makes no host-device sync (no .item(), no data-dependent branch, fused
per-parameter updates), so a CUDA training loop queues steps without waiting; `sam_gradient`
is the same computation with the loss and norm as Python floats.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from samedge.errors import ConfigError
from samedge.objective import Chunks, Data, LossFn, as_chunks, flat, frozen_state, loss_and_grad, trainable


@dataclass(frozen=True)
class SamGradient:
    """What one SAM step computed at the iterate, handed back for the alignment metrics."""

    loss: float        # L(w_t)
    grad_norm: float   # ||grad L(w_t)||, one global norm over all parameters
    grad: Tensor       # grad L(w_t), flat
    sam_grad: Tensor   # the gradient the update uses, at w_t + rho g/||g|| (= grad when rho = 0)


@dataclass(frozen=True)
class SamTensors:
    """SamGradient with the loss and the norm still 0-dim tensors on the model's device."""

    loss: Tensor
    grad_norm: Tensor
    grad: Tensor
    sam_grad: Tensor

    def synced(self) -> SamGradient:
        """As Python floats (a host-device sync on CUDA)."""
        return SamGradient(float(self.loss), float(self.grad_norm), self.grad, self.sam_grad)


def _check_step_args(lr: float | None, rho: float) -> None:
    """Before any weight changes: a non-finite lr or rho would leave non-finite weights."""
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr: expected a positive finite learning rate, got {lr}")
    if not (math.isfinite(rho) and rho >= 0):
        raise ConfigError(f"rho: expected a finite rho >= 0, got {rho}")


def sam_gradient_tensors(model: nn.Module, loss_fn: LossFn, data: Data, rho: float) -> SamTensors:
    """Both gradients of a SAM step at the current weights; the weights end bit-exactly as they began.

    Costs one gradient evaluation at rho = 0 and two otherwise (also when ||g|| = 0: the ascent
    step is then zero, decided on the device rather than by a sync). Only the first (at w_t) may
    update buffers such as batch-norm running statistics, as a plain training step's would.
    """
    _check_step_args(None, rho)
    chunks = as_chunks(data)
    params = trainable(model)
    loss, grads = loss_and_grad(model, loss_fn, chunks)
    grad = flat(grads)
    grad_norm = torch.linalg.vector_norm(grad)
    if rho == 0:
        return SamTensors(loss, grad_norm, grad, grad)
    scale = torch.where(grad_norm > 0, rho / grad_norm, 0.0)
    with torch.no_grad():
        saved = [p.detach().clone() for p in params]
        torch._foreach_add_(params, torch._foreach_mul(grads, scale))
    try:
        with frozen_state(model):  # the ascent point's forward pass is no training step: buffers kept
            sam_grad = flat(loss_and_grad(model, loss_fn, chunks)[1])
    finally:
        with torch.no_grad():  # restore by copy, not by subtraction: bit-exact
            torch._foreach_copy_(params, saved)
    return SamTensors(loss, grad_norm, grad, sam_grad)


def sam_gradient(model: nn.Module, loss_fn: LossFn, data: Data, rho: float) -> SamGradient:
    """sam_gradient_tensors with the loss and ||g|| as floats."""
    return sam_gradient_tensors(model, loss_fn, data, rho).synced()


def graphable(device: torch.device) -> bool:
    """Whether a step on `device` can be replayed from a CUDA graph (train.cuda_graph is ignored elsewhere)."""
    return device.type == "cuda"


def capture_graph(step: Callable[[], SamTensors], device: torch.device,
                  warmup: int) -> tuple[Callable[[], None], SamTensors]:
    """Calls `step` `warmup` times on a side stream (autograd and the allocator warm up outside the
    capture), then captures one call as a CUDA graph: (replay, the tensors each replay rewrites)."""
    if not graphable(device):
        raise ValueError(f"GraphedSamGradient: needs a CUDA model, got one on {device}")
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    return graph.replay, out  # the bound method keeps the graph alive


class GraphedSamGradient:
    """sam_gradient_tensors captured once as a CUDA graph, then replayed (CUDA only).

    A replay runs the captured kernels on the same memory, so the launch cost of a small model's
    many small kernels goes while the arithmetic stays the eager step's (benchmarks/gpu.py checks
    bit-equality on the GPU). The batch lives at fixed addresses: a call with new data of the same
    shapes copies it in. The returned tensors are overwritten by the next call.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Data, rho: float, warmup: int = 3) -> None:
        self._source = as_chunks(data)
        self.static = Chunks((x.clone(), y.clone()) for x, y in self._source)
        self._replay, self.out = capture_graph(lambda: sam_gradient_tensors(model, loss_fn, self.static, rho),
                                               trainable(model)[0].device, warmup)

    def __call__(self, data: Data | None = None) -> SamTensors:
        if data is not None and data is not self._source:  # a full batch is captured once
            chunks = as_chunks(data)
            if [(x.shape, y.shape) for x, y in chunks] != [(x.shape, y.shape) for x, y in self.static]:
                raise ValueError("data: a graphed step needs batches of the captured shapes")
            for (x, y), (static_x, static_y) in zip(chunks, self.static):
                static_x.copy_(x)
                static_y.copy_(y)
        self._replay()
        return self.out


def apply_update(model: nn.Module, direction: Tensor, lr: float) -> None:
    """Plain SGD update w <- w - lr * direction (flat), no momentum, no weight decay.

    The direction's length is checked before any parameter changes."""
    _check_step_args(lr, 0.0)
    params = trainable(model)
    sizes = [p.numel() for p in params]
    if direction.ndim != 1 or direction.numel() != sum(sizes):
        raise ValueError(f"direction: expected a flat vector of {sum(sizes)} values (the trainable "
                         f"parameters), got shape {tuple(direction.shape)}")
    with torch.no_grad():
        step = (lr * direction).split(sizes)  # lr * d, then subtract: the arithmetic of p.sub_(lr * d)
        torch._foreach_sub_(params, [s.view_as(p) for s, p in zip(step, params)])


def sam_step(model: nn.Module, loss_fn: LossFn, data: Data, lr: float, rho: float) -> SamGradient:
    """One full SAM (rho > 0) or GD (rho = 0) step; returns what was computed at the old iterate."""
    _check_step_args(lr, rho)
    result = sam_gradient(model, loss_fn, data, rho)
    apply_update(model, result.sam_grad, lr)
    return result
