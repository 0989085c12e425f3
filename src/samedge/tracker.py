"""Top-k Hessian eigenpairs along a training run, each measurement warm-started from the last."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from samedge.eigensolver import EigResult, top_eigenpairs
from samedge.hvp import METHODS, HVPOperator
from samedge.objective import Data, LossFn


class EigenTracker:
    """measure(model, loss_fn, data) -> EigResult of the full-batch Hessian's top-k eigenpairs.

    The first measurement starts cold (`fresh`, which the training loop passes as the gradient and
    the SAM gradient, and seeded noise); each later one starts from the previous measurement's Ritz
    basis (cold again if the parameter count changed) plus one probe: the fresh directions' parts
    outside that basis and a seeded random vector, each of unit length, summed. No warm solve stops
    on the previous basis alone: it stops only when the top-k residuals are below tol * |lambda_1|
    and the probe test passes (any eigenvector whose eigenvalue exceeds lambda_k by more than the
    tolerance overlaps the probe's part off the returned vectors by at most 1/10 of it; the
    eigensolver's docstring has the bound), so a new top eigenvalue that the probe sees is found,
    not missed; where the test cannot pass in a bounded space the result says not converged. The
    state (settings, basis, counters) round-trips through state_dict()/load_state_dict(), so a
    resumed run repeats the same HVP counts and results.
    """

    def __init__(self, k: int = 3, tol: float = 1e-3, max_iters: int = 100, seed: int = 0,
                 guard: int = 7, method: str = "autograd") -> None:
        for name, value, ok in (("k", k, k >= 1), ("tol", tol, tol > 0), ("max_iters", max_iters, max_iters >= 1),
                                ("guard", guard, guard >= 0), ("method", method, method in METHODS)):
            if not ok:
                raise ValueError(f"{name}: invalid value {value}")
        self.k, self.tol, self.max_iters, self.seed, self.guard, self.method = k, tol, max_iters, seed, guard, method
        self.basis = None
        self.measurements = 0
        self.total_hvps = 0

    def measure(self, model: nn.Module, loss_fn: LossFn, data: Data, fresh: Sequence[Tensor] = (),
                transform: Callable[[HVPOperator], Any] | None = None) -> EigResult:
        """fresh: flat directions of the measured operator's space for the start (e.g. the gradient and
        SAM gradient: a cold start begins with them, a warm one probes with their parts outside the
        basis); transform(H), if given, is the operator measured instead of H (a
        preconditioned one)."""
        op = HVPOperator(model, loss_fn, data, method=self.method)
        op = op if transform is None else transform(op)
        init = self.basis if self.basis is not None and self.basis.shape[0] == op.dim else None
        for i, d in enumerate(fresh):
            if d.shape != (op.dim,):
                raise ValueError(f"fresh[{i}]: expected a flat vector of {op.dim} values, got shape {tuple(d.shape)}")
        directions = torch.stack([d.detach().to(op.device, op.dtype) for d in fresh], dim=1) if fresh else None
        # A new seed per measurement: noise columns differ between measurements but not between reruns.
        result = top_eigenpairs(op, self.k, self.tol, self.max_iters, init=init,
                                seed=self.seed + self.measurements, guard=self.guard, fresh=directions)
        self.basis = result.basis.detach().clone()
        self.measurements += 1
        self.total_hvps += result.hvps
        return result

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k, "tol": self.tol, "max_iters": self.max_iters, "seed": self.seed, "guard": self.guard,
                "method": self.method, "measurements": self.measurements, "total_hvps": self.total_hvps,
                "basis": None if self.basis is None else self.basis.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.state_dict()) - set(state)
        if missing:
            raise ValueError(f"state: missing keys {sorted(missing)}")
        self.__init__(state["k"], state["tol"], state["max_iters"], state["seed"], state["guard"], state["method"])
        self.measurements, self.total_hvps = state["measurements"], state["total_hvps"]
        self.basis = None if state["basis"] is None else state["basis"].clone()
