"""samedge aggregate: tidy tables and edge-agreement numbers from synthetic run directories."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from samedge import aggregate as agg
from samedge.cli import aggregate as aggregate_cli
from samedge.config import ConfigError, grid, load_params
from samedge.errors import RunDirError
from samedge.io import sha256_file
from samedge.runs import RunKey, read_run
from tests.drill import EDITS, text_in
from tests.synthetic import DIVERGED, EMPTY, GRID, metrics_frame, write_grid, write_run

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="samedge")
    aggregate_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["aggregate", *map(str, argv)])
    return args.func(args)


def hand_metrics(ratios: list[float]) -> pd.DataFrame:
    """Measurements with lambda_1/sam_edge = ratios (sam_edge 4, gd_edge 10), rows shuffled."""
    n = len(ratios)
    frame = metrics_frame(0.2, 0.1, n=n).assign(
        lambda_1=4.0 * np.array(ratios), sam_edge=4.0, gd_edge=10.0)
    return frame.iloc[::-1]  # out of step order on purpose


@pytest.fixture(scope="module")
def aggregated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("agg")
    write_grid(root / "runs")
    assert run_cli("--runs-dir", root / "runs", "--out-dir", root) == 0
    return root


def test_second_half_statistics_by_hand(tmp_path):
    # Second half (last 3 of 6, by step): ratios 0.95, 1.05, 1.3.
    metrics = hand_metrics([0.2, 0.5, 0.7, 0.95, 1.05, 1.3])
    write_run(tmp_path / "runs", "mnist", 0.2, 0.1, metrics=metrics)
    agg.aggregate(tmp_path / "runs", tmp_path)
    row = pd.read_csv(tmp_path / "edge_agreement.csv").iloc[0]
    assert row["n_measurements"] == 6 and row["n_second_half"] == 3
    assert row["sam_ratio_median"] == pytest.approx(1.05)
    assert row["sam_ratio_q25"] == pytest.approx(1.0)     # 0.95 + (1.05 - 0.95) / 2
    assert row["sam_ratio_q75"] == pytest.approx(1.175)   # 1.05 + (1.3 - 1.05) / 2
    assert row["sam_ratio_within_10pct"] == pytest.approx(2 / 3)
    # lambda_1 / gd_edge = 0.4 * ratio: 0.38, 0.42, 0.52; none within 10% of 2/eta.
    assert row["gd_ratio_median"] == pytest.approx(0.42)
    assert row["gd_ratio_q25"] == pytest.approx(0.40)
    assert row["gd_ratio_q75"] == pytest.approx(0.47)
    assert row["gd_ratio_within_10pct"] == 0.0
    assert not row["diverged"]


def test_odd_count_takes_the_last_ceil_half():
    half = agg.second_half(hand_metrics([0.1, 0.2, 0.9, 1.0, 1.1]))
    assert list(half["lambda_1"] / 4.0) == pytest.approx([0.9, 1.0, 1.1])
    assert agg.ratio_stats(half["lambda_1"] / half["sam_edge"], "x") == pytest.approx(
        {"x_median": 1.0, "x_q25": 0.95, "x_q75": 1.05, "x_within_10pct": 1.0})


def test_within_10pct_boundary_and_infinite_ratios():
    ratio = pd.Series([0.9, 1.1, 0.89, np.inf, np.nan])
    stats = agg.ratio_stats(ratio, "r")
    assert stats["r_within_10pct"] == pytest.approx(2 / 3)  # inf/nan dropped; 0.9 and 1.1 count


def test_tables(aggregated):
    metrics = pd.read_csv(aggregated / "metrics.csv")
    runs = pd.read_csv(aggregated / "runs.csv")
    n_runs = sum(len(lrs) * len(rhos) for lrs, rhos in GRID.values())
    assert list(runs.columns) == list(agg.RUN_COLUMNS) and len(runs) == n_runs
    assert list(metrics.columns[:6]) == ["task", "lr", "rho", "optimizer", "batch", "seed"]
    assert set(metrics["optimizer"]) == {"sam"} and set(metrics["batch"]) == {"default"}
    assert set(agg.METRIC_COLUMNS) | {"test_loss"} <= set(metrics.columns)  # extras kept
    assert len(metrics) == 16 * (n_runs - 1)  # the empty run adds no rows
    assert list(dict.fromkeys(runs["task"])) == ["mnist", "cifar10", "shakespeare"]
    diverged = runs[runs["status"] == "diverged"]
    assert [tuple(r) for r in diverged[["task", "lr", "rho"]].itertuples(index=False)] == [DIVERGED]
    assert diverged["reason"].item().startswith("loss")


def test_edge_agreement_marks_diverged_and_empty_runs(aggregated):
    table = pd.read_csv(aggregated / "edge_agreement.csv")
    by_key = table.set_index(["task", "lr", "rho"])
    assert bool(by_key.loc[DIVERGED, "diverged"]) and by_key.loc[DIVERGED, "status"] == "diverged"
    assert by_key.loc[DIVERGED, "n_measurements"] == 15  # its last row has no eigenvalue
    empty = by_key.loc[EMPTY]
    assert empty["n_measurements"] == 0 and math.isnan(empty["sam_ratio_median"])
    # Synthetic runs sit at their edge in the second half (3% noise): every ratio within 10%.
    completed = table[(table["status"] == "completed") & (table["n_measurements"] > 0)]
    assert completed["sam_ratio_median"].between(0.9, 1.1).all()
    assert (completed["sam_ratio_within_10pct"] == 1.0).all()
    gd_runs = completed[completed["rho"] == 0]
    assert np.allclose(gd_runs["gd_ratio_median"], gd_runs["sam_ratio_median"])  # rho = 0: same edge


def test_edge_agreement_json_for_dvc(aggregated):
    summary = json.loads((aggregated / "edge.json").read_text())
    assert sorted(summary) == ["cifar10", "mnist", "shakespeare"]  # a few numbers per task, not per run
    assert all(set(numbers) == {"gd", "sam"} for numbers in summary.values())  # short keys: 120 columns
    assert 0.9 <= summary["mnist"]["sam"] <= 1.1 and summary["mnist"]["sam"] == round(summary["mnist"]["sam"], 3)
    assert all(isinstance(v, (float, type(None))) for task in summary.values() for v in task.values())


def test_params_select_the_profile_grid(tmp_path):
    keys = grid(load_params(PARAMS), "smoke")
    for key in keys:
        write_run(tmp_path / "runs", *key[:3])
    write_run(tmp_path / "runs", "mnist", 5.0, 0.0)  # stale: from another profile
    run_cli("--runs-dir", tmp_path / "runs", "--out-dir", tmp_path, "--params", PARAMS, "--profile", "smoke")
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == len(keys) and 5.0 not in set(runs["lr"])


def test_missing_run_is_named(tmp_path):
    task, lr, rho = grid(load_params(PARAMS), "smoke")[0][:3]
    with pytest.raises(ConfigError, match=rf"{task}/lr{lr}_rho0/run.json"):
        agg.aggregate(tmp_path / "runs", tmp_path, PARAMS, "smoke")


def test_missing_metrics_column(tmp_path):
    write_run(tmp_path / "runs", "mnist", 0.3, 0.1, metrics=metrics_frame(0.3, 0.1).drop(columns="sam_edge"))
    with pytest.raises(ConfigError, match=r"metrics.csv: missing metrics columns \['sam_edge'\]"):
        agg.aggregate(tmp_path / "runs", tmp_path)
    assert not (tmp_path / "metrics.csv").exists()


@pytest.mark.parametrize("change, message", [
    ({"status": "running"}, "status 'running' is not one of"),
    ({"lr": 0.5}, "lr is 0.5 but the run directory says 0.3"),
])
def test_bad_run_json(tmp_path, change, message):
    info_path = write_run(tmp_path / "runs", "mnist", 0.3, 0.1) / "run.json"
    info_path.write_text(json.dumps(json.loads(info_path.read_text()) | change))
    with pytest.raises(ConfigError, match=message):
        read_run(tmp_path / "runs", RunKey("mnist", 0.3, 0.1))


@pytest.mark.parametrize("edit", EDITS)
def test_every_edit_of_a_metrics_csv_is_refused_by_name_writing_nothing(tmp_path, edit):
    run = write_run(tmp_path / "runs", "mnist", 0.3, 0.1)
    gd = write_run(tmp_path / "runs", "mnist", 0.3, 0.0)
    metrics = pd.read_csv(run / "metrics.csv")
    EDITS[edit](metrics, pd.read_csv(gd / "metrics.csv")).to_csv(run / "metrics.csv", index=False)
    with pytest.raises(ConfigError, match="lr0.3_rho0.1/metrics.csv: not the file its run wrote"):
        agg.aggregate(tmp_path / "runs", tmp_path / "tables")
    assert not (tmp_path / "tables").exists()  # nothing is written from a damaged run


def test_a_line_cut_inside_its_last_column_is_refused(tmp_path):
    run = write_run(tmp_path / "runs", "mnist", 0.3, 0.1)
    text = (run / "metrics.csv").read_text()
    (run / "metrics.csv").write_text(text[:-3])  # the last value loses its last digits
    with pytest.raises(ConfigError, match="lr0.3_rho0.1/metrics.csv: not the file its run wrote"):
        agg.aggregate(tmp_path / "runs", tmp_path / "tables")


@pytest.mark.parametrize("content", [b"", b"\x00\xff\x89PNG binary", b"step,loss\n1,2,3,4\n"])
def test_an_unreadable_metrics_csv_is_refused_by_name(tmp_path, content):
    run = write_run(tmp_path / "runs", "mnist", 0.3, 0.1)
    (run / "metrics.csv").write_bytes(content)
    with pytest.raises(ConfigError, match="lr0.3_rho0.1/metrics.csv: not the file its run wrote"):
        agg.aggregate(tmp_path / "runs", tmp_path / "tables")


@pytest.mark.parametrize("record, message", [
    (b"null", "expected a JSON object, got NoneType"),
    (b"\x00\xff\xfe binary", "not valid JSON"),
    (b'{"status": "completed"', "not valid JSON"),
    (None, "no metrics_sha256 of its metrics.csv"),
])
def test_an_unreadable_run_json_is_refused_by_name(tmp_path, record, message):
    run = write_run(tmp_path / "runs", "mnist", 0.3, 0.1)
    if record is None:  # a run of an older samedge: no digest to check the file against
        record = json.dumps({k: v for k, v in json.loads((run / "run.json").read_text()).items()
                             if k != "metrics_sha256"}).encode()
    (run / "run.json").write_bytes(record)
    with pytest.raises(ConfigError, match=f"lr0.3_rho0.1/run.json: {message}"):
        agg.aggregate(tmp_path / "runs", tmp_path / "tables")


def _forge(run: Path, damage) -> None:
    """Edit metrics.csv and record the edited file's digest, as a hand-made run.json would."""
    damage(pd.read_csv(run / "metrics.csv")).to_csv(run / "metrics.csv", index=False)
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(record | {"metrics_sha256": sha256_file(run / "metrics.csv")}))


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.iloc[:-3], r"13 rows but run.json records 16 measurements"),
    (lambda m: m.assign(loss=m["loss"].where(m.index != 4)), r"non-finite values in \['loss'\]"),
    (lambda m: m.assign(hvp_count=m["hvp_count"] + 1), "hvp_count sums to 208 but run.json records 192"),
    (lambda m: m.assign(step=m["step"] * 10), "a row at step 1500 but the run took 151 steps"),
    (lambda m: text_in("lambda_1")(m, None), r"non-numeric values in columns \['lambda_1'\]"),
])
def test_a_metrics_csv_that_disagrees_with_its_run_json_is_refused(tmp_path, damage, message):
    """Past the digest (a forged run.json), the file must still agree with what the run recorded."""
    run = write_run(tmp_path / "runs", "mnist", 0.3, 0.1)
    _forge(run, damage)
    with pytest.raises(ConfigError, match=f"lr0.3_rho0.1/metrics.csv: {message}"):
        agg.aggregate(tmp_path / "runs", tmp_path / "tables")


