"""The package files each pipeline stage runs, so that editing them reruns that stage.

A stage's code is its entry module and every samedge module it imports, transitively, read from
the source with `ast` (nothing is imported; imports inside functions count too). Snakemake records
a digest of their contents as a rule parameter (so a changed file reruns the stage's jobs, and a
mere touch or a fresh clone does not); dvc.yaml lists the same files as stage deps (a test checks).
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = "samedge"
# The module holding each stage's command (what the stage's jobs run).
STAGE_ENTRIES = {
    "data": "samedge.cli.fetch",
    "train": "samedge.cli.train",
    "aggregate": "samedge.cli.aggregate",
    "figures": "samedge.cli.figure",
}


def module_file(name: str, package_dir: Path) -> Path | None:
    """The source file of module `name` (a .py file or a package's __init__.py), None if absent."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    for path in (base.with_name(base.name + ".py") if parts[1:] else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def _module_name(path: Path, package_dir: Path) -> str:
    parts = path.relative_to(package_dir).with_suffix("").parts
    return ".".join([PACKAGE, *(parts[:-1] if parts[-1] == "__init__" else parts)])


def _imported_names(path: Path, package_dir: Path) -> set[str]:
    """Every absolute module name an import statement of `path` may load (x.y, x.y.z for
    `from x.y import z`, whether z is a module or not)."""
    this = _module_name(path, package_dir).split(".")
    package = this if path.name == "__init__.py" else this[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module.split(".") if node.module else []
            if node.level:  # relative: from .x import y
                base = package[:len(package) - node.level + 1] + base
            names.add(".".join(base))
            names.update(".".join([*base, alias.name]) for alias in node.names)
    return names


def module_files(entry: str, package_dir: Path) -> list[Path]:
    """The files of `entry` and of every package module it imports transitively, with the
    __init__.py of every package on the way (importing a.b runs a/__init__.py)."""
    start = module_file(entry, package_dir)
    if start is None:
        raise FileNotFoundError(f"module {entry} not found under {package_dir}")
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        name = _module_name(path, package_dir).split(".")
        parents = [".".join(name[:i]) for i in range(1, len(name))]
        for imported in [*_imported_names(path, package_dir), *parents]:
            found = module_file(imported, package_dir)
            if found is not None:
                todo.append(found)
    return sorted(seen)


# Registries whose built-in entries a stage runs, loaded by name out of the import graph's reach:
# the stage depends on every module in the registry's folder.
RUNS_REGISTRIES = {"train": ("samedge.optimizers",)}


def stage_files(stage: str, package_dir: Path) -> list[Path]:
    files = set(module_files(STAGE_ENTRIES[stage], package_dir))
    for registry in RUNS_REGISTRIES.get(stage, ()):
        for path in sorted(module_file(registry, package_dir).parent.glob("*.py")):
            files.update(module_files(_module_name(path, package_dir), package_dir))
    return sorted(files)


def digest(files: list[Path], root: Path) -> str:
    """sha256 over the files' paths (relative to root) and contents: one value per code state."""
    sha = hashlib.sha256()
    for path in sorted(files):
        sha.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()
