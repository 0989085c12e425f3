"""One step of SAM, eq. (1): w' = w - eta * grad L(w + rho g/||g||), g = grad L(w). rho = 0 is GD.

The step is split in two so a caller can measure the Hessian at the iterate w_t between the
gradients and the update (the training loop does) without recomputing either gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from samedge.objective import Data, LossFn, flat, loss_and_grad


@dataclass(frozen=True)
class SamGradient:
    """What one SAM step computed at the iterate, handed back for the alignment metrics."""

    loss: float        # L(w_t)
    grad_norm: float   # ||grad L(w_t)||, one global norm over all parameters
    grad: Tensor       # grad L(w_t), flat
    sam_grad: Tensor   # the gradient the update uses, at w_t + rho g/||g|| (= grad when rho = 0)


def _check_step_args(lr: float | None, rho: float) -> None:
    if lr is not None and not lr > 0:
        raise ValueError(f"lr: expected a positive learning rate, got {lr}")
    if not rho >= 0:
        raise ValueError(f"rho: expected rho >= 0, got {rho}")


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def sam_gradient(model: nn.Module, loss_fn: LossFn, data: Data, rho: float) -> SamGradient:
    """Both gradients of a SAM step at the current weights; the weights end bit-exactly as they began.

    Costs one gradient evaluation at rho = 0 and two otherwise.
    """
    _check_step_args(None, rho)
    params = _trainable(model)
    loss, grads = loss_and_grad(model, loss_fn, data)
    grad = flat(grads)
    grad_norm = torch.linalg.vector_norm(grad)
    if rho == 0 or grad_norm == 0:
        sam_grad = grad
    else:
        saved = [p.detach().clone() for p in params]
        scale = rho / grad_norm
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.add_(g * scale)
        try:
            sam_grad = flat(loss_and_grad(model, loss_fn, data)[1])
        finally:
            with torch.no_grad():  # restore by copy, not by subtraction: bit-exact
                for p, s in zip(params, saved):
                    p.copy_(s)
    return SamGradient(float(loss), float(grad_norm), grad, sam_grad)


def apply_update(model: nn.Module, direction: Tensor, lr: float) -> None:
    """Plain SGD update w <- w - lr * direction (flat), no momentum, no weight decay."""
    _check_step_args(lr, 0.0)
    offset = 0
    with torch.no_grad():
        for p in _trainable(model):
            n = p.numel()
            p.sub_(lr * direction[offset:offset + n].view_as(p))
            offset += n


def sam_step(model: nn.Module, loss_fn: LossFn, data: Data, lr: float, rho: float) -> SamGradient:
    """One full SAM (rho > 0) or GD (rho = 0) step; returns what was computed at the old iterate."""
    _check_step_args(lr, rho)
    result = sam_gradient(model, loss_fn, data, rho)
    apply_update(model, result.sam_grad, lr)
    return result