@pytest.mark.parametrize("change, message", [({"lr": "abc"}, "lr is 'abc' but the run directory says 0.3"),
                                             ({"steps": "many"}, "steps is 'many', expected an integer")])
def test_a_run_json_with_a_wrong_type_is_refused(tmp_path, change, message):
    run = write_run(tmp_path / "runs", "mnist", 0.3, 0.1)
    (run / "run.json").write_text(json.dumps(json.loads((run / "run.json").read_text()) | change))
    with pytest.raises(ConfigError, match=f"lr0.3_rho0.1/run.json: {message}"):
        agg.aggregate(tmp_path / "runs", tmp_path / "tables")


def test_both_files_copied_from_another_run_are_refused(tmp_path):
    run = write_run(tmp_path / "runs", "mnist", 0.3, 0.1)
    gd = write_run(tmp_path / "runs", "mnist", 0.3, 0.0)
    for name in ("metrics.csv", "run.json"):
        (run / name).write_bytes((gd / name).read_bytes())
    with pytest.raises(ConfigError, match="lr0.3_rho0.1/run.json: rho is 0.0 but the run directory says 0.1"):
        agg.aggregate(tmp_path / "runs", tmp_path / "tables")


@pytest.mark.parametrize("where", ["runs", "runs/mnist", "runs/mnist/lr0.3_rho0.1"])
def test_an_out_dir_holding_runs_is_refused(tmp_path, where):
    write_run(tmp_path / "runs", "mnist", 0.3, 0.1)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(RunDirError, match=f"--out-dir {tmp_path / where}: holds run results"):
        agg.aggregate(tmp_path / "runs", tmp_path / where)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("where", ["a_file", "a_file/sub"])
