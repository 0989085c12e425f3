"""DVC's view of the pipeline: it names the same outputs as Snakemake for any profile (a task of
your own included, no edit of dvc.yaml), each stage depends on the digests of the code it runs,
records a Snakemake-built workspace in seconds without retraining or redrawing, shows two metrics
per task within 120 columns and plots that render offline on log axes, restores byte-identical data
and results from a remote into a fresh clone, after one grid value changes reruns only the jobs that
value touches, and after a code edit reruns the stages it affects (after a comment, none)."""
from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import time
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from samedge.codedeps import STAGE_ENTRIES
from samedge.config import fmt_value, grid, load_params, profile_config
from samedge.layout import Layout
from samedge.runs import run_name
from samedge.tasks import get_task
from tests.pipeline_workspace import (DVC, REPO, SMOKE, SNAKEMAKE, clone_workspace, commit_all,
                                      copy_repo, dry_run_jobs, git, module_scratch, run, smoke_workspace,
                                      tool_env)

README = (REPO / "README.md").read_text()
IGNORED = {".snakemake_timestamp"}  # .dvcignore: Snakemake's bookkeeping, not data
SUMMARY = {"gd", "sam"}  # per task
EXP_SHOW = ["--drop", ".", "--keep", r"^(Experiment|profile|\w+\.(gd|sam))$"]  # as the README writes it
WIDTH = 120
SMOKE_DIRS = Layout("smoke")
CODE_STAGE = "code"  # the stage writing the code digests the others depend on (not Snakemake's)


def dvc_stages(repo: Path) -> dict[str, dict]:
    """Every DVC stage that runs Snakemake: its (first) command and the paths of its outputs."""
    with Repo(str(repo)) as dvc_repo:
        return {stage.name: {"cmd": stage.cmd if isinstance(stage.cmd, str) else stage.cmd[0],
                             "outs": [str(out.def_path) for out in stage.outs]}
                for stage in dvc_repo.index.stages if stage.name != CODE_STAGE}


def snakemake_args(cmd: str) -> tuple[list[str], str | None]:
    """The targets a stage's `snakemake ...` command asks for, and its --report file."""
    words = shlex.split(cmd, comments=True)
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


@pytest.mark.parametrize("profile", ["smoke", "example"])  # example: a task of the user's own
def test_dvc_and_snakemake_name_the_same_outputs(tmp_path, tmp_path_factory, profile):
    """For any profile and any registered task, dvc.yaml as it is (nothing generated, no edit)."""
    repo = copy_repo(tmp_path / "repo")
    set_active_profile(repo, profile)
    env = tool_env(tmp_path_factory)
    stages = dvc_stages(repo)
    targets = [t for stage in stages.values() for t in snakemake_args(stage["cmd"])[0]]
    jobs = dry_run_jobs(repo, env, "--forceall", "all", *targets, "--config", f"profile={profile}")
    produced = {path for job in jobs for key in ("output", "benchmark") if key in job
                for path in job[key].split(", ")}
    outs = [out for stage in stages.values() for out in stage["outs"]]
    for path in produced:  # every Snakemake output is versioned by exactly one DVC output
        assert sum(inside(path, out) for out in outs) == 1, path
    tasks = profile_config(load_params(repo / "params.yaml"), profile)
    for name, stage in stages.items():
        if name == "data" and all(get_task(task).data is None for task in tasks):
            continue  # tasks that make their own data: the stage only creates its (empty) folders
        targets, report = snakemake_args(stage["cmd"])
        asked = [path for target in targets for path in  # a rule: its outputs, or a target rule's inputs
                 next((job.get("output", job.get("input", "")).split(", ") for job in jobs
                       if job["rule"] == target), [target])]
        if report:
            asked.append(report)
        assert asked, f"stage {name} asks Snakemake for nothing"
        for path in asked:  # what a stage asks Snakemake for lies in what the stage declares
            assert any(inside(path, out) for out in stage["outs"]), (name, path)
        for out in stage["outs"]:  # and everything it declares comes from Snakemake
            assert any(inside(path, out) for path in [*produced, *asked]), (name, out)
    assert not [job for job in jobs if re.search(r"\bdvc\b", job["shell"])]  # jobs never call DVC


def test_stages_depend_on_the_digests_of_the_code_they_run():
    """No stage lists package files (their bytes change with every comment): each depends on its
    file of code digests (samedge.codedeps), which the `code` stage writes for the profile."""
    with Repo(str(REPO)) as dvc_repo:
        stages = {stage.name: stage for stage in dvc_repo.index.stages}
    active = Layout(load_params(REPO / "params.yaml")["profile"])
    code = stages[CODE_STAGE]
    assert [str(out.def_path) for out in code.outs] == [str(active.code)] and code.always_changed
    assert "-m samedge.codedeps" in code.cmd and str(active.code) in code.cmd
    for stage in STAGE_ENTRIES:
        deps = [str(dep.def_path) for dep in stages[stage].deps]
        assert str(active.code / f"{stage}.json") in deps, stage
        assert not [dep for dep in deps if dep.startswith("src/")], stage


