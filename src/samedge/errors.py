"""The errors samedge raises for a user's mistake or a bad file: each message is one line naming
the value or file and what is expected. The CLI catches SamedgeError once (exit 2, one line); any
other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class SamedgeError(Exception):
    """Base of every error that is the user's input or files, not a bug."""


class ConfigError(SamedgeError, ValueError):
    """A malformed params file, profile, override or argument; the message names the key."""


class DataError(SamedgeError, ValueError):
    """Missing, corrupt or unverifiable data; the message names the file."""


class RunDirError(SamedgeError):
    """A folder samedge must not or cannot write (a run's outputs or checkpoint, the data folder),
    or that another run holds."""


class CheckpointError(SamedgeError):
    """A checkpoint that cannot be resumed (corrupt, truncated, or of another run); names the file."""


def one_line(exc: BaseException) -> str:
    """A message on one line: a log grep or a scheduler's summary keeps the whole of it."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


@contextlib.contextmanager
def exit_on_error(prog: str) -> Iterator[None]:
    """A SamedgeError inside becomes `PROG: error: MESSAGE` alone on stderr and exit 2 (no traceback)."""
    try:
        yield
    except SamedgeError as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
class ModelError(SamedgeError, ValueError):
    """A model or loss that cannot give a correct result: an output whose shape differs from its
    targets', a trainable parameter the loss does not use; the message names it."""
