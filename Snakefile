# samedge: the one DAG that runs the work. params.yaml is its config (validated against
# workflow/schemas/params.schema.yaml when the DAG is built); rules are thin shells around
# `samedge <command>`. Select a profile with `--config profile=smoke|quick|paper`.
import shlex
import sys
from pathlib import Path

from snakemake.utils import min_version
from snakemake_interface_executor_plugins.settings import DeploymentMethod

from samedge.codedeps import STAGE_ENTRIES, as_params, digests, stage_files

min_version("9.0")


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


# Jobs call `samedge`, installed beside the interpreter that runs Snakemake (the project's .venv):
# that directory goes first on the jobs' PATH, so nobody has to activate anything. Inside the
# container (Apptainer sets APPTAINER_CONTAINER, Singularity SINGULARITY_CONTAINER) the image's
# own samedge is used. Before `set -u`, so that the unset variables read as empty.
_BIN = shlex.quote(str(Path(sys.executable).parent)).replace("{", "{{").replace("}", "}}")
shell.prefix(
    f'[ -n "$APPTAINER_CONTAINER$SINGULARITY_CONTAINER" ] || export PATH={_BIN}:"$PATH"; '
    "set -euo pipefail; "
)

# The package code each stage runs (samedge.codedeps), one `path@digest` rule param per file: a
# change in what a file does reruns the stage's jobs (params trigger) and the reason names the file;
# a comment, a docstring, reformatting, a touch or a fresh clone rerun nothing.
ROOT = Path(workflow.basedir)
PACKAGE_DIR = ROOT / "src" / "samedge"
CODE = {stage: digests(stage_files(stage, PACKAGE_DIR), ROOT) for stage in STAGE_ENTRIES}


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"


# Under --use-singularity a missing image would fail every job; say so once, before any job.
if (DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method
        and not Path(CONTAINER).is_file()):
    print(f"{CONTAINER} not found: build it with `make container`, or run without --use-singularity",
          file=sys.stderr)
    sys.exit(2)


rule all:
    default_target: True
    localrule: True
    input:
        # Every run as a target of its own: Snakemake skips a deleted intermediate file whose
        # consumers are up to date, and a deleted run folder must be retrained (and re-aggregated).
        rules.aggregate.input,
        rules.aggregate.output,
        rules.figures.input,
