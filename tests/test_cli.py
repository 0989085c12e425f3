"""The `samedge` command line: help without heavy imports, help text on every option, one error
type caught once (one line, exit 2)."""
import argparse
import subprocess
import sys

import pytest

from samedge.cli import COMMANDS, build_parser, main, one_line
from samedge.data_fetch import MIRROR_ENV
from samedge.errors import CheckpointError, ConfigError, DataError, RunDirError, SamedgeError
from samedge.tasks import TaskError

HEAVY = ("torch", "pandas", "seaborn", "matplotlib", "scipy")
SUBCOMMANDS = list(COMMANDS)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("argv", [[], *([name] for name in SUBCOMMANDS)], ids=["samedge", *SUBCOMMANDS])
def test_help_imports_no_heavy_library(argv):
    code = ("import sys\nfrom samedge.cli import main\ntry:\n    main(sys.argv[1:] + ['--help'])\n"
            "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "usage: samedge" in done.stdout


def test_every_option_has_help_text():
    for name, parser in subparsers(build_parser()).items():
        assert parser.description, name
        for action in parser._actions:
            assert action.help and action.help.strip(), f"samedge {name} {action.option_strings or action.dest}"


def test_the_top_level_help_tells_a_user_where_to_start():
    text = build_parser().format_help()
    assert "Sharpness-Aware Minimization and the Edge of Stability" in text
    assert "make pipeline" in text
    for name in SUBCOMMANDS:
        assert f"samedge {name}" in text
    assert MIRROR_ENV in subparsers(build_parser())["fetch"].format_help()


@pytest.mark.parametrize("error", [ConfigError, DataError, RunDirError, CheckpointError, TaskError])
def test_every_user_error_is_one_samedge_error(error):
    assert issubclass(error, SamedgeError)


def test_a_multi_line_message_becomes_one_line():
    assert one_line(ConfigError("params.yaml: not valid YAML: while parsing\n  in <unicode>\n\nexpected ']'")) == \
        "params.yaml: not valid YAML: while parsing; in <unicode>; expected ']'"


def test_errors_are_caught_once_as_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("profile: [unclosed\n")
    assert main(["aggregate", "--runs-dir", str(tmp_path / "none"), "--out-dir", str(tmp_path)]) == 2
    assert main(["figure", "17", "--results", str(tmp_path)]) == 2
    assert main(["fetch", "imagenet", "--data-dir", str(tmp_path / "data")]) == 2
    assert main(["fetch", "mnist", "--params", str(bad), "--data-dir", str(tmp_path / "data")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and all(line.startswith("samedge ") and ": error: " in line for line in lines)
    assert "17" in lines[1] and "imagenet" in lines[2] and str(bad) in lines[3]
    assert not (tmp_path / "data").exists()


def test_python_dash_m_runs_the_same_command():
    done = subprocess.run([sys.executable, "-m", "samedge.cli", "--help"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("usage: samedge [-h] COMMAND")


def test_an_unwritable_data_dir_is_one_line(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    assert main(["fetch", "mnist", "--data-dir", str(tmp_path / "a_file" / "data")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"samedge fetch: error: --data-dir {tmp_path / 'a_file' / 'data'}: cannot write there (Not a directory); "
        "choose a writable folder")