def test_stages_declare_only_the_params_they_use():
    with Repo(str(REPO)) as dvc_repo:
        params = {stage.name: sorted(key for dep in stage.params for key in dep.params)
                  for stage in dvc_repo.index.stages}
    active = load_params(REPO / "params.yaml")["profile"]
    assert params["train"] == ["profile", f"profiles.{active}"]  # the whole profile block: grids, settings
    assert params["aggregate"] == [f"profiles.{active}"]  # grids and seeds say which runs are tables
    assert params["figures"] == ["figure_x"]  # the figures' x axis
    assert params["data"] == params["report"] == params[CODE_STAGE] == []


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
                if out != str(SMOKE_DIRS.report)]  # the report is rebuilt on every `dvc repro`
        before = files_under(ws, outs)
        drawn = {path: (ws / path).stat().st_mtime_ns for path in files_under(ws, [str(SMOKE_DIRS.figures)])}
        start = time.monotonic()
        repro = run([DVC, "repro"], ws, env, timeout=600)
        seconds = time.monotonic() - start
        commit_all(ws, "dvc.lock")
        yield {"ws": ws, "env": env, "outs": outs, "before": before, "drawn": drawn, "seconds": seconds,
               "repro": repro.stdout + repro.stderr}


def jobs_run(log: str) -> list[str]:
    """The samedge commands Snakemake ran (the profile prints every job's shell command)."""
    return re.findall(r"^(?:Shell command: )?samedge (\w+.*?) >", log, flags=re.MULTILINE)


def commands(log: str) -> list[str]:
    return sorted(job.split()[0] for job in jobs_run(log))


def figure_rules(ws: Path, env: dict[str, str]) -> set[str]:
    """The rules that draw into the profile's figures."""
    jobs = dry_run_jobs(ws, env, "--forceall", "figures", *SMOKE)
    return {job["rule"] for job in jobs if job.get("output", "").startswith(f"{SMOKE_DIRS.figures}/")}


def stale(ws: Path, env: dict[str, str]) -> set[str]:
    """The stages `dvc status` lists; `code` always (it is cheap and always runs)."""
    return set(json.loads(run([DVC, "status", "--json"], ws, env).stdout))


def rules_run(log: str) -> set[str]:
    return set(re.findall(r"^(?:local)?rule (\w+):$", log, flags=re.MULTILINE)) - {"figures"}


@pytest.mark.slow
def test_repro_records_a_built_workspace_without_retraining(recorded):
    ws, env = recorded["ws"], recorded["env"]
    assert set(re.findall(r"Running stage '([^']+)'", recorded["repro"])) == {CODE_STAGE, *dvc_stages(ws)}
    assert commands(recorded["repro"]) == []  # Snakemake found every job up to date: nothing ran
    assert files_under(ws, recorded["outs"]) == recorded["before"]
    assert {path: (ws / path).stat().st_mtime_ns for path in recorded["drawn"]} == recorded["drawn"]
    print(f"dvc repro of a built smoke workspace: {recorded['seconds']:.1f} s")
    assert stale(ws, env) == {CODE_STAGE}
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
    assert on_disk and [path for path in on_disk if path != str(SMOKE_DIRS.report)
                        and not any(inside(path, out) for out in declared)] == []


@pytest.mark.slow
def test_metrics_and_plots_show(recorded, tmp_path):
    ws, env = recorded["ws"], recorded["env"]
    metrics = json.loads(run([DVC, "metrics", "show", "--json"], ws, env).stdout)
    values = next(iter(metrics.values()))["data"][str(SMOKE_DIRS.table("edge.json"))]["data"]
    runs = grid(load_params(ws / "params.yaml"), "smoke")
    assert set(values) == {task for task, *_ in runs}  # two numbers per task; runs in the CSVs
    assert all(set(v) == SUMMARY for v in values.values())
    plots = json.loads(run([DVC, "plots", "show", "--json"], ws, env).stdout)["data"]
    assert set(plots) == {"sharpness", "loss", "alignment"}
    rows = plots["sharpness"][0]["content"]["data"]["values"]
    assert {(r["task"], float(r["lr"]), float(r["rho"])) for r in rows} == {tuple(point[:3]) for point in runs}
    assert {r["field"] for r in rows} == {"lambda_1", "sam_edge", "gd_edge"}
    for name, log in (("sharpness", True), ("loss", True), ("alignment", False)):  # as the figures
        encoding = plots[name][0]["content"]["spec"]["encoding"]
        assert (encoding["y"].get("scale", {}).get("type") == "log") == log, name
        assert encoding["x"]["title"] == "step" and encoding["y"]["title"] not in ("", "y"), name
        assert encoding["strokeDash"]["legend"] is None  # no "workspace" entry in the legend
        colours = encoding["color"]["scale"]["range"]
        assert len(set(colours)) == len(colours) >= 3
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
def test_metrics_and_exp_show_fit_120_columns(recorded):
    """The README's commands, as a terminal of 120 columns shows them: every column, no wrapping."""
    ws, env = recorded["ws"], recorded["env"]
    env = {**env, "COLUMNS": str(WIDTH)}
    shown = run([DVC, "metrics", "show"], ws, env).stdout
    tasks = {task for task, *_ in grid(load_params(ws / "params.yaml"), "smoke")}
    assert set(shown.split()) >= {f"{task}.{name}" for task in tasks for name in SUMMARY}, shown
    assert max(map(len, shown.splitlines())) <= WIDTH, shown
    assert f"dvc exp show {' '.join(EXP_SHOW[:3])} '{EXP_SHOW[3]}'" in README
    exp = run([DVC, "exp", "show", "--no-pager", *EXP_SHOW], ws, env).stdout
    header = next(line for line in exp.splitlines() if "Experiment" in line)
    assert set(header.strip("┃ ").replace("┃", " ").split()) == {
        "Experiment", "profile", *(f"{task}.{name}" for task in tasks for name in SUMMARY)}, exp
    assert max(map(len, exp.splitlines())) <= WIDTH, exp


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
    assert stale(clone, env) == {CODE_STAGE}


