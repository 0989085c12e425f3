"""samedge figure: every paper figure and the per-run sets render from a synthetic results dir."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from samedge import figures
from samedge.aggregate import aggregate
from samedge.cli import figure as figure_cli
from samedge.config import ConfigError
from samedge.errors import RunDirError
from samedge.figure_specs import FIGURES, figure_files, grid_figure_files, paper_figures, run_figure_files
from samedge.runs import RunKey
from samedge.tasks import get_task
from tests.synthetic import DIVERGED, EMPTY, GRID, metrics_frame, write_grid, write_run

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="samedge")
    figure_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["figure", *map(str, argv)])
    return args.func(args)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    write_grid(root / "runs")
    aggregate(root / "runs", root)
    return root


@pytest.fixture(scope="module")
def loaded(results) -> figures.Results:
    return figures.Results.load(results)


def is_pdf_and_png(pdf: Path, png: Path) -> bool:
    return pdf.read_bytes()[:5] == b"%PDF-" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_table():
    assert sorted(FIGURES) == list(range(1, 17))
    assert len({spec.slug for spec in FIGURES.values()}) == 16
    assert [FIGURES[n].task for n in (2, 7, 12)] == ["mnist", "cifar10", "shakespeare"]
    assert FIGURES[14].kind == "opnorm_sam_zoom" and FIGURES[1].task is None
    assert figure_files(3, "out") == (Path("out/fig03_mnist_sam_eigenvalues.pdf"),
                                      Path("out/fig03_mnist_sam_eigenvalues.png"))
    assert run_figure_files(RunKey("mnist", 0.3, 0.1), "out")[0] == Path("out/runs/mnist_lr0.3_rho0.1.pdf")
    assert run_figure_files(RunKey("mnist", 0.3, 0.1, 2), "out")[0] == Path("out/runs/mnist_lr0.3_rho0.1_seed2.pdf")
    for n in (3, 4, 6, 8, 13, 14, 16):
        assert f"ρ = {get_task(FIGURES[n].task).paper.rho}" in FIGURES[n].title
    assert paper_figures(["mnist", "cifar10", "shakespeare"]) == list(range(1, 17))
    assert paper_figures(["cifar10", "teacher"]) == [1, 7, 8, 9, 10, 11] and paper_figures(["teacher"]) == [1]


def test_every_figure_has_a_caption():
    for number, spec in FIGURES.items():
        text = (REPORT / f"fig{number:02d}.rst").read_text()
        assert f"Figure {number} of the paper" in text
        if spec.task is not None:
            assert "diverged" in text
    assert "second half" in (REPORT / "edge_agreement.rst").read_text()


def test_figure_1_curve():
    fig = figures.paper_figure(1, None)
    alpha, ratio = fig.axes[0].lines[0].get_xydata().T
    at_one = np.flatnonzero(np.isclose(alpha, 1.0))
    assert at_one.size == 1 and ratio[at_one[0]] == pytest.approx((math.sqrt(5) - 1) / 2)
    assert ratio[-1] == pytest.approx(1.0, abs=2e-3)                           # alpha = 1000
    assert ratio[0] == pytest.approx(math.sqrt(alpha[0]), rel=0.05)            # ~ sqrt(alpha)
    assert np.all(np.diff(ratio) > 0)
    assert fig.axes[0].get_xscale() == "log"


@pytest.mark.parametrize("number", sorted(FIGURES))
def test_every_figure_renders(results, tmp_path, number):
    assert run_cli(number, "--results", results, "--out", tmp_path) == 0
    assert is_pdf_and_png(*figure_files(number, tmp_path))


def test_diverged_run_is_left_out_and_named(results, loaded, tmp_path, capsys):
    fig = figures.paper_figure(3, loaded)
    assert "Left out, diverged: η = 1, ρ = 0.1" in figures.footnote(fig)
    panel = next(ax for ax in fig.axes if ax.get_title() == "η = 1")
    assert not panel.lines and "diverged" in panel.texts[0].get_text()
    # The GD figure uses rho = 0 only, where nothing diverged: no note.
    assert figures.footnote(figures.paper_figure(2, loaded)) == ""
    run_cli(5, "--results", results, "--out", tmp_path)
    assert "Left out, diverged: η = 1, ρ = 0.1" in capsys.readouterr().out


def test_rho_not_in_grid_is_said_not_failed(loaded):
    assert 0.3 not in GRID["shakespeare"][1]
    for number in (13, 14, 16):
        fig = figures.paper_figure(number, loaded)
        assert "ρ = 0.3 is not in this profile's shakespeare grid" in figures.footnote(fig)
        assert not any(ax.lines for ax in fig.axes)


def test_loss_figure_keeps_gd_when_sam_diverged(loaded):
    fig = figures.paper_figure(5, loaded)
    panel = next(ax for ax in fig.axes if ax.get_title() == "η = 1")
    assert len(panel.lines) == 1 and panel.get_yscale() == "log"


def test_x_axis_option(loaded):
    frame = loaded.metrics.query("task == 'mnist' and lr == 0.3 and rho == 0")
    for x, column in (("seconds", "train_seconds"), ("step", "step")):
        ax = figures.paper_figure(2, loaded, x=x).axes[0]
        np.testing.assert_allclose(ax.lines[0].get_xdata(), frame[column])
        assert ax.get_xlabel() == figures.X_AXES[x][1]


def test_output_is_byte_stable(loaded, tmp_path):
    pair_a, pair_b = figure_files(4, tmp_path / "a"), figure_files(4, tmp_path / "b")
    for pair in (pair_a, pair_b):
        figures.save(figures.paper_figure(4, loaded), *pair)
    assert [p.read_bytes() for p in pair_a] == [p.read_bytes() for p in pair_b]


def test_run_sets_for_runs_that_did_not_diverge(tmp_path):
    write_grid(tmp_path / "runs", tasks=("mnist",))  # a small grid: per-run sets take a second each
    aggregate(tmp_path / "runs", tmp_path)
    assert run_cli("runs", "--results", tmp_path, "--out", tmp_path) == 0
    written = sorted(p.name for p in (tmp_path / "runs").glob("*.pdf"))
    assert written == sorted(run_figure_files(RunKey(*key), tmp_path)[0].name for key in
                             [("mnist", lr, rho) for lr in GRID["mnist"][0] for rho in GRID["mnist"][1]]
                             if key != DIVERGED)
    with pytest.raises(ConfigError, match="diverged at step"):
        run_cli("run", "--task", "mnist", "--lr", "1", "--rho", "0.1", "--results", tmp_path, "--out", tmp_path)


def test_run_set_of_a_run_without_measurements(results, tmp_path):
    task, lr, rho = EMPTY
    assert run_cli("run", "--task", task, "--lr", lr, "--rho", rho, "--results", results, "--out", tmp_path) == 0
    assert is_pdf_and_png(*run_figure_files(RunKey(*EMPTY), tmp_path))
    fig = figures.run_figure(figures.Results.load(results), RunKey(*EMPTY))
    assert all(not ax.lines and "no measurements" in ax.texts[0].get_text() for ax in fig.axes[:4])


@pytest.mark.parametrize("argv, message", [
    (["17"], "unknown figure '17'"),
    (["fig3"], "unknown figure 'fig3'"),
    (["run", "--task", "mnist"], "needs --task, --lr and --rho"),
    (["run", "--task", "mnist", "--lr", "9", "--rho", "0"], "no run with ρ = 0 in this grid"),
])
def test_bad_arguments(results, tmp_path, argv, message):
    with pytest.raises(ConfigError, match=message):
        run_cli(*argv, "--results", results, "--out", tmp_path)


def test_missing_or_malformed_tables(results, tmp_path):
    with pytest.raises(ConfigError, match="metrics.csv: not found; run `samedge aggregate` first"):
        run_cli(2, "--results", tmp_path, "--out", tmp_path)
    pd.read_csv(results / "metrics.csv").drop(columns="lambda_2").to_csv(tmp_path / "metrics.csv", index=False)
    (tmp_path / "runs.csv").write_bytes((results / "runs.csv").read_bytes())
    with pytest.raises(ConfigError, match=r"missing columns \['lambda_2'\]"):
        run_cli(2, "--results", tmp_path, "--out", tmp_path)
    with pytest.raises(ConfigError, match="unknown figure number 99"):
        figures.paper_figure(99, None)


TABLE_EDITS = {
    "a value of a run": lambda m: m.assign(lambda_1=m["lambda_1"].where(m.index != 7, 99.0)),
    "rows reordered": lambda m: m.iloc[[1, 0, *range(2, len(m))]],
    "a row deleted": lambda m: m.drop(index=3),
    "a run's rows relabelled": lambda m: m.assign(rho=m["rho"].where(m.index >= 16, 0.2)),
    "an extra column": lambda m: m.assign(note=1.0),
}


@pytest.mark.parametrize("edit", TABLE_EDITS)
def test_an_edited_metrics_table_is_refused_before_drawing(results, tmp_path, edit):
    tables = tmp_path / "tables"
    tables.mkdir()
    TABLE_EDITS[edit](pd.read_csv(results / "metrics.csv")).to_csv(tables / "metrics.csv", index=False)
    (tables / "runs.csv").write_bytes((results / "runs.csv").read_bytes())
    with pytest.raises(ConfigError, match="metrics.csv: .*(are not those `samedge aggregate` wrote|does not list)"):
        run_cli("all", "--results", tables, "--out", tmp_path / "figures")
    assert not (tmp_path / "figures").exists()


@pytest.mark.parametrize("where", ["runs", "runs/mnist", "a_file", "a_file/sub"])
def test_a_figure_folder_holding_runs_or_under_a_file_is_refused(results, tmp_path, where):
    (tmp_path / "a_file").write_text("the user's")
    write_run(tmp_path / "runs", "mnist", 0.3, 0.1)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(RunDirError, match=f"--out {tmp_path / where}: "):
        run_cli(2, "--results", results, "--out", tmp_path / where)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_grid_figure_has_a_panel_per_lr_and_rho(results, loaded, tmp_path):
    fig = figures.grid_figure(loaded, "mnist")
    titles = sorted(ax.get_title() for ax in fig.axes)
    assert titles == sorted(f"η = {lr:g}, ρ = {rho:g}" for lr in GRID["mnist"][0] for rho in GRID["mnist"][1])
    diverged = next(ax for ax in fig.axes if ax.get_title() == "η = 1, ρ = 0.1")
    assert not diverged.lines and "diverged" in diverged.texts[0].get_text()
    drawn = next(ax for ax in fig.axes if ax.get_title() == "η = 0.3, ρ = 0.1")
    assert len(drawn.lines) == 5 and drawn.get_yscale() == "log"   # lambda_1..3, 2/eta, SAM edge
    assert run_cli("grids", "--results", results, "--out", tmp_path) == 0
    assert all(is_pdf_and_png(*grid_figure_files(task, tmp_path)) for task in GRID)


def test_figures_show_the_first_seed_that_did_not_diverge(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "cifar10", 0.01, 0.0, status="diverged", reason="loss nan at step 13")
    write_run(runs, "cifar10", 0.01, 0.0, seed=3)
    aggregate(runs, tmp_path)
    loaded = figures.Results.load(tmp_path)
    fig = figures.paper_figure(7, loaded)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(),
                               loaded.metrics.query("seed == 3")["lambda_1"])
    assert "η = 0.01, ρ = 0: seed 3 shown; seed 0: loss nan at step 13" in figures.footnote(fig)
    assert figures.completed_runs(loaded) == [RunKey("cifar10", 0.01, 0.0, 3)]


def test_optimizer_figures_one_per_optimizer_and_one_per_task(tmp_path):
    """Beyond the paper: a momentum run and a minibatch SAM run beside the paper's runs get a figure
    per optimizer (a panel per run) and one per task side by side; the paper's figures leave them out."""
    from samedge import beyond_figures
    from samedge.figure_specs import optimizer_figure_files, side_by_side_figure_files
    from tests.synthetic import metrics_frame

    runs_dir = tmp_path / "runs"
    write_run(runs_dir, "mnist", 0.3, 0.0)
    write_run(runs_dir, "mnist", 0.3, 0.1, batch="64")
    momentum = metrics_frame(0.3, 0.0)
    momentum["edge"] = 3.8 / 0.3
    write_run(runs_dir, "mnist", 0.3, 0.0, metrics=momentum, optimizer="momentum")
    aggregate(runs_dir, tmp_path)
    assert run_cli("optimizers", "--results", str(tmp_path), "--out", str(tmp_path / "figures")) == 0
    for files in (optimizer_figure_files("sam", tmp_path / "figures"), optimizer_figure_files("momentum", tmp_path / "figures"),
                  side_by_side_figure_files("mnist", tmp_path / "figures")):
        assert is_pdf_and_png(*files)
    metrics, runs = beyond_figures.load(tmp_path)
    assert len([ax for ax in beyond_figures.optimizer_figure(metrics, runs, "sam").axes if ax.get_visible()]) == 2
    side = beyond_figures.side_by_side_figure(metrics, runs, "mnist")
    assert [ax.get_title() for ax in side.axes if ax.get_visible()] == ["sam", "momentum"]
    assert len(figures.Results.load(tmp_path).runs) == 1  # the paper's figures: the GD run only


