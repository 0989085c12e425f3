"""What every optimizer is: an update from the step's gradients, a state, and an edge.

The training loop calls, per step: `gradients` at the iterate w_t (one or two gradient evaluations,
weights left as they were), then `update` (the step to w_{t+1}). A measurement between the two
asks `edge(||g||)` and, for a preconditioned method, `preconditioner(grads)`: the diagonal P of
the pending step, whose P^-1/2 H P^-1/2 (the same eigenvalues as P^-1 H) has the top eigenvalue
compared with the edge. Methods built on torch.optim keep that optimizer inside (`TorchBacked`),
so the arithmetic and the state are torch's own.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from samedge.objective import trainable
from samedge.sam import SamTensors, sam_gradient_tensors

SettingsBlock = dict[str, Any]  # {"name": ..., setting: value, ...} as in params.yaml


class Optimizer(ABC):
    """One optimizer at one learning rate (and rho, for the SAM family) with its settings.

    Subclasses set `name`, `schema` (the JSON schema of the settings, with defaults) and
    `uses_rho`, and implement `update` and `edge`. `bind(model)` is called once before training.
    """

    name: ClassVar[str]
    schema: ClassVar[dict] = {"type": "object", "additionalProperties": False, "properties": {}}
    uses_rho: ClassVar[bool] = False
    gradients_per_step: ClassVar[int] = 1

    def __init__(self, lr: float, rho: float = 0.0, settings: dict[str, Any] | None = None) -> None:
        if not (lr > 0 and lr < float("inf")):
            raise ValueError(f"lr: expected a finite learning rate > 0, got {lr}")
        if not rho >= 0:
            raise ValueError(f"rho: expected rho >= 0, got {rho}")
        self.lr, self.rho, self.settings = lr, rho, dict(settings or {})

    def bind(self, model: nn.Module) -> None:
        """Prepare the state for `model`'s trainable parameters (before the first step or load)."""

    def gradients(self, model: nn.Module, loss_fn: Any, batch: Any) -> SamTensors:
        """The step's gradient(s) at the iterate; `sam_grad` is the one the update uses."""
        return sam_gradient_tensors(model, loss_fn, batch, 0.0)

    def graphed(self, model: nn.Module, loss_fn: Any, batch: Any) -> Any | None:
        """`gradients` captured as a CUDA graph (a callable batch -> SamTensors), or None if not offered."""
        return None

    @abstractmethod
    def update(self, model: nn.Module, grads: SamTensors) -> None:
        """w_t -> w_{t+1} from what `gradients` computed at w_t."""

    @abstractmethod
    def edge(self, grad_norm: float) -> float:
        """The largest sharpness at which the update is stable on a local quadratic."""

    def preconditioner(self, model: nn.Module, grads: SamTensors) -> Tensor | None:
        """The diagonal P of the pending step (flat), or None: the sharpness is then lambda_1."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict gave (after bind)."""


def set_grads(model: nn.Module, direction: Tensor) -> list[nn.Parameter]:
    """Write a flat direction into the trainable parameters' .grad (views, no copy)."""
    params = trainable(model)
    sizes = [p.numel() for p in params]
    if direction.ndim != 1 or direction.numel() != sum(sizes):
        raise ValueError(f"direction: expected a flat vector of {sum(sizes)} values, got shape {tuple(direction.shape)}")
    for p, piece in zip(params, direction.split(sizes)):
        p.grad = piece.view_as(p)
    return params


class TorchBacked(Optimizer):
    """An optimizer whose update is a torch.optim optimizer's step on the gradient at w_t.
    torch_class: the torch.optim class a user's loop may hand to EdgeMonitor (read by from_torch)."""

    torch_class: ClassVar[type | None] = None

    def __init__(self, lr: float, rho: float = 0.0, settings: dict[str, Any] | None = None) -> None:
        super().__init__(lr, rho, settings)
        self.torch: torch.optim.Optimizer | None = None

    @abstractmethod
    def make(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """The torch.optim optimizer of these settings over `params`."""

    def bind(self, model: nn.Module) -> None:
        self.torch = self.make(trainable(model))

    def update(self, model: nn.Module, grads: SamTensors) -> None:
        params = set_grads(model, grads.sam_grad)
        self.torch.step()
        for p in params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return self.torch.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.torch.load_state_dict(state)

    def flat_state(self, model: nn.Module, key: str) -> tuple[Tensor, float]:
        """torch's per-parameter state[key] over `model`'s trainable parameters as one flat vector
        (zeros before the first step), and the number of steps taken."""
        params = trainable(model)
        states = [self.torch.state.get(p, {}) for p in params]
        flat = torch.cat([s[key].reshape(-1) if key in s else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
                          for s, p in zip(states, params)])
        return flat, float(states[0].get("step", 0))  # one count per parameter; all advance together


class Preconditioned:
    """P^-1/2 H P^-1/2 for a diagonal P (flat, positive) and an operator H: the symmetric form of
    P^-1 H, with the same eigenvalues, for the eigensolver. Counts H's products as its own."""

    def __init__(self, op: Any, diagonal: Tensor) -> None:
        if diagonal.shape != (op.dim,) or not bool((diagonal > 0).all()):
            raise ValueError(f"diagonal: expected {op.dim} positive values")
        self.op = op
        self.scale = diagonal.to(op.device, op.dtype).rsqrt()[:, None]
        self.dim, self.dtype, self.device = op.dim, op.dtype, op.device

    @property
    def hvps(self) -> int:
        return self.op.hvps

    def matmat(self, vectors: Tensor) -> Tensor:
        return self.scale * self.op.matmat(self.scale * vectors.to(self.device, self.dtype))
