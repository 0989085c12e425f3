"""The data layer: `samedge fetch TASK` (a task's Dataset: its Source and its preparation) and
`load_task` for training.

data/raw/TASK/       the verified source files (from $SAMEDGE_DATA_MIRROR, else the network)
data/prepared/TASK/  prepared .npy arrays and manifest.json (source, checksums of inputs and outputs,
                     shapes, preprocessing, library versions); byte-identical on every rerun.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samedge.data_fetch import MIRROR_ENV, DataError, Source, acquire, origin, trusted_raw
from samedge.data_prepare import MANIFEST, Prepared, remove_stale, write_prepared
from samedge.io import read_json, sha256_file
from samedge.tasks import get_task

__all__ = ["DataError", "Dataset", "TaskData", "fetch", "lm_crops", "load_task"]


@dataclass(frozen=True)
class Dataset:
    """A data set to fetch: where its files come from, and how they become prepared arrays."""

    source: Source
    prepare: Callable[[dict[str, Path], Path], Prepared]  # (verified files, scratch dir) -> arrays
    train_size: int | None = None  # training examples of the full set (a mirror may hold fewer)


@dataclass
class TaskData:
    """Images: x_* float32 (N, C, H, W) centred, y_* int64. Text: *_codes uint8 ASCII codes."""

    task: str
    manifest: dict[str, Any] = field(repr=False)
    x_train: torch.Tensor | None = None
    y_train: torch.Tensor | None = None
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    train_codes: torch.Tensor | None = None
    test_codes: torch.Tensor | None = None


def _manifest(task: str, src: Source, files: dict[str, Path]) -> dict[str, Any]:
    # No timestamps or absolute paths: the manifest must be byte-identical on every rerun.
    return {
        "task": task,
        "source": {"urls": list(src.urls), "mirror": f"${MIRROR_ENV}/{src.mirror_dir}"},
        "inputs": {name: {"sha256": sha256_file(path), "bytes": path.stat().st_size} for name, path in files.items()},
        "versions": {package: version(package) for package in ("numpy", "torchvision", "datasets", "samedge")},
    }


def dataset(task: str) -> Dataset:
    """The Dataset of a registered task; a task that makes its own data has none to fetch."""
    found = get_task(task).data
    if found is None:
        raise DataError(f"task {task!r} makes its own data: there is nothing to fetch")
    return found


def train_size(task: str, data_dir: str | os.PathLike = "data") -> int | None:
    """Training examples of an image task: the prepared set's if fetched (a mirror may hold fewer),
    else the full set's its Dataset declares; None where unknown (text, a task of your own)."""
    data = get_task(task).data
    try:
        return read_json(Path(data_dir) / "prepared" / task / MANIFEST)["outputs"]["x_train.npy"]["shape"][0]
    except (OSError, DataError, KeyError, IndexError, TypeError):  # not fetched yet, or not images
        return None if data is None else data.train_size


def fetch(task: str, data_dir: str | os.PathLike = "data") -> list[Path]:
    """Get, verify and prepare one task; idempotent. Returns the files (re)written, none on a clean rerun.

    Everything is staged and checked before anything under raw/ or prepared/ is replaced, so a bad
    or interrupted fetch leaves the previous state (or nothing); existing files are re-verified by hash.
    """
    data = dataset(task)
    src = data.source
    data_dir = Path(data_dir)
    raw_dir, prep_dir = data_dir / "raw" / task, data_dir / "prepared" / task
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".fetch-{task}-", dir=data_dir) as tmp:
        download, scratch = Path(tmp, "download"), Path(tmp, "scratch")
        download.mkdir()
        scratch.mkdir()
        files = trusted_raw(src, raw_dir)
        fresh = files is None
        if files is None:
            files = acquire(src, download)
        try:
            prepared = data.prepare(files, scratch)
        except DataError as exc:
            raise DataError(f"{task} from {origin(src) if fresh else raw_dir}: {exc}") from exc
        manifest = _manifest(task, src, files)
        written = []
        if fresh:
            raw_dir.mkdir(parents=True, exist_ok=True)
            for name, path in files.items():
                os.replace(path, raw_dir / name)  # verified, same file system: an atomic install
                written.append(raw_dir / name)
        remove_stale(raw_dir, {spec.name for spec in (*src.mirror_files, *src.network_files)}, set(files))
        return written + [prep_dir / name for name in write_prepared(prep_dir, prepared, manifest)]