def _labelled_ticks(ax) -> list[float]:
    lo, hi = sorted(ax.get_ylim())
    return [t for t in ax.yaxis.get_majorticklocs() if lo <= t <= hi]


def test_every_log_axis_has_two_tick_labels_even_on_a_short_range(tmp_path):
    """A loss from 0.03 to 0.2 (less than a decade) still reads: at least two labelled ticks."""
    metrics = pd.DataFrame({**{c: v for c, v in metrics_frame(0.3, 0.1).items()},
                            "loss": np.linspace(0.2, 0.03, 16)})
    write_run(tmp_path / "runs", "mnist", 0.3, 0.1, metrics=metrics)
    write_run(tmp_path / "runs", "mnist", 0.3, 0.0)
    aggregate(tmp_path / "runs", tmp_path)
    loaded = figures.Results.load(tmp_path)
    figs = [figures.paper_figure(n, loaded) for n in (3, 5)] + [figures.run_figure(loaded, RunKey("mnist", 0.3, 0.1))]
    log_axes = [ax for fig in figs for ax in fig.axes if ax.get_yscale() == "log"]
    assert len(log_axes) == 4
    for ax in log_axes:
        ax.figure.canvas.draw()
        assert len(_labelled_ticks(ax)) >= 2, ax.get_title()


