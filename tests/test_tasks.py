"""The task registry: one module per task, nothing else branches on a task's name, and a task of
your own (one file named in params.yaml) runs through `samedge train` and the whole pipeline."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from samedge.cli import main
from samedge.config import ConfigError, load_params
from samedge.figure_specs import grid_figure_files, run_figure_files
from samedge.layout import Layout
from samedge.runs import RunKey, profile_runs
from samedge.tasks import BUILTIN, Task, TaskError, get_task, register_user_tasks
from tests.pipeline_workspace import SNAKEMAKE, copy_repo, run, tool_env

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "samedge"


def write_params(folder: Path, params: dict) -> Path:
    """params.yaml in folder, with the example task module it names beside it."""
    (folder / "examples").mkdir(exist_ok=True)
    (folder / "examples" / "teacher_student.py").write_text((REPO / "examples" / "teacher_student.py").read_text())
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_builtin_tasks_are_their_modules():
    for name, module in BUILTIN.items():
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name and module == f"samedge.tasks.{name}"
    assert [get_task(n).base_optimizer for n in BUILTIN] == ["GD", "GD", "SGD"]


def test_no_module_outside_the_registry_names_a_task():
    """String constants equal to a task name appear only under samedge/tasks/ (docstrings aside)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "tasks" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        offenders += [f"{path.name}:{node.lineno}" for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and node.value in BUILTIN and id(node) not in docstrings]
    assert offenders == []


def test_dvc_yaml_names_no_task():
    """DVC covers every registered task, a user's too, with no edit: dvc.yaml names none (its stages
    run Snakemake targets over the profile's tasks; test_dvc checks the outputs agree for `example`)."""
    text = (REPO / "dvc.yaml").read_text()
    tasks = [*BUILTIN, *yaml.safe_load((REPO / "params.yaml").read_text())["tasks"]]
    assert [task for task in tasks if re.search(rf"\b{task}\b", text)] == []


def test_profiles_name_only_registered_tasks(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profiles"]["smoke"]["imagenet"] = params["profiles"]["smoke"]["mnist"]
    with pytest.raises(ConfigError, match=r"profiles.smoke.imagenet: unknown task 'imagenet'"):
        load_params(write_params(tmp_path, params))


def test_a_task_checks_its_own_model_and_data_blocks(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profiles"]["smoke"]["mnist"]["model"]["channels"] = [4]       # a CNN key on the MLP
    params["profiles"]["example"]["teacher"]["data"].pop("seed")
    with pytest.raises(ConfigError, match=r"profiles.smoke.mnist.model': Additional properties .*'channels'"):
        load_params(write_params(tmp_path, params))
    params["profiles"]["smoke"]["mnist"]["model"].pop("channels")
    with pytest.raises(ConfigError, match="profiles.example.teacher.data': 'seed' is a required property"):
        load_params(write_params(tmp_path, params))


@pytest.mark.parametrize("module, message", [
    ("missing.py", "cannot import it"),
    ("notask.py", "defines no TASK"),
    ("othername.py", "its TASK is named 'other', params.yaml calls it 'mine'"),
])
def test_a_broken_task_module_is_one_line(tmp_path, capsys, module, message):
    (tmp_path / "notask.py").write_text("X = 1\n")
    (tmp_path / "othername.py").write_text((REPO / "examples" / "teacher_student.py").read_text()
                                           .replace('name="teacher"', 'name="other"'))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tasks"] = {"mine": {"module": module}}
    teacher = params["profiles"]["example"]["teacher"]
    params["profiles"] = {name: p for name, p in params["profiles"].items() if "teacher" not in p}
    params["profiles"]["example"] = {"mine": teacher}
    args = ["train", "--task", "mine", "--lr", "1", "--rho", "0", "--profile", "example",
            "--params", str(write_params(tmp_path, params)), "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_builtin_name_cannot_be_taken():
    with pytest.raises(TaskError, match="built-in task"):
        register_user_tasks({"tasks": {"mnist": {"module": "x.py"}}})


@pytest.mark.slow
def test_a_task_of_your_own_runs_through_the_pipeline(tmp_path_factory):
    """examples/teacher_student.py, named in params.yaml: training jobs, tables, edge agreement, per-run
    figures and its grid figure, with no samedge code edited and no fetch step."""
    ws = copy_repo(tmp_path_factory.mktemp("byo") / "repo")
    env = tool_env(tmp_path_factory)
    run([SNAKEMAKE, "--cores", "2", "--config", "profile=example"], ws, env, timeout=900)
    keys = profile_runs(load_params(ws / "params.yaml"), "example")
    assert {k.task for k in keys} == {"teacher"} and not (ws / "data").exists()
    layout = Layout("example", ws)
    runs = pd.read_csv(layout.table("runs.csv"))
    assert (runs["status"] == "completed").all() and len(runs) == len(keys) == 4
    agreement = pd.read_csv(layout.table("edge_agreement.csv")).set_index(["lr", "rho"])
    assert 0.9 <= agreement.loc[(1.0, 0.05), "sam_ratio_median"] <= 1.15   # SAM at its edge
    assert 0.9 <= agreement.loc[(2.0, 0.0), "gd_ratio_median"] <= 1.15     # GD at 2/eta
    for key in keys:
        assert all(p.is_file() for p in run_figure_files(key, layout.figures))
    assert all(p.is_file() for p in grid_figure_files("teacher", layout.figures))
    record = json.loads((layout.runs / "teacher" / RunKey("teacher", 1.0, 0.05).name / "run.json").read_text())
    assert record["config"]["data"] == {"n_train": 256, "seed": 1}
