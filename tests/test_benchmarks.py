"""Smoke test of the benchmark command at its tiny size: it runs and writes its tables (no timing checks)."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest


def test_tiny_benchmark_writes_tables(repo_root: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    cmd = [sys.executable, str(repo_root / "benchmarks" / "run.py"), "--size", "tiny", "--out", str(out),
           "--data-dir", str(data_dir), "--results", str(tmp_path / "no-results")]
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
    assert {"samedge warm", "samedge cold", "samedge warm, oracle stop", "PyHessian power", "eigenthings power",
            "authors: FD block power"} <= set(peers["method"])
    assert (peers.loc[peers["method"] == "samedge warm", "rel_err_1"] < 1e-3).all()
    trajectory = pd.read_csv(out / "trajectory.csv")
    assert len(trajectory) >= 2 and (trajectory["cold_hvps"] > 0).all()


def test_pipeline_wall_time_comes_from_the_last_complete_snakemake_log(repo_root: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(repo_root / "benchmarks"))
    from quick_e2e import pipeline_run

    logs = tmp_path / ".snakemake" / "log"
    logs.mkdir(parents=True)
    assert pipeline_run(tmp_path / "results" / "quick") is None
    complete = logs / "2026-12-01T014054.964027.snakemake.log"
    complete.write_text("localrule all:\n17 of 17 steps (100%) done\n")
    start = datetime(2026, 12, 1, 1, 40, 54, 964027).timestamp()
    os.utime(complete, (start + 420.5, start + 420.5))
    (logs / "2026-12-01T014738.015005.snakemake.log").write_text("report only\n")  # later, not a whole DAG
    name, seconds = pipeline_run(tmp_path / "results" / "quick")
    assert name == complete.name and seconds == pytest.approx(420.5, abs=1e-3)
