# Shared names and helpers: the grid comes from samedge.config.grid (never repeated here).
import json

from snakemake.utils import validate

from samedge.config import TASKS, grid, profile_config, run_name
from samedge.figure_specs import FIGURES, figure_files

# Pipeline switches given with --config KEY=VALUE; they choose how jobs run, not what they
# compute, so they are not part of params.yaml and are left out of its schema validation.
PIPELINE_SWITCHES = {"device": ("cpu", "cuda")}

validate(
    {key: value for key, value in config.items() if key not in PIPELINE_SWITCHES},
    "../schemas/params.schema.yaml",
)
for _switch, _allowed in PIPELINE_SWITCHES.items():
    if config.setdefault(_switch, _allowed[0]) not in _allowed:
        raise ValueError(f"--config {_switch}={config[_switch]!r}: expected one of {list(_allowed)}")

PROFILE = config["profile"]
RUNS = grid(config, PROFILE)  # every (task, lr, rho) of the profile; unknown profile -> ConfigError
DEVICE = config["device"]
GPUS_PER_TRAIN_JOB = 1 if DEVICE == "cuda" else 0
CONTAINER = "containers/samedge.sif"  # built by `apptainer build containers/samedge.sif containers/samedge.def`


wildcard_constraints:
    task="|".join(TASKS),
    lr=r"[0-9.e+-]+",
    rho=r"[0-9.e+-]+",


def run_dir(task, lr, rho):
    return f"results/runs/{task}/{run_name(lr, rho)}"


def task_run_outputs(task):
    """metrics.csv and run.json of every run of `task` in the active profile."""
    return [
        f"{run_dir(t, lr, rho)}/{name}"
        for t, lr, rho in RUNS
        if t == task
        for name in ("metrics.csv", "run.json")
    ]


def run_settings(wildcards):
    """The run's settings (its task block without the grid); Snakemake records this param, so a
    changed setting reruns the run (params rerun trigger) while a changed grid adds only new runs."""
    settings = dict(profile_config(config, PROFILE)[wildcards.task])
    settings.pop("grid")
    return json.dumps(settings, sort_keys=True)


def paper_figure_files():
    return [str(path) for number in FIGURES for path in figure_files(number)]
