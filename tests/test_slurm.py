"""The smoke pipeline on a real one-node SLURM cluster (cluster/slurm-up.sh) through
profiles/slurm: every job must be a SLURM job by SLURM's own records, and the aggregated
results must equal those of a local run of the same profile (CPU, same seeds)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from samedge.layout import Layout
from tests.pipeline_workspace import SMOKE, SNAKEMAKE, copy_repo, module_scratch, smoke_workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
PARTITION = "debug"
TARGETS = [str(Layout("smoke").table(name)) for name in ("metrics.csv", "runs.csv", "edge_agreement.csv")]
TIMING = re.compile(r"seconds|wall|time", re.IGNORECASE)  # columns that measure, not compute


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None, timeout: int = 120):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def scontrol_fields(*args: str) -> dict[str, str]:
    """`scontrol show ... -o` (one line of KEY=VALUE) as a dict."""
    out = run(["scontrol", "-o", "show", *args])
    assert out.returncode == 0, out.stderr
    return dict(item.split("=", 1) for item in out.stdout.split() if "=" in item)


@pytest.fixture(scope="module")
def slurm_cluster():
    """The one-node cluster, up for this module and stopped afterwards."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("SLURM test needs Linux and root (installs slurm-wlm/munge, starts daemons)")
    up = run(["bash", str(CLUSTER / "slurm-up.sh")], timeout=900)
    if up.returncode in (2, 3):  # not root / foreign slurm.conf / packages not installable
        pytest.skip(f"no local SLURM cluster: {up.stderr.strip().splitlines()[-1]}")
    try:
        assert up.returncode == 0, f"cluster/slurm-up.sh failed:\n{up.stderr}"
        yield {line.split("=", 1)[0].strip(): line.split("=", 1)[1].strip()
               for line in run(["scontrol", "show", "config"]).stdout.splitlines() if "=" in line}
    finally:
        run(["bash", str(CLUSTER / "slurm-down.sh")], timeout=300)


def pipeline_env(mirror: Path) -> dict[str, str]:
    """samedge/snakemake of this interpreter first on PATH; sbatch jobs inherit it (--export=ALL)."""
    env = dict(os.environ, SAMEDGE_DATA_MIRROR=str(mirror))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def local_cluster_profile(dest: Path) -> Path:
    """profiles/slurm as shipped, less what this cluster lacks (Apptainer, accounting, a GPU
    partition, the 32 GB a paper training job asks for); job states come from squeue, which
    keeps finished jobs for MinJobAge (1 h in cluster/slurm.conf.in)."""
    config = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    for key in ("software-deployment-method", "apptainer-args"):
        del config[key]
    config["default-resources"].pop("slurm_account")
    config["default-resources"]["slurm_partition"] = f"'{PARTITION}'"
    train = config["set-resources"]["train"]
    train.pop("slurm_partition")
    train["mem_mb"] = 2000
    config.update({
        "slurm-status-command": "squeue",
        "slurm-no-account": True,
        "slurm-init-seconds-before-status-checks": 2,
        "seconds-between-status-checks": 3,
        "jobs": 2,
        "retries": 0,  # fail fast: a failing job here is a bug, not a preemption
        "latency-wait": 10,
    })
    dest.mkdir()
    (dest / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


@pytest.fixture(scope="module")
def slurm_work(slurm_cluster, mirror, tmp_path_factory) -> Iterator[Path]:
    """A repository copy where the smoke profile ran up to the aggregated tables through SLURM
    (--workflow-profile none, as the README says for clusters)."""
    with module_scratch(tmp_path_factory, "slurm") as base:
        work = copy_repo(base / "repo")
        profile = local_cluster_profile(base / "profile")
        cmd = [SNAKEMAKE, *TARGETS, "--profile", str(profile), "--workflow-profile", "none", *SMOKE]
        out = run(cmd, cwd=work, env=pipeline_env(mirror), timeout=1800)
        assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stderr[-6000:]}"
        yield work


@pytest.fixture(scope="module")
def local_work(mirror, tmp_path_factory) -> Path:
    """The session's local smoke run (`snakemake --cores 2`), shared with test_pipeline."""
    return smoke_workspace(tmp_path_factory, mirror)


def slurm_jobs(work: Path) -> dict[str, str]:
    """SLURM job id -> rule, from the plugin's per-job logs (rule_<rule>[/<wildcards>]/<id>.log)."""
    root = work / ".snakemake" / "slurm_logs"
    return {log.stem: log.relative_to(root).parts[0].removeprefix("rule_") for log in root.rglob("*.log")}


