"""DVC's view of the pipeline: it names the same outputs as Snakemake, lists as deps exactly the
package code each stage runs, records a Snakemake-built workspace without retraining, shows a few
metrics per task and plots that render offline, restores byte-identical data and results from a
remote into a fresh clone, after one grid value changes reruns only the stages (and inside them
only the jobs) that value touches, and after a code edit (or `dvc repro -f`) reruns that stage."""
from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from samedge.codedeps import STAGE_ENTRIES, module_file, module_files, stage_files

from samedge.config import fmt_value, grid, load_params
from samedge.runs import run_name
from samedge.tasks import BUILTIN as TASKS
from tests.pipeline_workspace import (DVC, REPO, SMOKE, SNAKEMAKE, clone_workspace, commit_all,
                                      copy_repo, dry_run_jobs, git, module_scratch, run, smoke_workspace,
                                      tool_env)

README = (REPO / "README.md").read_text()
IGNORED = {".snakemake_timestamp"}  # .dvcignore: Snakemake's bookkeeping, not data
SUMMARY = {"runs", "diverged", "gd_ratio_median", "sam_ratio_median", "sam_within_10pct"}  # per task
EXP_SHOW = ["--drop", ".", "--keep",  # as the README writes it
            r"^(Experiment|Created|profile|\w+\.(runs|diverged|\w+_median|sam_within_10pct))$"]


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


def test_stages_list_exactly_the_code_they_run():
    """dvc.yaml's src/ deps of each stage are the files samedge.codedeps derives from the import
    graph of the stage's entry module, for train@TASK with the task's own module and its imports,
    for data@TASK with the task's module (what Snakemake's `code` and `task_code` params digest)."""
    package = REPO / "src/samedge"
    with Repo(str(REPO)) as dvc_repo:
        deps = {stage.name: sorted(str(dep.def_path) for dep in stage.deps
                                   if str(dep.def_path).startswith("src/"))
                for stage in dvc_repo.index.stages}
    for name, listed in deps.items():
        stage, _, task = name.partition("@")
        if stage in STAGE_ENTRIES:
            files = set(stage_files(stage, package))
            if stage == "train":
                files |= set(module_files(TASKS[task], package))
            if stage == "data":
                files.add(module_file(TASKS[task], package))
            derived = sorted(str(path.relative_to(REPO)) for path in files)
            assert listed == derived, f"dvc.yaml stage {name}: list these src deps: {derived}"
    assert {name.split("@")[0] for name in deps} >= set(STAGE_ENTRIES)


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
    with module_scratch(tmp_path_factory, "dvc") as base:
        ws = clone_workspace(smoke_workspace(tmp_path_factory, mirror), base / "repo")
        set_active_profile(ws, "smoke")
        commit_all(ws, "smoke profile")
        env = tool_env(tmp_path_factory, mirror, activated=True)  # DVC stages run `snakemake`
        outs = [out for stage in dvc_stages(ws).values() for out in stage["outs"]
                if out != "results/report.html"]  # the report is rebuilt on every `dvc repro`
        before = files_under(ws, outs)
        repro = run([DVC, "repro"], ws, env, timeout=600)
        commit_all(ws, "dvc.lock")
        yield {"ws": ws, "env": env, "outs": outs, "before": before, "repro": repro.stdout + repro.stderr}


def jobs_run(log: str) -> list[str]:
    """The samedge commands Snakemake ran (the profile prints every job's shell command)."""
    return re.findall(r"^(?:Shell command: )?samedge (\w+.*?) >", log, flags=re.MULTILINE)


def commands(log: str) -> list[str]:
    return sorted(job.split()[0] for job in jobs_run(log))


def figure_rules(ws: Path, env: dict[str, str]) -> set[str]:
    """The rules that draw into results/figures."""
    jobs = dry_run_jobs(ws, env, "--forceall", "figures", *SMOKE)
    return {job["rule"] for job in jobs if job.get("output", "").startswith("results/figures/")}


def rules_run(log: str) -> set[str]:
    return set(re.findall(r"^(?:local)?rule (\w+):$", log, flags=re.MULTILINE)) - {"figures"}


