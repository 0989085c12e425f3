"""RMSprop as torch.optim.RMSprop computes it (not centred, no momentum, no weight decay):
v' = alpha v + (1 - alpha) g^2, w' = w - eta g/P with P = sqrt(v') + eps (no bias correction).

Edge: with P frozen this is GD on P^-1 H, stable while eta lambda < 2: edge 2/eta, compared with
the top eigenvalue of P^-1 H for the P of the pending step.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from samedge.optimizers.adam import EPS, UNIT_INTERVAL, single_group
from samedge.optimizers.base import TorchBacked
from samedge.sam import SamTensors


class RMSprop(TorchBacked):
    name = "rmsprop"
    torch_class = torch.optim.RMSprop  # the class from_torch reads
    schema = {
        "type": "object", "additionalProperties": False,
        "properties": {"alpha": {**UNIT_INTERVAL, "default": 0.99, "description": "torch's smoothing constant"},
                       "eps": EPS},
    }

    def make(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.RMSprop(params, lr=self.lr, alpha=self.settings["alpha"], eps=self.settings["eps"])

    def edge(self, grad_norm: float) -> float:
        return 2.0 / self.lr

    def preconditioner(self, model: nn.Module, grads: SamTensors) -> Tensor:
        alpha, eps = self.settings["alpha"], self.settings["eps"]
        v_prev, _ = self.flat_state(model, "square_avg")
        return (v_prev * alpha + (1 - alpha) * grads.grad * grads.grad).sqrt() + eps

    @classmethod
    def from_torch(cls, opt: torch.optim.Optimizer) -> "RMSprop":
        """The samedge view of a torch.optim.RMSprop of your own loop, reading its state."""
        group = single_group(opt, torch.optim.RMSprop, momentum=0, centered=False)
        self = cls(group["lr"], 0.0, {"alpha": group["alpha"], "eps": group["eps"]})
        self.torch = opt
        return self


OPTIMIZER = RMSprop
