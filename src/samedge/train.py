"""One training run: SAM (GD at rho = 0) with top-k Hessian measurements, checkpoints and
divergence checks. The unit of work of the pipeline: one task x lr x rho.

Metrics are measured at the iterate w_t, between the step's gradients and its update, so the
loss, ||g||, both gradients and the Hessian all belong to the same point and the same batch.
"""
from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from samedge import checkpoint
from samedge.batches import BatchSource
from samedge.edge import gd_edge, sam_edge
from samedge.errors import CheckpointError
from samedge.io import atomic_write, write_json
from samedge.progress import Progress
from samedge.provenance import device_name, versions
from samedge.runs import EXTRA_COLUMNS, METRIC_COLUMNS, METRICS_FILE, RECORD_FILE
from samedge.sam import SamGradient, apply_update, sam_gradient
from samedge.tasks import get_task
from samedge.tracker import EigenTracker

log = logging.getLogger("samedge.train")

CHECKPOINT_FILE = "checkpoint.pt"
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a job that stopped on TERM


@dataclass
class RunSpec:
    """Everything one run needs, validated before any output is created."""

    task: str
    lr: float
    rho: float
    profile: str
    cfg: dict
    out_dir: Path
    checkpoint_dir: Path
    device: torch.device
    data: BatchSource

    def identity(self) -> dict:
        """What a checkpoint must match to be resumed by this run."""
        return {"task": self.task, "lr": self.lr, "rho": self.rho, "cfg": self.cfg}


@dataclass
class RunState:
    """The resumable state of a run, apart from the model and the tracker."""

    step: int = 0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    next_measure_s: float = 0.0
    resumes: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)