def _outputs(manifest: Any, path: Path, task: str) -> dict[str, dict[str, Any]]:
    """The manifest's outputs {file: {sha256, ...}}; a manifest without them is a DataError naming it."""
    outputs = manifest.get("outputs") if isinstance(manifest, dict) else None
    if not isinstance(outputs, dict) or not outputs or not all(
            isinstance(entry, dict) and isinstance(entry.get("sha256"), str) for entry in outputs.values()):
        raise DataError(f"{path}: no outputs with their sha256 (edited or damaged); rerun `samedge fetch {task}`")
    expected = {"train_codes.npy", "test_codes.npy"} if "train_codes.npy" in outputs else {
        f"{stem}.npy" for stem in ("x_train", "y_train", "x_test", "y_test")}
    if missing := sorted(expected - set(outputs)):
        raise DataError(f"{path}: no entry for {missing} (edited or damaged); rerun `samedge fetch {task}`")
    return outputs


def _load_npy(path: Path, entry: dict[str, Any], task: str) -> np.ndarray:
    if not path.is_file() or sha256_file(path) != entry["sha256"]:
        raise DataError(f"{path}: missing or changed since it was prepared; rerun `samedge fetch {task}`")
    return np.load(path, allow_pickle=False)


def load_task(task: str, data_dir: str | os.PathLike = "data", n_train: int | None = None) -> TaskData:
    """Prepared data of a task, verified against its manifest.

    Images: n_train takes a prefix of the training set, re-centred by its own mean image (the held-out
    images by the same mean), so the set actually used has mean zero. Text: n_train must be None.
    """
    dataset(task)
    prep_dir = Path(data_dir) / "prepared" / task
    if not (prep_dir / MANIFEST).is_file():
        raise DataError(f"no prepared data for {task!r} in {prep_dir}: "
                        f"run `samedge fetch {task} --data-dir {data_dir}`")
    manifest = read_json(prep_dir / MANIFEST)
    arrays = {Path(name).stem: _load_npy(prep_dir / name, entry, task)
              for name, entry in _outputs(manifest, prep_dir / MANIFEST, task).items()}
    if "train_codes" in arrays:
        if n_train is not None:
            raise ValueError(f"n_train={n_train}: only image tasks take a prefix, not {task!r}")
        return TaskData(task, manifest, train_codes=torch.from_numpy(arrays["train_codes"]),
                        test_codes=torch.from_numpy(arrays["test_codes"]))
    size = len(arrays["x_train"])
    n = size if n_train is None else n_train
    if not 1 <= n <= size:
        raise ValueError(f"n_train={n_train} out of range 1..{size} for {task!r}")
    x_train = arrays["x_train"][:n]
    shift = x_train.mean(axis=0, dtype=np.float64).astype(np.float32)
    return TaskData(task, manifest, x_train=torch.from_numpy(x_train - shift),
                    y_train=torch.from_numpy(arrays["y_train"][:n].copy()),
                    x_test=torch.from_numpy(arrays["x_test"] - shift), y_test=torch.from_numpy(arrays["y_test"]))


def lm_crops(codes: torch.Tensor, seq_len: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut codes into non-overlapping (seq_len + 1)-character crops in an order shuffled by generator.

    Returns (inputs, targets), each int64 (num_crops, seq_len): targets are inputs shifted by one
    character. The tail shorter than a crop is dropped.
    """
    crop = seq_len + 1
    count = codes.numel() // crop
    if seq_len < 1 or count == 0:
        raise ValueError(f"seq_len={seq_len}: need 1 <= seq_len < {codes.numel()} (the number of codes)")
    order = torch.randperm(count, generator=generator, device=generator.device).to(codes.device)
    crops = codes.reshape(-1)[: count * crop].reshape(count, crop)[order].long()
    return crops[:, :-1].contiguous(), crops[:, 1:].contiguous()