def test_every_job_ran_as_a_slurm_job(slurm_cluster, slurm_work):
    jobs = slurm_jobs(slurm_work)
    rules = sorted(jobs.values())
    runs = list(Layout("smoke", slurm_work).runs.glob("*/*/run.json"))
    tasks = list((slurm_work / "data" / "prepared").iterdir())
    assert rules.count("train") == len(runs) > 0 and rules.count("fetch") == len(tasks) > 0, rules
    assert rules.count("aggregate") == 1, rules
    (run_log,) = (slurm_work / ".snakemake" / "log").glob("*.snakemake.log")
    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", run_log.read_text()))
    assert submitted == set(jobs), (submitted, jobs)
    jobcomp = Path(slurm_cluster["JobCompLoc"]).read_text()
    host = run(["hostname", "-s"]).stdout.strip()
    names = set()
    for job_id, rule in jobs.items():
        record = scontrol_fields("job", job_id)
        names.add(record["JobName"])
        assert record["JobState"] == "COMPLETED", record
        assert record["Comment"].startswith(f"rule_{rule}"), record
        assert record["Partition"] == PARTITION and record["NodeList"] == host, record
        assert record["Requeue"] == "1", record  # the profile's slurm-requeue (cluster default: 0)
        assert re.search(rf"^JobId={job_id} .*JobState=COMPLETED", jobcomp, re.MULTILINE), job_id
    assert len(names) == 1, names  # the plugin names every job of one snakemake run by its run id


def test_training_jobs_asked_for_the_profile_resources(slurm_work):
    train_ids = [job_id for job_id, rule in slurm_jobs(slurm_work).items() if rule == "train"]
    record = scontrol_fields("job", train_ids[0])
    assert record["TimeLimit"] == "16:00:00", record  # runtime 960 * attempt (attempt 1)
    assert record["MinMemoryNode"] == "2000M", record


@pytest.mark.parametrize("table", ["metrics.csv", "runs.csv", "edge_agreement.csv"])
def test_slurm_results_equal_a_local_run(slurm_work, local_work, table):
    frames = []
    for work in (slurm_work, local_work):
        frame = pd.read_csv(Layout("smoke", work).table(table))
        timing = [c for c in frame.columns if TIMING.search(c) or c.endswith("_sha256")]  # _sha256: of files with times
        frame = frame.drop(columns=timing)
        keys = [c for c in ("task", "lr", "rho", "step") if c in frame.columns]
        frames.append(frame.sort_values(keys).reset_index(drop=True))
    assert len(frames[0]) > 0
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


def running_train_job(work: Path, deadline: float) -> str:
    """The SLURM id of the training job once it is past its first checkpoint."""
    while time.monotonic() < deadline:
        ids = run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"]).stdout.split("\n")
        train = [line.split()[0] for line in ids if "rule_train" in line]
        if train and any((work / "checkpoints").rglob("checkpoint.pt")):
            return train[0]
        time.sleep(0.5)
    raise AssertionError("no training job reached its first checkpoint in time")


def test_a_preempted_training_job_is_requeued_and_resumes(slurm_cluster, mirror, tmp_path):
    """`scontrol requeue` is what preemption does to a job: SIGTERM, then back in the queue.
    The trainer checkpoints on SIGTERM; the requeued job resumes there and snakemake, polling,
    sees the same job id finish."""
    work = copy_repo(tmp_path / "repo")
    params = yaml.safe_load((work / "params.yaml").read_text())
    max_steps = 2000  # long enough (tens of seconds) to be caught mid-run
    params["profiles"]["smoke"]["mnist"]["train"]["max_steps"] = max_steps
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    profile = local_cluster_profile(tmp_path / "profile")
    target = f"{Layout('smoke').runs}/mnist/lr0.3_rho0.1"
    cmd = [SNAKEMAKE, f"{target}/run.json", "--profile", str(profile), "--workflow-profile", "none",
           *SMOKE]
    with subprocess.Popen(cmd, cwd=work, env=pipeline_env(mirror), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as proc:
        job_id = running_train_job(work, time.monotonic() + 600)
        requeue = run(["scontrol", "requeue", job_id])
        _, stderr = proc.communicate(timeout=900)
    assert requeue.returncode == 0, requeue.stderr
    assert proc.returncode == 0, stderr[-6000:]
    record = scontrol_fields("job", job_id)
    assert record["JobState"] == "COMPLETED" and record["Restarts"] == "1", record
    resumed = re.search(r"resumed from \S+ at step (\d+)", next((work / "logs").rglob("lr0.3_rho0.1.log")).read_text())
    assert resumed and 0 < int(resumed.group(1)) < max_steps, "the requeued job did not resume"
    run_record = json.loads((work / target / "run.json").read_text())
    assert (run_record["status"], run_record["steps"]) == ("completed", max_steps), run_record
