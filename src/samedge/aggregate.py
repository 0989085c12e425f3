"""`samedge aggregate`: every run's metrics.csv and run.json into tidy tables and edge-agreement numbers.

Outputs (in --out-dir):
- metrics.csv: task, lr, rho, optimizer, batch, seed + every column of every run's metrics.csv
  (extra columns kept). optimizer: the run's optimizer and its non-default settings
  (samedge.optimizers.label; 'sam' for SAM and GD); batch: 'default' (the task's train.batch_size),
  'full' or the batch size of the grid's batch_size axis.
- runs.csv: one row per run: those keys, run (its directory), status, reason, steps, wall_seconds,
  total_hvps, metrics_sha256 (of the run's own metrics.csv, as its run.json records) and
  rows_sha256 (of its rows in metrics.csv here, which the figures check before drawing them).
- edge_agreement.csv: one row per grid point (task, lr, rho, optimizer, batch), for the run the
  figures show (the first of its seeds that did not diverge, else its first seed): over the second
  half of its measurements, the median and interquartile range of lambda_1/sam_edge,
  lambda_1/gd_edge and sharpness/edge (the run's own optimizer's edge) and the fraction within 10%
  of each edge; and how many of the point's seeds diverged, at which step.
- edge.json: a few numbers per task of that table, the DVC metric (agreement_summary).
Runs are read and checked through the run contract (samedge.runs).
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from samedge.config import ConfigError, load_params
from samedge.io import atomic_write, write_json
from samedge.layout import TABLES
from samedge.runs import (DIGEST_KEY, EXACT_FLOATS, METRIC_COLUMNS, RUN_KEYS, Run, check_output_folder, find_runs,
                          profile_runs, read_run)

KEY_COLUMNS = ["task", "lr", "rho", "optimizer", "batch", "seed"]
POINT_COLUMNS = ["task", "lr", "rho", "optimizer", "batch"]
ROWS_DIGEST = "rows_sha256"
RUN_COLUMNS = (*KEY_COLUMNS, "run", *RUN_KEYS, DIGEST_KEY, ROWS_DIGEST)  # run: the run directory's name
WITHIN = 0.1  # "at the edge" = lambda_1 within 10% of it
# ratio prefix -> (numerator, edge): SAM's and GD's edges against lambda_1, and the run's own
# optimizer's edge against its sharpness (the same as sam for SAM and GD).
EDGES = {"sam": ("lambda_1", "sam_edge"), "gd": ("lambda_1", "gd_edge"), "edge": ("sharpness", "edge")}
PAPER_OPTIMIZER, DEFAULT_BATCH = "sam", "default"  # the paper's runs: SAM/GD at the task's batch size


def variant(run: Run) -> dict[str, str]:
    """The optimizer and batch columns of a run (from its key: its directory name)."""
    return {"optimizer": run.key.optimizer or PAPER_OPTIMIZER, "batch": run.key.batch or DEFAULT_BATCH}


def tidy_metrics(runs: list[Run]) -> pd.DataFrame:
    """All runs' metrics in one long table: the key columns, then the metrics columns."""
    frames = [run.metrics.assign(task=run.key.task, lr=run.key.lr, rho=run.key.rho, **variant(run), seed=run.seed)
              for run in runs]
    frames = [frame for frame in frames if len(frame)]  # empty frames would blur column dtypes
    if not frames:
        return pd.DataFrame({col: pd.Series(dtype=object if col in ("task", "optimizer", "batch") else float)
                             for col in [*KEY_COLUMNS, *METRIC_COLUMNS]})
    table = pd.concat(frames, ignore_index=True)
    extras = [col for col in table.columns if col not in KEY_COLUMNS and col not in METRIC_COLUMNS]
    return table[[*KEY_COLUMNS, *METRIC_COLUMNS, *extras]]


def runs_table(runs: list[Run]) -> pd.DataFrame:
    rows = [{"task": r.key.task, "lr": r.key.lr, "rho": r.key.rho, **variant(r), "seed": r.seed, "run": r.key.name,
             **{k: r.record[k] for k in (*RUN_KEYS, DIGEST_KEY)}} for r in runs]
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def shown_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One run per grid point, the one figures and edge agreement use: the first of its seeds (in
    table order) that did not diverge, else its first seed."""
    order = runs.assign(_diverged=runs["status"] == "diverged").reset_index(drop=True)
    first = order.sort_values("_diverged", kind="stable").groupby(POINT_COLUMNS, sort=False).head(1)
    return order.loc[sorted(first.index)].drop(columns="_diverged")


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


def _seed_outcomes(point: pd.DataFrame) -> dict:
    diverged = point[point["status"] == "diverged"]
    return {"n_seeds": len(point), "n_seeds_diverged": len(diverged),
            "diverged_at": "; ".join(f"seed {int(r.seed)}: step {int(r.steps)}" for r in diverged.itertuples())}


def edge_agreement(metrics: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per grid point of `runs`, for its shown run (diverged ones marked), with ratio_stats
    for both edges and the outcome of each of the point's seeds."""
    groups = {key: frame for key, frame in metrics.groupby(KEY_COLUMNS, sort=False)}
    points = {key: frame for key, frame in runs.groupby(POINT_COLUMNS, sort=False)}
    rows = []
    for run in shown_runs(runs).itertuples(index=False):
        key = tuple(getattr(run, col) for col in KEY_COLUMNS)
        frame = groups.get(key, metrics.iloc[:0])
        half = second_half(frame)
        row = {**dict(zip(KEY_COLUMNS, key)), "status": run.status, "diverged": run.status == "diverged",
               **_seed_outcomes(points[key[:len(POINT_COLUMNS)]]),
               "n_measurements": int(np.isfinite(frame["lambda_1"]).sum()), "n_second_half": len(half)}
        with np.errstate(divide="ignore", invalid="ignore"):
            for prefix, (value, edge) in EDGES.items():
                row |= ratio_stats(half[value] / half[edge], f"{prefix}_ratio")
        rows.append(row)
    return pd.DataFrame(rows)


