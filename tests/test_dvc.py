"""DVC's view of the pipeline: it names the same outputs as Snakemake, records a Snakemake-built
workspace without recomputing it, shows metrics and plots, restores byte-identical data and
results from a remote into a fresh clone, and after one grid value changes reruns only the stages
(and inside them only the jobs) that value touches."""
from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from samedge.config import TASKS, fmt_value, grid, load_params, run_name
from tests.pipeline_workspace import (DVC, REPO, SMOKE, SNAKEMAKE, clone_workspace, commit_all,
                                      copy_repo, dry_run_jobs, git, run, smoke_workspace, tool_env)

IGNORED = {".snakemake_timestamp"}  # .dvcignore: Snakemake's bookkeeping, not data


def dvc_stages(repo: Path) -> dict[str, dict]:
    """Every DVC stage: its command and the paths of its outputs (metrics included)."""
    with Repo(str(repo)) as dvc_repo:
        return {stage.name: {"cmd": stage.cmd, "outs": [str(out.def_path) for out in stage.outs]}
                for stage in dvc_repo.index.stages}


def snakemake_args(cmd: str) -> tuple[list[str], str | None]:
    """The targets a stage's `snakemake ...` command asks for, and its --report file."""
    words = shlex.split(cmd)
    assert words[0] == "snakemake", cmd
    targets = []
    for word in words[1:]:
        if word.startswith("-"):
            break
        targets.append(word)
    report = words[words.index("--report") + 1] if "--report" in words else None
    return targets, report


def inside(path: str, out: str) -> bool:
    return path == out or path.startswith(out.rstrip("/") + "/")


def files_under(root: Path, outs: list[str]) -> dict[str, str]:
    """sha256 of every file under the given outputs, by path relative to root."""
    digests = {}
    for out in outs:
        paths = [root / out] if (root / out).is_file() else sorted((root / out).rglob("*"))
        for path in paths:
            if path.is_file() and path.name not in IGNORED:
                digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def set_active_profile(repo: Path, profile: str) -> None:
    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(re.sub(r"(?m)^profile: .*$", f"profile: {profile}", text))


# ---------------------------------------------------------------- static: no pipeline run needed

def test_default_remote_is_a_local_directory_in_the_work_tree():
    with Repo(str(REPO)) as dvc_repo:
        name = dvc_repo.config["core"]["remote"]
        url = dvc_repo.config["remote"][name]["url"]
    assert Path(url) == REPO / "dvc-remote"  # written relative to .dvc/, so every clone has its own
    assert "/dvc-remote/" in (REPO / ".gitignore").read_text().split()


def test_dvc_and_snakemake_name_the_same_outputs(tmp_path, tmp_path_factory):
    repo = copy_repo(tmp_path / "repo")
    env = tool_env(tmp_path_factory)
    stages = dvc_stages(repo)
    targets = [t for stage in stages.values() for t in snakemake_args(stage["cmd"])[0]]
    jobs = dry_run_jobs(repo, env, "--forceall", "all", *targets, *SMOKE)
    produced = {path for job in jobs for key in ("output", "benchmark") if key in job
                for path in job[key].split(", ")}
    outs = [out for stage in stages.values() for out in stage["outs"]]
    for path in produced:  # every Snakemake output is versioned by exactly one DVC output
        assert sum(inside(path, out) for out in outs) == 1, path
    for name, stage in stages.items():
        targets, report = snakemake_args(stage["cmd"])
        asked = [path for target in targets for path in
                 next((job["input"].split(", ") for job in jobs if job["rule"] == target), [target])]
        if report:
            asked.append(report)
        assert asked, f"stage {name} asks Snakemake for nothing"
        for path in asked:  # what a stage asks Snakemake for lies in what the stage declares
            assert any(inside(path, out) for out in stage["outs"]), (name, path)
        for out in stage["outs"]:  # and everything it declares comes from Snakemake
            assert any(inside(path, out) for path in [*produced, *asked]), (name, out)
    assert not [job for job in jobs if re.search(r"\bdvc\b", job["shell"])]  # jobs never call DVC


def test_stages_declare_only_the_params_they_use():
    with Repo(str(REPO)) as dvc_repo:
        params = {stage.name: sorted(key for dep in stage.params for key in dep.params)
                  for stage in dvc_repo.index.stages}
    active = load_params(REPO / "params.yaml")["profile"]
    for task in TASKS:
        assert params[f"data@{task}"] == []
        assert params[f"train@{task}"] == ["profile", f"profiles.{active}.{task}"]
    assert params["aggregate"] == ["profile", *sorted(f"profiles.{active}.{t}.grid" for t in TASKS)]
    assert params["figures"] == params["report"] == []


# ---------------------------------------------------------------- on the smoke workspace

@pytest.fixture(scope="module")
def recorded(tmp_path_factory, mirror):
    """A copy of the smoke workspace with `profile: smoke` committed, then `dvc repro` run on it."""
    ws = clone_workspace(smoke_workspace(tmp_path_factory, mirror), tmp_path_factory.mktemp("dvc") / "repo")
    set_active_profile(ws, "smoke")
    commit_all(ws, "smoke profile")
    env = tool_env(tmp_path_factory, mirror)
    outs = [out for stage in dvc_stages(ws).values() for out in stage["outs"]
            if out != "results/report.html"]  # the report is rebuilt on every `dvc repro`
    before = files_under(ws, outs)
    repro = run([DVC, "repro"], ws, env, timeout=600)
    commit_all(ws, "dvc.lock")
    return {"ws": ws, "env": env, "outs": outs, "before": before, "repro": repro.stdout + repro.stderr}


