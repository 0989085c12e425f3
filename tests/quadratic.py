"""A quadratic loss l(w) = 1/2 w^T H w + b^T w as an nn.Module + loss_fn, so tests drive the real SAM code."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class Quadratic(nn.Module):
    def __init__(self, hessian: Tensor, linear: Tensor, w0: Tensor) -> None:
        super().__init__()
        self.register_buffer("hessian", hessian)
        self.register_buffer("linear", linear)
        self.w = nn.Parameter(w0.clone())

    def forward(self, inputs: Tensor) -> Tensor:
        value = 0.5 * self.w @ self.hessian @ self.w + self.linear @ self.w
        return value.expand(len(inputs))


def value_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    return outputs.mean()


DUMMY_BATCH = (torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))


def random_spectrum_quadratic(eigenvalues: Tensor, grad: Tensor, gen: torch.Generator) -> Quadratic:
    """A quadratic with the given spectrum (random eigenbasis) whose gradient at w0 = 0 is `grad`."""
    d = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=gen))
    hessian = q @ torch.diag(eigenvalues) @ q.T
    return Quadratic(hessian, grad, torch.zeros(d, dtype=torch.float64)), q
