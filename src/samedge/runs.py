"""The run contract: what one run of (task, lr, rho, seed) writes, where, and how it is read back.

results/runs/<task>/<run>/metrics.csv   one row per Hessian measurement (METRIC_COLUMNS first)
results/runs/<task>/<run>/run.json      status, reason, steps, measurements, config, seed, versions, ...
<run> = lr<lr>_rho<rho> for the task's default seed, lr<lr>_rho<rho>_seed<seed> for any other.

Training writes runs (samedge.train); aggregation, figures, the workflow and the benchmarks read
them through this module, which also checks that the two files agree with each other.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from samedge.config import ConfigError, fmt_value, grid, point_seeds, profile_config

METRIC_COLUMNS = ["step", "train_seconds", "loss", "grad_norm", "lambda_1", "lambda_2", "lambda_3",
                  "gd_edge", "sam_edge", "align_grad", "align_sam_grad", "hvp_count"]
EXTRA_COLUMNS = ["eig_rel_residual", "eig_converged", "wall_seconds", "eig_error_bound"]
RUN_KEYS = ("status", "reason", "steps", "wall_seconds", "total_hvps")
STATUSES = ("completed", "diverged")
METRICS_FILE, RECORD_FILE = "metrics.csv", "run.json"
# Measured quantities that must be finite in every row of a completed run.
FINITE_COLUMNS = ["step", "loss", "grad_norm", "lambda_1", "gd_edge", "sam_edge", "hvp_count"]
_NAME = re.compile(r"lr(?P<lr>[^_/]+)_rho(?P<rho>[^_/]+?)(?:_seed(?P<seed>\d+))?")


class RunKey(NamedTuple):
    """One run. seed None: the task's default seed (its `seed:` in params.yaml)."""

    task: str
    lr: float
    rho: float
    seed: int | None = None

    @property
    def name(self) -> str:
        return run_name(self.lr, self.rho, self.seed)

    def label(self) -> str:
        seed = "" if self.seed is None else f" seed={self.seed}"
        return f"{self.task} lr={fmt_value(self.lr)} rho={fmt_value(self.rho)}{seed}"


def run_name(lr: float, rho: float, seed: int | None = None) -> str:
    base = f"lr{fmt_value(lr)}_rho{fmt_value(rho)}"
    return base if seed is None else f"{base}_seed{seed}"


def parse_run_name(name: str) -> tuple[float, float, int | None] | None:
    """(lr, rho, seed) of a run directory name, or None if it is not one."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    try:
        lr, rho = float(match["lr"]), float(match["rho"])
    except ValueError:
        return None
    return lr, rho, None if match["seed"] is None else int(match["seed"])


def profile_runs(params: dict, profile: str | None = None) -> list[RunKey]:
    """Every run of a profile: each grid point once per seed it names, in params order."""
    prof = profile_config(params, profile)
    return [RunKey(task, lr, rho, None if seed == prof[task]["seed"] else seed)
            for task, lr, rho in grid(params, profile) for seed in point_seeds(prof[task], lr, rho)]


def run_dir(runs_root: str | Path, key: RunKey) -> Path:
    return Path(runs_root) / key.task / key.name


def find_runs(runs_root: str | Path) -> list[RunKey]:
    """Every run with a run.json under runs_root/TASK/RUN/, tasks in registry order, then lr, rho, seed."""
    from samedge.tasks import task_names

    found = [RunKey(path.parent.parent.name, *parsed) for path in sorted(Path(runs_root).glob(f"*/lr*/{RECORD_FILE}"))
             if (parsed := parse_run_name(path.parent.name)) is not None]
    if not found:
        raise ConfigError(f"--runs-dir {runs_root}: no runs found (expected TASK/lrLR_rhoRHO/{RECORD_FILE})")
    order = {name: i for i, name in enumerate(task_names())}
    return sorted(found, key=lambda k: (order.get(k.task, len(order)), k.task, k.lr, k.rho, k.seed or -1))


@dataclass
class Run:
    key: RunKey
    record: dict
    metrics: pd.DataFrame

    @property
    def seed(self) -> int:
        """The seed the run actually used (run.json), whatever its directory name."""
        return int(self.record["seed"])


def read_run(runs_root: str | Path, key: RunKey) -> Run:
    """A run's run.json and metrics.csv, checked against its key and against each other."""
    folder = run_dir(runs_root, key)
    record_path, metrics_path = folder / RECORD_FILE, folder / METRICS_FILE
    for path in (record_path, metrics_path):
        if not path.is_file():
            raise ConfigError(f"run {key.label()}: missing {path}")
    record = _read_record(record_path, key)
    metrics = _read_metrics(metrics_path)
    _check_agreement(metrics_path, metrics, record)
    return Run(key, record, metrics)


def _read_record(path: Path, key: RunKey) -> dict:
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    missing = [name for name in (*RUN_KEYS, "seed", "measurements") if name not in record]
    if missing:
        raise ConfigError(f"{path}: missing keys {missing}")
    if record["status"] not in STATUSES:
        raise ConfigError(f"{path}: status {record['status']!r} is not one of {list(STATUSES)}")
    for name, want in (("task", key.task), ("lr", key.lr), ("rho", key.rho)):
        got = record.get(name, want)
        if got != want and not (isinstance(want, float) and math.isclose(float(got), want)):
            raise ConfigError(f"{path}: {name} is {got!r} but the run directory says {want!r}")
    if key.seed is not None and record["seed"] != key.seed:
        raise ConfigError(f"{path}: seed is {record['seed']!r} but the run directory says {key.seed}")
    return record


def _read_metrics(path: Path) -> pd.DataFrame:
    """Every contract column, numeric (a header-only file is zero measurements)."""
    try:
        metrics = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable CSV ({exc}); rerun the run") from exc
    missing = [col for col in METRIC_COLUMNS if col not in metrics.columns]
    if missing:
        raise ConfigError(f"{path}: missing metrics columns {missing}")
    if metrics.empty:
        return metrics.astype({col: float for col in METRIC_COLUMNS})
    bad = [col for col in METRIC_COLUMNS if not pd.api.types.is_numeric_dtype(metrics[col])]
    if bad:
        raise ConfigError(f"{path}: non-numeric values in columns {bad}")
    return metrics


def _check_agreement(path: Path, metrics: pd.DataFrame, record: dict) -> None:
    """A truncated or edited metrics.csv no longer matches what its run.json says was written."""
    if len(metrics) != record["measurements"]:
        raise ConfigError(f"{path}: {len(metrics)} rows but run.json records {record['measurements']} "
                          "measurements (truncated or edited?); rerun the run")
    if len(metrics) and metrics["step"].max() >= record["steps"]:  # measured before each step's update
        raise ConfigError(f"{path}: a row at step {int(metrics['step'].max())} but the run took "
                          f"{record['steps']} steps; rerun the run")
    if metrics["hvp_count"].sum() != record["total_hvps"]:
        raise ConfigError(f"{path}: hvp_count sums to {metrics['hvp_count'].sum():g} but run.json records "
                          f"{record['total_hvps']} HVPs (edited?); rerun the run")
    if record["status"] == "completed" and len(metrics):
        bad = [col for col in FINITE_COLUMNS if not np.isfinite(metrics[col]).all()]
        if bad:
            raise ConfigError(f"{path}: non-finite values in {bad} of a completed run (edited?); rerun the run")