def jobs_run(log: str) -> list[str]:
    """The samedge commands Snakemake ran (the profile prints every job's shell command)."""
    return re.findall(r"^(?:Shell command: )?samedge (\w+.*?) >", log, flags=re.MULTILINE)


@pytest.mark.slow
def test_repro_records_a_built_workspace_without_recomputing(recorded):
    ws, env = recorded["ws"], recorded["env"]
    assert set(re.findall(r"Running stage '([^']+)'", recorded["repro"])) == set(dvc_stages(ws))
    assert jobs_run(recorded["repro"]) == []  # Snakemake found every job up to date
    assert files_under(ws, recorded["outs"]) == recorded["before"]
    assert "Data and pipelines are up to date" in run([DVC, "status"], ws, env).stdout
    assert "Nothing to be done" in run([SNAKEMAKE, "--dry-run", *SMOKE], ws, env).stdout
    assert not re.search(r"LockError|cannot be locked|Unable to acquire lock", recorded["repro"])


@pytest.mark.slow
def test_dvc_outputs_hold_only_files_snakemake_declares(recorded):
    ws, env = recorded["ws"], recorded["env"]
    stages = dvc_stages(ws)
    targets = [t for stage in stages.values() for t in snakemake_args(stage["cmd"])[0]]
    jobs = dry_run_jobs(ws, env, "--forceall", "all", *targets, *SMOKE)
    declared = [path for job in jobs for key in ("output", "benchmark") if key in job
                for path in job[key].split(", ")]
    on_disk = files_under(ws, [out for stage in stages.values() for out in stage["outs"]])
    assert on_disk and [path for path in on_disk if path != "results/report.html"
                        and not any(inside(path, out) for out in declared)] == []


@pytest.mark.slow
def test_metrics_and_plots_show(recorded, tmp_path):
    ws, env = recorded["ws"], recorded["env"]
    metrics = json.loads(run([DVC, "metrics", "show", "--json"], ws, env).stdout)
    values = next(iter(metrics.values()))["data"]["results/edge_agreement.json"]["data"]
    runs = grid(load_params(ws / "params.yaml"), "smoke")
    assert len(values) == len(runs) and all("sam_ratio_median" in v for v in values.values())
    plots = json.loads(run([DVC, "plots", "show", "--json"], ws, env).stdout)["data"]
    assert set(plots) == {"sharpness", "loss", "alignment"}
    rows = plots["sharpness"][0]["content"]["data"]["values"]
    assert {(r["task"], float(r["lr"]), float(r["rho"])) for r in rows} == set(runs)
    assert {r["field"] for r in rows} == {"lambda_1", "sam_edge", "gd_edge"}
    run([DVC, "plots", "show", "-o", str(tmp_path / "plots")], ws, env)
    assert (tmp_path / "plots/index.html").stat().st_size > 0


@pytest.mark.slow
def test_push_then_pull_into_a_fresh_clone_restores_identical_bytes(recorded, tmp_path):
    ws, env = recorded["ws"], recorded["env"]
    remote, clone = tmp_path / "remote", tmp_path / "clone"
    run([DVC, "remote", "add", "--local", "scratch", str(remote)], ws, env)
    run([DVC, "push", "-r", "scratch"], ws, env, timeout=600)
    git(tmp_path, "clone", "-q", str(ws), str(clone))
    run([DVC, "remote", "add", "--local", "scratch", str(remote)], clone, env)
    run([DVC, "pull", "-r", "scratch"], clone, env, timeout=600)
    outs = [out for stage in dvc_stages(ws).values() for out in stage["outs"]]
    original = files_under(ws, outs)
    assert any(path.startswith("data/prepared/") for path in original)
    assert files_under(clone, outs) == original
    assert "Data and pipelines are up to date" in run([DVC, "status"], clone, env).stdout


@pytest.mark.slow
def test_changing_one_grid_value_reruns_only_what_it_touches(recorded):
    """Runs last in this module: it changes the workspace. It reproduces up to the tables (the
    figures would only add time) and checks that figures and report are what remains stale."""
    ws, env = recorded["ws"], recorded["env"]
    params = yaml.safe_load((ws / "params.yaml").read_text())
    mnist = params["profiles"]["smoke"]["mnist"]["grid"]
    old_rho, new_rho = mnist["rho"][-1], mnist["rho"][-1] * 2
    mnist["rho"][-1] = new_rho
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(json.loads(run([DVC, "status", "--json"], ws, env).stdout)) == {"train@mnist", "aggregate"}

    data_and_runs = [out for out in recorded["outs"] if out.startswith(("data/", "results/runs/"))]
    before = files_under(ws, data_and_runs)
    repro = run([DVC, "repro", "aggregate"], ws, env, timeout=600)
    log = repro.stdout + repro.stderr
    assert set(re.findall(r"Running stage '([^']+)'", log)) == {"train@mnist", "aggregate"}
    lr = mnist["lr"][0]
    new_run = f"results/runs/mnist/{run_name(lr, new_rho)}"
    [train, aggregate] = jobs_run(log)  # one new training job; every other run was kept
    assert train.startswith(f"train --task mnist --lr {fmt_value(lr)} --rho {fmt_value(new_rho)} ")
    assert aggregate.startswith("aggregate ")
    after = files_under(ws, data_and_runs)
    assert set(after) - set(before) == {f"{new_run}/metrics.csv", f"{new_run}/run.json"}
    assert all(after[path] == digest for path, digest in before.items())
    assert f"results/runs/mnist/{run_name(lr, old_rho)}/run.json" in after  # outside the grid now
    assert set(json.loads(run([DVC, "status", "--json"], ws, env).stdout)) == {"figures", "report"}