def test_ratio_panel_clips_an_early_spike_and_marks_it(tmp_path):
    metrics = metrics_frame(0.3, 0.1)
    metrics.loc[0, "lambda_1"] = 30 * metrics.loc[0, "sam_edge"]      # the starting spike
    write_run(tmp_path / "runs", "mnist", 0.3, 0.1, metrics=metrics)
    aggregate(tmp_path / "runs", tmp_path)
    fig = figures.run_figure(figures.Results.load(tmp_path), RunKey("mnist", 0.3, 0.1))
    ratio = next(ax for ax in fig.axes if ax.get_title() == figures.RUN_PANELS[1])
    lo, hi = ratio.get_ylim()
    assert lo <= 0.9 and 1.1 <= hi <= figures.RATIO_VIEW[1]       # the band in view, the spike not
    [marker] = [line for line in ratio.lines if line.get_gid() == "clipped"]
    np.testing.assert_allclose(marker.get_xydata(), [[0.0, hi]])  # at step 0, on the top edge
    assert any("▲ clipped, above 2: 30" in t.get_text() for t in ratio.texts)


def test_steps_are_the_default_x_axis(loaded):
    assert all(ax.get_xlabel() in ("step", "") for ax in figures.paper_figure(2, loaded).axes)
    assert figures.run_figure(loaded, RunKey("mnist", 0.3, 0.0)).axes[-1].get_xlabel() == "step"
