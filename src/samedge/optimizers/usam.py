"""Unnormalised SAM (Andriushchenko & Flammarion 2022): w' = w - eta grad L(w + rho grad L(w)).

Edge: on a quadratic the update is w' = (I - eta H (I + rho H)) w, stable while
eta lambda (1 + rho lambda) < 2, i.e. lambda < (sqrt(1 + 8 rho/eta) - 1)/(2 rho), written here
cancellation-free as 4/(eta (1 + sqrt(1 + 8 rho/eta))): exactly 2/eta at rho = 0. Unlike SAM's,
it does not depend on ||g||.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from samedge.objective import flat, loss_and_grad, trainable
from samedge.optimizers.base import Optimizer
from samedge.sam import SamTensors, apply_update, sam_gradient_tensors


class Usam(Optimizer):
    name = "usam"
    uses_rho = True
    gradients_per_step = 2

    def gradients(self, model: nn.Module, loss_fn, batch) -> SamTensors:
        first = sam_gradient_tensors(model, loss_fn, batch, 0.0)
        if self.rho == 0:
            return first
        params = trainable(model)
        sizes = [p.numel() for p in params]
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
            torch._foreach_add_(params, [g.view_as(p) for g, p in zip(first.grad.split(sizes), params)],
                                alpha=self.rho)
        try:
            ascent = flat(loss_and_grad(model, loss_fn, batch)[1])
        finally:
            with torch.no_grad():  # restore by copy: bit-exact
                torch._foreach_copy_(params, saved)
        return SamTensors(first.loss, first.grad_norm, first.grad, ascent)

    def update(self, model: nn.Module, grads: SamTensors) -> None:
        apply_update(model, grads.sam_grad, self.lr)

    def edge(self, grad_norm: float) -> float:
        return 4.0 / (self.lr * (1.0 + math.sqrt(1.0 + 8.0 * self.rho / self.lr)))


OPTIMIZER = Usam
