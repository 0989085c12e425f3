"""params.yaml: loading, JSON-schema validation, profile resolution and `--set` overrides."""
from __future__ import annotations

import copy
import math
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from samedge.errors import ConfigError

MIN_NORMAL = sys.float_info.min


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
    _register_modules(params, path.parent, str(path))
    validate_params(params, str(path))
    return params


def _register_modules(params: Any, folder: Path, source: str) -> None:
    """The tasks and optimizers of your own that params names under `tasks:` and `optimizers:`
    (module paths relative to folder)."""
    from samedge.optimizers import OptimizerError, register_user_optimizers
    from samedge.tasks import TaskError, register_user_tasks

    try:
        register_user_tasks(params if isinstance(params, dict) else {}, folder)
    except (TaskError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{source}: tasks: {exc}") from exc
    try:
        register_user_optimizers(params if isinstance(params, dict) else {}, folder)
    except (OptimizerError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{source}: optimizers: {exc}") from exc


def check_pipeline(config: dict, switches: dict[str, tuple[str, ...]], folder: str | os.PathLike,
                   data_dir: str | os.PathLike = "data") -> None:
    """The DAG's check of params.yaml (+ --config) before any job: the switches, then everything the
    jobs would refuse (the schema, the tasks, the optimizers, and check_profile). Sets each switch's default."""
    for switch, allowed in switches.items():
        if config.setdefault(switch, allowed[0]) not in allowed:
            raise ConfigError(f"--config {switch}={config[switch]!r}: expected one of {list(allowed)}")
    params = {key: value for key, value in config.items() if key not in switches}
    _register_modules(params, Path(folder), "params.yaml")
    validate_params(params)
    check_profile(params, data_dir=data_dir)


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


def check_lr_rho(lr: float, rho: float, lr_name: str = "--lr", rho_name: str = "--rho") -> None:
    """eta and rho for which 2/eta and the SAM edge are finite positive floats; otherwise every
    lambda_1/edge ratio of the run would be inf or NaN (at eta = 1e308, 2/eta underflows; at
    rho = 1e308, 8 rho/eta in the SAM edge overflows)."""
    if not (math.isfinite(lr) and lr > 0 and MIN_NORMAL <= 2.0 / lr < math.inf and math.isfinite(2.0 * lr)):
        raise ConfigError(f"{lr_name} {lr!r}: expected a finite learning rate > 0 whose edge 2/lr is a normal "
                          f"float, i.e. {2.0 / sys.float_info.max:.3g} < lr < {2.0 / MIN_NORMAL:.3g}")
    if not (rho == 0 or (MIN_NORMAL <= rho and math.isfinite(8.0 * rho / lr))):
        raise ConfigError(f"{rho_name} {rho!r}: expected rho = 0 (GD) or a normal float whose SAM-edge term "
                          f"8 rho/lr is finite (here rho < {sys.float_info.max * lr / 8:.3g})")


def check_schedule(cfg: dict, where: str = "train") -> None:
    """A run that ends and measures something: what the schema cannot say (one of two keys set)."""
    train = cfg["train"]
    if not (train["max_steps"] or train["time_budget_s"]):
        raise ConfigError(f"{where}: set max_steps or time_budget_s, or the run never ends")
    if not (train["measure_every_steps"] or train["measure_every_s"]):
        raise ConfigError(f"{where}: set measure_every_steps or measure_every_s, or nothing is measured")


def check_data_size(task: str, cfg: dict, data_dir: str | os.PathLike, where: str) -> None:
    """data.n_train against the size of the task's training set (samedge.data.train_size)."""
    from samedge.data import train_size

    n_train = cfg.get("data", {}).get("n_train")
    if n_train is not None and (size := train_size(task, data_dir)) is not None and n_train > size:
        raise ConfigError(f"{where}.data.n_train: {n_train} is more than the {size} training examples of "
                          f"{task}; choose at most {size} (null: all)")


def check_distinct(values: list[float], where: str) -> None:
    """Grid values that name one run folder (equal, or equal to fmt_value's 12 digits) would run once
    and be aggregated twice, one of them labelled with a value that never ran."""
    seen: dict[str, float] = {}
    for value in values:
        name = fmt_value(value)
        if name in seen:
            raise ConfigError(f"{where}: {seen[name]!r} and {value!r} are the same grid value (run folder "
                              f"{name}); list each value once")
        seen[name] = value


def check_profile(params: dict, profile: str | None = None, data_dir: str | os.PathLike = "data",
                  source: str = "params.yaml") -> None:
    """What every run of the profile would refuse before training, checked at once (the DAG's check)."""
    name = profile or params["profile"]
    for task, cfg in profile_config(params, name).items():
        where = f"{source}: profiles.{name}.{task}"
        for axis in ("lr", "rho"):
            check_distinct(cfg["grid"][axis], f"{where}.grid.{axis}")
        for lr in cfg["grid"]["lr"]:
            for rho in cfg["grid"]["rho"]:
                check_lr_rho(lr, rho, f"{where}.grid.lr", f"{where}.grid.rho")
        check_schedule(cfg, f"{where}.train")
        check_data_size(task, cfg, data_dir, where)


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
