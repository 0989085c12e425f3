"""What the task and optimizer registries share: a user's entry is a dotted module name or a .py
file (relative to the params file), imported on first use; a failed import is the user's error."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from types import ModuleType
from typing import Any


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


class Registry:
    """Named entries of one kind (tasks, optimizers): the built-in modules, then the user's from a
    params file, each imported and turned into its object (`build(module, name, spec)`) on first use."""

    def __init__(self, kind: str, section: str, builtin: dict[str, str], error: type[Exception],
                 build: Callable[[ModuleType, str, str], Any]) -> None:
        self.kind, self.section, self.builtin, self.error, self.build = kind, section, builtin, error, build
        self.user: dict[str, str] = {}  # name -> module spec, from params.yaml's `section:`
        self.loaded: dict[str, Any] = {}

    def register(self, params: dict, base_dir: str | os.PathLike) -> None:
        """Record params' `section:` entries (module paths relative to base_dir); loaded on first use."""
        for name, entry in (params.get(self.section) or {}).items():
            if name in self.builtin:
                raise self.error(f"{self.section}.{name}: a built-in {self.kind} has this name; choose another")
            spec = resolve_spec(entry["module"], base_dir)
            if self.user.get(name, spec) != spec:
                self.loaded.pop(name, None)
            self.user[name] = spec

    def names(self) -> list[str]:
        """The built-in names, then the user's in params order."""
        return [*self.builtin, *self.user]

    def get(self, name: str) -> Any:
        if name not in self.loaded:
            spec = self.builtin.get(name) or self.user.get(name)
            if spec is None:
                raise self.error(f"unknown {self.kind} {name!r}; expected one of {self.names()} "
                                 f"(one of your own is named in params.yaml under `{self.section}:`)")
            module = import_spec(spec, self.builtin.values(), f"samedge_user_{self.kind}_", self.error, self.kind)
            self.loaded[name] = self.build(module, name, spec)
        return self.loaded[name]

    def module_file(self, name: str) -> Path:
        """The file that defines `name` (the workflow reruns what uses it when it changes)."""
        self.get(name)
        spec = self.builtin.get(name) or self.user[name]
        return Path(spec) if spec.endswith(".py") else Path(sys.modules[spec].__file__)
