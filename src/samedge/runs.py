"""The run contract: what one run of (task, lr, rho, optimizer, batch size, seed) writes, where,
and how it is read back.

<runs>/<task>/<run>/metrics.csv   one row per Hessian measurement (METRIC_COLUMNS first)
<runs>/<task>/<run>/run.json      status, reason, steps, measurements, config, seed, versions, ...,
                                  metrics_sha256: the sha256 of the metrics.csv the run wrote
(<runs> is results/<profile>/runs in the pipeline: samedge.layout.)
<run> = lr<lr>_rho<rho>[_bs<batch>][_<optimizer>][_seed<seed>]: _bs only for a batch size other than
the task's train.batch_size (full: full batch), _<optimizer> only for an optimizer other than sam
(samedge.optimizers.label, e.g. momentum+nesterov=true), _seed only for a seed other than the
task's; so the paper's runs (SAM and GD at the task's batch size and seed) keep lr<lr>_rho<rho>.

Training writes runs (samedge.train); aggregation, figures, the workflow and the benchmarks read
them through this module, which checks that metrics.csv is byte for byte the file its run wrote
(any edit, truncation or file copied from another run is refused by name) and agrees with run.json.
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
from samedge.errors import RunDirError
from samedge.io import atomic_write, sha256_file, write_json

# edge: the run's optimizer's edge of stability at that measurement; sharpness: the top eigenvalue
# of the operator compared with it (lambda_1, or P^-1 H's for a preconditioned optimizer).
METRIC_COLUMNS = ["step", "train_seconds", "loss", "grad_norm", "lambda_1", "lambda_2", "lambda_3",
                  "gd_edge", "sam_edge", "align_grad", "align_sam_grad", "hvp_count", "edge", "sharpness"]
EXTRA_COLUMNS = ["eig_rel_residual", "eig_converged", "wall_seconds", "eig_error_bound"]
RUN_KEYS = ("status", "reason", "steps", "wall_seconds", "total_hvps")
DIGEST_KEY = "metrics_sha256"  # run.json's record of the metrics.csv its run wrote
IDENTITY_KEYS = ("task", "lr", "rho", "seed", "config")  # a run.json with others is another run's
STATUSES = ("completed", "diverged")
METRICS_FILE, RECORD_FILE = "metrics.csv", "run.json"
# Measured quantities that must be finite in every row of a completed run.
FINITE_COLUMNS = ["step", "loss", "grad_norm", "lambda_1", "gd_edge", "sam_edge", "hvp_count", "edge", "sharpness"]
# Every float parsed exactly as written: pandas 3's default; before it, its parser could be 1 ulp off.
EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
_NAME = re.compile(r"lr(?P<lr>[^_/]+)_rho(?P<rho>[^_/]+?)(?:_bs(?P<batch>full|\d+))?"
                   r"(?:_(?!seed\d+$)(?P<optimizer>[a-z][a-z0-9]*(?:\+[A-Za-z0-9]+=[^_/+]+)*))?(?:_seed(?P<seed>\d+))?")
DEFAULT_BATCH = ""  # RunKey.batch of a run at its task's own train.batch_size


class RunKey(NamedTuple):
    """One run. seed None: the task's default seed (its `seed:` in params.yaml). optimizer: its
    samedge.optimizers.label ('' = sam). batch: '' = the task's train.batch_size, else 'full' or
    the batch size."""

    task: str
    lr: float
    rho: float
    seed: int | None = None
    optimizer: str = ""
    batch: str = DEFAULT_BATCH

    @property
    def name(self) -> str:
        return run_name(self.lr, self.rho, self.seed, self.optimizer, self.batch)

    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in (("optimizer", self.optimizer), ("batch", self.batch)) if v)
        seed = "" if self.seed is None else f" seed={self.seed}"
        return f"{self.task} lr={fmt_value(self.lr)} rho={fmt_value(self.rho)}{extra}{seed}"

    def train_arguments(self) -> list[str]:
        """The `samedge train` arguments beyond task, lr, rho and seed that make this run: its
        optimizer and settings, its batch size."""
        from samedge.optimizers import complete, parse_label

        block = complete(parse_label(self.optimizer))
        args = ["--optimizer", block.pop("name"), *(f"--set=optimizer.{k}={_yaml(v)}" for k, v in block.items())]
        if self.batch:
            args.append(f"--set=train.batch_size={'null' if self.batch == 'full' else self.batch}")
        return args


def _yaml(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else fmt_value(value) if isinstance(value, float) else str(value)


def batch_label(size: int | None, default: int | None) -> str:
    """RunKey.batch of a run at batch size `size` of a task whose train.batch_size is `default`."""
    return DEFAULT_BATCH if size == default else "full" if size is None else str(size)


def run_name(lr: float, rho: float, seed: int | None = None, optimizer: str = "", batch: str = DEFAULT_BATCH) -> str:
    parts = [f"lr{fmt_value(lr)}_rho{fmt_value(rho)}", f"bs{batch}" if batch else "", optimizer,
             "" if seed is None else f"seed{seed}"]
    return "_".join(part for part in parts if part)


def parse_run_name(name: str) -> tuple[float, float, int | None, str, str] | None:
    """(lr, rho, seed, optimizer, batch) of a run directory name, or None if it is not one."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    try:
        lr, rho = float(match["lr"]), float(match["rho"])
    except ValueError:
        return None
    return (lr, rho, None if match["seed"] is None else int(match["seed"]), match["optimizer"] or "",
            match["batch"] or DEFAULT_BATCH)


