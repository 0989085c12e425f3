"""SAM, eq. (1): w' = w - eta grad L(w + rho g/||g||); GD at rho = 0 (samedge.sam computes the step).

Edge (Proposition 2): on a quadratic, the normalised ascent makes SAM's update stable while
eta lambda (1 + rho lambda/||g||) < 2, so edge = ||g||/(2 rho) (sqrt(1 + 8 rho/(eta ||g||)) - 1);
2/eta at rho = 0 (samedge.edge.sam_edge, in cancellation-free form).
"""
from __future__ import annotations

from torch import nn

from samedge.edge import sam_edge
from samedge.optimizers.base import Optimizer
from samedge.sam import GraphedSamGradient, SamTensors, apply_update, sam_gradient_tensors


class Sam(Optimizer):
    name = "sam"
    uses_rho = True
    gradients_per_step = 2

    def gradients(self, model: nn.Module, loss_fn, batch) -> SamTensors:
        return sam_gradient_tensors(model, loss_fn, batch, self.rho)

    def graphed(self, model: nn.Module, loss_fn, batch) -> GraphedSamGradient:
        return GraphedSamGradient(model, loss_fn, batch, self.rho)

    def update(self, model: nn.Module, grads: SamTensors) -> None:
        apply_update(model, grads.sam_grad, self.lr)

    def edge(self, grad_norm: float) -> float:
        return sam_edge(grad_norm, self.lr, self.rho)


OPTIMIZER = Sam