@pytest.mark.slow
def test_repro_records_a_built_workspace_without_retraining(recorded):
    ws, env = recorded["ws"], recorded["env"]
    assert set(re.findall(r"Running stage '([^']+)'", recorded["repro"])) == set(dvc_stages(ws))
    # Snakemake found data and runs up to date; the derived stages force their jobs (dvc.yaml),
    # which write the same bytes again.
    assert set(commands(recorded["repro"])) == {"aggregate", "figure"}
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
    assert set(values) == {task for task, _, _ in runs}  # a few numbers per task; runs in the CSVs
    assert all(set(v) == SUMMARY for v in values.values())
    plots = json.loads(run([DVC, "plots", "show", "--json"], ws, env).stdout)["data"]
    assert set(plots) == {"sharpness", "loss", "alignment"}
    rows = plots["sharpness"][0]["content"]["data"]["values"]
    assert {(r["task"], float(r["lr"]), float(r["rho"])) for r in rows} == set(runs)
    assert {r["field"] for r in rows} == {"lambda_1", "sam_edge", "gd_edge"}
    run([DVC, "plots", "show", "-o", str(tmp_path / "plots")], ws, env)
    page = (tmp_path / "plots/index.html").read_text()
    assert page.count("vegaEmbed('#") == 3  # one chart per plot, drawn by the inlined scripts
    assert not re.search(r"<script[^>]+src=", page)  # nothing loaded from a CDN: renders offline
    assert "vega-lite/vega-lite.js" in page and "vega-embed/vega-embed.js" in page
    if shutil.which("node"):  # and the inlined scripts alone draw every chart
        svgs = run(["node", str(REPO / "tests/render_dvc_plots.js"), str(tmp_path / "plots/index.html")],
                   ws, env).stdout.split("\n")[:-1]
        assert len(svgs) == 3 and all(int(line.split()[1]) > 10 for line in svgs), svgs


@pytest.mark.slow
def test_metrics_and_exp_show_are_readable(recorded):
    """The README's commands: a few columns, not one per run and per param."""
    ws, env = recorded["ws"], recorded["env"]
    shown = run([DVC, "metrics", "show", "--md"], ws, env).stdout
    tasks = {task for task, _, _ in grid(load_params(ws / "params.yaml"), "smoke")}
    assert len(shown.splitlines()[0].split("|")) - 2 == 1 + len(SUMMARY) * len(tasks)  # + Path
    assert f"dvc exp show {' '.join(EXP_SHOW[:3])} '{EXP_SHOW[3]}'" in README
    exp = run([DVC, "exp", "show", "--csv", *EXP_SHOW], ws, env).stdout
    assert set(exp.splitlines()[0].split(",")) == {
        "Experiment", "Created", "profile", *(f"{task}.{name}" for task in tasks for name in SUMMARY)}


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


@pytest.fixture
def recorded_copy(recorded, tmp_path):
    return clone_workspace(recorded["ws"], tmp_path / "repo"), recorded["env"]


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


@pytest.mark.slow
def test_editing_figure_code_reruns_the_figures_stage(recorded_copy):
    ws, env = recorded_copy
    edit(ws / "src/samedge/figures.py")
    assert set(json.loads(run([DVC, "status", "--json"], ws, env).stdout)) == {"figures"}
    repro = run([DVC, "repro"], ws, env, timeout=600)
    log = repro.stdout + repro.stderr
    assert set(re.findall(r"Running stage '([^']+)'", log)) - {"report"} == {"figures"}
    assert rules_run(log) == figure_rules(ws, env)  # the figure jobs, and nothing else


@pytest.mark.slow
def test_forced_repro_of_figures_draws_them(recorded_copy):
    ws, env = recorded_copy
    repro = run([DVC, "repro", "-f", "-s", "figures"], ws, env, timeout=600)
    assert rules_run(repro.stdout + repro.stderr) == figure_rules(ws, env)


@pytest.mark.slow
def test_editing_training_code_makes_the_training_stages_stale(recorded_copy):
    ws, env = recorded_copy
    edit(ws / "src/samedge/sam.py")
    assert set(json.loads(run([DVC, "status", "--json"], ws, env).stdout)) == {
        f"train@{task}" for task in TASKS}


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
