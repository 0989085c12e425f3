"""`samedge aggregate`: every run's metrics.csv and run.json into tidy tables and edge-agreement numbers.

Outputs (in --out-dir):
- metrics.csv: task, lr, rho + every column of every run's metrics.csv (extra columns kept).
- runs.csv: one row per run: task, lr, rho, status, reason, steps, wall_seconds, total_hvps.
- edge_agreement.csv / .json: per run, over the second half of its measurements, the median and
  interquartile range of lambda_1/sam_edge and lambda_1/gd_edge and the fraction of measurements
  within 10% of each edge. Diverged runs are included and marked (status, diverged).
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from samedge.config import TASKS, ConfigError, fmt_value, grid, load_params, run_name
from samedge.io import atomic_write, write_json

METRIC_COLUMNS = ("step", "train_seconds", "loss", "grad_norm", "lambda_1", "lambda_2", "lambda_3",
                  "gd_edge", "sam_edge", "align_grad", "align_sam_grad", "hvp_count")
RUN_KEYS = ("status", "reason", "steps", "wall_seconds", "total_hvps")
RUN_COLUMNS = ("task", "lr", "rho", *RUN_KEYS)
STATUSES = ("completed", "diverged")
KEY_COLUMNS = ["task", "lr", "rho"]
WITHIN = 0.1  # "at the edge" = lambda_1 within 10% of it
EDGES = {"sam": "sam_edge", "gd": "gd_edge"}


@dataclass
class Run:
    task: str
    lr: float
    rho: float
    info: dict
    metrics: pd.DataFrame


def _sort_key(task: str, lr: float, rho: float) -> tuple:
    return (TASKS.index(task), lr, rho)


def discover(runs_dir: Path) -> list[tuple[str, float, float]]:
    """Every (task, lr, rho) with a run.json under runs_dir/TASK/lrLR_rhoRHO/ (values from run.json)."""
    found = []
    for info_path in sorted(runs_dir.glob("*/lr*_rho*/run.json")):
        info = _read_json(info_path)
        try:
            task, lr, rho = info["task"], float(info["lr"]), float(info["rho"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{info_path}: needs task, lr and rho ({exc!r})") from exc
        if task not in TASKS:
            raise ConfigError(f"{info_path}: unknown task {task!r}; expected one of {list(TASKS)}")
        found.append((task, lr, rho))
    if not found:
        raise ConfigError(f"--runs-dir {runs_dir}: no runs found (expected TASK/lrLR_rhoRHO/run.json)")
    return found


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc


def read_run(runs_dir: Path, task: str, lr: float, rho: float) -> Run:
    """One run's run.json and metrics.csv, checked against its (task, lr, rho) and the contract."""
    run_dir = runs_dir / task / run_name(lr, rho)
    info_path, metrics_path = run_dir / "run.json", run_dir / "metrics.csv"
    for path in (info_path, metrics_path):
        if not path.is_file():
            raise ConfigError(f"run {task} lr={fmt_value(lr)} rho={fmt_value(rho)}: missing {path}")
    info = _read_json(info_path)
    missing = [key for key in RUN_KEYS if key not in info]
    if missing:
        raise ConfigError(f"{info_path}: missing keys {missing}")
    if info["status"] not in STATUSES:
        raise ConfigError(f"{info_path}: status {info['status']!r} is not one of {list(STATUSES)}")
    for key, want in (("task", task), ("lr", lr), ("rho", rho)):
        got = info.get(key, want)
        if got != want and not (isinstance(want, float) and math.isclose(float(got), want)):
            raise ConfigError(f"{info_path}: {key} is {got!r} but the run directory says {want!r}")
    return Run(task, lr, rho, info, read_metrics(metrics_path))


def read_metrics(path: Path) -> pd.DataFrame:
    """A metrics.csv with every contract column, numeric (a header-only file is zero measurements)."""
    metrics = pd.read_csv(path)
    missing = [col for col in METRIC_COLUMNS if col not in metrics.columns]
    if missing:
        raise ConfigError(f"{path}: missing metrics columns {missing}")
    if metrics.empty:
        return metrics.astype({col: float for col in METRIC_COLUMNS})
    bad = [col for col in METRIC_COLUMNS if not pd.api.types.is_numeric_dtype(metrics[col])]
    if bad:
        raise ConfigError(f"{path}: non-numeric values in columns {bad}")
    return metrics


def tidy_metrics(runs: list[Run]) -> pd.DataFrame:
    """All runs' metrics in one long table: task, lr, rho, then the metrics columns."""
    frames = [run.metrics.assign(task=run.task, lr=run.lr, rho=run.rho) for run in runs]
    frames = [frame for frame in frames if len(frame)]  # empty frames would blur column dtypes
    if not frames:
        return pd.DataFrame({col: pd.Series(dtype=object if col == "task" else float)
                             for col in [*KEY_COLUMNS, *METRIC_COLUMNS]})
    table = pd.concat(frames, ignore_index=True)
    extras = [col for col in table.columns if col not in KEY_COLUMNS and col not in METRIC_COLUMNS]
    return table[[*KEY_COLUMNS, *METRIC_COLUMNS, *extras]]


