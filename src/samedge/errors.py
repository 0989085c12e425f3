"""The errors samedge raises for a user's mistake or a bad file: each message is one line naming
the value or file and what is expected. The CLI catches SamedgeError once (exit 2, one line); any
other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


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


class ModelError(SamedgeError, ValueError):
    """A model or loss that cannot give a correct result: an output whose shape differs from its
    targets', a trainable parameter the loss does not use; the message names it."""
