"""Adam as torch.optim.Adam computes it (bias corrections, eps added to sqrt(v_hat); no weight decay).

m' = b1 m + (1 - b1) g, v' = b2 v + (1 - b2) g^2, w' = w - eta m_hat'/P with P = sqrt(v_hat') + eps.
Edge (Cohen et al. 2022): with P frozen, each eigendirection of P^-1 H is heavy ball with step
eta (1 - b1) and momentum b1, stable while eta (1 - b1) lambda < 2 + 2 b1: edge
(2 + 2 b1)/(eta (1 - b1)), 38/eta at b1 = 0.9. The sharpness compared with it is the top
eigenvalue of P^-1 H for the P of the pending step (the v that includes this step's gradient).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from samedge.optimizers.base import TorchBacked
from samedge.sam import SamTensors

UNIT_INTERVAL = {"type": "number", "minimum": 0, "exclusiveMaximum": 1}
EPS = {"type": "number", "exclusiveMinimum": 0, "default": 1e-8, "description": "added to sqrt(v_hat), > 0"}


class Adam(TorchBacked):
    name = "adam"
    torch_class = torch.optim.Adam  # the class from_torch reads
    schema = {
        "type": "object", "additionalProperties": False,
        "properties": {"beta1": {**UNIT_INTERVAL, "default": 0.9}, "beta2": {**UNIT_INTERVAL, "default": 0.999},
                       "eps": EPS},
    }

    def make(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        s = self.settings
        return torch.optim.Adam(params, lr=self.lr, betas=(s["beta1"], s["beta2"]), eps=s["eps"])

    def edge(self, grad_norm: float) -> float:
        beta1 = self.settings["beta1"]
        return (2 + 2 * beta1) / (self.lr * (1 - beta1))

    def preconditioner(self, model: nn.Module, grads: SamTensors) -> Tensor:
        beta2, eps = self.settings["beta2"], self.settings["eps"]
        v_prev, steps = self.flat_state(model, "exp_avg_sq")
        v = v_prev * beta2 + (1 - beta2) * grads.grad * grads.grad  # as torch will at this step
        return v.sqrt() / (1 - beta2 ** (steps + 1)) ** 0.5 + eps  # torch's arithmetic for the denominator

    @classmethod
    def from_torch(cls, opt: torch.optim.Optimizer) -> "Adam":
        """The samedge view of a torch.optim.Adam of your own loop: its settings, reading its state."""
        group = single_group(opt, torch.optim.Adam, amsgrad=False)
        self = cls(group["lr"], 0.0, {"beta1": group["betas"][0], "beta2": group["betas"][1], "eps": group["eps"]})
        self.torch = opt
        return self


def single_group(opt: torch.optim.Optimizer, kind: type, **required: Any) -> dict:
    """The one parameter group of a plain torch optimizer, refused (ValueError) if it is another kind,
    has several groups, weight decay or other options the edge formula does not cover."""
    if not isinstance(opt, kind):
        raise ValueError(f"optimizer: expected a {kind.__name__}, got {type(opt).__name__}")
    if len(opt.param_groups) != 1:
        raise ValueError(f"optimizer: expected one parameter group, got {len(opt.param_groups)}")
    group = opt.param_groups[0]
    for key, want in {"weight_decay": 0, "maximize": False, **required}.items():
        if group.get(key, want) != want:
            raise ValueError(f"optimizer: {key}={group[key]!r} is not covered by the edge formula (needs {want!r})")
    return group


OPTIMIZER = Adam
