"""benchmarks/gpu.py without a GPU: it says so and exits 0; its per-task measurement runs on the CPU
at smoke size (the same code the GPU runs at paper size), and the table has every column."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samedge.runs import parse_run_name
from tests.synthetic import write_run

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu  # noqa: E402


def test_without_cuda_it_says_so_and_exits_0():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py")], capture_output=True, text=True)
    assert out.returncode == 0 and "no CUDA device" in out.stdout


@pytest.mark.parametrize("task", ["shakespeare"])  # the others share the code path; CPU time is scarce
def test_a_task_row_measures_every_column_on_cpu(task, data_dir):
    cpu = torch.device("cpu")
    peak = gpu.matmul_peak_flops(cpu, n=256, calls=2)
    row = gpu.task_row(task, "smoke", data_dir, peak, cpu)
    assert len(row) == len(gpu.HEADER) and row[0] == task
    sam_ms, gd_ms, gflop, floor_ms, ratio = (float(v) for v in row[1:6])
    assert min(sam_ms, gd_ms, gflop, floor_ms, ratio) > 0
    assert row[7:9] == ["-", "-"]  # CUDA graphs: GPU only
    assert float(row[9]) > 0 and int(row[10].split("(")[1].rstrip(")")) > 0
    table = gpu.markdown([row], peak, "smoke", "cpu")
    assert table.count("\n|") == 3


def test_claims_pick_the_largest_surviving_sam_lr_and_the_largest_gd_lr_at_its_edge(tmp_path):
    rows = [  # task, lr, rho, diverged, gd_ratio_median, sam_ratio_median
        ("mnist", 0.1, 0.1, False, 0.5, 1.02), ("mnist", 0.3, 0.1, True, 9.0, 9.0),
        ("mnist", 0.1, 0.0, False, 0.97, 0.97), ("mnist", 0.3, 0.0, False, 0.6, 0.6),
        ("cifar10", 0.01, 0.1, False, 0.3, 1.3), ("cifar10", 0.01, 0.0, True, 1.0, 1.0),
    ]
    path = tmp_path / "edge_agreement.csv"
    path.write_text("task,lr,rho,diverged,gd_ratio_median,sam_ratio_median\n"
                    + "".join(",".join(map(str, r)) + "\n" for r in rows))
    lines = gpu.claims(path).splitlines()
    assert "| mnist | SAM rho 0.1: lambda_1 / SAM edge | 0.1 | 1.020 | PASS |" in lines
    assert "| mnist | GD: lambda_1 / (2/eta) | 0.1 | 0.970 | PASS |" in lines
    assert "| cifar10 | SAM rho 0.1: lambda_1 / SAM edge | 0.01 | 1.300 | MISS |" in lines
    assert "| cifar10 | GD: lambda_1 / (2/eta) | - | - | MISS (no such run) |" in lines


def test_gpu_check_without_cuda_stops_with_one_line_before_any_work(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    script = REPO / "benchmarks" / "gpu_check.sh"
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}
    no_mirror = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    assert no_mirror.returncode == 2 and "SAMEDGE_DATA_MIRROR" in no_mirror.stderr
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                         env={**env, "SAMEDGE_DATA_MIRROR": str(tmp_path)})
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no CUDA device" in out.stderr
    assert not (REPO / ".gpu-venv").exists()


def test_packing_sums_job_seconds_against_the_wall_time(tmp_path):
    for task, runs in (("mnist", {"lr0.1_rho0": (30.0, 500, 20.0)}),
                       ("cifar10", {"lr0.01_rho0": (12.0, 1000, 8.0), "lr0.01_rho0.1": (18.0, 1000, 12.0)})):
        for run, (seconds, steps, train_s) in runs.items():
            bench = tmp_path / "benchmarks" / task / f"{run}.tsv"
            bench.parent.mkdir(parents=True, exist_ok=True)
            bench.write_text(f"s\th:m:s\n{seconds}\t0:00:{int(seconds)}\n")
            lr, rho, *_ = parse_run_name(run)
            record = write_run(tmp_path / "runs", task, lr, rho) / "run.json"
            record.write_text(json.dumps(json.loads(record.read_text()) | {"steps": steps, "train_seconds": train_s}))
    lines = gpu.packing(tmp_path, 20.0).splitlines()
    assert "| cifar10 | 2 | 30 | 10.00 |" in lines and "| mnist | 1 | 30 | 40.00 |" in lines
    assert lines[-1].endswith("60 / 20 = 3.00 jobs at once on average.")
