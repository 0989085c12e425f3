# Stage 1: fetch, verify and prepare each task's data (SAMEDGE_DATA_MIRROR is inherited by the job).


rule fetch:
    output:
        raw=directory("data/raw/{task}"),
        prepared=directory("data/prepared/{task}"),
    params:
        **as_params(CODE["data"]),
        task_code=task_data_code,
    log:
        "logs/fetch/{task}.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge fetch {wildcards.task} --data-dir data > {log} 2>&1"


# The target of the DVC stage `data`: the data of every task of the profile that reads a data set.
rule data:
    localrule: True
    input:
        [f"data/{kind}/{task}" for task in TASKS if get_task(task).data is not None
         for kind in ("raw", "prepared")],
