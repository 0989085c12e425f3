"""An optimizer of your own, in one file: momentum as an exponential moving average of gradients.

b' = beta b + (1 - beta) g, w' = w - eta b' (torch.optim.SGD with dampening = beta). Name it in
params.yaml and choose it per task, per grid entry or per run:

    optimizers:
      ema: {module: examples/ema_momentum.py}

    samedge train --task teacher --profile example --optimizer ema --set optimizer.beta=0.5 --lr 1 --out runs/ema

Edge: heavy ball with step eta (1 - beta) and momentum beta, stable while
eta (1 - beta) lambda < 2 + 2 beta: edge (2 + 2 beta)/(eta (1 - beta)) (Adam's edge, unpreconditioned).
"""
from __future__ import annotations

import torch
from torch import nn

from samedge.optimizers.base import TorchBacked


class EmaMomentum(TorchBacked):
    name = "ema"
    schema = {
        "type": "object", "additionalProperties": False,
        "properties": {"beta": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.9}},
    }

    def make(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        beta = self.settings["beta"]
        return torch.optim.SGD(params, lr=self.lr, momentum=beta, dampening=beta)

    def edge(self, grad_norm: float) -> float:
        beta = self.settings["beta"]
        return (2 + 2 * beta) / (self.lr * (1 - beta))


OPTIMIZER = EmaMomentum
