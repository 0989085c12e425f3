"""What the task and optimizer registries share: a user's entry is a dotted module name or a .py
file (relative to the params file), imported on first use; a failed import is the user's error."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Collection
from pathlib import Path
from types import ModuleType


def resolve_spec(spec: str, base_dir: str | os.PathLike) -> str:
    """A module spec with a relative .py path made absolute against base_dir."""
    if spec.endswith(".py") and not Path(spec).is_absolute():
        return str((Path(base_dir) / spec).resolve())
    return spec


def import_spec(spec: str, builtin: Collection[str], prefix: str, error: type[Exception], kind: str) -> ModuleType:
    """Import a built-in module (an import error there is a bug in samedge) or a user's (an
    `error` naming the spec)."""
    if spec in builtin:
        return importlib.import_module(spec)
    try:
        if not spec.endswith(".py"):
            return importlib.import_module(spec)
        module_name = f"{prefix}{Path(spec).stem}"
        found = importlib.util.spec_from_file_location(module_name, spec)
        if found is None or found.loader is None or not Path(spec).is_file():
            raise FileNotFoundError(spec)
        module = importlib.util.module_from_spec(found)
        sys.modules[module_name] = module
        found.loader.exec_module(module)
        return module
    except (ImportError, FileNotFoundError) as exc:
        raise error(f"{kind} module {spec}: cannot import it ({type(exc).__name__}: {exc})") from exc
