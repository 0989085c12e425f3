"""One training run: an optimizer (samedge.optimizers; SAM by default, GD at rho = 0) with top-k
Hessian measurements, checkpoints and divergence checks. The unit of work of the pipeline: one
task x lr x rho x optimizer x batch size.

Metrics are measured at the iterate w_t, between the step's gradients and its update, so the
loss, ||g||, both gradients and the Hessian all belong to the same point and the same batch.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samedge import checkpoint
from samedge.batches import BatchSource
from samedge.errors import CheckpointError, ConfigError
from samedge.progress import Progress
from samedge.provenance import device_name, versions
from samedge.monitor import Sharpness, metrics_frame, metrics_row
from samedge.optimizers import Optimizer
from samedge.runs import write_run
from samedge.sam import SamGradient, SamTensors, graphable
from samedge.tasks import get_task
from samedge.tracker import EigenTracker

log = logging.getLogger("samedge.train")

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_KEYS = ("identity", "state", "model", "tracker", "optimizer", "sharpness", "rng")  # what save_checkpoint writes (cuda_rng: optional)
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a job that stopped on TERM
# The loop reads the divergence watch (a host-device sync) every this many steps, and at every
# measurement, checkpoint and the end; the step it reports is exact (recorded on the device).
DIVERGENCE_CHECK_EVERY = 20
# cuBLAS workspace settings under which its results are deterministic (CUDA's reproducibility notes).
DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")


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
    optimizer: Optimizer  # built from cfg["optimizer"] at lr and rho

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


def edge_ratio_of(row: dict[str, Any]) -> float:
    """sharpness / edge for the log and the progress bar (NaN at a zero edge: ||g|| = 0 with rho > 0)."""
    return row["sharpness"] / row["edge"] if row["edge"] else math.nan


def divergence_reason(loss: float, grad_norm: float, bound: float, step: int) -> str | None:
    if not math.isfinite(loss) or not math.isfinite(grad_norm):
        return f"non-finite loss or gradient at step {step} (loss {loss})"
    if loss > bound:
        return f"loss {loss:.4g} above train.divergence_loss = {bound:g} at step {step}"
    return None


class DivergenceWatch:
    """The first step whose loss or ||g|| is non-finite or above the bound, kept on the device
    (no sync per step); `first()` reads it (one sync)."""

    def __init__(self, bound: float, device: torch.device) -> None:
        self.bound = bound
        self._step = torch.full((), -1, dtype=torch.int64, device=device)
        self._values = torch.zeros(2, dtype=torch.float64, device=device)  # loss, ||g|| at that step

    def observe(self, grads: SamTensors, step: int) -> None:
        loss, norm = grads.loss, grads.grad_norm
        bad = ~torch.isfinite(loss) | ~torch.isfinite(norm) | (loss.double() > self.bound)  # as float(loss) > bound
        new = bad & (self._step < 0)
        self._step = torch.where(new, step, self._step)
        self._values = torch.where(new, torch.stack([loss, norm]).double(), self._values)

    def first(self) -> tuple[int, str] | None:
        """(step, reason) of the first diverging step observed, or None."""
        step = int(self._step)
        if step < 0:
            return None
        loss, norm = self._values.tolist()
        return step, divergence_reason(loss, norm, self.bound, step)


class TrainClock:
    """Training seconds (measurements and checkpoints excluded) without a sync per step: host time
    since the last pause, exact at each pause (a device sync, where the loop syncs anyway)."""

    def __init__(self, device: torch.device, seconds: float) -> None:
        self.device, self.base, self.start = device, seconds, _clock(device)

    def now(self) -> float:
        return self.base + time.perf_counter() - self.start

    def pause(self) -> float:
        self.base += _clock(self.device) - self.start
        return self.base

    def resume(self) -> None:
        self.start = _clock(self.device)


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
        if tracker["k"] > (size := sum(p.numel() for p in self.model.parameters())):
            raise ConfigError(f"tracker.k: {tracker['k']} eigenvalues of a Hessian of size {size} (the model's "
                              f"parameters); choose k <= {size}")
        self.loss_fn = task.loss
        self.tracker = EigenTracker(k=tracker["k"], tol=tracker["tol"], max_iters=tracker["max_iters"],
                                    method=tracker["method"], seed=spec.cfg["seed"])
        self.sharpness = Sharpness(self.tracker)
        self.optimizer = spec.optimizer
        self.optimizer.bind(self.model)
        self.state = RunState()
        self._last_checkpoint = time.monotonic()

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.spec.checkpoint_dir / CHECKPOINT_FILE

    def save_checkpoint(self) -> None:
        payload = {"identity": self.spec.identity(), "state": vars(self.state),
                   "model": self.model.state_dict(), "tracker": self.tracker.state_dict(),
                   "optimizer": self.optimizer.state_dict(), "sharpness": self.sharpness.tracker.state_dict(),
                   "rng": torch.get_rng_state(), "cuda_rng": cuda_rng_state(self.spec.device)}
        checkpoint.save(self.checkpoint_path, payload)
        self._last_checkpoint = time.monotonic()

    def try_resume(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        if not self.checkpoint_path.is_file():  # a save would fail at the first checkpoint, after the work
            raise CheckpointError(f"checkpoint {self.checkpoint_path} is a folder, not a file; move it away "
                                  "or give this run another --checkpoint-dir")
        payload = checkpoint.load(self.checkpoint_path)
        if not isinstance(payload, dict) or (missing := [k for k in CHECKPOINT_KEYS if k not in payload]):
            raise CheckpointError(f"checkpoint {self.checkpoint_path} lacks "
                                  f"{missing if isinstance(payload, dict) else 'its contents'} (not written by "
                                  "this samedge); delete it to rerun this run from step 0")
        if payload["identity"] != self.spec.identity():
            raise CheckpointError(
                f"checkpoint {self.checkpoint_path} belongs to a run with another task/lr/rho/seed/config; "
                "delete it to start this run afresh, or give this run another --checkpoint-dir")
        self.model.load_state_dict(payload["model"])
        self.tracker.load_state_dict(payload["tracker"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.sharpness.tracker.load_state_dict(payload["sharpness"])
        torch.set_rng_state(payload["rng"])
        set_cuda_rng_state(payload.get("cuda_rng"), self.spec.device)  # absent from checkpoints before it was saved
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
        every_steps = self.train_cfg["measure_every_steps"]
        if every_steps:
            return self.state.step % every_steps == 0
        return self.state.train_seconds >= self.state.next_measure_s

    def _measure(self, batch: Any, grads: SamGradient) -> dict[str, Any]:
        eig = self.tracker.measure(self.model, self.loss_fn, batch, fresh=(grads.grad, grads.sam_grad))
        sharp = self.sharpness.measure(self.optimizer, self.model, self.loss_fn, batch, grads)
        row = metrics_row(self.state.step, self.state.train_seconds, self.state.wall_seconds,
                          self.optimizer, grads, eig, sharp)
        self.state.rows.append(row)
        if self.train_cfg["measure_every_s"]:
            self.state.next_measure_s += self.train_cfg["measure_every_s"]
        log.info("step %d loss %.5g |g| %.4g lambda_1 %.5g sam_edge %.5g gd_edge %.4g sharpness %.5g edge %.5g "
                 "(ratio %.3f) hvps %d", row["step"], row["loss"], row["grad_norm"], row["lambda_1"], row["sam_edge"],
                 row["gd_edge"], row["sharpness"], row["edge"], edge_ratio_of(row), row["hvp_count"])
        if self.on_measure is not None:
            self.on_measure(self, batch, grads, row)
        return row

    def _gradients(self) -> Callable[[Any], SamTensors]:
        """The step's gradients: eager, or replayed from a CUDA graph (train.cuda_graph, CUDA only,
        for an optimizer that offers one)."""
        spec = self.spec
        if self.train_cfg.get("cuda_graph") and graphable(spec.device):
            graphed = self.optimizer.graphed(self.model, self.loss_fn, spec.data.batch(self.state.step))
            if graphed is not None:
                return graphed
        return lambda batch: self.optimizer.gradients(self.model, self.loss_fn, batch)

    def _divergence(self, watch: DivergenceWatch) -> str | None:
        """Reads the watch (a sync); on divergence, the run ends at the first diverging step."""
        found = watch.first()
        if found is None:
            return None
        self.state.step, reason = found
        log.warning("diverged: %s", reason)
        return reason

    def run(self) -> dict:
        """Train until done; returns the run record (also written to run.json).

        The step itself makes no host-device sync: the loss and ||g|| stay on the device until a
        measurement, and divergence is read every DIVERGENCE_CHECK_EVERY steps (exact step kept)."""
        spec, state = self.spec, self.state
        preemption = Preemption()
        status, reason = "completed", None
        bar = Progress(f"{spec.task} lr={spec.lr:g} rho={spec.rho:g}", state, self.train_cfg["max_steps"],
                       self.train_cfg["time_budget_s"])
        watch = DivergenceWatch(self.train_cfg["divergence_loss"], spec.device)
        gradients = self._gradients() if not self._finished() else None
        clock = TrainClock(spec.device, state.train_seconds)  # after the CUDA graph's warm-up and capture
        try:
            while not self._finished():
                wall_start = time.perf_counter()
                batch = spec.data.batch(state.step)
                grads = gradients(batch)
                watch.observe(grads, state.step)
                measure = self._measurement_due()
                if (measure or state.step % DIVERGENCE_CHECK_EVERY == 0) and (reason := self._divergence(watch)):
                    status = "diverged"
                    break
                if measure:
                    state.train_seconds = clock.pause()
                    synced = grads.synced()
                    row = self._measure(batch, synced)
                    bar.set_postfix(loss=f"{synced.loss:.4g}", l1_over_edge=f"{edge_ratio_of(row):.3f}")
                    clock.resume()
                self.optimizer.update(self.model, grads)
                state.step += 1
                state.train_seconds = clock.now()
                state.wall_seconds += time.perf_counter() - wall_start
                bar.update()
                if preemption.requested or self._checkpoint_due():
                    if reason := self._divergence(watch):  # never checkpoint past a diverged step
                        status = "diverged"
                        break
                    state.train_seconds = clock.pause()
                    self.save_checkpoint()
                    clock.resume()
                if preemption.requested:
                    log.warning("SIGTERM: checkpoint written at step %d; exiting", state.step)
                    raise SystemExit(PREEMPTED_EXIT_CODE)
            else:  # the budget ended: steps since the last check may have diverged
                if reason := self._divergence(watch):
                    status = "diverged"
        finally:
            bar.close()
            preemption.restore()
        return self.finish(status, reason)

    def finish(self, status: str, reason: str | None) -> dict:
        """Write the declared outputs (last, atomically), then drop the checkpoint."""
        spec, state = self.spec, self.state
        record = {"status": status, "reason": reason, "task": spec.task, "lr": spec.lr, "rho": spec.rho,
                  "optimizer": spec.cfg["optimizer"],
                  "profile": spec.profile, "steps": state.step, "seed": spec.cfg["seed"], "config": spec.cfg,
                  "versions": versions(), "device": device_name(spec.device),
                  "wall_seconds": state.wall_seconds, "train_seconds": state.train_seconds,
                  "total_hvps": sum(r["hvp_count"] for r in state.rows), "measurements": len(state.rows), "resumes": state.resumes}
        write_run(spec.out_dir, metrics_frame(state.rows), record)
        checkpoint.remove(self.checkpoint_path)  # only the files this run wrote
        return record


def cuda_rng_state(device: torch.device) -> torch.Tensor | None:
    """The run's CUDA generator (nothing draws from it today; a resumed run must still continue it)."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_cuda_rng_state(state: torch.Tensor | None, device: torch.device) -> None:
    if state is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state, device)


def configure_device(device: torch.device) -> None:
    """Exact, repeatable arithmetic for Hessian work: float32 matmuls without TF32, deterministic kernels.

    Call it before the first cuBLAS call of the process: cuBLAS reads CUBLAS_WORKSPACE_CONFIG once.
    On CUDA an op without a deterministic kernel warns (naming it, in the run's log) instead of
    stopping the run: these kernels have not all run here (README, "What has run on a GPU");
    benchmarks/gpu_check.sh reruns jobs and compares their metrics bit for bit."""
    cuda = device.type == "cuda"
    if cuda:
        if os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in DETERMINISTIC_CUBLAS:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = DETERMINISTIC_CUBLAS[0]
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=cuda)
    torch.set_float32_matmul_precision("highest")


def run(spec: RunSpec) -> dict:
    configure_device(spec.device)
    trainer = Trainer(spec)
    trainer.try_resume()
    return trainer.run()
