"""Smoke test of the benchmark command at its tiny size: it runs and writes its tables (no timing checks)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def mnist_dir(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from samedge.data import fetch
    from samedge.data_fetch import MIRROR_ENV

    folder = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MIRROR_ENV, str(mirror))
        for task in ("mnist", "cifar10"):
            fetch(task, folder)
    return folder


def test_tiny_benchmark_writes_tables(repo_root: Path, mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    cmd = [sys.executable, str(repo_root / "benchmarks" / "run.py"), "--size", "tiny", "--out", str(out),
           "--data-dir", str(mnist_dir), "--results", str(tmp_path / "no-results")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]

    text = (out / "results.md").read_text()
    for heading in ("## Targets", "## 1.", "## 2.", "## 3.", "## 4."):
        assert heading in text
    assert "No quick run found" in text

    results = pd.read_csv(out / "results.csv")
    targets = results[results["target"].notna()]
    assert set(targets["status"]) <= {"PASS", "MISS"}
    items = " ".join(targets["item"])
    for what in ("best accurate peer", "warm HVPs / median cold", "tracker share", "HVP time / gradient time",
                 "SAM step time / GD step time", "peak RSS"):
        assert what in items

    peers = pd.read_csv(out / "peers.csv")
    assert {"samedge warm", "samedge cold", "PyHessian power", "eigenthings power",
            "authors: FD block power"} <= set(peers["method"])
    assert (peers.loc[peers["method"] == "samedge warm", "rel_err_1"] < 1e-3).all()
    trajectory = pd.read_csv(out / "trajectory.csv")
    assert len(trajectory) >= 2 and (trajectory["cold_hvps"] > 0).all()
