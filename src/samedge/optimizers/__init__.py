"""The optimizer registry: what an optimizer is, and where each one is defined.

An optimizer is one Python module that defines `OPTIMIZER = <a subclass of Optimizer>`: its update
on the step's batch (full or minibatch), the JSON schema of its settings, its state (saved in
checkpoints), its edge of stability (the largest curvature at which its update is stable on a
local quadratic, in closed form) and, for preconditioned methods, the preconditioner P whose
P^-1/2 H P^-1/2 has the top eigenvalue (the `sharpness`) compared with that edge. Built in: sam
(GD at rho 0), usam, momentum, adam, rmsprop. A user's optimizer is one more module, named in
params.yaml as a task is:

    optimizers:
      lion: {module: examples/my_optimizer.py}   # a file (relative to params.yaml) or a dotted module

and chosen per task (`optimizer: {name: momentum, beta: 0.9}` in a profile's task block), per grid
point (`grid: {optimizer: [...]}`) or per run (`samedge train --optimizer NAME`). Nothing outside
this package branches on an optimizer's name: `build` resolves a settings block to an object once,
and the training loop, the monitor and the edge columns ask that object.
"""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema

from samedge.errors import ConfigError
from samedge.optimizers.base import Optimizer, SettingsBlock
from samedge.registry import Registry

BUILTIN: dict[str, str] = {
    "sam": "samedge.optimizers.sam",
    "usam": "samedge.optimizers.usam",
    "momentum": "samedge.optimizers.momentum",
    "adam": "samedge.optimizers.adam",
    "rmsprop": "samedge.optimizers.rmsprop",
}
DEFAULT: SettingsBlock = {"name": "sam"}  # SAM at the run's rho; GD at rho 0


class OptimizerError(ConfigError):
    """An unknown optimizer, bad settings, or an optimizer module that defines no valid OPTIMIZER."""


def register_user_optimizers(params: dict, base_dir: str | os.PathLike = ".") -> None:
    """Record the `optimizers:` of a params file (module paths relative to base_dir); loaded on first use."""
    REGISTRY.register(params, base_dir)


def optimizer_names() -> list[str]:
    return REGISTRY.names()


def get_optimizer(name: str) -> type[Optimizer]:
    return REGISTRY.get(name)


def module_file(name: str) -> Path:
    """The file that defines optimizer `name` (the workflow reruns its runs when it changes)."""
    return REGISTRY.module_file(name)


def complete(block: SettingsBlock | None, where: str = "optimizer") -> SettingsBlock:
    """The block with every setting its optimizer's schema defaults filled in, validated:
    OptimizerError names the first bad key (one line)."""
    block = copy.deepcopy(dict(DEFAULT if block is None else block))
    if not isinstance(block.get("name"), str):
        raise OptimizerError(f"{where}.name: expected the name of an optimizer, one of {optimizer_names()}")
    cls = get_optimizer(block["name"])
    settings = {key: value for key, value in block.items() if key != "name"}
    for key, prop in cls.schema.get("properties", {}).items():
        if key not in settings and "default" in prop:
            settings[key] = copy.deepcopy(prop["default"])
    for key, value in settings.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise OptimizerError(f"{where}.{key}: expected a finite number, got {value}")
    errors = sorted(jsonschema.Draft202012Validator(cls.schema).iter_errors(settings),
                    key=lambda e: (-len(e.absolute_path), e.message))
    if errors:
        path = ".".join(str(p) for p in errors[0].absolute_path)
        raise OptimizerError(f"{where}{'.' + path if path else ''} ({cls.name}): {errors[0].message}")
    return {"name": cls.name, **settings}


def build(block: SettingsBlock | None, lr: float, rho: float = 0.0) -> Optimizer:
    """The optimizer object of a settings block at learning rate lr (and rho for the SAM family)."""
    full = complete(block)
    cls = get_optimizer(full["name"])
    if rho and not cls.uses_rho:
        raise OptimizerError(f"--rho {rho:g}: optimizer {cls.name!r} has no rho (only the SAM family: "
                             f"{[n for n in BUILTIN if get_optimizer(n).uses_rho]}); use rho 0")
    return cls(lr, rho, {k: v for k, v in full.items() if k != "name"})


def from_torch(opt: Any) -> Optimizer:
    """The samedge view of a torch.optim optimizer of a user's loop (reading its state), for the
    built-in optimizers that offer one (adam, rmsprop); ValueError otherwise."""
    for name in optimizer_names():
        cls = get_optimizer(name)
        if type(opt) is getattr(cls, "torch_class", None):
            return cls.from_torch(opt)
    raise ValueError(f"optimizer: a {type(opt).__name__} has no samedge view; pass "
                     "samedge.optimizers.build({...}, lr) instead")


def label(block: SettingsBlock | None) -> str:
    """The run-folder suffix of an optimizer: '' for sam (the paper's runs keep their names), else
    its name and its settings that differ from their defaults, e.g. 'momentum+nesterov=true'."""
    full = complete(block)
    cls = get_optimizer(full["name"])
    if cls.name == DEFAULT["name"]:
        return ""
    defaults = {k: p.get("default") for k, p in cls.schema.get("properties", {}).items()}
    parts = [f"{key}={_fmt(value)}" for key, value in sorted(full.items())
             if key != "name" and value != defaults.get(key)]
    return "+".join([cls.name, *parts])


def parse_label(text: str) -> SettingsBlock:
    """The settings block of a label (the inverse of `label`)."""
    from samedge.config import parse_value

    if not text:
        return dict(DEFAULT)
    name, *parts = text.split("+")
    block: SettingsBlock = {"name": name}
    for part in parts:
        key, _, value = part.partition("=")
        block[key] = parse_value(value)
    return block


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{float(value):.12g}" if isinstance(value, float) else str(value)


def _optimizer_of(module: ModuleType, name: str, spec: str) -> type[Optimizer]:
    cls = getattr(module, "OPTIMIZER", None)
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise OptimizerError(f"optimizer module {spec}: defines no OPTIMIZER = a subclass of "
                             "samedge.optimizers.Optimizer")
    if cls.name != name:
        raise OptimizerError(f"optimizer module {spec}: its OPTIMIZER is named {cls.name!r}, params.yaml calls it {name!r}")
    bad = [key for key in cls.schema.get("properties", {}) if not key.isalnum() or key == "name"]
    if bad:
        raise OptimizerError(f"optimizer module {spec}: setting names must be letters and digits "
                             f"(they go into run folder names), not {bad}")
    return cls


__all__ = ["BUILTIN", "DEFAULT", "Optimizer", "OptimizerError", "build", "complete", "from_torch", "get_optimizer",
           "label", "module_file", "optimizer_names", "parse_label", "register_user_optimizers"]


REGISTRY = Registry("optimizer", "optimizers", BUILTIN, OptimizerError, _optimizer_of)
