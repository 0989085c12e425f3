# samedge: the one DAG that runs the work. params.yaml is its config (validated against
# workflow/schemas/params.schema.yaml when the DAG is built); rules are thin shells around
# `samedge <command>`. Select a profile with `--config profile=smoke|quick|paper`.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    localrule: True
    input:
        rules.aggregate.output,
        rules.figures.input,
