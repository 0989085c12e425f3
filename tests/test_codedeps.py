"""Code digests follow meaning: comments, docstrings and formatting leave a file's digest alone,
any change in what it does changes it; the params Snakemake records name each file; the JSON that
DVC's stages depend on holds the same digests and is rewritten only when one changes."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from samedge.codedeps import STAGE_ENTRIES, as_params, digests, file_digest, main, stage_code, stage_files

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src/samedge"

ORIGINAL = '''
"""A module."""
import math


def edge(lr: float, rho: float) -> float:
    """2/eta, shrunk by rho."""
    return 2 / lr * math.exp(-rho)  # why: a comment


class Step:
    """A class."""

    def __call__(self, x):
        return x + 1
'''

SAME_MEANING = '''
# a new header comment
"""The module, documented anew."""
import math

def edge(lr: float,
         rho: float) -> float:
    return (2 / lr) * math.exp(-rho)


class Step:
    def __call__(self, x):
        """Now documented."""
        return x + 1  # plus one
'''

CHANGED = [  # each one a change in behaviour
    ORIGINAL.replace("2 / lr", "2.0 / lr"),
    ORIGINAL.replace("x + 1", "x + 2"),
    ORIGINAL.replace("-rho", "rho"),
    ORIGINAL + "\nLIMIT = 3\n",
    ORIGINAL.replace('"""A class."""', '"""A class."""\n    kind = "step"'),
]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_comments_docstrings_and_formatting_keep_the_digest(tmp_path):
    assert file_digest(write(tmp_path / "a.py", ORIGINAL)) == file_digest(write(tmp_path / "b.py", SAME_MEANING))


@pytest.mark.parametrize("text", CHANGED)
def test_a_change_in_behaviour_changes_the_digest(tmp_path, text):
    assert file_digest(write(tmp_path / "a.py", ORIGINAL)) != file_digest(write(tmp_path / "b.py", text))


def test_a_body_that_was_only_a_docstring_stays_valid(tmp_path):
    empty = write(tmp_path / "a.py", 'def f():\n    """Nothing yet."""\n')
    assert file_digest(empty) == file_digest(write(tmp_path / "b.py", "def f():\n    pass\n"))


def test_params_name_each_file_with_its_digest():
    code = digests(stage_files("train", PACKAGE), REPO)
    params = as_params(code)
    assert sorted(params.values()) == sorted(f"{path}@{value}" for path, value in code.items())
    assert "src/samedge/sam.py" in code and all(name.isidentifier() for name in params)


def test_stage_code_adds_each_task_module():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    own = "examples/teacher_student.py"  # a task of the user's own, found without importing it
    assert own in stage_code("train", params, "example", REPO, PACKAGE)
    assert own in stage_code("data", params, "example", REPO, PACKAGE)
    assert own not in stage_code("figures", params, "example", REPO, PACKAGE)
    train = stage_code("train", params, "smoke", REPO, PACKAGE)  # built-in tasks with their imports
    assert {"src/samedge/tasks/mnist.py", "src/samedge/models.py"} <= set(train)


def test_json_for_dvc_is_written_once_per_state(tmp_path):
    out = tmp_path / "code"
    assert main(["--params", str(REPO / "params.yaml"), "--profile", "smoke", "--out", str(out)]) == 0
    files = {stage: out / f"{stage}.json" for stage in STAGE_ENTRIES}
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for stage, path in files.items():
        assert json.loads(path.read_text()) == stage_code(stage, params, "smoke", REPO, PACKAGE)
    written = {stage: path.stat().st_mtime_ns for stage, path in files.items()}
    main(["--params", str(REPO / "params.yaml"), "--profile", "smoke", "--out", str(out)])
    assert {stage: path.stat().st_mtime_ns for stage, path in files.items()} == written


def test_unknown_profile_is_one_line(tmp_path, capsys):
    assert main(["--params", str(REPO / "params.yaml"), "--profile", "nonesuch", "--out", str(tmp_path)]) == 2
    assert "nonesuch" in capsys.readouterr().err


def test_a_workspace_digests_its_own_copy_of_the_code(tmp_path):
    """Snakemake may import samedge from elsewhere (another checkout's venv): every path, the task
    modules' included, is still the workspace's own, so the recorded params do not change."""
    shutil.copytree(PACKAGE, tmp_path / "src/samedge", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for profile in ("smoke", "example"):
        for stage in STAGE_ENTRIES:
            code = stage_code(stage, params, profile, tmp_path, tmp_path / "src/samedge")
            assert code == stage_code(stage, params, profile, REPO, PACKAGE)
            assert not [path for path in code if Path(path).is_absolute()]