@pytest.fixture
def recorded_copy(recorded, tmp_path):
    return clone_workspace(recorded["ws"], tmp_path / "repo"), recorded["env"]


def stages_run(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


@pytest.mark.slow
def test_a_comment_reruns_no_stage(recorded_copy):
    ws, env = recorded_copy
    for name in ("figures.py", "sam.py", "aggregate.py"):
        path = ws / "src/samedge" / name
        path.write_text("# a comment\n" + path.read_text().replace('"""', '"""Reworded. ', 1) + "\n# edited\n")
    repro = run([DVC, "repro"], ws, env, timeout=600)
    assert stages_run(repro.stdout + repro.stderr) == {CODE_STAGE}  # it found every digest unchanged
    assert stale(ws, env) == {CODE_STAGE}


def edit(path: Path) -> None:
    """A change in what the module does."""
    path.write_text(path.read_text() + "\nEDITED = True\n")


@pytest.mark.slow
def test_editing_figure_code_reruns_the_figures_stage(recorded_copy):
    ws, env = recorded_copy
    edit(ws / "src/samedge/figures.py")
    repro = run([DVC, "repro"], ws, env, timeout=600)
    log = repro.stdout + repro.stderr
    assert stages_run(log) - {"report"} == {CODE_STAGE, "figures"}  # report: if a figure's bytes changed
    assert rules_run(log) == figure_rules(ws, env)  # the figure jobs, and nothing else
    assert "src/samedge/figures.py@" in log  # Snakemake's reason names the file


@pytest.mark.slow
def test_editing_training_code_makes_the_training_stage_stale(recorded_copy):
    ws, env = recorded_copy
    digests = json.loads((ws / SMOKE_DIRS.code / "train.json").read_text())
    edit(ws / "src/samedge/sam.py")
    run([DVC, "repro", CODE_STAGE], ws, env)
    # Every stage validates params.yaml, which reaches the optimizer registry and so samedge.sam:
    # the other stages are stale too (their jobs would rerun after training anyway).
    assert {CODE_STAGE, "train"} <= stale(ws, env)
    now = json.loads((ws / SMOKE_DIRS.code / "train.json").read_text())
    assert {path for path in now if now[path] != digests[path]} == {"src/samedge/sam.py"}


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
    assert stale(ws, env) == {CODE_STAGE, "train", "aggregate"}

    data_and_runs = [out for out in recorded["outs"] if out.startswith("data/") or out == str(SMOKE_DIRS.runs)]
    before = files_under(ws, data_and_runs)
    repro = run([DVC, "repro", "aggregate"], ws, env, timeout=600)
    log = repro.stdout + repro.stderr
    assert stages_run(log) == {CODE_STAGE, "train", "aggregate"}
    lr = mnist["lr"][0]
    new_run = f"{SMOKE_DIRS.runs}/mnist/{run_name(lr, new_rho)}"
    [train, aggregate] = jobs_run(log)  # one new training job; every other run was kept
    assert train.startswith(f"train --task mnist --lr {fmt_value(lr)} --rho {fmt_value(new_rho)} ")
    assert aggregate.startswith("aggregate ")
    after = files_under(ws, data_and_runs)
    assert set(after) - set(before) == {f"{new_run}/metrics.csv", f"{new_run}/run.json"}
    assert [path for path, digest in before.items() if after[path] != digest] == []  # the files that changed
    assert f"{SMOKE_DIRS.runs}/mnist/{run_name(lr, old_rho)}/run.json" in after  # outside the grid now
    assert stale(ws, env) == {CODE_STAGE, "figures", "report"}
