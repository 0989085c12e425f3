# Stage 4: every paper figure (numbered as in the paper, from the FIGURES table of
# samedge.figure_specs) in one job, so the plotting imports are paid once, and the per-run
# figure sets in another. Each PNG keeps its own caption and place in the report.


rule paper_figures:
    input:
        metrics="results/metrics.csv",
        runs="results/runs.csv",
    output:
        **paper_figure_outputs(),
    params:
        code=CODE["figures"],
    log:
        "logs/figures/paper.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge figure all --results results --out results/figures > {log} 2>&1"


# The supplementary set of every run that did not diverge (runs.csv says which), in one job:
# which files appear is known only after training, hence a directory output.
rule run_figures:
    input:
        metrics="results/metrics.csv",
        runs="results/runs.csv",
    output:
        report(
            directory("results/figures/runs"),
            patterns=["{task}_{run}.png"],
            caption="../report/run_figure.rst",
            category="Every run",
            subcategory="{task}",
            labels={"run": "{run}"},
        ),
    params:
        code=CODE["figures"],
    log:
        "logs/figures/runs.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge figure runs --results results --out results/figures > {log} 2>&1"


# A grid figure per task of the profile (a panel per lr x rho; tasks of your own too), in one job.
rule grid_figures:
    input:
        metrics="results/metrics.csv",
        runs="results/runs.csv",
    output:
        report(
            directory("results/figures/tasks"),
            patterns=["{task}_grid.png"],
            caption="../report/grid_figure.rst",
            category="Every task",
            labels={"task": "{task}"},
        ),
    params:
        code=CODE["figures"],
    log:
        "logs/figures/grids.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge figure grids --results results --out results/figures > {log} 2>&1"


# Beyond the paper, in one job: per optimizer its sharpness against its own edge, per task every
# optimizer's sharpness / edge side by side (samedge.beyond_figures).
rule optimizer_figures:
    input:
        metrics="results/metrics.csv",
        runs="results/runs.csv",
    output:
        report(
            directory("results/figures/optimizers"),
            patterns=["{name}.png"],
            caption="../report/optimizer_figures.rst",
            category="Beyond the paper",
            labels={"figure": "{name}"},
        ),
    params:
        code=CODE["figures"],
    log:
        "logs/figures/optimizers.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge figure optimizers --results results --out results/figures > {log} 2>&1"


# The target of the DVC stage `figures`: every paper figure, the per-run sets and the task grids.
rule figures:
    localrule: True
    input:
        rules.paper_figures.output,
        rules.run_figures.output,
        rules.grid_figures.output,
        rules.optimizer_figures.output,
