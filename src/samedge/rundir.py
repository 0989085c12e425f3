"""A run's two folders, --out (its declared outputs) and its checkpoint folder: refused before
training when the run would delete or overwrite something else or cannot write there, and held by
one run at a time. Nothing is ever written into --out but the run's own outputs."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from samedge.errors import RunDirError

log = logging.getLogger("samedge.train")


def default_checkpoint_dir(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + ".ckpt")


def check_out_dir(out_dir: Path) -> None:
    out, cwd = out_dir.resolve(), Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise RunDirError(f"--out {out_dir}: expected a folder of the run's own, e.g. "
                          "results/quick/runs/mnist/lr0.3_rho0.1, not the current folder or one above it")
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"--out {out_dir}: exists and is not a folder")


def check_checkpoint_dir(checkpoint_dir: Path, out_dir: Path) -> None:
    """The checkpoint folder must not contain --out nor lie inside it: it is emptied when the run ends."""
    ckpt, out = checkpoint_dir.resolve(), out_dir.resolve()
    if ckpt == out or ckpt in out.parents or out in ckpt.parents:
        raise RunDirError(f"--checkpoint-dir {checkpoint_dir}: overlaps --out {out_dir}; expected a folder "
                          "of its own outside it (default: OUT.ckpt beside OUT)")
    if checkpoint_dir.exists() and not checkpoint_dir.is_dir():
        raise RunDirError(f"--checkpoint-dir {checkpoint_dir}: exists and is not a folder")


def make_writable(folder: Path, flag: str) -> list[Path]:
    """Create folder if needed and prove it writable (an unnamed temporary file leaves no trace).
    Returns the folders it created, deepest first (folder and its missing parents)."""
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise RunDirError(f"{flag} {folder}: cannot write there ({exc.strerror}); choose a writable folder") from exc
    return created


def remove_if_empty(folders: list[Path]) -> None:
    """Remove folders (deepest first) that are still empty: a refused or failed command leaves no trace."""
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty: it holds results, a checkpoint or a user's file
            folder.rmdir()


@contextlib.contextmanager
def _locked(folder: Path, flag: str) -> Iterator[None]:
    """An exclusive flock on the folder itself (no lock file), released when the process ends."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(f"{flag} {folder}: another samedge run is writing there now; wait for it "
                              "to end or choose another folder") from None
        except OSError as exc:  # e.g. NFS, whose emulated flock wants a file open for writing
            log.warning("%s %s: cannot lock it here (%s); a concurrent run would not be refused",
                        flag, folder, exc.strerror)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def claim(out_dir: Path, checkpoint_dir: Path) -> Iterator[None]:
    """Hold both folders for one run; on exit remove those it created (and their parents) if still empty."""
    created: list[Path] = []
    try:
        for folder, flag in ((out_dir, "--out"), (checkpoint_dir, "--checkpoint-dir")):
            created = make_writable(folder, flag) + created  # deepest first, the later folder's before
        with _locked(out_dir, "--out"), _locked(checkpoint_dir, "--checkpoint-dir"):
            yield
    finally:
        remove_if_empty(created)
