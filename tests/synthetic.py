"""Synthetic run directories shaped like `samedge train` output, for the aggregate and figure tests.

Eigenvalues rise towards the run's edge (progressive sharpening), then hover at it; a diverged run
blows up; an empty run has a header-only metrics.csv.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from samedge.io import sha256_file
from samedge.runs import DIGEST_KEY, RunKey, run_name
from samedge.edge import gd_edge, sam_edge


def metrics_frame(lr: float, rho: float, n: int = 16, seed: int = 0, blow_up: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    step = np.arange(n) * 10
    grad_norm = 2.0 * np.exp(-step / (10.0 * n)) + 0.05
    edge = sam_edge(grad_norm, lr, rho)
    approach = np.minimum(1.0, 0.3 + 1.4 * np.arange(n) / n)  # reaches the edge half way
    lam1 = edge * approach * (1.0 + 0.03 * rng.standard_normal(n))
    loss = 2.0 * np.exp(-step / (5.0 * n)) + 0.01
    if blow_up:
        loss[-3:] = [50.0, 900.0, 2e4]
        lam1[-2:] = [3 * edge[-2], np.nan]
    return pd.DataFrame({
        "step": step, "train_seconds": step * 0.05, "loss": loss, "grad_norm": grad_norm,
        "lambda_1": lam1, "lambda_2": 0.9 * lam1, "lambda_3": 0.8 * lam1 - 0.05 * edge,
        "gd_edge": gd_edge(lr) * np.ones(n), "sam_edge": edge,
        "align_grad": 0.3 * np.cos(step), "align_sam_grad": -0.6 + 0.1 * np.sin(step),
        "hvp_count": np.full(n, 12), "edge": edge, "sharpness": lam1,  # SAM's own edge: sam_edge, lambda_1
        "test_loss": loss * 1.1,  # an extra column to be kept
    })


def write_run(runs_dir: Path, task: str, lr: float, rho: float, seed: int | None = None,
              metrics: pd.DataFrame | None = None, status: str = "completed", reason: str | None = None,
              optimizer: str = "", batch: str = "") -> Path:
    """A run directory as `samedge train` writes it; seed None: the default seed 0, no suffix."""
    if metrics is None:
        metrics = metrics_frame(lr, rho, seed=seed or 0, blow_up=status == "diverged")
    run_dir = runs_dir / task / run_name(lr, rho, seed, optimizer, batch)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics.to_csv(run_dir / "metrics.csv", index=False)
    steps = int(metrics["step"].max()) + 1 if len(metrics) else 0
    info = {"status": status, "reason": reason, "steps": steps, "wall_seconds": 1.5 + lr,
            "total_hvps": int(metrics["hvp_count"].sum()), "task": task, "lr": lr, "rho": rho,
            "config": {"grid": "synthetic"}, "seed": seed or 0, "measurements": len(metrics),
            DIGEST_KEY: sha256_file(run_dir / "metrics.csv")}
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


# The synthetic grid: every task at two learning rates and rho in {0, the paper's SAM rho};
# mnist lr 1.0 with SAM diverges, cifar10 lr 0.1 GD has no measurements, and shakespeare
# lacks rho 0.3 (its SAM figures must say so instead of failing).
GRID = {"mnist": ([0.3, 1.0], [0.0, 0.1]), "cifar10": ([0.03, 0.1], [0.0, 0.1]),
        "shakespeare": ([0.1, 0.5], [0.0, 0.1])}
DIVERGED = ("mnist", 1.0, 0.1)
EMPTY = ("cifar10", 0.1, 0.0)


def write_grid(runs_dir: Path, tasks: tuple[str, ...] = tuple(GRID)) -> list[RunKey]:
    keys = []
    for task in tasks:
        lrs, rhos = GRID[task]
        for lr in lrs:
            for rho in rhos:
                key = RunKey(task, lr, rho)
                if key[:3] == DIVERGED:
                    write_run(runs_dir, *key[:3], status="diverged", reason="loss 2e+04 above 1000")
                elif key[:3] == EMPTY:
                    write_run(runs_dir, *key[:3], metrics=metrics_frame(lr, rho).iloc[:0])
                else:
                    write_run(runs_dir, *key[:3])
                keys.append(key)
    return keys
