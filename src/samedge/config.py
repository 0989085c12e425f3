"""params.yaml: loading, JSON-schema validation, profile resolution and `--set` overrides."""
from __future__ import annotations

import copy
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from samedge.errors import ConfigError



def schema() -> dict:
    return yaml.safe_load(resources.files("samedge").joinpath("params.schema.yaml").read_text())


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _non_finite(node: Any, path: tuple[str, ...] = ()) -> str | None:
    """The key of the first NaN or +-inf in node, else None. JSON schema's `number` admits them
    (NaN even passes `exclusiveMinimum`), yet no setting means anything non-finite, and run.json
    must stay standard JSON."""
    if isinstance(node, float) and not math.isfinite(node):
        return ".".join(path) or "<top level>"
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        if (found := _non_finite(child, (*path, str(key)))) is not None:
            return found
    return None


def validate_params(params: Any, source: str = "params.yaml") -> None:
    """Raise ConfigError naming the first offending key (deepest, most specific error first)."""
    if (key := _non_finite(params)) is not None:
        raise ConfigError(f"{source}: invalid value at '{key}': expected a finite number")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (-len(e.absolute_path), e.message))
    if errors:
        err = errors[0]
        raise ConfigError(f"{source}: invalid value at '{_key_path(err)}': {err.message}")
    if params["profile"] not in params["profiles"]:
        raise ConfigError(
            f"{source}: profile '{params['profile']}' is not one of {sorted(params['profiles'])}"
        )
    for profile, blocks in params["profiles"].items():
        for task, cfg in blocks.items():
            _validate_task_block(source, f"profiles.{profile}.{task}", task, cfg)


def _validate_task_block(source: str, where: str, task: str, cfg: dict) -> None:
    """What the schema cannot know: the task is registered, its model and data blocks, its seeds' grid points."""
    from samedge.tasks import TaskError, get_task

    try:
        found = get_task(task)
    except TaskError as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from exc
    for block, block_schema in (("model", found.model_schema), ("data", found.data_schema)):
        errors = sorted(jsonschema.Draft202012Validator(block_schema).iter_errors(cfg[block]),
                        key=lambda e: (-len(e.absolute_path), e.message))
        if errors:
            path = ".".join(str(p) for p in errors[0].absolute_path)
            raise ConfigError(f"{source}: invalid value at '{where}.{block}{'.' + path if path else ''}': "
                              f"{errors[0].message}")
    from samedge.optimizers import complete

    if cfg.get("optimizer") is not None:
        complete(cfg["optimizer"], f"{source}: {where}.optimizer")
    if "optimizer" in cfg["grid"]:
        for i, (block, _) in enumerate(grid_optimizers(cfg)):
            complete(block, f"{source}: {where}.grid.optimizer.{i}")
    for i, entry in enumerate(cfg.get("seeds", [])):
        for axis in ("lr", "rho"):
            if axis in entry and not any(math.isclose(entry[axis], v) for v in cfg["grid"][axis]):
                raise ConfigError(f"{source}: invalid value at '{where}.seeds.{i}.{axis}': {entry[axis]} "
                                  f"is not in the grid's {axis} "
                                  f"{cfg['grid'][axis]}")


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    from samedge.optimizers import OptimizerError, register_user_optimizers
    from samedge.tasks import TaskError, register_user_tasks

    try:
        register_user_tasks(params if isinstance(params, dict) else {}, path.parent)
    except (TaskError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: tasks: {exc}") from exc
    try:
        register_user_optimizers(params if isinstance(params, dict) else {}, path.parent)
    except (OptimizerError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: optimizers: {exc}") from exc
    validate_params(params, str(path))
    return params


def profile_config(params: dict, profile: str | None = None) -> dict:
    name = profile or params["profile"]
    if name not in params["profiles"]:
        raise ConfigError(f"profile: unknown profile '{name}'; expected one of {sorted(params['profiles'])}")
    return params["profiles"][name]


def parse_value(text: str) -> Any:
    """A `--set` value as YAML (ints, floats incl. 1e-3, null, lists, booleans), else the string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{text!r} is not a valid YAML value ({problem}); quote lists, e.g. '[16,32]'") from exc
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(task_cfg: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` overrides to a task config; unknown keys are errors."""
    cfg = copy.deepcopy(task_cfg)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.max_steps=100")
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"--set {key}: unknown key '{part}'")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"--set {key}: unknown key '{leaf}'; known here: {sorted(node)}")
        try:
            node[leaf] = parse_value(text)
        except ConfigError as exc:
            raise ConfigError(f"--set {key}: {exc}") from exc
    return cfg


