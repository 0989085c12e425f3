"""GPU sharing under --config device=cuda, checked without a GPU: the paper-quick profile plans a
training job per run (52 grid points + the extra CIFAR lr 0.01 seeds), each claiming one device
(`gpu=1`, what SLURM sees) and its task's share of it (`gpu_percent`, what local packing uses);
and Snakemake, with the default profile's one GPU (gpu_percent 100), runs several small training
jobs at once but never lets their shares exceed the GPU. The stand-in: a venv whose `samedge`
records when each job starts and ends instead of training."""
import re
import sys
from pathlib import Path

import pytest

from samedge.config import load_params
from samedge.layout import Layout
from samedge.runs import profile_runs
from tests.pipeline_workspace import copy_repo, dry_run_jobs, run, tool_env

pytestmark = pytest.mark.timeout(600)

VENV = Path(sys.executable).parent.parent
FAKE_SAMEDGE = r'''#!/bin/sh
# stand-in for `samedge`: fetch makes the data folders; train logs its task and times, sleeps, writes outputs
cmd=$1; shift
if [ "$cmd" = fetch ]; then mkdir -p data/raw/$1 data/prepared/$1; exit 0; fi
task=; out=
while [ $# -gt 0 ]; do case $1 in --task) task=$2; shift;; --out) out=$2; shift;; esac; shift; done
echo "start $task $(date +%s.%N)" >> "$SAMEDGE_FAKE_LOG"
sleep 2
echo "end $task $(date +%s.%N)" >> "$SAMEDGE_FAKE_LOG"
mkdir -p "$out" && echo step > "$out/metrics.csv" && echo '{}' > "$out/run.json"
'''


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("packing") / "repo")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return tool_env(tmp_path_factory)


def fake_venv(root: Path) -> Path:
    """A venv sharing this one's packages whose bin/ (first on the jobs' PATH) holds the fake samedge."""
    (root / "bin").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text((VENV / "pyvenv.cfg").read_text())
    (root / "lib").symlink_to(VENV / "lib")
    (root / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    (root / "bin" / "samedge").write_text(FAKE_SAMEDGE)
    (root / "bin" / "samedge").chmod(0o755)
    return root / "bin" / "python"


def test_paper_quick_plans_every_run_with_a_gpu_share(fresh_copy, env):
    params = load_params(fresh_copy / "params.yaml")
    runs = profile_runs(params, "paper-quick")
    points = {(key.task, key.lr, key.rho) for key in runs}
    assert len(points) == 52 and len(runs) == 52 + 16  # CIFAR lr 0.01: seeds 1-4 at each of 4 rhos
    jobs = [job for job in dry_run_jobs(fresh_copy, env, "--config", "profile=paper-quick", "device=cuda")
            if job["rule"] == "train"]
    assert len(jobs) == len(runs)
    for job in jobs:
        task = re.search(r"task=(\w+)", job["wildcards"]).group(1)
        assert "gpu=1" in job["resources"], job
        assert f"gpu_percent={params['gpu_percent'][task]}" in job["resources"], job
        assert "--profile paper-quick" in job["shell"] and "--device cuda" in job["shell"]


def intervals(log: Path) -> list[tuple[str, float, float]]:
    starts, spans = {}, []
    for line in log.read_text().splitlines():
        kind, task, stamp = line.split()
        if kind == "start":
            starts.setdefault(task, []).append(float(stamp))
        else:
            spans.append((task, starts[task].pop(0), float(stamp)))
    return spans


def test_small_jobs_share_one_gpu_within_its_capacity(fresh_copy, env, tmp_path):
    python = fake_venv(tmp_path / "venv")
    log = tmp_path / "jobs.log"
    params = load_params(fresh_copy / "params.yaml")
    runs = profile_runs(params, "paper-quick")
    targets = [f"{Layout('paper-quick').runs}/{key.task}/{key.name}/run.json" for key in runs
               if key.task == "cifar10" and key.lr == 0.003 or key.task == "mnist" and key.lr == 0.3][:8]
    out = run([str(python), "-m", "snakemake", *targets, "--cores", "8",
               "--config", "profile=paper-quick", "device=cuda"],
              fresh_copy, {**env, "SAMEDGE_FAKE_LOG": str(log)})
    assert out.returncode == 0, out.stderr[-3000:]
    spans = intervals(log)
    assert len(spans) == len(targets)
    share = params["gpu_percent"]
    peak_jobs = peak_share = 0
    for _, t0, _ in spans:  # what ran at each job's start
        running = [task for task, s, e in spans if s <= t0 < e]
        peak_jobs = max(peak_jobs, len(running))
        peak_share = max(peak_share, sum(share[task] for task in running))
    assert peak_jobs >= 3, spans  # CIFAR jobs (10%) side by side, under one GPU
    assert peak_share <= 100, spans
