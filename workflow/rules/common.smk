# Shared names and helpers: the runs come from samedge.runs.profile_runs (never repeated here), the
# tasks from the registry (samedge.tasks: the built-in ones and those named under `tasks:`).
import json
import shlex

from samedge.codedeps import digests, task_files
from samedge.config import check_pipeline, fmt_value, profile_config
from samedge.errors import exit_on_error
from samedge.layout import Layout
from samedge.runs import check_existing_runs, profile_runs
from samedge.figure_specs import FIGURES, figure_files, headline_files, paper_figures, summary_dir
from samedge.optimizers import BUILTIN as OPTIMIZERS_BUILTIN
from samedge.optimizers import module_file as optimizer_module_file
from samedge.optimizers import parse_label
from samedge.tasks import get_task

# Pipeline switches given with --config KEY=VALUE; they choose how jobs run, not what they
# compute, so they are not part of params.yaml and are left out of its schema validation.
PIPELINE_SWITCHES = {"device": ("cpu", "cuda")}

# Before any job, what a job would refuse (params.yaml, --config) and a finished run whose files are
# not what it wrote (aggregation would refuse it only after Snakemake removed the tables): one line, exit 2.
with exit_on_error("samedge pipeline"):
    check_pipeline(config, PIPELINE_SWITCHES, workflow.basedir)
    PROFILE = config["profile"]
    LAYOUT = Layout(PROFILE)  # every path this profile's jobs write (samedge.layout)
    if workflow.is_main_process:  # a job's own Snakemake (cluster) must not judge runs being written
        check_existing_runs(LAYOUT.runs, profile_runs(config), "rm -r {folder} && make pipeline "
                            f"PROFILE={PROFILE}")

TASKS = list(profile_config(config, PROFILE))  # the profile's tasks, in params order
RUNS = profile_runs(config, PROFILE)  # every run (task, lr, rho, seed) of the profile
RUN_BY_DIR = {(key.task, key.name): key for key in RUNS}
DEVICE = config["device"]
GPUS_PER_TRAIN_JOB = 1 if DEVICE == "cuda" else 0  # a device per job (SLURM: sbatch --gpus=1)


def train_gpu_percent(wildcards):
    """Percent of one GPU a training job needs (params.yaml gpu_percent; 100 if unlisted, 0 on CPU):
    local jobs share a GPU while the sum stays within `resources: gpu_percent` (100 per GPU)."""
    return config.get("gpu_percent", {}).get(wildcards.task, 100) if DEVICE == "cuda" else 0


CONTAINER = "containers/samedge.sif"  # built by `make container` (containers/samedge.def)


wildcard_constraints:
    task="|".join(TASKS),
    run=r"lr[^/]+",


def task_run_outputs(task):
    """metrics.csv and run.json of every run of `task` in the active profile."""
    return [
        f"{LAYOUT.runs}/{key.task}/{key.name}/{name}"
        for key in RUNS
        if key.task == task
        for name in ("metrics.csv", "run.json")
    ]


def run_key(wildcards):
    return RUN_BY_DIR[(wildcards.task, wildcards.run)]


def run_seed(wildcards):
    """The seed a run uses: its own, or its task's default seed."""
    key = run_key(wildcards)
    return profile_config(config, PROFILE)[key.task]["seed"] if key.seed is None else key.seed


def task_data(wildcards):
    """The prepared data a task's runs read; none for a task that makes its own data."""
    return [f"data/prepared/{wildcards.task}"] if get_task(wildcards.task).data is not None else []


def _task_code(task, stage):
    """`path@digest` of each file of a task's code that the stage's own import graph does not
    reach (tasks are loaded by name): the training stage's with what the module imports."""
    files = task_files(task, config, ROOT, PACKAGE_DIR, with_imports=stage == "train")
    return [f"{path}@{value}" for path, value in digests(files, ROOT).items() if path not in CODE[stage]]


def task_code(wildcards):
    """Editing a task's module reruns that task's runs only."""
    return _task_code(wildcards.task, "train")


def optimizer_code(wildcards):
    """The module of a run's optimizer of your own (the built-in ones are in CODE["train"]):
    editing it reruns the runs that use it."""
    name = parse_label(run_key(wildcards).optimizer)["name"]
    if name in OPTIMIZERS_BUILTIN:
        return []
    return [f"{path}@{value}" for path, value in digests([optimizer_module_file(name).resolve()], ROOT).items()]


def run_variant(wildcards):
    """The `samedge train` arguments of a run's optimizer, its settings and batch size."""
    return shlex.join(run_key(wildcards).train_arguments())


def task_data_code(wildcards):
    """A task's module alone (its data source and preparation live there): editing it refetches."""
    return _task_code(wildcards.task, "data")


def run_settings(wildcards):
    """The run's settings (its task block without the grid and seed lists); Snakemake records this
    param, so a changed setting reruns the run (params rerun trigger) while a changed grid adds only
    new runs."""
    settings = dict(profile_config(config, PROFILE)[wildcards.task])
    settings.pop("grid")
    settings.pop("seeds", None)
    return json.dumps(settings, sort_keys=True)


def paper_figure_outputs():
    """The PDF and PNG of every paper figure the profile's tasks fill (one job draws them all); each
    PNG keeps its caption and place in the report."""
    outputs = {}
    for number in paper_figures(TASKS):
        spec = FIGURES[number]
        pdf, png = figure_files(number, LAYOUT.figures)
        outputs[f"pdf{number:02d}"] = str(pdf)
        outputs[f"png{number:02d}"] = report(
            str(png),
            caption=f"../report/fig{number:02d}.rst",
            category="Paper figures",
            subcategory=spec.task or "analytic",
            labels={"figure": f"Figure {number}", "title": spec.title},
        )
    return outputs


def summary_outputs():
    """The report's landing page (workflow/report/workflow.rst includes landing.html), the headline
    figure, and each table rendered as an HTML page with its CSV as a download (the Tables category)."""
    folder = summary_dir(LAYOUT.figures)
    outputs = {"landing": str(folder / "landing.html")}
    outputs["headline_pdf"], outputs["headline_png"] = map(str, headline_files(LAYOUT.figures))
    for name, caption in (("edge_agreement", "edge_agreement"), ("runs", "runs")):
        outputs[f"{name}_html"] = report(str(folder / f"{name}.html"), caption=f"../report/{caption}.rst",
                                         category="Tables", labels={"table": name.replace("_", " ")})
    return outputs
