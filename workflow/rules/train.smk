# Stage 2: one training job per (task, lr, rho, optimizer, batch size, seed) of the active profile. A killed job
# resumes from checkpoints/<profile>/... (not declared outputs); metrics.csv and run.json are written last, atomically.


rule train:
    input:
        data=task_data,
    output:
        metrics=f"{LAYOUT.runs}/{{task}}/{{run}}/metrics.csv",
        run=f"{LAYOUT.runs}/{{task}}/{{run}}/run.json",
    params:
        out_dir=subpath(output.metrics, parent=True),
        checkpoint_dir=f"{LAYOUT.checkpoints}/{{task}}/{{run}}",
        lr=lambda wildcards: fmt_value(run_key(wildcards).lr),
        rho=lambda wildcards: fmt_value(run_key(wildcards).rho),
        seed=run_seed,
        profile=PROFILE,
        device=DEVICE,
        settings=run_settings,
        **as_params(CODE["train"]),
        task_code=task_code,
        optimizer_code=optimizer_code,
        variant=run_variant,
    log:
        f"{LAYOUT.logs}/train/{{task}}/{{run}}.log",
    benchmark:
        f"{LAYOUT.benchmarks}/{{task}}/{{run}}.tsv"
    threads: 1
    resources:
        gpu=GPUS_PER_TRAIN_JOB,
        gpu_percent=train_gpu_percent,
    container: CONTAINER
    shell:
        "samedge train --task {wildcards.task} --lr {params.lr} --rho {params.rho} --seed {params.seed}"
        " --profile {params.profile} --params params.yaml --data-dir data"
        " --device {params.device} --threads {threads} {params.variant}"
        " --out {params.out_dir} --checkpoint-dir {params.checkpoint_dir} > {log} 2>&1"


# The target of the DVC stage `train`: every run of the profile, whatever its tasks.
rule runs:
    localrule: True
    input:
        [path for task in TASKS for path in task_run_outputs(task)],
