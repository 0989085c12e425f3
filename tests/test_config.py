"""params.yaml: schema validation, profiles, overrides and the grid."""
import copy

import pytest
import yaml

from samedge.config import (ConfigError, apply_overrides, fmt_value, grid, load_params, load_run_config,
                            validate_params)
from samedge.runs import run_name

PARAMS = "params.yaml"


@pytest.fixture
def params(repo_root):
    return load_params(repo_root / PARAMS)


def test_the_repository_params_are_valid_and_hold_the_papers_grid(params):
    paper = params["profiles"]["paper"]
    assert paper["mnist"]["grid"] == {"lr": [0.03, 0.1, 0.3], "rho": [0.0, 0.1, 0.3, 1.0]}
    assert paper["cifar10"]["grid"] == {"lr": [0.0003, 0.001, 0.003, 0.01], "rho": [0.0, 0.1, 0.3, 1.0]}
    assert paper["shakespeare"]["grid"]["lr"] == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
    assert len(grid(params, "paper")) == 52
    assert paper["mnist"]["model"] == {"width": 1000, "depth": 3, "init_scale": 1.0}
    assert paper["mnist"]["data"]["n_train"] is None
    assert paper["shakespeare"]["train"]["batch_size"] == 128
    assert params["profile"] == "quick"


@pytest.mark.parametrize("path, value, key", [
    (("profiles", "quick", "mnist", "grid", "lr"), [0.1, -0.3], "profiles.quick.mnist.grid.lr.1"),
    (("profiles", "quick", "mnist", "grid", "rho"), [-0.1], "profiles.quick.mnist.grid.rho.0"),
    (("profiles", "smoke", "cifar10", "train", "max_steps"), "ten", "profiles.smoke.cifar10.train.max_steps"),
    (("profiles", "paper", "shakespeare", "tracker", "k"), 0, "profiles.paper.shakespeare.tracker.k"),
    (("profiles", "paper", "mnist", "model", "width"), 1.5, "profiles.paper.mnist.model.width"),
    (("profiles", "quick", "mnist", "tracker", "method"), "lanczos", "profiles.quick.mnist.tracker.method"),
])
def test_a_malformed_value_is_rejected_naming_its_key(params, path, value, key):
    bad = copy.deepcopy(params)
    node = bad
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=f"'{key}'"):
        validate_params(bad)


def test_unknown_keys_and_profiles_are_rejected(params, tmp_path):
    bad = copy.deepcopy(params)
    bad["profiles"]["quick"]["mnist"]["train"]["lr_schedule"] = "cosine"
    with pytest.raises(ConfigError, match="lr_schedule"):
        validate_params(bad)
    bad = copy.deepcopy(params)
    bad["profile"] = "huge"
    with pytest.raises(ConfigError, match="huge"):
        validate_params(bad)
    path = tmp_path / "p.yaml"
    path.write_text("profile: [unclosed")
    with pytest.raises(ConfigError, match="YAML"):
        load_params(path)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "absent.yaml")


def test_overrides_parse_types_and_reject_unknown_keys(params, repo_root):
    cfg = load_run_config(repo_root / PARAMS, "smoke", "mnist",
                          ["train.max_steps=7", "tracker.tol=1e-4", "data.n_train=null", "model.width=8"])
    assert cfg["train"]["max_steps"] == 7 and cfg["tracker"]["tol"] == 1e-4
    assert cfg["data"]["n_train"] is None and cfg["model"]["width"] == 8
    with pytest.raises(ConfigError, match="unknown key 'foo'"):
        apply_overrides(params["profiles"]["smoke"]["mnist"], ["train.foo=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(params["profiles"]["smoke"]["mnist"], ["train.max_steps"])
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_run_config(repo_root / PARAMS, "smoke", "mnist", ["train.max_steps=1.5"])
    with pytest.raises(ConfigError, match="unknown profile"):
        load_run_config(repo_root / PARAMS, "nope", "mnist")
    with pytest.raises(ConfigError, match="unknown task"):
        load_run_config(repo_root / PARAMS, "smoke", "imagenet")


def test_run_names_round_trip_the_values_written_in_params():
    assert [fmt_value(v) for v in (0.1, 0.0003, 0.0, 1.0, 0.03)] == ["0.1", "0.0003", "0", "1", "0.03"]
    assert run_name(0.0003, 0.1) == "lr0.0003_rho0.1"
    assert float(fmt_value(0.1 + 0.2)) == pytest.approx(0.3)


def test_schema_file_in_workflow_is_the_package_schema(repo_root):
    shipped = yaml.safe_load((repo_root / "src/samedge/params.schema.yaml").read_text())
    assert yaml.safe_load((repo_root / "workflow/schemas/params.schema.yaml").read_text()) == shipped


@pytest.mark.parametrize("override, key", [
    ("tracker.tol=.nan", "tracker.tol"), ("model.init_scale=nan", "model.init_scale"),
    ("train.divergence_loss=nan", "train.divergence_loss"), ("train.time_budget_s=inf", "train.time_budget_s"),
    ("train.divergence_loss=-.inf", "train.divergence_loss"), ("grid.lr=[0.1, .nan]", "grid.lr.1"),
])
def test_nan_and_inf_are_refused_naming_the_key(override, key, repo_root):
    """JSON schema's `number` admits NaN (it even passes exclusiveMinimum) and inf."""
    with pytest.raises(ConfigError, match=f"'profiles.smoke.mnist.{key}': expected a finite number"):
        load_run_config(repo_root / PARAMS, "smoke", "mnist", [override])


def test_nan_in_a_params_file_is_refused(repo_root, tmp_path):
    text = (repo_root / PARAMS).read_text()
    params = yaml.safe_load(text)
    params["profiles"]["paper"]["cifar10"]["model"]["init_scale"] = float("nan")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=f"{path}: invalid value at 'profiles.paper.cifar10.model.init_scale'"):
        load_params(path)


def test_a_set_value_that_is_not_yaml_is_one_clear_line(params):
    with pytest.raises(ConfigError, match=r"--set train.max_steps: '\[' is not a valid YAML value") as info:
        apply_overrides(params["profiles"]["smoke"]["mnist"], ["train.max_steps=["])
    assert "\n" not in str(info.value)
