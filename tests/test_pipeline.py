"""The Snakemake pipeline: lint, the grid taken from params.yaml (what the DAG refuses: tests/drill.py),
the GPU switch, the smoke profile end to end as a newcomer runs it (`make pipeline` with nothing
activated: mirror -> data -> runs -> tables -> figures -> report, no "Missing metadata"), after
which a second invocation does nothing, and editing package code reruns exactly the stages that
import it."""
from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from samedge.config import load_params
from samedge.runs import profile_runs
from samedge.figure_specs import FIGURES, figure_files, headline_files, run_figure_files
from samedge.codedeps import module_file
from samedge.layout import TABLES, Layout
from tests import browser
from tests.pipeline_workspace import (NEWCOMER_PATH, SMOKE, SNAKEMAKE, clone_workspace, copy_repo,
                                      dry_run_jobs, make, newcomer_env, run, smoke_run, smoke_workspace,
                                      tool_env)



@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """A copy of the repository nothing has run in (tests here only read it or dry-run)."""
    return copy_repo(tmp_path_factory.mktemp("fresh") / "repo")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return tool_env(tmp_path_factory)


def test_lint_reports_nothing(fresh_copy, env):
    out = run([SNAKEMAKE, "--lint"], fresh_copy, env)
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr
    assert "Lints for" not in out.stdout + out.stderr


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_one_training_job_per_grid_point(fresh_copy, env, profile):
    jobs = dry_run_jobs(fresh_copy, env, "--config", f"profile={profile}")
    trained = sorted(job["wildcards"] for job in jobs if job["rule"] == "train")
    expected = sorted(f"task={key.task}, run={key.name}"
                      for key in profile_runs(load_params(fresh_copy / "params.yaml"), profile))
    assert trained == expected
    train = next(job for job in jobs if job["rule"] == "train")
    assert f"--profile {profile}" in train["shell"] and "--device cpu" in train["shell"]
    assert train["benchmark"].startswith(f"results/{profile}/benchmarks/")
    assert train["log"].startswith(f"logs/{profile}/") and f"checkpoints/{profile}/" in train["shell"]
    assert {job["rule"] for job in jobs} >= {"fetch", "aggregate", "draw_figures", "all"}
    [draw] = [job for job in jobs if job["rule"] == "draw_figures"]  # every figure in one job
    figures_dir = Layout(profile).figures
    assert sorted(draw["output"].split(", ")) == sorted(
        [*(str(path) for number in FIGURES for path in figure_files(number, figures_dir)),  # all three tasks
         *map(str, headline_files(figures_dir)),
         *(f"{figures_dir}/summary/{name}.html" for name in ("landing", "edge_agreement", "runs")),
         f"{figures_dir}/runs", f"{figures_dir}/tasks"])


def test_a_profile_draws_only_the_paper_figures_its_tasks_fill(fresh_copy, env):
    """`example` trains the teacher-student task only: of the paper's figures it draws figure 1
    (analytic), none of the per-task ones, which would be empty panels; `open-questions` (MNIST and
    the teacher) draws figure 1 and MNIST's five."""
    for profile, numbers in (("example", [1]), ("open-questions", [1, 2, 3, 4, 5, 6])):
        jobs = dry_run_jobs(fresh_copy, env, "--config", f"profile={profile}")
        [draw] = [job for job in jobs if job["rule"] == "draw_figures"]
        drawn = {path for path in draw["output"].split(", ") if Path(path).name.startswith("fig")}
        assert drawn == {str(path) for n in numbers for path in figure_files(n, Layout(profile).figures)}


def test_cuda_switch_claims_a_gpu_per_training_job(fresh_copy, env):
    jobs = dry_run_jobs(fresh_copy, env, *SMOKE, "device=cuda")
    for job in jobs:
        gpus = "gpu=1" if job["rule"] == "train" else "gpu=0"
        assert job["rule"] != "train" or ("--device cuda" in job["shell"] and gpus in job["resources"])


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, mirror) -> Path:
    return smoke_workspace(tmp_path_factory, mirror)


