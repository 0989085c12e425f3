# Stage 1: fetch, verify and prepare each task's data (SAMEDGE_DATA_MIRROR is inherited by the job).


rule fetch:
    output:
        raw=directory("data/raw/{task}"),
        prepared=directory("data/prepared/{task}"),
    params:
        code=CODE["data"],
        task_code=task_data_code,
    log:
        "logs/fetch/{task}.log",
    threads: 1
    container: CONTAINER
    shell:
        "samedge fetch {wildcards.task} --data-dir data > {log} 2>&1"