class Preemption:
    """Turns SIGTERM into a flag the loop checks after each step (checkpoint, then exit)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _cosine(a: Tensor, b: Tensor) -> float:
    denom = torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)
    return float(a @ b / denom) if denom > 0 else math.nan


def edge_ratio_of(row: dict[str, Any]) -> float:
    """lambda_1 / sam_edge for the log and the progress bar (NaN at a zero edge: ||g|| = 0 with rho > 0)."""
    return row["lambda_1"] / row["sam_edge"] if row["sam_edge"] else math.nan


def measurement_row(spec: RunSpec, state: RunState, grads: SamGradient, eig: Any) -> dict[str, Any]:
    """One metrics.csv row. v1 is oriented so align_grad >= 0 (an eigenvector's sign is arbitrary)."""
    values = [float(v) for v in eig.values]
    v1 = eig.vectors[:, 0].to(grads.grad.dtype)
    if v1 @ grads.grad < 0:
        v1 = -v1
    n_lambdas = max(3, len(values))
    row: dict[str, Any] = {
        "step": state.step, "train_seconds": state.train_seconds, "loss": grads.loss,
        "grad_norm": grads.grad_norm,
        **{f"lambda_{i + 1}": values[i] if i < len(values) else math.nan for i in range(n_lambdas)},
        "gd_edge": gd_edge(spec.lr), "sam_edge": sam_edge(grads.grad_norm, spec.lr, spec.rho),
        "align_grad": _cosine(v1, grads.grad), "align_sam_grad": _cosine(v1, grads.sam_grad),
        "hvp_count": int(eig.hvps),
        "eig_rel_residual": float(max(eig.residuals)) / max(abs(values[0]), 1e-30),
        "eig_converged": bool(eig.converged), "wall_seconds": state.wall_seconds,
    }
    return row


def divergence_reason(grads: SamGradient, bound: float, step: int) -> str | None:
    if not math.isfinite(grads.loss) or not math.isfinite(grads.grad_norm):
        return f"non-finite loss or gradient at step {step} (loss {grads.loss})"
    if grads.loss > bound:
        return f"loss {grads.loss:.4g} above train.divergence_loss = {bound:g} at step {step}"
    return None


MeasureHook = Callable[["Trainer", Any, SamGradient, dict[str, Any]], None]


class Trainer:
    """Runs (or resumes) one run to completion, divergence, or preemption.

    on_measure(trainer, batch, grads, row), if given, is called after each measurement row is
    recorded, with the model still at the measured iterate (benchmarks compare other solvers there).
    """

    def __init__(self, spec: RunSpec, on_measure: MeasureHook | None = None) -> None:
        self.spec = spec
        self.on_measure = on_measure
        train, tracker = spec.cfg["train"], spec.cfg["tracker"]
        self.train_cfg = train
        torch.manual_seed(spec.cfg["seed"])
        task = get_task(spec.task)
        self.model: nn.Module = task.build_model(spec.cfg["model"]).to(spec.device)
        self.loss_fn = task.loss
        self.tracker = EigenTracker(k=tracker["k"], tol=tracker["tol"], max_iters=tracker["max_iters"],
                                    method=tracker["method"], seed=spec.cfg["seed"])
        self.state = RunState()
        self._last_checkpoint = time.monotonic()

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.spec.checkpoint_dir / CHECKPOINT_FILE

    def save_checkpoint(self) -> None:
        payload = {"identity": self.spec.identity(), "state": vars(self.state),
                   "model": self.model.state_dict(), "tracker": self.tracker.state_dict(),
                   "rng": torch.get_rng_state()}
        checkpoint.save(self.checkpoint_path, payload)
        self._last_checkpoint = time.monotonic()

    def try_resume(self) -> bool:
        if not self.checkpoint_path.is_file():
            return False
        payload = checkpoint.load(self.checkpoint_path, self.spec.device)
        if payload["identity"] != self.spec.identity():
            raise CheckpointError(
                f"checkpoint {self.checkpoint_path} belongs to a run with another task/lr/rho/seed/config; "
                "delete it to start this run afresh, or give this run another --checkpoint-dir")
        self.model.load_state_dict(payload["model"])
        self.tracker.load_state_dict(payload["tracker"])
        torch.set_rng_state(payload["rng"])
        self.state = RunState(**payload["state"])
        self.state.resumes += 1
        log.info("resumed from %s at step %d", self.checkpoint_path, self.state.step)
        return True

    def _checkpoint_due(self) -> bool:
        every_steps, every_s = self.train_cfg["checkpoint_every_steps"], self.train_cfg["checkpoint_every_s"]
        return bool((every_steps and self.state.step % every_steps == 0)
                    or (every_s and time.monotonic() - self._last_checkpoint >= every_s))

    # ------------------------------------------------------------------ the loop
    def _finished(self) -> bool:
        max_steps, budget = self.train_cfg["max_steps"], self.train_cfg["time_budget_s"]
        return bool((max_steps and self.state.step >= max_steps)
                    or (budget and self.state.train_seconds >= budget))

    def _measurement_due(self) -> bool:
        every_steps, every_s = self.train_cfg["measure_every_steps"], self.train_cfg["measure_every_s"]
        if every_steps:
            return self.state.step % every_steps == 0
        return self.state.train_seconds >= self.state.next_measure_s

    def _measure(self, batch: Any, grads: SamGradient) -> dict[str, Any]:
        eig = self.tracker.measure(self.model, self.loss_fn, batch)
        row = measurement_row(self.spec, self.state, grads, eig)
        self.state.rows.append(row)
        if self.train_cfg["measure_every_s"]:
            self.state.next_measure_s += self.train_cfg["measure_every_s"]
        log.info("step %d loss %.5g |g| %.4g lambda_1 %.5g sam_edge %.5g (ratio %.3f) gd_edge %.4g hvps %d",
                 row["step"], row["loss"], row["grad_norm"], row["lambda_1"], row["sam_edge"],
                 edge_ratio_of(row), row["gd_edge"], row["hvp_count"])
        if self.on_measure is not None:
            self.on_measure(self, batch, grads, row)
        return row

    def run(self) -> dict:
        """Train until done; returns the run record (also written to run.json)."""
        spec, state = self.spec, self.state
        preemption = Preemption()
        status, reason = "completed", None
        bar = Progress(f"{spec.task} lr={spec.lr:g} rho={spec.rho:g}", state, self.train_cfg["max_steps"],
                       self.train_cfg["time_budget_s"])
        try:
            while not self._finished():
                wall_start = time.perf_counter()
                batch = spec.data.batch(state.step)
                start = _clock(spec.device)
                grads = sam_gradient(self.model, self.loss_fn, batch, spec.rho)
                elapsed = _clock(spec.device) - start
                reason = divergence_reason(grads, self.train_cfg["divergence_loss"], state.step)
                if reason:
                    status = "diverged"
                    log.warning("diverged: %s", reason)
                    break
                if self._measurement_due():
                    row = self._measure(batch, grads)
                    bar.set_postfix(loss=f"{grads.loss:.4g}", l1_over_edge=f"{edge_ratio_of(row):.3f}")
                start = _clock(spec.device)
                apply_update(self.model, grads.sam_grad, spec.lr)
                state.train_seconds += elapsed + _clock(spec.device) - start
                state.step += 1
                state.wall_seconds += time.perf_counter() - wall_start
                bar.update()
                if preemption.requested:
                    self.save_checkpoint()
                    log.warning("SIGTERM: checkpoint written at step %d; exiting", state.step)
                    raise SystemExit(PREEMPTED_EXIT_CODE)
                if self._checkpoint_due():
                    self.save_checkpoint()
        finally:
            bar.close()
            preemption.restore()
        return self.finish(status, reason)

    def finish(self, status: str, reason: str | None) -> dict:
        """Write the declared outputs (last, atomically), then drop the checkpoint."""
        spec, state = self.spec, self.state
        record = {"status": status, "reason": reason, "task": spec.task, "lr": spec.lr, "rho": spec.rho,
                  "profile": spec.profile, "steps": state.step, "seed": spec.cfg["seed"], "config": spec.cfg,
                  "versions": versions(), "device": device_name(spec.device),
                  "wall_seconds": state.wall_seconds, "train_seconds": state.train_seconds,
                  "total_hvps": sum(r["hvp_count"] for r in state.rows), "measurements": len(state.rows), "resumes": state.resumes}
        extra = [c for c in state.rows[0] if c not in METRIC_COLUMNS] if state.rows else EXTRA_COLUMNS
        frame = pd.DataFrame(state.rows, columns=METRIC_COLUMNS + extra)
        with atomic_write(spec.out_dir / METRICS_FILE) as tmp:
            frame.to_csv(tmp, index=False)
        write_json(spec.out_dir / RECORD_FILE, record)
        checkpoint.remove(self.checkpoint_path)  # only the files this run wrote
        return record


def configure_device(device: torch.device) -> None:
    """Exact arithmetic for Hessian work: no TF32 on CUDA; deterministic kernels on CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(True)
    torch.set_float32_matmul_precision("highest")


def run(spec: RunSpec) -> dict:
    configure_device(spec.device)
    trainer = Trainer(spec)
    trainer.try_resume()
    return trainer.run()