def runs_table(runs: list[Run]) -> pd.DataFrame:
    rows = [{"task": r.task, "lr": r.lr, "rho": r.rho, **{k: r.info[k] for k in RUN_KEYS}} for r in runs]
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def second_half(metrics: pd.DataFrame) -> pd.DataFrame:
    """The last ceil(n/2) of a run's n measurements (rows with a finite lambda_1), in step order.

    The first half is the approach to the edge (progressive sharpening); the question is
    where lambda_1 settles.
    """
    measured = metrics[np.isfinite(metrics["lambda_1"])].sort_values("step", kind="stable")
    return measured.iloc[len(measured) // 2:]


def ratio_stats(ratio: pd.Series, prefix: str) -> dict[str, float]:
    """Median, quartiles and fraction within WITHIN of 1 of lambda_1/edge (non-finite ratios dropped)."""
    ratio = ratio[np.isfinite(ratio)]
    if ratio.empty:
        return {f"{prefix}_{name}": math.nan for name in ("median", "q25", "q75", "within_10pct")}
    return {
        f"{prefix}_median": float(ratio.median()),
        f"{prefix}_q25": float(ratio.quantile(0.25)),
        f"{prefix}_q75": float(ratio.quantile(0.75)),
        # Inclusive, with slack for rounding: 1.1 - 1.0 is 0.10000000000000009 in floating point.
        f"{prefix}_within_10pct": float(((ratio - 1.0).abs() <= WITHIN + 1e-12).mean()),
    }


def edge_agreement(metrics: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run of `runs` (diverged ones marked) with ratio_stats for both edges."""
    groups = {key: frame for key, frame in metrics.groupby(KEY_COLUMNS, sort=False)}
    rows = []
    for run in runs.itertuples(index=False):
        frame = groups.get((run.task, run.lr, run.rho), metrics.iloc[:0])
        half = second_half(frame)
        row = {"task": run.task, "lr": run.lr, "rho": run.rho, "status": run.status,
               "diverged": run.status == "diverged",
               "n_measurements": int(np.isfinite(frame["lambda_1"]).sum()), "n_second_half": len(half)}
        with np.errstate(divide="ignore", invalid="ignore"):
            for prefix, edge in EDGES.items():
                row |= ratio_stats(half["lambda_1"] / half[edge], f"{prefix}_ratio")
        rows.append(row)
    return pd.DataFrame(rows)


def agreement_summary(table: pd.DataFrame) -> dict[str, dict]:
    """edge_agreement as {"task/lr/rho": {number columns}} for `dvc metrics show` (NaN -> null)."""
    summary = {}
    for row in table.to_dict("records"):
        key = f"{row['task']}/{fmt_value(row['lr'])}/{fmt_value(row['rho'])}"
        summary[key] = {name: (None if isinstance(value, float) and math.isnan(value) else value)
                        for name, value in row.items()
                        if name not in ("task", "lr", "rho", "status")}
    return summary


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_write(path) as tmp:
        frame.to_csv(tmp, index=False)


def aggregate(runs_dir: str | Path, out_dir: str | Path, params_path: str | Path | None = None,
              profile: str | None = None) -> list[Path]:
    """Read the runs (those of the profile's grid if params_path is given) and write the tables."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    if params_path is not None:
        keys = [(task, float(lr), float(rho)) for task, lr, rho in grid(load_params(params_path), profile)]
    else:
        keys = discover(runs_dir)
    runs = [read_run(runs_dir, *key) for key in sorted(keys, key=lambda key: _sort_key(*key))]
    metrics, table = tidy_metrics(runs), runs_table(runs)
    agreement = edge_agreement(metrics, table)
    outputs = {"metrics.csv": metrics, "runs.csv": table, "edge_agreement.csv": agreement}
    for name, frame in outputs.items():
        _write_csv(frame, out_dir / name)
    write_json(out_dir / "edge_agreement.json", agreement_summary(agreement))
    return [out_dir / name for name in (*outputs, "edge_agreement.json")]


def _main(args: argparse.Namespace) -> int:
    if args.profile is not None and args.params is None:
        raise ConfigError("--profile needs --params")
    for path in aggregate(args.runs_dir, args.out_dir, args.params, args.profile):
        print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "aggregate", help="collect runs into metrics.csv, runs.csv and edge_agreement.csv/.json",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", type=Path, default=Path("results/runs"),
                        help="directory holding TASK/lrLR_rhoRHO/ run directories (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=Path("results"), help="(default: %(default)s)")
    parser.add_argument("--params", type=Path, default=None,
                        help="params.yaml: aggregate exactly the runs of the profile's grid "
                             "(a missing run is an error); default: every run found in --runs-dir")
    parser.add_argument("--profile", default=None, help="profile of --params (default: its active one)")
    parser.set_defaults(func=_main)
