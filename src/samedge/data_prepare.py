"""Decoding verified source files into prepared arrays (the formats the tasks use), written reproducibly.

Each task's module (samedge/tasks/) says which of these it applies to which files. Images: pixels /
256 (exact in float32), centred by the mean image of the training set, stored float32 NCHW; the
held-out images are centred by the same training mean. Text: ASCII codes, uint8. Arrays are .npy
files (byte-identical on rerun, unlike .npz whose zip entries carry timestamps).
"""
from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets.utils import extract_archive

from samedge.data_fetch import DataError
from samedge.io import atomic_write, sha256_file

NUM_CLASSES = 10
MANIFEST = "manifest.json"
NPY_MAGIC = np.lib.format.MAGIC_PREFIX  # the first bytes of every .npy file


@dataclass
class Prepared:
    arrays: dict[str, np.ndarray]  # output file stem -> array
    info: dict[str, Any] = field(default_factory=dict)  # preprocessing and stats, for the manifest


def content_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """Hash of dtype, shape and C-order bytes of (x, y): independent of the container file."""
    digest = hashlib.sha256()
    for array in (x, y):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def center_images(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
            info: dict[str, Any]) -> Prepared:
    """uint8 NCHW images -> pixels / 256 centred by the training mean image."""
    train = x_train.astype(np.float32) / 256
    mean = train.mean(axis=0, dtype=np.float64).astype(np.float32)
    arrays = {"x_train": train - mean, "y_train": y_train.astype(np.int64),
              "x_test": x_test.astype(np.float32) / 256 - mean, "y_test": y_test.astype(np.int64)}
    info = {**info, "preprocessing": info["preprocessing"] + "; pixels / 256, minus the mean image of x_train "
            "(x_test uses the same mean); float32 (N, C, H, W); labels int64",
            "class_counts_train": np.bincount(y_train, minlength=NUM_CLASSES).tolist()}
    return Prepared(arrays, info)


def check_images(path: Path, x: np.ndarray, y: np.ndarray, image_shape: tuple[int, ...]) -> None:
    if x.dtype != np.uint8 or x.shape[1:] != image_shape or y.shape != x.shape[:1]:
        raise DataError(f"{path.name}: expected uint8 images of shape (N, {', '.join(map(str, image_shape))}) "
                        f"and N labels, got {x.dtype} {x.shape} and labels {y.shape}")
    if y.size and not (0 <= y.min() and y.max() < NUM_CLASSES):
        raise DataError(f"{path.name}: labels outside 0..{NUM_CLASSES - 1}")


def read_idx(path: Path, scratch: Path, reader: Callable[[str], Any]) -> np.ndarray:
    try:
        return reader(str(extract_archive(path, scratch))).numpy()
    except Exception as exc:  # gzip, IDX header and size failures all mean one thing: a bad file
        raise DataError(f"{path.name}: not a valid gzip-compressed IDX file ({type(exc).__name__}: {exc})") from exc


def read_cifar_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(x (N, 32, 32, 3) uint8 HWC, y int64) from the mirror's .npz or an original python batch."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                x, y = npz["x"], npz["y"]
        else:
            with open(path, "rb") as fh:  # an md5-verified batch of the official tarball
                entry = pickle.load(fh, encoding="latin1")
            x = np.asarray(entry["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            y = np.asarray(entry["labels"], np.int64)
    except Exception as exc:  # any decoding failure means a bad file
        raise DataError(f"{path.name}: cannot read CIFAR-10 arrays ({type(exc).__name__}: {exc})") from exc
    check_images(path, x, y, (32, 32, 3))
    return x, y


def check_ascii(path: Path, data: bytes) -> None:
    high = np.flatnonzero(np.frombuffer(data, np.uint8) > 127)
    if high.size:
        pos = int(high[0])
        line, column = data.count(b"\n", 0, pos) + 1, pos - data.rfind(b"\n", 0, pos)
        char = data[pos:pos + 4].decode("utf-8", errors="replace")[0]
        raise DataError(f"{path.name}: line {line}, column {column}: non-ASCII character {char!r} "
                        f"(byte 0x{data[pos]:02x}); characters must be ASCII codes (vocabulary 128)")


class _Hasher:
    """A write-only file object that hashes what numpy's .npy writer gives it (no copy in memory)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def write(self, chunk: bytes) -> int:
        self.digest.update(chunk)
        return len(chunk)


def npy_sha256(array: np.ndarray) -> str:
    """sha256 of the bytes `write_npy` would write."""
    hasher = _Hasher()
    np.lib.format.write_array(hasher, array, allow_pickle=False)
    return hasher.digest.hexdigest()


def remove_stale(folder: Path, ours: set[str], keep: set[str]) -> None:
    """Remove the files samedge wrote here before (ours: named by its manifest or source) that are no
    longer kept, and the .npy writes a kill cut short (atomic_write's name, numpy's header); anything
    else (a user's file, Snakemake's .snakemake_timestamp) is left alone."""
    for name in ours - keep:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    for name in ours | keep:
        for stray in folder.glob(f".{name}.*.tmp"):
            with open(stray, "rb") as fh:
                ours_too = fh.read(len(NPY_MAGIC)) == NPY_MAGIC
            if ours_too:
                stray.unlink()


def _recorded_outputs(manifest_path: Path) -> set[str]:
    """The output names an earlier manifest records (none if there is none or it is unreadable)."""
    try:
        outputs = json.loads(manifest_path.read_text()).get("outputs")
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in outputs if isinstance(name, str) and "/" not in name} if isinstance(outputs, dict) else set()


def write_prepared(prep_dir: Path, prepared: Prepared, manifest: dict[str, Any]) -> list[str]:
    """Write the arrays and the manifest (last); rewrite only what differs. Returns the names written."""
    outputs = {f"{stem}.npy": {"sha256": npy_sha256(a), "dtype": str(a.dtype), "shape": list(a.shape)}
               for stem, a in prepared.arrays.items()}
    text = json.dumps({**manifest, **prepared.info, "outputs": outputs}, indent=2, sort_keys=True) + "\n"
    prep_dir.mkdir(parents=True, exist_ok=True)
    stale = [name for name, entry in outputs.items()
             if not (prep_dir / name).is_file() or sha256_file(prep_dir / name) != entry["sha256"]]
    manifest_path = prep_dir / MANIFEST
    earlier = _recorded_outputs(manifest_path)
    written = []
    if stale or not manifest_path.is_file() or manifest_path.read_text() != text:
        # Without a manifest nothing here is trusted, so arrays never pair with a stale manifest.
        manifest_path.unlink(missing_ok=True)
        for name in stale:
            with atomic_write(prep_dir / name) as tmp, open(tmp, "wb") as fh:
                np.lib.format.write_array(fh, prepared.arrays[name.removesuffix(".npy")], allow_pickle=False)
        with atomic_write(manifest_path) as tmp:
            tmp.write_text(text)
        written = [*stale, MANIFEST]
    remove_stale(prep_dir, earlier, set(outputs))
    return written
