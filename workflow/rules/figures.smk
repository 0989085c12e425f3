# Stage 4: every figure in one job (numbered as in the paper, from the FIGURES table of
# samedge.figure_specs; the per-run sets; the task grids; the report's landing page), drawn by `--jobs`
# forked processes that share the plotting imports and tables loaded once. Each PNG keeps its own
# caption and place in the report. Paths come from the profile's layout (samedge.layout).


rule draw_figures:
    input:
        metrics=str(LAYOUT.table("metrics.csv")),
        runs=str(LAYOUT.table("runs.csv")),
        agreement=str(LAYOUT.table("edge_agreement.csv")),
    output:
        **paper_figure_outputs(),
        **summary_outputs(),
        # Which runs get a set is known only after training (runs.csv says which): directory outputs.
        runs=report(
            directory(f"{LAYOUT.figures}/runs"),
            patterns=["{task}_{run}.png"],
            caption="../report/run_figure.rst",
            category="Every run",
            subcategory="{task}",
            labels={"run": "{run}"},
        ),
        tasks=report(
            directory(f"{LAYOUT.figures}/tasks"),
            patterns=["{task}_grid.png"],
            caption="../report/grid_figure.rst",
            category="Every task",
            labels={"task": "{task}"},
        ),
    params:
        profile=PROFILE,
        x=config.get("figure_x", "step"),
        **as_params(CODE["figures"]),
    log:
        f"{LAYOUT.logs}/figures/figures.log",
    threads: 2
    container: CONTAINER
    shell:
        "samedge figure summary all runs grids --jobs {threads} --x {params.x} --profile {params.profile}"
        " > {log} 2>&1"


# Beyond the paper, in one job: per optimizer its sharpness against its own edge, per task every
# optimizer's sharpness / edge side by side (samedge.beyond_figures).
rule optimizer_figures:
    input:
        metrics=str(LAYOUT.table("metrics.csv")),
        runs=str(LAYOUT.table("runs.csv")),
    output:
        report(
            directory(f"{LAYOUT.figures}/optimizers"),
            patterns=["{name}.png"],
            caption="../report/optimizer_figures.rst",
            category="Beyond the paper",
            labels={"figure": "{name}"},
        ),
    params:
        profile=PROFILE,
        **as_params(CODE["figures"]),
    log:
        f"{LAYOUT.logs}/figures/optimizers.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge figure optimizers --profile {params.profile} > {log} 2>&1"


# The target of the DVC stage `figures`: every figure of the profile.
rule figures:
    localrule: True
    input:
        rules.draw_figures.output,
        rules.optimizer_figures.output,
