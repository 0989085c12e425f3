# Stage 3: the tidy tables and the edge-agreement numbers (a DVC metric) of every run of the profile.


rule aggregate:
    input:
        rules.runs.input,
    output:
        metrics=str(LAYOUT.table("metrics.csv")),
        # In the report as HTML pages with the CSV as a download (rule draw_figures).
        runs=str(LAYOUT.table("runs.csv")),
        agreement=str(LAYOUT.table("edge_agreement.csv")),
        summary=str(LAYOUT.table("edge.json")),
    params:
        profile=PROFILE,
        **as_params(CODE["aggregate"]),
    log:
        f"{LAYOUT.logs}/aggregate.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge aggregate --params params.yaml --profile {params.profile} > {log} 2>&1"
