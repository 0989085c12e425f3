# Stage 4: every paper figure (numbered as in the paper, from the FIGURES table of
# samedge.figure_specs) in one job, so the plotting imports are paid once, and the per-run
# figure sets in another. Each PNG keeps its own caption and place in the report.


rule paper_figures:
    input:
        metrics=str(LAYOUT.table("metrics.csv")),
        runs=str(LAYOUT.table("runs.csv")),
    output:
        **paper_figure_outputs(),
    params:
        profile=PROFILE,
        **as_params(CODE["figures"]),
    log:
        f"{LAYOUT.logs}/figures/paper.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge figure all --profile {params.profile} > {log} 2>&1"


# The supplementary set of every run that did not diverge (runs.csv says which), in one job:
# which files appear is known only after training, hence a directory output.
rule run_figures:
    input:
        metrics=str(LAYOUT.table("metrics.csv")),
        runs=str(LAYOUT.table("runs.csv")),
    output:
        report(
            directory(f"{LAYOUT.figures}/runs"),
            patterns=["{task}_{run}.png"],
            caption="../report/run_figure.rst",
            category="Every run",
            subcategory="{task}",
            labels={"run": "{run}"},
        ),
    params:
        profile=PROFILE,
        **as_params(CODE["figures"]),
    log:
        f"{LAYOUT.logs}/figures/runs.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge figure runs --profile {params.profile} > {log} 2>&1"


# A grid figure per task of the profile (a panel per lr x rho; tasks of your own too), in one job.
rule grid_figures:
    input:
        metrics=str(LAYOUT.table("metrics.csv")),
        runs=str(LAYOUT.table("runs.csv")),
    output:
        report(
            directory(f"{LAYOUT.figures}/tasks"),
            patterns=["{task}_grid.png"],
            caption="../report/grid_figure.rst",
            category="Every task",
            labels={"task": "{task}"},
        ),
    params:
        profile=PROFILE,
        **as_params(CODE["figures"]),
    log:
        f"{LAYOUT.logs}/figures/grids.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge figure grids --profile {params.profile} > {log} 2>&1"


# The target of the DVC stage `figures`: every paper figure, the per-run sets and the task grids.
rule figures:
    localrule: True
    input:
        rules.paper_figures.output,
        rules.run_figures.output,
        rules.grid_figures.output,
