"""The metrics of the run contract from any training loop: one row per Hessian measurement.

`metrics_row` builds a metrics.csv row (samedge.runs.METRIC_COLUMNS, then the diagnostics) from
what an optimizer's step computed at the iterate and a top-k eigen measurement there (plus, for a
preconditioned optimizer, the top eigenvalue of P^-1 H: `Sharpness`); the pipeline's Trainer and
EdgeMonitor both use it. EdgeMonitor is for a training loop of your own:

    monitor = EdgeMonitor(lr=0.05, rho=0.05, every=25)       # SAM; or EdgeMonitor(optimizer=your_adam)
    for step, (x, y) in enumerate(batches):
        monitor.observe(step, model, loss_fn, (x, y))   # at w_t, before your update
        ...your own update of model...
    monitor.write("runs/mine/lr0.05_rho0.05", task="mine")   # metrics.csv + run.json

`observe` measures on its cadence only: it computes the loss, ||g||, the optimizer's gradient(s),
the top-k eigenpairs and the optimizer's edge and sharpness at the current weights (weights
untouched), warm-starting each measurement from the last. Given a torch.optim.Adam or RMSprop, it
reads that optimizer's second moments for the preconditioner of its next step.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from samedge import optimizers
from samedge.edge import gd_edge, sam_edge
from samedge.eigensolver import EigResult
from samedge.objective import Data, LossFn, as_chunks, frozen_state
from samedge.optimizers import Optimizer
from samedge.optimizers.base import Preconditioned
from samedge.provenance import versions
from samedge.runs import EXTRA_COLUMNS, METRIC_COLUMNS, write_run
from samedge.sam import SamGradient, SamTensors
from samedge.tracker import EigenTracker


def _cosine(a: Tensor, b: Tensor) -> float:
    denom = torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)
    return float(a @ b / denom) if denom > 0 else math.nan


class Sharpness:
    """The top eigenvalue of P^-1 H (as P^-1/2 H P^-1/2, exact HVPs) for an optimizer with a
    preconditioner, on a tracker of its own (k = 1, warm-started); None for the others, whose
    sharpness is lambda_1 of the Hessian measurement."""

    def __init__(self, tracker: EigenTracker) -> None:
        self.tracker = EigenTracker(k=1, tol=tracker.tol, max_iters=tracker.max_iters, seed=tracker.seed,
                                    guard=tracker.guard, method=tracker.method)

    def measure(self, optimizer: Optimizer, model: nn.Module, loss_fn: LossFn, data: Data,
                grads: SamTensors | SamGradient) -> EigResult | None:
        diagonal = optimizer.preconditioner(model, grads)
        if diagonal is None:
            return None
        return self.tracker.measure(model, loss_fn, data, transform=lambda op: Preconditioned(op, diagonal))


def metrics_row(step: int, train_seconds: float, wall_seconds: float, optimizer: Optimizer,
                grads: SamGradient, eig: EigResult, sharp: EigResult | None = None) -> dict[str, Any]:
    """One metrics.csv row. v1 is oriented so align_grad >= 0 (an eigenvector's sign is arbitrary).
    sharp: the preconditioned measurement of a preconditioned optimizer (its HVPs are counted too)."""
    lr, rho = optimizer.lr, optimizer.rho
    values = [float(v) for v in eig.values]
    v1 = eig.vectors[:, 0].to(grads.grad.dtype)
    if v1 @ grads.grad < 0:
        v1 = -v1
    n_lambdas = max(3, len(values))
    return {
        "step": step, "train_seconds": train_seconds, "loss": grads.loss, "grad_norm": grads.grad_norm,
        **{f"lambda_{i + 1}": values[i] if i < len(values) else math.nan for i in range(n_lambdas)},
        "gd_edge": gd_edge(lr), "sam_edge": sam_edge(grads.grad_norm, lr, rho),
        "align_grad": _cosine(v1, grads.grad), "align_sam_grad": _cosine(v1, grads.sam_grad),
        "hvp_count": int(eig.hvps) + (int(sharp.hvps) if sharp is not None else 0),
        "edge": float(optimizer.edge(grads.grad_norm)),
        "sharpness": float(sharp.values[0]) if sharp is not None else values[0],
        "eig_rel_residual": float(max(eig.residuals)) / max(abs(values[0]), 1e-30),
        "eig_converged": bool(eig.converged), "wall_seconds": wall_seconds,
        "eig_error_bound": float(max(eig.bounds)),
    }


def metrics_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as metrics.csv's table: the contract columns first, then the diagnostics."""
    extra = [c for c in rows[0] if c not in METRIC_COLUMNS] if rows else EXTRA_COLUMNS
    return pd.DataFrame(rows, columns=METRIC_COLUMNS + extra)


class EdgeMonitor:
    """Measures, every `every` steps of a loop of your own, the quantities the paper plots.

    lr and rho are those of your SAM update (rho = 0: GD/SGD); they set 2/eta, the SAM edge and
    the SAM gradient whose alignment with v1 is reported. Or give `optimizer` instead: a samedge
    Optimizer (samedge.optimizers.build), or the torch.optim.Adam / RMSprop of your loop, whose
    state is read for the preconditioner of its next step. k, tol, max_iters: the tracker's
    settings. Measurement time is kept out of train_seconds.
    """

    def __init__(self, lr: float | None = None, rho: float = 0.0, every: int = 50, k: int = 3, tol: float = 1e-3,
                 max_iters: int = 100, seed: int = 0, optimizer: Optimizer | torch.optim.Optimizer | None = None) -> None:
        self.optimizer = _as_optimizer(optimizer, lr, rho)
        lr, rho = self.optimizer.lr, self.optimizer.rho
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every: expected a positive number of steps, got {every!r}")
        self.lr, self.rho, self.every, self.seed = lr, rho, every, seed
        self.tracker = EigenTracker(k=k, tol=tol, max_iters=max_iters, seed=seed)
        self.sharpness = Sharpness(self.tracker)
        self.rows: list[dict[str, Any]] = []
        self.steps = 0
        self._start: float | None = None
        self._measuring = 0.0

    def observe(self, step: int, model: nn.Module, loss_fn: LossFn, data: Data) -> dict[str, Any] | None:
        """Call once per step at the iterate w_t, before your update; returns the row it measured, if due.

        A bad step or data (or a model the measurement refuses) raises before the monitor, the
        model or its buffers change: nothing is counted, timed or recorded."""
        now = time.perf_counter()
        if isinstance(step, bool) or not isinstance(step, int) or step < self.steps:
            raise ValueError(f"step: expected an integer >= {self.steps} (steps already observed), got {step!r}")
        chunks = as_chunks(data)
        row = None
        if step % self.every == 0:
            with frozen_state(model):  # the measurement is no training step: buffers kept
                grads = self.optimizer.gradients(model, loss_fn, chunks).synced()
                eig = self.tracker.measure(model, loss_fn, chunks, fresh=(grads.grad, grads.sam_grad))
                sharp = self.sharpness.measure(self.optimizer, model, loss_fn, chunks, grads)
            start = now if self._start is None else self._start
            row = metrics_row(step, now - start - self._measuring, now - start, self.optimizer, grads, eig, sharp)
            self.rows.append(row)
            self._measuring += time.perf_counter() - now
        if self._start is None:
            self._start = now
        self.steps = step + 1
        return row

    def frame(self) -> pd.DataFrame:
        return metrics_frame(self.rows)

    def write(self, out_dir: str | Path, task: str, status: str = "completed", reason: str | None = None) -> Path:
        """metrics.csv and run.json in out_dir, as `samedge train` writes them (aggregate reads them:
        put them at runs/<task>/<samedge.runs.run_name(...)>/ and run `samedge aggregate --runs-dir runs`)."""
        out_dir = Path(out_dir)
        record = {"status": status, "reason": reason, "task": task, "lr": self.lr, "rho": self.rho,
                  "optimizer": {"name": self.optimizer.name, **self.optimizer.settings},
                  "seed": self.seed, "steps": self.steps, "measurements": len(self.rows),
                  "total_hvps": sum(r["hvp_count"] for r in self.rows), "source": "samedge.monitor.EdgeMonitor",
                  "wall_seconds": self.rows[-1]["wall_seconds"] if self.rows else 0.0,
                  "train_seconds": self.rows[-1]["train_seconds"] if self.rows else 0.0,
                  "tracker": {k: v for k, v in self.tracker.state_dict().items() if k != "basis"},
                  "versions": versions()}
        write_run(out_dir, self.frame(), record)
        return out_dir


def _as_optimizer(optimizer: Optimizer | torch.optim.Optimizer | None, lr: float | None, rho: float) -> Optimizer:
    """The samedge Optimizer an EdgeMonitor measures for (ValueError names a bad argument)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizers.from_torch(optimizer)
    if optimizer is not None:
        raise ValueError(f"optimizer: expected a samedge or torch.optim optimizer, got {type(optimizer).__name__}")
    if lr is None or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a positive finite learning rate, got {lr}")
    if not (math.isfinite(rho) and rho >= 0):
        raise ValueError(f"rho: expected a finite rho >= 0, got {rho}")
    return optimizers.build(None, lr, rho)
