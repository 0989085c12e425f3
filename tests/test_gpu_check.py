"""benchmarks/gpu_check.sh without a GPU: it refuses a DAG that would not start fresh (one line, exit
2, nothing made), and its CPU rehearsal (GPU_CHECK_DEVICE=cpu, the smoke profile) runs every step
the GPU run does: venv, data, timed DAG, the resume drill and the rerun check, and the results file.
The drills' verdicts come from benchmarks/gpu.py, checked here on runs that agree and that differ."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.pipeline_workspace import copy_repo
from tests.synthetic import write_run

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu  # noqa: E402


def script_env(mirror: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "SAMEDGE_DATA_MIRROR": str(mirror), **extra}


@pytest.mark.parametrize("done", ["results/smoke/runs/mnist/lr0.3_rho0/run.json",
                                  "checkpoints/smoke/cifar10/lr0.01_rho0.1/checkpoint.pt"])
def test_a_dag_that_would_not_start_fresh_is_refused_before_any_work(done, tmp_path):
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(SCRIPT, tmp_path / "benchmarks")
    (tmp_path / done).parent.mkdir(parents=True)
    (tmp_path / done).write_text("{}")
    before = sorted(p for p in tmp_path.rglob("*"))
    out = subprocess.run(["bash", str(tmp_path / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                         env=script_env(tmp_path, GPU_CHECK_DEVICE="cpu"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "not a fresh DAG" in out.stderr and done in out.stderr
    assert sorted(p for p in tmp_path.rglob("*")) == before  # no venv, no drill folder, no logs


def test_an_unknown_device_is_refused(tmp_path):
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                         env=script_env(tmp_path, GPU_CHECK_DEVICE="tpu"))
    assert out.returncode == 2 and "GPU_CHECK_DEVICE=tpu" in out.stderr


def test_the_drill_jobs_are_sam_runs_the_dag_makes(repo_root):
    from samedge.config import load_params
    from samedge.runs import profile_runs

    params = load_params(repo_root / "params.yaml")
    for profile in ("paper-quick", "smoke"):
        names = {(key.task, key.name) for key in profile_runs(params, profile)}
        lines = gpu.drill_runs(repo_root / "params.yaml", profile)
        assert [line.split()[0] for line in lines] == ["mnist", "cifar10"]
        for line in lines:
            task, lr, rho, run = line.split()
            assert (task, run) in names and float(rho) > 0
    assert gpu.drill_runs(repo_root / "params.yaml", "paper-quick")[1] == "cifar10 0.003 0.1 lr0.003_rho0.1"


def test_same_metrics_ignores_timing_and_names_the_first_difference(tmp_path):
    runs = [write_run(tmp_path / name, "mnist", 0.3, 0.1) for name in ("a", "b", "c")]
    for run, seconds in zip(runs, (1.0, 2.0, 3.0)):  # every rerun takes its own time
        frame = pd.read_csv(run / "metrics.csv")
        frame["train_seconds"] = frame["wall_seconds"] = seconds
        frame.to_csv(run / "metrics.csv", index=False)
    assert "bit-identical" in gpu.same_metrics("x", runs[:2])
    frame = pd.read_csv(runs[2] / "metrics.csv")
    frame.loc[1, "lambda_1"] = np.nextafter(frame.loc[1, "lambda_1"], np.inf)  # one ulp
    frame.to_csv(runs[2] / "metrics.csv", index=False)
    verdict = gpu.same_metrics("x", runs)
    assert f"DIFFERS: lambda_1 at step {frame.loc[1, 'step']}:" in verdict, verdict
    assert "FAIL: no metrics.csv" in gpu.same_metrics("x", [runs[0], tmp_path / "nowhere"])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_cpu_rehearsal_runs_every_step_and_the_drills_agree(tmp_path, mirror):
    repo = copy_repo(tmp_path / "repo")
    out = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=repo, capture_output=True, text=True,
                         env=script_env(mirror, GPU_CHECK_DEVICE="cpu"), timeout=1100)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    [results] = repo.glob("benchmarks/out/gpu-check-*/results-cpu-rehearsal.md")
    text = results.read_text()
    assert "every run trained afresh" in text and "CPU rehearsal" in text
    assert "The resume drill's job was SIGKILLed after its first checkpoint." in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and ": DAG run" in line]
    assert len(rows) == 3 and all("bit-identical" in row for row in rows), rows
    assert "| 2 | -/1 |" in rows[0] or "| 2 | 0/1 |" in rows[0]  # the drill's run resumed once
    assert not (repo / "benchmarks" / "results-gpu.md").exists()  # a rehearsal never stands in for GPU results
    record = json.loads(next(repo.glob("benchmarks/out/gpu-check-*/resumed/run.json")).read_text())
    assert record["resumes"] == 1 and record["status"] == "completed"
    again = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=repo, capture_output=True, text=True,
                           env=script_env(mirror, GPU_CHECK_DEVICE="cpu"))
    assert again.returncode == 2 and "not a fresh DAG" in again.stderr
