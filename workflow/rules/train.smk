# Stage 2: one training job per (task, lr, rho, optimizer, batch size, seed) of the active profile. A killed job resumes from
# checkpoints/runs/... (not declared outputs); metrics.csv and run.json are written last, atomically.


rule train:
    input:
        data=task_data,
    output:
        metrics="results/runs/{task}/{run}/metrics.csv",
        run="results/runs/{task}/{run}/run.json",
    params:
        out_dir=subpath(output.metrics, parent=True),
        checkpoint_dir="checkpoints/runs/{task}/{run}",
        lr=lambda wildcards: fmt_value(run_key(wildcards).lr),
        rho=lambda wildcards: fmt_value(run_key(wildcards).rho),
        seed=run_seed,
        profile=PROFILE,
        device=DEVICE,
        settings=run_settings,
        code=CODE["train"],
        task_code=task_code,
        optimizer_code=optimizer_code,
        variant=run_variant,
    log:
        "logs/train/{task}/{run}.log",
    benchmark:
        "results/benchmarks/{task}/{run}.tsv"
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


# One target rule per task (runs_mnist, ...): what the DVC stage train@<task> asks for.
for _task in TASKS:

    rule:
        name:
            f"runs_{_task}"
        localrule: True
        input:
            task_run_outputs(_task),
