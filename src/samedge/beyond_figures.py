"""Figures beyond the paper: each optimizer's sharpness against its own edge.

- optimizer figure (one per optimizer and setting in the results): a panel per run of that
  optimizer (task, eta, rho, batch), its sharpness (solid; P^-1 H's top eigenvalue for a
  preconditioned optimizer) and its edge (dashed) against the step, log scale.
- side-by-side figure (one per task): a panel per optimizer, sharpness / edge against the step
  for each of its runs, with the edge at 1 and a +-10% band, so every optimizer's closeness to
  its own edge reads on one scale (SAM's batch sizes are lines of the sam panel).
Read from the tables of `samedge aggregate` (every run, not only the paper's); diverged runs are
drawn up to their last measurement and marked as such.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from samedge.aggregate import KEY_COLUMNS, RUN_COLUMNS
from samedge.config import fmt_value
from samedge.figures import _read_table
from samedge.runs import METRIC_COLUMNS

COLUMNS = 4  # panels per row


def load(results_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """metrics.csv and runs.csv of `samedge aggregate`, every run."""
    results_dir = Path(results_dir)
    metrics = _read_table(results_dir / "metrics.csv", [*KEY_COLUMNS, *METRIC_COLUMNS])
    return metrics, _read_table(results_dir / "runs.csv", list(RUN_COLUMNS))


def run_label(run: pd.Series, with_optimizer: bool = False) -> str:
    parts = [run["optimizer"]] if with_optimizer else []
    parts += [f"η={fmt_value(run['lr'])}", *([f"ρ={fmt_value(run['rho'])}"] if run["rho"] else []),
              f"batch {run['batch']}"]
    if run["status"] == "diverged":
        parts.append(f"(diverged at step {int(run['steps'])})")
    return " ".join(parts)


def _frame(metrics: pd.DataFrame, run: pd.Series) -> pd.DataFrame:
    keep = np.logical_and.reduce([metrics[c] == run[c] for c in KEY_COLUMNS])
    return metrics[keep].sort_values("step", kind="stable")


def _panels(n: int, width: float = 3.2, height: float = 2.6) -> tuple[Figure, np.ndarray]:
    cols = min(n, COLUMNS)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def optimizer_figure(metrics: pd.DataFrame, runs: pd.DataFrame, optimizer: str) -> Figure:
    """Every run of `optimizer`: its sharpness and its edge against the step."""
    chosen = runs[runs["optimizer"] == optimizer]
    fig, axes = _panels(len(chosen))
    for ax, (_, run) in zip(axes, chosen.iterrows()):
        frame = _frame(metrics, run)
        ax.plot(frame["step"], frame["sharpness"], color="C0", label="sharpness")
        ax.plot(frame["step"], frame["edge"], color="C3", linestyle="--", label="edge")
        ax.set_yscale("log")
        ax.set_title(f"{run['task']}: {run_label(run)}", fontsize=8)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{optimizer}: sharpness against its edge of stability", fontsize=10)
    fig.tight_layout()
    return fig


def side_by_side_figure(metrics: pd.DataFrame, runs: pd.DataFrame, task: str) -> Figure:
    """One panel per optimizer of `task`: sharpness / edge of each of its runs against the step."""
    task_runs = runs[runs["task"] == task]
    optimizers = list(dict.fromkeys(task_runs["optimizer"]))
    fig, axes = _panels(len(optimizers), width=3.6)
    for ax, optimizer in zip(axes, optimizers):
        ax.axhspan(0.9, 1.1, color="0.9")
        ax.axhline(1.0, color="0.4", linewidth=0.8)
        for _, run in task_runs[task_runs["optimizer"] == optimizer].iterrows():
            frame = _frame(metrics, run)
            ax.plot(frame["step"], frame["sharpness"] / frame["edge"], label=run_label(run))
        ax.set_yscale("log")
        ax.set_title(optimizer, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("sharpness / edge")
        ax.legend(fontsize=6)
    fig.suptitle(f"{task}: every optimizer against its own edge (band: ±10%)", fontsize=10)
    fig.tight_layout()
    return fig

