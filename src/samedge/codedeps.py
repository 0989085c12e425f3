"""The package files each pipeline stage runs, and a digest of what each one means, so that a
change in behaviour reruns that stage and a comment does not.

A stage's code is its entry module and every samedge module it imports, transitively, read from
the source with `ast` (nothing is imported; imports inside functions count too); the training and
data stages add each task's own module. A file's digest is of its normalised syntax tree: comments,
docstrings, blank lines and formatting leave it unchanged, any other edit changes it. Snakemake
records one `path@digest` param per file (so the reason for a rerun names the files that changed,
and a touch or a fresh clone reruns nothing); `python -m samedge.codedeps` writes the same digests
per stage as JSON, which dvc.yaml's stages depend on.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import yaml

from samedge.io import write_json

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


_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
SHORT = 12  # hex digits of a digest shown in params and JSON: plenty to tell code states apart


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, _DOCUMENTED) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def file_digest(path: Path) -> str:
    """sha256 of the file's syntax tree without docstrings and positions: what the code does.
    (A docstring read at run time, e.g. as argparse help, changes text only, never results.)"""
    tree = _without_docstrings(ast.parse(path.read_text(), filename=str(path)))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()[:SHORT]


def shown_path(path: Path, root: Path) -> str:
    """A file as a rerun reason names it: relative to the workspace if inside it."""
    path = path.resolve()
    return str(path.relative_to(root.resolve())) if path.is_relative_to(root.resolve()) else str(path)


def digests(files: list[Path], root: Path) -> dict[str, str]:
    """{path: digest} of each file, paths shown relative to root, sorted."""
    return dict(sorted((shown_path(path, root), file_digest(path)) for path in files))


def as_params(code: dict[str, str]) -> dict[str, str]:
    """One Snakemake param per file, `path@digest`: Snakemake compares params as a set of values,
    so its reason for a rerun lists exactly the files whose digest changed, before and now."""
    return {"code_" + re.sub(r"\W", "_", path): f"{path}@{value}" for path, value in code.items()}


def task_file(task: str, params: dict, base: Path, package_dir: Path) -> Path:
    """A task's module, found without importing it (no torch: the DVC `code` stage runs on every
    `dvc repro`): a built-in task's in the package, a user's as params.yaml's `tasks:` names it
    (samedge.tasks' rule: a .py file relative to params.yaml, or a dotted module name)."""
    from samedge.tasks import BUILTIN

    if task in BUILTIN:
        return module_file(BUILTIN[task], package_dir)
    spec = params["tasks"][task]["module"]
    if spec.endswith(".py"):
        return (base / spec).resolve()
    found = importlib.util.find_spec(spec)
    if found is None or found.origin is None:
        raise FileNotFoundError(f"tasks.{task}: module {spec} not found")
    return Path(found.origin).resolve()


def task_files(task: str, params: dict, base: Path, package_dir: Path, with_imports: bool) -> list[Path]:
    """A task's module (tasks are loaded by name, so no stage's import graph reaches it), with the
    package modules a built-in one imports if asked (a user's module is digested on its own)."""
    from samedge.tasks import BUILTIN

    if with_imports and task in BUILTIN:
        return module_files(BUILTIN[task], package_dir)
    return [task_file(task, params, base, package_dir)]


def stage_code(stage: str, params: dict, profile: str, base: Path, package_dir: Path) -> dict[str, str]:
    """{path: digest} of everything a stage runs for the profile's tasks: the training stage with
    each task's module and its imports, the data stage with each task's module (its data source);
    paths relative to base (the workspace)."""
    files = set(stage_files(stage, package_dir))
    if stage in ("train", "data"):
        for task in params["profiles"][profile]:
            files.update(task_files(task, params, base, package_dir, with_imports=stage == "train"))
    return digests(sorted(files), base)


def main(argv: list[str] | None = None) -> int:
    """Write OUT/<stage>.json ({path: digest}) for every stage and the profile's tasks; a file is
    rewritten only when its digests change. params.yaml is read, not validated (Snakemake does)."""
    parser = argparse.ArgumentParser(prog="python -m samedge.codedeps", description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default=None, help="default: params.yaml's `profile:`")
    parser.add_argument("--out", type=Path, required=True, help="folder for <stage>.json")
    args = parser.parse_args(argv)
    params = yaml.safe_load(args.params.read_text())
    profile = args.profile or params["profile"]
    if profile not in params["profiles"]:
        print(f"samedge.codedeps: error: profile {profile!r} is not in {args.params}", file=sys.stderr)
        return 2
    base = args.params.resolve().parent
    package_dir = base / "src" / PACKAGE  # the workspace's code, as the Snakefile digests it
    for stage in STAGE_ENTRIES:
        code, path = stage_code(stage, params, profile, base, package_dir), args.out / f"{stage}.json"
        if not path.is_file() or json.loads(path.read_text()) != code:
            write_json(path, code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
