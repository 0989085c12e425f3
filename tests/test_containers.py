"""The container route: the Apptainer definition and the Dockerfile (parsed with spython) build
from the CUDA PyTorch image of the pinned torch and install the package under the lock file;
`make container` builds the image (or names the missing apptainer and the Docker alternative);
the default profile runs every job with `--nv`; under `--use-singularity` Snakemake runs each job
through `apptainer exec ... --nv ... <image>` with the image's own samedge; a missing image stops
the run before any job; turning containers on reruns nothing; a failing container job deletes no
other job's outputs. A stand-in apptainer (tests/fakebin) records its calls and runs the command
on the host, since Apptainer cannot be installed here."""
from __future__ import annotations

import hashlib
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from spython.main.parse.parsers import DockerParser, SingularityParser

from samedge.layout import Layout
from samedge.runs import run_name
from tests.pipeline_workspace import (BIN, REPO, SMOKE, SNAKEMAKE, clone_workspace, copy_repo, make,
                                      newcomer_env, run, smoke_workspace, tool_env)

BASE_IMAGE = re.compile(r"^pytorch/pytorch:(?P<torch>[\d.]+)-cuda(?P<cuda>[\d.]+)-cudnn\d+-runtime$")
LOCK = "requirements/lock.txt"
IMAGE = "containers/samedge.sif"
FAKEBIN = REPO / "tests/fakebin"


def pinned(requirement_lines: list[str], name: str) -> str:
    pins = [line.split("==", 1)[1].strip() for line in requirement_lines
            if re.match(rf"^{name}\s*==", line.strip(), flags=re.IGNORECASE)]
    assert len(pins) == 1, f"{name}: expected exactly one == pin, got {pins}"
    return pins[0]


@pytest.fixture(scope="module")
def torch_pin() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return pinned(project["dependencies"], "torch")


def definition():
    (recipe,) = SingularityParser(str(REPO / "containers/samedge.def")).recipe.values()
    return recipe


def test_definition_builds_from_the_cuda_image_of_the_pinned_torch(torch_pin):
    recipe = definition()
    base = BASE_IMAGE.match(recipe.fromHeader)
    assert base, f"not an exact CUDA runtime tag of pytorch/pytorch: {recipe.fromHeader}"
    assert base["torch"] == torch_pin
    assert pinned((REPO / LOCK).read_text().splitlines(), "torch") == torch_pin
    text = (REPO / "containers/samedge.def").read_text()
    assert re.search(r"^Bootstrap:\s*docker$", text, flags=re.MULTILINE)
    assert f"samedge.torch {torch_pin}" in recipe.labels and f"samedge.base-image {recipe.fromHeader}" in recipe.labels


def test_definition_installs_the_package_under_the_lock_file():
    recipe = definition()
    copied = dict(line.split() for line in recipe.files)
    assert copied[LOCK] == f"/opt/samedge/{LOCK}"
    for source in copied:
        assert (REPO / source).exists(), source
    install = next(line for line in recipe.install if "pip install" in line)
    assert f"--constraint /opt/samedge/{LOCK} /opt/samedge" in install
    assert not [line for line in (REPO / LOCK).read_text().splitlines() if line.startswith("-e")]
    assert {"PYTHONNOUSERSITE=1", "MPLBACKEND=Agg"} <= set(recipe.environ)


def test_definition_test_section_checks_torch_the_cli_and_cuda(torch_pin):
    # spython turns %test into lines echoed into /tests.sh, run by the test command.
    tests = [re.fullmatch(r'echo "(.*)" >> /tests\.sh', line) for line in definition().install]
    body = "\n".join(match.group(1) for match in tests if match)
    assert definition().test == "/bin/bash /tests.sh"
    assert "import torch" in body and torch_pin in body
    assert "torch.cuda.is_available()" in body
    assert "samedge --help" in body