def test_an_out_dir_that_is_or_lies_under_a_file_is_refused(tmp_path, where):
    write_run(tmp_path / "runs", "mnist", 0.3, 0.1)
    (tmp_path / "a_file").write_text("the user's")
    with pytest.raises(RunDirError, match="a_file is a file, not a folder"):
        agg.aggregate(tmp_path / "runs", tmp_path / where)
    assert (tmp_path / "a_file").read_text() == "the user's"


def test_tables_read_back_every_float_exactly(tmp_path):
    """The figures recompute each run's rows digest from the table: every value must read back exactly."""
    metrics = metrics_frame(0.3, 0.1).assign(lambda_1=np.nextafter(np.linspace(1, 2, 16), 3) / 3.0)
    write_run(tmp_path / "runs", "mnist", 0.3, 0.1, metrics=metrics)
    agg.aggregate(tmp_path / "runs", tmp_path)
    table = agg.read_table(tmp_path / "metrics.csv")
    assert (table["lambda_1"].to_numpy() == metrics["lambda_1"].to_numpy()).all()


def test_several_seeds_of_a_grid_point(tmp_path):
    """The first seed that did not diverge is the one shown; every seed's outcome is counted."""
    runs = tmp_path / "runs"
    write_run(runs, "cifar10", 0.01, 0.0, status="diverged", reason="loss nan")          # seed 0
    write_run(runs, "cifar10", 0.01, 0.0, seed=1)
    write_run(runs, "cifar10", 0.01, 0.0, seed=4, status="diverged", reason="loss nan")
    write_run(runs, "cifar10", 0.003, 0.0)
    agg.aggregate(runs, tmp_path)
    table = pd.read_csv(tmp_path / "runs.csv")
    assert table[["lr", "seed", "status"]].values.tolist() == [
        [0.003, 0, "completed"], [0.01, 0, "diverged"], [0.01, 1, "completed"], [0.01, 4, "diverged"]]
    agreement = pd.read_csv(tmp_path / "edge_agreement.csv").set_index("lr")
    assert len(agreement) == 2 and agreement.loc[0.01, "seed"] == 1
    assert agreement.loc[0.01, "status"] == "completed" and agreement.loc[0.01, "n_seeds"] == 3
    assert agreement.loc[0.01, "n_seeds_diverged"] == 2
    assert agreement.loc[0.01, "diverged_at"] == "seed 0: step 151; seed 4: step 151"
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics.columns[:6]) == ["task", "lr", "rho", "optimizer", "batch", "seed"]
    assert set(metrics["optimizer"]) == {"sam"} and set(metrics["batch"]) == {"default"} and set(metrics["seed"]) == {0, 1, 4}


