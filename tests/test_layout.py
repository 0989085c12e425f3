"""Every profile's folders (samedge.layout), and the move of a single-profile workspace into them:
everything lands in the profile's folders with bytes and modification times kept, and nothing moves
if any destination is taken."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from samedge.errors import ConfigError
from samedge.layout import RESERVED, Layout, main, migrate

REPO = Path(__file__).resolve().parents[1]

OLD = ["results/runs/mnist/lr0.3_rho0/metrics.csv", "results/runs/mnist/lr0.3_rho0/run.json",
       "results/metrics.csv", "results/runs.csv", "results/edge_agreement.csv", "results/edge_agreement.json",
       "results/figures/fig01_edge_ratio.png", "results/figures/runs/mnist_lr0.3_rho0.png",
       "results/benchmarks/mnist/lr0.3_rho0.tsv", "results/report.html",
       "checkpoints/runs/mnist/lr0.3_rho0.1/state.pt", "logs/train/mnist/lr0.3_rho0.log",
       "logs/figures/paper.log", "logs/aggregate.log", "logs/fetch/mnist.log"]


def old_workspace(root: Path) -> dict[str, tuple[bytes, int]]:
    files = {}
    for i, rel in enumerate(OLD):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{rel} {i}".encode())
        os.utime(path, ns=(10**18 + i, 10**18 + i))
        files[rel] = (path.read_bytes(), path.stat().st_mtime_ns)
    return files


def test_profiles_have_their_own_folders():
    quick, smoke = Layout("quick"), Layout("smoke")
    for attr in ("results", "runs", "figures", "benchmarks", "code", "report", "checkpoints", "logs"):
        assert getattr(quick, attr) != getattr(smoke, attr) and "quick" in getattr(quick, attr).parts
    assert quick.table("runs.csv") == Path("results/quick/runs.csv")
    for name in ["", "a/b", ".hidden", *RESERVED]:
        with pytest.raises(ConfigError):
            Layout(name)


def test_migration_moves_everything_into_the_profile_folders(tmp_path):
    files = old_workspace(tmp_path)
    migrate(Layout("quick", tmp_path))
    new = {rel: rel.replace("results/", "results/quick/", 1).replace("checkpoints/runs/", "checkpoints/quick/")
           .replace("logs/", "logs/quick/", 1) for rel in OLD if not rel.startswith("logs/fetch/")}
    new["logs/fetch/mnist.log"] = "logs/fetch/mnist.log"  # shared by every profile: stays
    for rel, dest in new.items():
        path = tmp_path / dest
        assert (path.read_bytes(), path.stat().st_mtime_ns) == files[rel], dest
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == sorted(new.values())


def test_migration_moves_nothing_if_a_destination_is_taken(tmp_path):
    files = old_workspace(tmp_path)
    taken = tmp_path / "results/quick/runs.csv"
    taken.parent.mkdir(parents=True)
    taken.write_text("another run's table")
    with pytest.raises(ConfigError, match="results/quick/runs.csv already exists"):
        migrate(Layout("quick", tmp_path))
    assert all((tmp_path / rel).read_bytes() == content for rel, (content, _) in files.items())
    assert taken.read_text() == "another run's table"


def test_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("profile: smoke\n")
    assert main(["report"]) == 0 and capsys.readouterr().out == "results/smoke/report.html\n"
    assert main(["report", "paper"]) == 0 and capsys.readouterr().out == "results/paper/report.html\n"
    old_workspace(tmp_path)
    assert main(["migrate", "quick"]) == 0 and "moved" in capsys.readouterr().out
    assert main(["migrate", "quick"]) == 0 and "nothing of the old layout" in capsys.readouterr().out
    assert main(["migrate", "runs"]) == 2 and "reserved" in capsys.readouterr().err


def test_figure_command_writes_into_the_profile_folder(tmp_path):
    out = subprocess.run([sys.executable, "-m", "samedge.cli", "figure", "1", "--params", str(REPO / "params.yaml"),
                          "--profile", "smoke"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "results/smoke/figures/fig01_edge_ratio.png").is_file()
