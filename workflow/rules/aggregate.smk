# Stage 3: the tidy tables and the edge-agreement numbers (a DVC metric) of every run of the profile.


rule aggregate:
    input:
        [path for task in TASKS for path in task_run_outputs(task)],
    output:
        metrics="results/metrics.csv",
        # In the report as HTML pages with the CSV as a download (rule draw_figures).
        runs="results/runs.csv",
        agreement="results/edge_agreement.csv",
        summary="results/edge_agreement.json",
    params:
        profile=PROFILE,
        code=CODE["aggregate"],
    log:
        "logs/aggregate.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge aggregate --runs-dir results/runs --out-dir results --params params.yaml"
        " --profile {params.profile} > {log} 2>&1"
