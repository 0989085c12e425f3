"""params.yaml: loading, JSON-schema validation, profile resolution and `--set` overrides."""
from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

TASKS = ("mnist", "cifar10", "shakespeare")


class ConfigError(ValueError):
    """A malformed params file, profile, override or argument; the message names the key."""


def schema() -> dict:
    return yaml.safe_load(resources.files("samedge").joinpath("params.schema.yaml").read_text())


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate_params(params: Any, source: str = "params.yaml") -> None:
    """Raise ConfigError naming the first offending key (deepest, most specific error first)."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (-len(e.absolute_path), e.message))
    if errors:
        err = errors[0]
        raise ConfigError(f"{source}: invalid value at '{_key_path(err)}': {err.message}")
    if params["profile"] not in params["profiles"]:
        raise ConfigError(
            f"{source}: profile '{params['profile']}' is not one of {sorted(params['profiles'])}"
        )


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    validate_params(params, str(path))
    return params


def profile_config(params: dict, profile: str | None = None) -> dict:
    name = profile or params["profile"]
    if name not in params["profiles"]:
        raise ConfigError(f"profile: unknown profile '{name}'; expected one of {sorted(params['profiles'])}")
    return params["profiles"][name]


def parse_value(text: str) -> Any:
    """A `--set` value as YAML (ints, floats incl. 1e-3, null, lists, booleans), else the string."""
    value = yaml.safe_load(text)
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
        node[leaf] = parse_value(text)
    return cfg


def load_run_config(params_path: str | os.PathLike, profile: str | None, task: str,
                    overrides: list[str] = ()) -> dict:
    """The validated config of one run: profiles[profile][task] with overrides applied."""
    if task not in TASKS:
        raise ConfigError(f"task: unknown task '{task}'; expected one of {list(TASKS)}")
    params = load_params(params_path)
    cfg = apply_overrides(profile_config(params, profile)[task], list(overrides))
    checked = copy.deepcopy(params)
    checked["profiles"][profile or params["profile"]][task] = cfg
    validate_params(checked, f"{params_path} with --set {' '.join(overrides)}")
    return cfg


def fmt_value(x: float) -> str:
    """A float as it is written in params.yaml (shortest repr): 0.1 -> '0.1', 3e-4 -> '0.0003'."""
    return f"{float(x):.12g}"


def run_name(lr: float, rho: float) -> str:
    return f"lr{fmt_value(lr)}_rho{fmt_value(rho)}"


def grid(params: dict, profile: str | None = None) -> list[tuple[str, float, float]]:
    """Every (task, lr, rho) of a profile, in params order."""
    prof = profile_config(params, profile)
    return [(task, lr, rho) for task in TASKS
            for lr in prof[task]["grid"]["lr"] for rho in prof[task]["grid"]["rho"]]