@pytest.mark.slow
def test_smoke_pipeline_writes_every_output(smoke):
    layout = Layout("smoke", smoke)
    for name in TABLES:
        assert layout.table(name).stat().st_size > 0, name
    for number in FIGURES:
        for path in figure_files(number, layout.figures):
            assert path.stat().st_size > 0, path
    with open(layout.table("runs.csv"), newline="") as table:
        runs = list(csv.DictReader(table))
    keys = profile_runs(load_params(smoke / "params.yaml"), "smoke")
    assert len(runs) == len(keys)
    status = {(row["task"], row["run"]): row["status"] for row in runs}
    for key in keys:
        sets = run_figure_files(key, out_dir=layout.figures)
        assert all(path.is_file() for path in sets) == (status[key.task, key.name] != "diverged"), key
        stem = f"{key.task}/{key.name}"
        assert (layout.logs / "train" / f"{stem}.log").is_file()
        assert (layout.benchmarks / f"{stem}.tsv").is_file()


@pytest.mark.slow
def test_newcomer_make_pipeline_runs_with_nothing_on_path(tmp_path_factory, mirror):
    ws, log = smoke_run(tmp_path_factory, mirror)
    assert shutil.which("samedge", path=NEWCOMER_PATH) is None  # nothing but the repo provides it
    assert "command not found" not in log
    assert "Missing metadata" not in log  # the report was built for the profile that ran
    assert Layout("smoke", ws).report.stat().st_size > 0


@pytest.mark.slow
def test_smoke_data_came_from_the_mirror(smoke):
    for task in ("mnist", "cifar10", "shakespeare"):
        manifest = json.loads((smoke / "data/prepared" / task / "manifest.json").read_text())
        assert "SAMEDGE_DATA_MIRROR" in json.dumps(manifest["source"]), task


@pytest.mark.slow
def test_report_holds_figures_captions_and_the_edge_table(smoke):
    html = Layout("smoke", smoke).report.read_text()
    for number in FIGURES:
        assert figure_files(number)[1].name in html
    assert "edge_agreement.csv" in html and "runs.csv" in html
    assert "Supplementary figure set" in html  # a per-run caption, rendered with its wildcards


@pytest.mark.slow
def test_second_invocation_does_nothing(smoke, tmp_path_factory, mirror):
    env = tool_env(tmp_path_factory, mirror)
    out = run([SNAKEMAKE, "--cores", "2", *SMOKE], smoke, env)
    assert "Nothing to be done" in out.stdout + out.stderr


@pytest.mark.slow
def test_a_damaged_run_is_refused_before_any_job_and_the_command_it_names_reruns_it(smoke, tmp_path, mirror):
    """Issue 21: the tables survive the refusal, and the one command named reruns exactly that run
    (deleting a run's folder makes the next `make pipeline` retrain it)."""
    ws = clone_workspace(smoke, tmp_path / "repo")
    env = newcomer_env(mirror)
    layout = Layout("smoke", ws)
    run_dir = layout.runs / "mnist/lr0.3_rho0.1"
    other = layout.runs / "mnist/lr0.3_rho0/run.json"
    kept = {path: path.read_bytes() for path in [*map(layout.table, TABLES), other]}
    lines = (run_dir / "metrics.csv").read_text().splitlines(keepends=True)
    (run_dir / "metrics.csv").write_text("".join(lines[:-1]))  # a deleted row
    out = make(ws, env, "pipeline", "PROFILE=smoke", "CORES=2", check=False)
    [line] = [line for line in out.stderr.splitlines() if "error: " in line and not line.startswith("make")]
    assert out.returncode != 0 and "results/smoke/runs/mnist/lr0.3_rho0.1/metrics.csv: not the file its run wrote" in line
    assert {path: path.read_bytes() for path in kept} == kept  # nothing removed or rewritten
    command = line.partition("; rerun exactly this run with: ")[2]
    assert command == "rm -r results/smoke/runs/mnist/lr0.3_rho0.1 && make pipeline PROFILE=smoke", line
    run(["bash", "-c", command], ws, env, timeout=900)
    record = json.loads((run_dir / "run.json").read_text())
    with open(layout.table("runs.csv"), newline="") as table:
        digests = {row["run"]: row["metrics_sha256"] for row in csv.DictReader(table) if row["task"] == "mnist"}
    assert digests["lr0.3_rho0.1"] == record["metrics_sha256"] and other.read_bytes() == kept[other]
    assert "Nothing to be done" in run([SNAKEMAKE, "--dry-run", *SMOKE], ws, env).stdout


PLOTTING = {"draw_figures", "optimizer_figures"}
TRAINING = {"train", "aggregate", *PLOTTING}