def test_dockerfile_is_equivalent(torch_pin):
    recipe = DockerParser(str(REPO / "containers/Dockerfile")).recipe
    (recipe,) = recipe.values() if isinstance(recipe, dict) else (recipe,)
    assert recipe.fromHeader == definition().fromHeader
    install = next(line for line in recipe.install if "pip install" in line)
    assert f"--constraint {LOCK} ." in install
    assert any("samedge --help" in line for line in recipe.install)
    ignore = (REPO / "containers/Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:] and "!.venv" not in ignore


def test_default_profile_passes_the_gpu_and_the_mirror():
    profile = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    args = shlex.split(profile["apptainer-args"], posix=False)
    assert "--nv" in args
    assert "software-deployment-method" not in profile  # containers are opt-in (README)
    assert "software-env" not in profile["rerun-triggers"]  # so turning them on reruns nothing
    assert "SAMEDGE_DATA_MIRROR" in profile["apptainer-args"]


def image_bin(tmp_path: Path, log: Path) -> Path:
    """The image's bin directory for the stand-in: a `samedge` that logs its command, then runs ours."""
    folder = tmp_path / "image-bin"
    folder.mkdir()
    (folder / "samedge").write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec {BIN / "samedge"} "$@"\n')
    (folder / "samedge").chmod(0o755)
    return folder


def test_make_container_without_apptainer_names_it_and_docker(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    out = make(repo, newcomer_env(), "container", check=False)
    assert out.returncode == 2 and out.stdout == ""
    [line] = out.stderr.splitlines()
    assert "no `apptainer` on PATH" in line and "docker build -f containers/Dockerfile" in line
    assert not list((repo / "containers").glob("*.sif"))


def test_make_container_builds_the_image_once(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    env = newcomer_env() | {"PATH": f"{FAKEBIN}:{newcomer_env()['PATH']}",
                            "FAKE_APPTAINER_LOG": str(tmp_path / "calls.jsonl")}
    make(repo, env, "container")
    assert (repo / IMAGE).read_bytes().startswith(b"stand-in image")
    assert [path.name for path in (repo / "containers").glob("*.sif")] == ["samedge.sif"]
    make(repo, env, "container")  # up to date: not built again
    builds = [json.loads(line)["argv"] for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert builds == [["build", "--force", "containers/samedge.tmp.sif", "containers/samedge.def"]]


def test_missing_image_stops_before_any_job(tmp_path, tmp_path_factory):
    repo = copy_repo(tmp_path / "repo")
    env = tool_env(tmp_path_factory, extra_path=[FAKEBIN]) | {"FAKE_APPTAINER_LOG": str(tmp_path / "calls")}
    out = run([SNAKEMAKE, "--cores", "1", "--use-singularity", *SMOKE], repo, env, check=False)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (f"{IMAGE} not found: build it with `make container`, "
                                           "or run without --use-singularity")
    assert not (repo / "logs").exists() and not (repo / "data").exists()


def digests(root: Path, folders: list[str]) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted((root / folder).rglob("*")) if path.is_file()}


@pytest.fixture
def finished(tmp_path, tmp_path_factory, mirror):
    """A copy of the finished smoke workspace, with a stand-in image."""
    ws = clone_workspace(smoke_workspace(tmp_path_factory, mirror), tmp_path / "repo")
    (ws / IMAGE).write_bytes(b"stand-in image")
    env = tool_env(tmp_path_factory, mirror, extra_path=[FAKEBIN])
    return ws, env | {"FAKE_APPTAINER_LOG": str(tmp_path / "calls.jsonl")}


@pytest.mark.slow
def test_turning_containers_on_reruns_nothing(finished):
    ws, env = finished
    out = run([SNAKEMAKE, "--dry-run", "--use-singularity", *SMOKE], ws, env)
    assert "Nothing to be done" in out.stdout, out.stdout[-3000:]


@pytest.mark.slow
def test_a_failing_container_job_keeps_every_other_output(finished):
    ws, env = finished
    kept = ["data", str(Layout("smoke").runs), str(Layout("smoke").figures), "checkpoints"]
    before = digests(ws, kept)
    out = run([SNAKEMAKE, "--cores", "2", "--use-singularity", "--keep-going", "--forcerun",
               "aggregate", *SMOKE], ws, env | {"FAKE_APPTAINER_FAIL": "1"}, check=False)
    assert out.returncode != 0 and "broken image" in out.stdout + out.stderr
    assert digests(ws, kept) == before


@pytest.mark.slow
def test_snakemake_runs_every_job_through_apptainer_with_the_gpu(tmp_path, tmp_path_factory, mirror):
    repo = copy_repo(tmp_path / "repo")
    (repo / IMAGE).write_bytes(b"stand-in image")  # the stand-in only checks that it exists
    calls = tmp_path / "apptainer-calls.jsonl"
    env = tool_env(tmp_path_factory, mirror, extra_path=[FAKEBIN])
    env["FAKE_APPTAINER_LOG"] = str(calls)
    env["FAKE_APPTAINER_IMAGE_BIN"] = str(image_bin(tmp_path, tmp_path / "image-samedge.log"))
    run_dir = f"{Layout('smoke').runs}/shakespeare/{run_name(0.1, 0.0)}"
    targets = ["data/prepared/shakespeare", f"{run_dir}/run.json"]
    out = run([SNAKEMAKE, "--cores", "2", "--use-singularity", *SMOKE, "--", *targets], repo, env,
              timeout=600)
    execs = [json.loads(line)["argv"] for line in calls.read_text().splitlines()]
    execs = [argv for argv in execs if "exec" in argv]
    assert len(execs) == 2, out.stdout + out.stderr  # fetch, train: one exec per job
    for argv in execs:
        image_at = argv.index(IMAGE)
        options = argv[argv.index("exec") + 1:image_at]
        assert "--nv" in options
        values = {option: [v for o, v in zip(options, options[1:]) if o == option]
                  for option in ("--bind", "--env")}
        assert str(mirror) in values["--bind"] and f"SAMEDGE_DATA_MIRROR={mirror}" in values["--env"]
        assert argv[image_at + 1:image_at + 3] == ["bash", "-c"] and "samedge " in argv[image_at + 3]
    assert {re.search(r"samedge (\w+)", argv[-1]).group(1) for argv in execs} == {"fetch", "train"}
    for target in targets:
        assert (repo / target).exists(), target
    ran = (tmp_path / "image-samedge.log").read_text().split()  # the image's samedge, not the host's
    assert sorted(ran) == ["fetch", "train"]
