"""Section 5: the eigensolver of an earlier commit (`--before`, default the commit before issue 19's
changes) against the current one, in the same process, on the same iterates and operators:

- along the quick MNIST SAM run of section 2 (samedge's Trainer, whose tracker is the current
  solver warm-started from its basis plus one probe made of the gradient, the SAM gradient and a
  seeded random vector): at each measurement the earlier solver runs warm from its own previous
  basis, as it did in a run; cold is scipy eigsh (LA, same tol) from a random vector;
- on the paper-size MLP and the quick CIFAR CNN of section 1: warm solve time of each solver
  against eigsh's, alternated (before, after, eigsh, eigsh, after, before) and averaged.

The earlier solver is loaded from `git show <rev>:src/samedge/eigensolver.py`, so nothing of it
lives in the tree.
"""
from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import eigsh

import eigen_peers
import trajectory
from common import REPO, Section, fmt, md_table, timed
from samedge.batches import batch_source
from samedge.hvp import HVPOperator
from samedge.models import mse_loss
from samedge.optimizers import build
from samedge.sam import sam_gradient
from samedge.train import RunSpec, Trainer

BEFORE = "691a0c7"  # the last commit before issue 19's solver changes


def load_before(rev: str) -> ModuleType:
    source = subprocess.run(["git", "show", f"{rev}:src/samedge/eigensolver.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "eigensolver_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("eigensolver_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _eigsh(op: HVPOperator, k: int, tol: float, seed: int) -> tuple[np.ndarray, int, float]:
    v0 = np.random.default_rng(seed).standard_normal(op.dim)
    start = op.hvps
    values, seconds = timed(lambda: eigsh(op.as_linear_operator(), k=k, which="LA", tol=tol, v0=v0,
                                          return_eigenvectors=False))
    return np.sort(values)[::-1].copy(), op.hvps - start, seconds


def run_trajectory(before: ModuleType, cfg: dict, lr: float, rho: float, data_dir: Path,
                   max_steps: int | None) -> list[dict]:
    cfg = {**cfg, "train": {**cfg["train"], "max_steps": max_steps or cfg["train"]["max_steps"]}}
    rows: list[dict] = []
    state: dict[str, Any] = {"basis": None}

    def on_measure(trainer: Trainer, batch: Any, grads: Any, row: dict) -> None:
        tk, last = trainer.tracker, timer.last
        op = HVPOperator(trainer.model, trainer.loss_fn, batch, method=tk.method)
        old, t_old = timed(lambda: before.top_eigenpairs(op, tk.k, tk.tol, tk.max_iters, init=state["basis"],
                                                         seed=last["seed"], guard=tk.guard))
        state["basis"] = old.basis
        cold, cold_hvps, t_cold = _eigsh(op, tk.k, tk.tol, tk.seed + len(rows))
        new = last["result"]
        rows.append({"step": row["step"], "before_hvps": old.hvps, "after_hvps": new.hvps, "cold_hvps": cold_hvps,
                     "before_seconds": t_old, "after_seconds": last["seconds"], "cold_seconds": t_cold,
                     "before_err": float(np.max(np.abs(old.values.numpy() - cold) / np.abs(cold))),
                     "after_err": float(np.max(np.abs(new.values.numpy() - cold) / np.abs(cold))),
                     "before_resolved": bool(old.resolved), "after_resolved": bool(new.resolved),
                     "after_bound": float(max(new.bounds) / abs(new.values[0]))})

    with tempfile.TemporaryDirectory() as tmp:
        spec = RunSpec("mnist", lr, rho, "quick", cfg, Path(tmp) / "run", Path(tmp) / "checkpoint",
                       torch.device("cpu"), batch_source("mnist", cfg, data_dir, torch.device("cpu")),
                       build(cfg["optimizer"], lr, rho))
        trainer = Trainer(spec, on_measure=on_measure)
        timer = trajectory._TimedTracker(trainer.tracker)
        trainer.tracker.measure = timer
        trainer.run()
    return rows


def time_problem(before: ModuleType, spec: dict, data_dir: Path) -> dict:
    """Warm solve time of both solvers and of eigsh on one section-1 problem, alternated."""
    p = eigen_peers.build_problem(**spec["problem"], data_dir=data_dir)
    grads = sam_gradient(p.model, mse_loss, p.data, spec["problem"]["rho"])
    state = p.tracker_state

    def after():
        tracker = eigen_peers._warm_tracker(p)
        return tracker.measure(p.model, mse_loss, p.data, fresh=(grads.grad, grads.sam_grad))

    def old():
        op = HVPOperator(p.model, mse_loss, p.data, method=p.method)
        return before.top_eigenpairs(op, p.k, p.tol, p.max_iters, init=state["basis"],
                                     seed=state["seed"] + state["measurements"], guard=state["guard"])

    def cold():
        return _eigsh(HVPOperator(p.model, mse_loss, p.data, method=p.method), p.k, p.tol, p.seed)

    after(), old()  # first-call set-up paid by neither
    times: dict[str, list[float]] = {"before": [], "after": [], "eigsh": []}
    results: dict[str, Any] = {}
    for name, fn in (("before", old), ("after", after), ("eigsh", cold), ("eigsh", cold), ("after", after),
                     ("before", old)):
        results[name], seconds = timed(fn)
        times[name].append(seconds)
    mean = {name: statistics.fmean(t) for name, t in times.items()}
    return {"problem": p.name, "description": p.description, "before_hvps": results["before"].hvps,
            "after_hvps": results["after"].hvps, "eigsh_hvps": results["eigsh"][1],
            "before_over_eigsh": mean["before"] / mean["eigsh"], "after_over_eigsh": mean["after"] / mean["eigsh"],
            "after_over_before": mean["after"] / mean["before"], "eigsh_seconds": mean["eigsh"]}


def section(rev: str, run_config: tuple[dict, float, float], data_dir: Path, problems: list[dict],
            max_steps: int | None) -> tuple[Section, list[dict]]:
    """run_config: the trajectory's (config, lr, rho), as section 2 runs it."""
    before = load_before(rev)
    sec = Section(f"5. Issue 19: the solver before ({rev}) and after, in one run")
    cfg, lr, rho = run_config
    rows = run_trajectory(before, cfg, lr, rho, data_dir, max_steps)
    later = rows[1:] or rows
    med = {key: statistics.median(r[key] for r in later) for key in ("before_hvps", "after_hvps", "cold_hvps")}
    sec.lines.append(
        f"Quick MNIST SAM run (lr {lr:g}, rho {rho:g}, {len(rows)} measurements): per warm measurement "
        "(2..) the earlier solver from its own previous basis, the current one from its basis plus one "
        "probe made of the gradient, the SAM gradient and a seeded random vector, both checked against "
        "scipy eigsh (cold).")
    sec.target("median warm HVPs after - before (measurements 2..)", med["after_hvps"] - med["before_hvps"], 3)
    sec.add("median warm HVPs before", med["before_hvps"])
    sec.add("median warm HVPs after", med["after_hvps"])
    sec.add("median cold (eigsh) HVPs", med["cold_hvps"])
    sec.add("median warm / cold HVPs before", med["before_hvps"] / med["cold_hvps"])
    sec.add("median warm / cold HVPs after", med["after_hvps"] / med["cold_hvps"])
    sec.add("median warm time after / before", statistics.median(r["after_seconds"] / r["before_seconds"] for r in later))
    sec.add("max eigenvalue error vs eigsh before", max(r["before_err"] for r in rows))
    sec.add("max eigenvalue error vs eigsh after", max(r["after_err"] for r in rows))
    sec.add("max certified error bound / lambda_1 after", max(r["after_bound"] for r in rows))
    sec.add("resolved before", sum(r["before_resolved"] for r in rows), note=f"of {len(rows)}")
    sec.add("resolved after (certified gap)", sum(r["after_resolved"] for r in rows), note=f"of {len(rows)}")
    sec.lines += ["", *md_table(
        ["step", "HVPs before", "HVPs after", "HVPs eigsh", "time after/before", "err before", "err after"],
        [[r["step"], r["before_hvps"], r["after_hvps"], r["cold_hvps"], r["after_seconds"] / r["before_seconds"],
          r["before_err"], r["after_err"]] for r in rows])]
    timings = [time_problem(before, spec, data_dir) for spec in problems]
    sec.lines += ["", "Warm solve time against scipy eigsh (LA, same tol) at one point, each timed twice, "
                  "alternated, in this process:", "", *md_table(
                      ["problem", "HVPs before", "HVPs after", "HVPs eigsh", "before / eigsh time",
                       "after / eigsh time", "after / before time"],
                      [[t["problem"], t["before_hvps"], t["after_hvps"], t["eigsh_hvps"], t["before_over_eigsh"],
                        t["after_over_eigsh"], t["after_over_before"]] for t in timings])]
    for t in timings:
        sec.add(f"{t['problem']}: warm time after / before", t["after_over_before"], note=t["description"])
    return sec, rows
