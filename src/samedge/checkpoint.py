"""Checkpoint files a run can trust: one file whose first line records the sha256 of the torch
payload after it, so a truncated or corrupted checkpoint is refused with one line instead of
failing inside torch or being resumed with a flipped bit."""
from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import torch

from samedge.errors import CheckpointError
from samedge.io import atomic_write

MAGIC = b"samedge-checkpoint sha256="


def save(path: Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    with atomic_write(path) as tmp:
        tmp.write_bytes(MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


def _refuse(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} {problem}; delete it to rerun this run from step 0")


def load(path: Path) -> dict[str, Any]:
    """The payload, every tensor on the CPU wherever it was saved from: RNG states must be CPU
    ByteTensors (torch.set_rng_state refuses any other), and load_state_dict copies weights onto
    the model's device itself."""
    header, _, body = path.read_bytes().partition(b"\n")
    if not header.startswith(MAGIC):
        raise _refuse(path, "is not a samedge checkpoint (or its header is damaged)")
    if header[len(MAGIC):] != hashlib.sha256(body).hexdigest().encode():
        raise _refuse(path, "is truncated or corrupted (its sha256 does not match)")
    try:
        return torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        raise _refuse(path, f"cannot be read by this torch ({type(exc).__name__})") from exc


def _is_checkpoint(path: Path) -> bool:
    """A save writes its header first, in one write: a stray file of a save cut short starts with it."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def remove(path: Path) -> None:
    """Remove the checkpoint and temporary files of a killed save, then the folder if that empties it:
    never anything the run did not write."""
    path.unlink(missing_ok=True)
    for stray in path.parent.glob(f".{path.name}.*.tmp"):  # atomic_write's name for a save cut short
        if _is_checkpoint(stray):  # a user's file of that name is not ours to delete
            stray.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty, or already gone
        path.parent.rmdir()