def load_run_config(params_path: str | os.PathLike, profile: str | None, task: str,
                    overrides: list[str] = (), optimizer: str | None = None) -> dict:
    """The validated config of one run: profiles[profile][task] with its optimizer block complete
    (every setting, defaults filled, so `--set optimizer.beta=0.5` finds its key), the optimizer
    `optimizer` instead of the task's if named, and overrides applied."""
    from samedge.optimizers import complete

    params = load_params(params_path)
    if task not in profile_config(params, profile):
        raise ConfigError(f"task: unknown task '{task}' in profile '{profile or params['profile']}' of "
                          f"{params_path}; it has {list(profile_config(params, profile))}")
    cfg = copy.deepcopy(profile_config(params, profile)[task])
    block = cfg.get("optimizer")
    if optimizer is not None and (block is None or block["name"] != optimizer):
        block = {"name": optimizer}
    cfg["optimizer"] = complete(block, "--optimizer" if optimizer else "optimizer")
    cfg = apply_overrides(cfg, list(overrides))
    checked = copy.deepcopy(params)
    checked["profiles"][profile or params["profile"]][task] = cfg
    validate_params(checked, f"{params_path} with --set {' '.join(overrides)}" if overrides else str(params_path))
    return cfg


def fmt_value(x: float) -> str:
    """A float as it is written in params.yaml (shortest repr): 0.1 -> '0.1', 3e-4 -> '0.0003'."""
    return f"{float(x):.12g}"


AXES = ("lr", "rho", "batch_size")  # the grid's axes an entry of grid.optimizer may set for itself


def grid_optimizers(cfg: dict) -> list[tuple[dict, dict]]:
    """(optimizer block, its axes) of each entry of a task's grid.optimizer (default: the task's
    `optimizer`, else sam): an entry's own lr / rho / batch_size lists replace the grid's for it,
    since learning rates that suit SGD and Adam differ by orders of magnitude."""
    entries = cfg["grid"].get("optimizer") or [cfg.get("optimizer") or {"name": "sam"}]
    return [({k: v for k, v in entry.items() if k not in AXES}, {k: entry[k] for k in AXES if k in entry})
            for entry in entries]


def grid(params: dict, profile: str | None = None) -> list[tuple[str, float, float, dict, int | None]]:
    """Every grid point (task, lr, rho, optimizer block, batch size) of a profile, in params order:
    per task and optimizer, every lr, then every rho (the SAM family; any other optimizer once, at
    rho 0), then every batch size of the grid (default: train.batch_size)."""
    from samedge.optimizers import complete, get_optimizer

    points = []
    for task, cfg in profile_config(params, profile).items():
        axes = {"lr": cfg["grid"]["lr"], "rho": cfg["grid"]["rho"],
                "batch_size": cfg["grid"].get("batch_size") or [cfg["train"]["batch_size"]]}
        for block, own in grid_optimizers(cfg):
            block, own = complete(block), axes | own
            rhos = own["rho"] if get_optimizer(block["name"]).uses_rho else [0.0]
            points += [(task, lr, rho, block, size) for lr in own["lr"] for rho in rhos for size in own["batch_size"]]
    return points


def point_seeds(cfg: dict, lr: float, rho: float) -> list[int]:
    """The seeds a grid point runs: those of the task's `seeds:` entries naming it, else its `seed`."""
    named = [seed for entry in cfg.get("seeds", [])
             if math.isclose(entry["lr"], lr) and ("rho" not in entry or math.isclose(entry["rho"], rho))
             for seed in entry["seeds"]]
    return list(dict.fromkeys(named)) or [cfg["seed"]]
