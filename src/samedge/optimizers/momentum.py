"""Gradient descent with heavy-ball or Nesterov momentum, as torch.optim.SGD computes it
(dampening 0, no weight decay): b' = beta b + g, w' = w - eta b' (Nesterov: w' = w - eta (g + beta b')).

Edge (Cohen et al. 2021, appendix): on a quadratic, each eigendirection follows
x' = (1 + beta - eta lambda) x - beta x_prev, whose roots stay in the unit disc while
eta lambda < 2 + 2 beta: edge (2 + 2 beta)/eta. Nesterov's recursion per eigendirection,
(x, b) -> ((1 - eta lambda (1 + beta)) x - eta beta^2 b, lambda x + beta b), has an eigenvalue -1
when eta lambda (1 + 2 beta) = 2 + 2 beta: edge (2 + 2 beta)/((1 + 2 beta) eta).
"""
from __future__ import annotations

import torch
from torch import nn

from samedge.optimizers.base import TorchBacked


class Momentum(TorchBacked):
    name = "momentum"
    schema = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "beta": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.9,
                     "description": "momentum coefficient, 0 <= beta < 1"},
            "nesterov": {"type": "boolean", "default": False},
        },
    }

    def make(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.lr, momentum=self.settings["beta"],
                               nesterov=self.settings["nesterov"] and self.settings["beta"] > 0)

    def edge(self, grad_norm: float) -> float:
        beta = self.settings["beta"]
        return (2 + 2 * beta) / ((1 + 2 * beta if self.settings["nesterov"] else 1.0) * self.lr)


OPTIMIZER = Momentum