SUMMARY_DIGITS = 3  # the DVC metric is read at a glance; edge_agreement.csv keeps full precision


def agreement_summary(table: pd.DataFrame) -> dict[str, dict]:
    """A few numbers per task for `dvc metrics show` / `dvc exp show`, short enough that the paper's
    three tasks fit 120 columns: `gd`, the median over the paper's GD runs (rho = 0) of their median
    lambda_1/(2/eta), and `sam`, the median over its SAM runs (rho > 0) of their median lambda_1/SAM
    edge (both near 1 is the paper's claim); for a task that also ran other optimizers or batch
    sizes, `edge`, the median over those runs of their median sharpness/(their own edge). Diverged
    runs are left out (none left: null); how many diverged, the quartiles, the share near the edge
    and every optimizer's own numbers are in edge_agreement.csv."""
    def number(value: float) -> float | None:
        return None if math.isnan(value) else round(float(value), SUMMARY_DIGITS)

    summary = {}
    for task, runs in table.groupby("task", sort=False):
        kept = runs[~runs["diverged"].astype(bool)]
        paper = (kept["optimizer"] == PAPER_OPTIMIZER) & (kept["batch"].astype(str) == DEFAULT_BATCH)
        gd, sam = kept[paper & (kept["rho"] == 0)], kept[paper & (kept["rho"] > 0)]
        summary[task] = {"gd": number(gd["gd_ratio_median"].median()),
                         "sam": number(sam["sam_ratio_median"].median())}
        if not paper.all():
            summary[task]["edge"] = number(kept[~paper]["edge_ratio_median"].median())
    return summary


def read_table(path: Path) -> pd.DataFrame:
    """A table as aggregate wrote it, every float exactly."""
    try:
        return pd.read_csv(path, **EXACT_FLOATS)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable CSV ({exc}); rerun `samedge aggregate`") from exc


def rows_digest(rows: pd.DataFrame) -> str:
    """sha256 of a run's rows of the tidy metrics (every column after the key, as float64, in file
    order): a changed, added, dropped or reordered value or column changes it."""
    values = rows.drop(columns=KEY_COLUMNS).apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    values = np.where(np.isnan(values), np.nan, values)  # one NaN bit pattern
    digest = hashlib.sha256(",".join(rows.columns).encode() + str(values.shape).encode())
    digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def row_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    """A run's KEY_COLUMNS as text: the same for a table in memory and one read back from its CSV
    (where a batch column of sizes only, say, parses as integers)."""
    return tuple(str(row[column]) for column in KEY_COLUMNS)


def run_rows(metrics: pd.DataFrame) -> dict[tuple[str, ...], pd.DataFrame]:
    """Each run's rows of the tidy metrics, by row_key."""
    return {row_key(rows.iloc[0]): rows for _, rows in metrics.groupby(KEY_COLUMNS, sort=False)}


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_write(path) as tmp:
        frame.to_csv(tmp, index=False)


def aggregate(runs_dir: str | Path, out_dir: str | Path, params_path: str | Path | None = None,
              profile: str | None = None) -> list[Path]:
    """Read the runs (those of the profile's grid if params_path is given) and write the tables."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    check_output_folder(out_dir, "--out-dir")
    keys = profile_runs(load_params(params_path), profile) if params_path is not None else find_runs(runs_dir)
    runs = [read_run(runs_dir, key) for key in keys]  # every run is checked before anything is written
    metrics, table = tidy_metrics(runs), runs_table(runs)
    agreement = edge_agreement(metrics, table)
    metrics_file, runs_file, agreement_file, summary_file = TABLES
    _write_csv(metrics, out_dir / metrics_file)
    written = run_rows(read_table(out_dir / metrics_file))  # digests of what readers will read back
    empty = metrics.iloc[:0]
    table[ROWS_DIGEST] = [rows_digest(written.get(row_key(r._asdict()), empty))
                          for r in table.itertuples(index=False)]
    for name, frame in {runs_file: table, agreement_file: agreement}.items():
        _write_csv(frame, out_dir / name)
    write_json(out_dir / summary_file, agreement_summary(agreement))  # the DVC metric
    return [out_dir / name for name in TABLES]
