# Stage 4: one rule per paper figure (figure_01 ... figure_16, numbered as in the paper, from the
# FIGURES table of samedge.figure_specs) and the per-run figure sets.

for _number, _spec in FIGURES.items():

    rule:
        name:
            f"figure_{_number:02d}"
        input:
            # Figure 1 is analytic and reads nothing.
            **({} if _spec.task is None else {"metrics": "results/metrics.csv", "runs": "results/runs.csv"}),
        output:
            pdf=str(figure_files(_number)[0]),
            png=report(
                str(figure_files(_number)[1]),
                caption=f"../report/fig{_number:02d}.rst",
                category="Paper figures",
                subcategory=_spec.task or "analytic",
                labels={"figure": f"Figure {_number}", "title": _spec.title},
            ),
        params:
            number=_number,
        log:
            f"logs/figures/fig{_number:02d}.log",
        threads: 1
        container: CONTAINER
        shell:
            "samedge figure {params.number} --results results --out results/figures > {log} 2>&1"


# The supplementary set of every run that did not diverge (runs.csv says which), in one job:
# which files appear is known only after training, hence a directory output.
rule run_figures:
    input:
        metrics="results/metrics.csv",
        runs="results/runs.csv",
    output:
        report(
            directory("results/figures/runs"),
            patterns=["{task}_lr{lr}_rho{rho}.png"],
            caption="../report/run_figure.rst",
            category="Every run",
            subcategory="{task}",
            labels={"run": "lr={lr}, rho={rho}"},
        ),
    log:
        "logs/figures/runs.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge figure runs --results results --out results/figures > {log} 2>&1"


# The target of the DVC stage `figures`: every paper figure and the per-run sets.
rule figures:
    localrule: True
    input:
        paper_figure_files(),
        rules.run_figures.output,