def profile_runs(params: dict, profile: str | None = None) -> list[RunKey]:
    """Every run of a profile: each grid point once per seed it names, in params order."""
    from samedge.optimizers import label

    prof = profile_config(params, profile)
    return [RunKey(task, lr, rho, None if seed == prof[task]["seed"] else seed, label(block),
                   batch_label(size, prof[task]["train"]["batch_size"]))
            for task, lr, rho, block, size in grid(params, profile) for seed in point_seeds(prof[task], lr, rho)]


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
    return sorted(found, key=lambda k: (order.get(k.task, len(order)), k.task, k.lr, k.rho, k.optimizer, k.batch,
                                        k.seed or -1))


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
    """A run's run.json and metrics.csv, checked against its key, its digest and each other."""
    folder = run_dir(runs_root, key)
    record_path, metrics_path = folder / RECORD_FILE, folder / METRICS_FILE
    for path in (record_path, metrics_path):
        if not path.is_file():
            raise ConfigError(f"run {key.label()}: missing {path}")
    record = _read_record(record_path, key)
    check_digest(metrics_path, record)
    metrics = _read_metrics(metrics_path)
    _check_agreement(metrics_path, metrics, record)
    return Run(key, record, metrics)


def read_record(path: Path) -> dict:
    """A run.json as a dict; anything else (binary, null, a list, cut short) is a ConfigError naming it."""
    try:
        record = json.loads(path.read_bytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); rerun the run") from exc
    if not isinstance(record, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(record).__name__}; rerun the run")
    return record


def write_run(out_dir: Path, metrics: pd.DataFrame, record: dict) -> None:
    """A run's two files, each atomically: metrics.csv, then run.json with the digest of that very file."""
    with atomic_write(out_dir / METRICS_FILE) as tmp:
        metrics.to_csv(tmp, index=False)
        record[DIGEST_KEY] = sha256_file(tmp)  # what readers check the file against
    write_json(out_dir / RECORD_FILE, record)


def check_digest(metrics_path: Path, record: dict) -> None:
    """metrics.csv must be the very file its run wrote: any edit, reordering or copy is refused."""
    recorded = record.get(DIGEST_KEY)
    if not isinstance(recorded, str):
        raise ConfigError(f"{metrics_path.parent / RECORD_FILE}: no {DIGEST_KEY} of its metrics.csv (written by "
                          "an older samedge or edited); rerun the run")
    if sha256_file(metrics_path) != recorded:
        raise ConfigError(f"{metrics_path}: not the file its run wrote (sha256 differs from run.json's "
                          f"{DIGEST_KEY}: edited, truncated or copied from another run?); rerun the run")


