"""The front door as a newcomer meets it: a fresh copy of the repository and a shell with nothing
activated. `make pipeline PROFILE=smoke` itself builds the session's smoke workspace (checked in
test_pipeline); here: the README and CI use the commands the Makefile provides, and after a
SIGKILLed run `make unlock` clears Snakemake's stale lock so that the next run proceeds."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from tests.pipeline_workspace import REPO, copy_repo, installed_venv, make, newcomer_env, run

README = (REPO / "README.md").read_text()


def test_readme_gives_the_makefile_commands():
    start = README.split("## Start here", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^make (\w+)", start, flags=re.MULTILINE)[:2] == ["pipeline", "test"]
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.MULTILINE))
    for target in set(re.findall(r"`make (\w+)", README)):
        assert target in targets, f"README names `make {target}`, which the Makefile lacks"
    assert "make unlock" in README and "make container" in README
    assert "snakemake --cores all --use-singularity" in README


def test_ci_runs_the_readme_commands_as_a_newcomer():
    script = (REPO / ".ci/run").read_text()
    assert "env -i" in script and "PATH=/usr/local/bin:/usr/bin:/bin" in script
    pipeline, test = script.index("make pipeline PROFILE=smoke"), script.index("make test")
    assert pipeline < test


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition.__doc__}")
        time.sleep(0.5)


@pytest.mark.slow
def test_make_unlock_after_a_killed_run(tmp_path, mirror):
    repo = copy_repo(tmp_path / "repo")
    venv = installed_venv(repo)
    env = newcomer_env(mirror)
    locks = repo / ".snakemake/locks"

    def job_started() -> bool:
        """a locked run with a job started"""
        return locks.is_dir() and any(locks.iterdir()) and (repo / "logs").is_dir()

    make_run = subprocess.Popen(["make", "pipeline", "PROFILE=smoke", "CORES=1"], cwd=repo, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_for(job_started, timeout=300)
    finally:
        os.killpg(make_run.pid, signal.SIGKILL)  # make, Snakemake and its job, as a lost terminal
        make_run.wait()
    blocked = make(repo, env, "pipeline", "PROFILE=smoke", check=False, timeout=300)
    assert blocked.returncode != 0 and "--unlock" in blocked.stdout + blocked.stderr
    make(repo, env, "unlock", "PROFILE=smoke", timeout=300)
    assert not locks.exists() or not any(locks.iterdir())
    run([str(venv / "bin/snakemake"), "--cores", "1", "data/prepared/shakespeare", "--config",
         "profile=smoke"], repo, env, timeout=600)
    assert (repo / "data/prepared/shakespeare/manifest.json").is_file()
