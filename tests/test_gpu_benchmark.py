"""benchmarks/gpu.py without a GPU: it says so and exits 0; its per-task measurement runs on the CPU
at smoke size (the same code the GPU runs at paper size), and the table has every column."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    assert float(row[7]) > 0 and int(row[8].split("(")[1].rstrip(")")) > 0
    table = gpu.markdown([row], peak, "smoke", "cpu")
    assert table.count("\n|") == 3