def _read_record(path: Path, key: RunKey) -> dict:
    record = read_record(path)
    missing = [name for name in (*RUN_KEYS, "seed", "measurements") if name not in record]
    if missing:
        raise ConfigError(f"{path}: missing keys {missing}")
    if record["status"] not in STATUSES:
        raise ConfigError(f"{path}: status {record['status']!r} is not one of {list(STATUSES)}")
    for name, want in (("task", key.task), ("lr", key.lr), ("rho", key.rho)):
        got = record.get(name, want)
        if got != want and not (isinstance(want, float) and _number(got) is not None
                                and math.isclose(_number(got), want)):
            raise ConfigError(f"{path}: {name} is {got!r} but the run directory says {want!r}")
    if key.seed is not None and record["seed"] != key.seed:
        raise ConfigError(f"{path}: seed is {record['seed']!r} but the run directory says {key.seed}")
    if "optimizer" in record and _optimizer_label(record["optimizer"]) != key.optimizer:
        raise ConfigError(f"{path}: optimizer is {record['optimizer']!r} but the run directory says "
                          f"{key.optimizer or 'sam'!r}")
    for name in ("steps", "measurements", "total_hvps"):
        if not isinstance(record[name], int) or isinstance(record[name], bool):
            raise ConfigError(f"{path}: {name} is {record[name]!r}, expected an integer; rerun the run")
    return record


def _optimizer_label(block: object) -> str:
    from samedge.optimizers import OptimizerError, label

    try:
        return label(block)
    except (OptimizerError, TypeError, AttributeError):
        return repr(block)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _read_metrics(path: Path) -> pd.DataFrame:
    """Every contract column, numeric (a header-only file is zero measurements)."""
    try:
        metrics = pd.read_csv(path, **EXACT_FLOATS)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
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


def same_run(record: dict, identity: dict) -> bool:
    """Whether a run.json was written by the run of this identity (task, lr, rho, seed, config)."""
    return all(record.get(name) == identity[name] for name in IDENTITY_KEYS)


def check_own_out(out_dir: Path, identity: dict) -> None:
    """Refuse an --out that holds the results of another run (other task/lr/rho/seed/config):
    training would overwrite them. The same run's results are its own to rewrite."""
    record_path = out_dir / RECORD_FILE
    if not record_path.exists():
        if (out_dir / METRICS_FILE).exists():
            raise RunDirError(f"--out {out_dir}: holds a {METRICS_FILE} without {RECORD_FILE}, not this run's; "
                              "move it away or choose another folder")
        return
    try:
        record = read_record(record_path)
    except ConfigError:
        record = {}
    if not same_run(record, identity):
        what = " ".join(f"{name}={record.get(name)!r}" for name in ("task", "lr", "rho", "seed"))
        raise RunDirError(f"--out {out_dir}: holds the results of another run ({what or 'unreadable run.json'}, "
                          "or another config); choose this run's own folder, or delete that one to replace it")


def holds_runs(folder: Path) -> Path | None:
    """A run.json in folder or in the run folders under it (TASK/RUN/ or RUN/), else None."""
    for pattern in (RECORD_FILE, f"*/{RECORD_FILE}", f"*/*/{RECORD_FILE}"):
        if folder.is_dir() and (found := next(folder.glob(pattern), None)) is not None:
            return found
    return None


def check_output_folder(folder: Path, flag: str) -> None:
    """An output folder of aggregate or figure: a folder (or not yet one) that holds no run, whose
    run.json and metrics.csv those commands would overwrite or bury."""
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            raise RunDirError(f"{flag} {folder}: {parent} is a file, not a folder; choose a folder")
        if parent.exists():
            break
    if (found := holds_runs(folder)) is not None:
        raise RunDirError(f"{flag} {folder}: holds run results ({found}); choose a folder of its own "
                          "(e.g. results), not a run's")


def check_existing_runs(runs_root: str | Path, keys: list[RunKey], rerun: str) -> None:
    """Every finished run of keys must still be what it wrote (the pipeline's check before any job:
    the aggregation would refuse it only after Snakemake removed the old tables). rerun: the command
    that reruns a run, with {folder} for its folder."""
    for key in keys:
        folder = run_dir(runs_root, key)
        if (folder / RECORD_FILE).is_file() and DIGEST_KEY not in _loose_record(folder / RECORD_FILE):
            continue  # an older samedge's run: its train code changed, so Snakemake retrains it
        if (folder / RECORD_FILE).is_file() or (folder / METRICS_FILE).is_file():
            try:
                read_run(runs_root, key)
            except ConfigError as exc:
                problem = str(exc).removesuffix("; rerun the run")
                raise ConfigError(f"{problem}; rerun exactly this run with: {rerun.format(folder=folder)}") from None


def _loose_record(path: Path) -> dict:
    try:
        return read_record(path)
    except ConfigError:
        return {DIGEST_KEY: None}  # unreadable: checked (and refused) like any damaged run