@pytest.mark.slow
@pytest.mark.parametrize("module, rerun", [
    ("samedge.figures", PLOTTING),
    ("samedge.figure_specs", PLOTTING),
    ("samedge.aggregate", {"aggregate", *PLOTTING}),  # the figures read its column names too
    # fetch too: params validation (config) reaches the optimizer registry, whose base imports
    # samedge.sam; the data come out byte-identical and fetch leaves them untouched (issue 21).
    ("samedge.sam", {"fetch", *TRAINING}),
    ("samedge.hvp", TRAINING),
    ("samedge.models", TRAINING),
    ("samedge.train", TRAINING),
])
def test_editing_package_code_reruns_the_stages_that_import_it(smoke, tmp_path, tmp_path_factory,
                                                                module, rerun):
    ws = clone_workspace(smoke, tmp_path / "repo")
    env = tool_env(tmp_path_factory)
    path = module_file(module, ws / "src/samedge")
    path.touch()  # a new modification time alone changes nothing (a fresh clone, a checkout)
    assert "Nothing to be done" in run([SNAKEMAKE, "--dry-run", *SMOKE], ws, env).stdout
    text = path.read_text()  # nor does a comment, a reformatted line or a docstring
    path.write_text("# a comment\n\n" + text.replace('"""', '"""Reworded. ', 1) + "\n\n# the end\n")
    assert "Nothing to be done" in run([SNAKEMAKE, "--dry-run", *SMOKE], ws, env).stdout
    path.write_text(text + "\nEDITED = True\n")  # a change in what the module does
    jobs = dry_run_jobs(ws, env, *SMOKE)
    assert {job["rule"] for job in jobs} - {"all"} == rerun
    shown = str(path.relative_to(ws))  # the reason names the file that changed, and only it
    for job in jobs:
        if job["rule"] in rerun and "Params have changed" in job["reason"]:
            # one param per file (`path@digest`), or a task's list of them: the changed file is named
            before, now = re.search(r"before: (.*) now: (.*?) *$", job["reason"]).groups()
            assert f"'{shown}@" in before and f"'{shown}@" in now, job
    if "train" in rerun:  # every run of the grid
        assert len([job for job in jobs if job["rule"] == "train"]) == len(
            profile_runs(load_params(ws / "params.yaml"), "smoke"))


@pytest.mark.slow
def test_report_landing_page_shows_the_answer_in_a_browser(smoke, tmp_path):
    """In headless chromium, with no click: the headline figure and the edge-agreement table."""
    if browser.CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium): the report is not rendered")
    report = Layout("smoke", smoke).report
    dom = browser.rendered_dom(report)
    # The file holds the landing page as a JSON string (quotes escaped): unescaped, it was rendered.
    shown = ['alt="headline figure', 'id="T_samedge"', 'download="edge_agreement.csv"']
    assert not any(text in report.read_text() for text in shown)
    assert all(text in dom for text in shown) and "claim tested" in dom
    assert dom.index('id="T_samedge"') < dom.index("Reproduction of Long")  # the answer first
    shots = browser.report_screenshots(report, tmp_path)
    assert [shot.name for shot in shots] == ["landing.png", "edge_agreement.png", "runs.png"]
    assert all(shot.stat().st_size > 20_000 for shot in shots)  # rendered pages, not blank ones


def tree_digests(*folders: Path) -> dict[str, str]:
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.slow
def test_a_second_profile_leaves_the_first_ones_files_alone(smoke, tmp_path, mirror):
    """The smoke results, then the `example` profile (a task of its own) in the same workspace, the
    README's way: every file of the smoke profile is byte-identical afterwards, and each profile
    has its own tables, figures and report."""
    ws = clone_workspace(smoke, tmp_path / "repo")
    first, second = Layout("smoke", ws), Layout("example", ws)
    mine = [first.results, first.logs, ws / "data", ws / "logs/fetch"]
    before = tree_digests(*mine)
    assert any("/runs/" in path for path in before)
    make(ws, newcomer_env(mirror), "pipeline", "PROFILE=example", "CORES=2")
    assert tree_digests(*mine) == before
    assert not (ws / "results/runs").exists()  # nothing in the old shared places
    runs = pd.read_csv(second.table("runs.csv"))
    assert set(runs["task"]) == {"teacher"} and second.report.stat().st_size > 0
    assert (second.figures / "tasks/teacher_grid.png").is_file()