def test_no_runs_and_profile_without_params(tmp_path):
    with pytest.raises(ConfigError, match="no runs found"):
        run_cli("--runs-dir", tmp_path, "--out-dir", tmp_path)
    with pytest.raises(ConfigError, match="--profile needs --params"):
        run_cli("--runs-dir", tmp_path, "--out-dir", tmp_path, "--profile", "smoke")


def test_other_optimizers_and_batch_sizes_are_columns_with_their_own_edge(tmp_path):
    """A momentum run (its edge 3.8/eta, not 2/eta) and a minibatch SAM run beside a GD run: each is
    a grid point of its own, sharpness / edge is read against the run's own edge, and the
    summary keeps the paper's numbers to the paper's runs."""
    runs_dir = tmp_path / "runs"
    write_run(runs_dir, "teacher", 0.5, 0.0)
    momentum = metrics_frame(0.5, 0.0)
    momentum["edge"] = 3.8 / 0.5
    momentum["sharpness"] = momentum["lambda_1"] = 1.9 * momentum["lambda_1"]  # at 3.8/eta, past 2/eta
    write_run(runs_dir, "teacher", 0.5, 0.0, metrics=momentum, optimizer="momentum")
    write_run(runs_dir, "teacher", 0.5, 0.0, batch="16")
    agg.aggregate(runs_dir, tmp_path)
    table = pd.read_csv(tmp_path / "edge_agreement.csv", keep_default_na=False)
    assert [tuple(r) for r in table[["optimizer", "batch"]].itertuples(index=False)] == [
        ("sam", "default"), ("sam", "16"), ("momentum", "default")]
    assert table["edge_ratio_median"].between(0.9, 1.1).all()
    assert table.loc[table["optimizer"] == "momentum", "gd_ratio_median"].item() > 1.5  # far past 2/eta
    summary = json.loads((tmp_path / "edge.json").read_text())["teacher"]
    assert 0.9 <= summary["gd"] <= 1.1 and summary["sam"] is None  # the paper's GD run alone
    assert 0.9 <= summary["edge"] <= 1.1  # the other runs, each against its own edge
