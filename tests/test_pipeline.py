"""The Snakemake pipeline: lint, schema validation at DAG build, the grid taken from params.yaml,
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
import yaml

from samedge.config import load_params
from samedge.runs import profile_runs
from samedge.figure_specs import FIGURES, figure_files, run_figure_files
from samedge.codedeps import module_file
from samedge.layout import TABLES, Layout
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
    assert {job["rule"] for job in jobs} >= {"fetch", "aggregate", "paper_figures", "run_figures", "all"}
    [paper] = [job for job in jobs if job["rule"] == "paper_figures"]  # every figure in one job
    assert sorted(paper["output"].split(", ")) == sorted(
        str(path) for number in FIGURES for path in figure_files(number, Layout(profile).figures))


def test_cuda_switch_claims_a_gpu_per_training_job(fresh_copy, env):
    jobs = dry_run_jobs(fresh_copy, env, *SMOKE, "device=cuda")
    for job in jobs:
        gpus = "gpu=1" if job["rule"] == "train" else "gpu=0"
        assert job["rule"] != "train" or ("--device cuda" in job["shell"] and gpus in job["resources"])


def _set(params: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        params = params[key]
    params[leaf] = value


@pytest.mark.parametrize("edit, extra, expected", [
    ("profiles.quick.mnist.grid.lr", [-0.3], "['quick']['mnist']['grid']['lr'][0]"),
    ("profiles.smoke.cifar10.train.max_steps", "many", "['smoke']['cifar10']['train']['max_steps']"),
    ("profiles.quick.shakespeare.tracker", {"k": 3}, "['quick']['shakespeare']['tracker']"),
    (None, ["--config", "profile=nonesuch"], "profile 'nonesuch'"),
    (None, ["--config", "device=tpu"], "--config device='tpu'"),
])
def test_malformed_params_stop_before_any_job(tmp_path, env, fresh_copy, edit, extra, expected):
    repo = copy_repo(tmp_path / "repo")
    if edit:
        params = yaml.safe_load((repo / "params.yaml").read_text())
        _set(params, edit, extra)
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        extra = []
    out = run([SNAKEMAKE, "--cores", "1", *extra], repo, env, check=False)
    assert out.returncode != 0
    assert expected in out.stderr + out.stdout
    assert not (repo / "logs").exists() and not (repo / "data").exists()


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


PLOTTING = {"paper_figures", "run_figures", "grid_figures"}
TRAINING = {"train", "aggregate", *PLOTTING}


@pytest.mark.slow
@pytest.mark.parametrize("module, rerun", [
    ("samedge.figures", PLOTTING),
    ("samedge.figure_specs", PLOTTING),
    ("samedge.aggregate", {"aggregate", *PLOTTING}),  # the figures read its column names too
    ("samedge.sam", TRAINING),
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
            assert re.search(rf"before: '{re.escape(shown)}@\w+' now: '{re.escape(shown)}@\w+' *$",
                             job["reason"]), job
    if "train" in rerun:  # every run of the grid, and no data fetched again
        assert len([job for job in jobs if job["rule"] == "train"]) == len(
            profile_runs(load_params(ws / "params.yaml"), "smoke"))


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
