"""The figures: the paper's (FIGURES in figure_specs.py), a figure set per run, a grid figure per task.

Every figure reads the aggregated tables results/metrics.csv and results/runs.csv (figure 1 is
analytic and reads nothing) and is laid out by seaborn's FacetGrid: the paper's figures have a
panel per learning rate of the task's grid, a task's grid figure a panel per (lr, rho). A grid point
shows the first of its seeds that did not diverge (samedge.aggregate.shown_runs). A panel whose run
diverged, has no measurements, or whose rho is not in the grid is drawn empty with the reason; the
footnote under the figure lists the runs left out. Eigenvalues are the signed top-3 eigenvalues
(the paper plots magnitudes; they agree when they are positive).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import matplotlib as mpl

mpl.use("Agg")  # files only: no window, and no GUI toolkit to import
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from samedge.aggregate import (DEFAULT_BATCH, KEY_COLUMNS, PAPER_OPTIMIZER, POINT_COLUMNS, ROWS_DIGEST, RUN_COLUMNS,
                               read_table, row_key, rows_digest, run_rows, shown_runs)
from samedge.config import ConfigError, fmt_value
from samedge.edge import edge_ratio
from samedge.figure_specs import FIGURES
from samedge.io import atomic_write
from samedge.runs import METRIC_COLUMNS, RunKey, parse_run_name
from samedge.tasks import TaskError, get_task

X_AXES = {"seconds": ("train_seconds", "training time (s)"), "step": ("step", "step")}
PANEL_SIZE = (3.4, 2.5)  # inches per panel
MAX_COLS = 3
DPI = 200
THEME = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.05),
         "axes.titlesize": 10, "figure.titlesize": 11, "legend.fontsize": 9}
# Byte-stable reruns: no creation date in the PDF, no software version in the PNG.
SAVE_METADATA = {"pdf": {"CreationDate": None}, "png": {"Software": None}}


class Style(NamedTuple):
    color: str
    dashes: tuple | str  # seaborn dash spec: "" is a solid line


_CB = sns.color_palette("colorblind").as_hex()
# Plain Unicode labels, not mathtext: parsing $...$ took a third of the drawing time (figure 1 keeps its formula).
LAM = {f"lambda_{i}": f"λ{chr(0x2080 + i)}" for i in (1, 2, 3)}
GD_EDGE, SAM_EDGE, OPNORM = "2/η", "SAM edge", "‖H‖ = maxᵢ |λᵢ|"
ALIGN = {"align_grad": "|cos(∇L(w), v₁)|", "align_sam_grad": "|cos(∇L(w + ρg/‖g‖), v₁)| (SAM)"}
RATIO = "λ₁ / SAM edge"
EIGS = {**LAM, "gd_edge": GD_EDGE, "sam_edge": SAM_EDGE}
STYLES = {
    LAM["lambda_1"]: Style(_CB[0], ""), LAM["lambda_2"]: Style(_CB[2], ""),
    LAM["lambda_3"]: Style(_CB[4], ""), OPNORM: Style(_CB[0], ""),
    GD_EDGE: Style("#222222", (5, 2)), SAM_EDGE: Style(_CB[3], (2, 1.2)),
    ALIGN["align_grad"]: Style(_CB[0], ""), ALIGN["align_sam_grad"]: Style(_CB[3], ""),
    RATIO: Style(_CB[0], ""),
}


def task_label(task: str) -> str:
    try:
        return get_task(task).label
    except TaskError:  # a task of another params file: its name is all we have
        return task


def base_optimizer(task: str) -> str:
    try:
        return get_task(task).base_optimizer
    except TaskError:
        return "GD"


def loss_label(task: str, rho: float) -> str:
    name = base_optimizer(task) if rho == 0 else "SAM"
    return f"{name} (ρ = {fmt_value(rho)})"


def _style(label: str) -> Style:
    if label in STYLES:
        return STYLES[label]
    # The loss figure's runs, labelled by their rho: the base optimizer blue, SAM orange.
    return Style(_CB[3] if label.startswith("SAM") else _CB[0], "")


# ---------------------------------------------------------------- the aggregated tables

@dataclass
class Results:
    metrics: pd.DataFrame
    runs: pd.DataFrame

    def __post_init__(self) -> None:
        self.shown = shown_runs(self.runs)

    @classmethod
    def load(cls, results_dir: str | Path) -> Results:
        results_dir = Path(results_dir)
        metrics = _read_table(results_dir / "metrics.csv", [*KEY_COLUMNS, *METRIC_COLUMNS])
        runs = _read_table(results_dir / "runs.csv", list(RUN_COLUMNS))
        _check_rows(results_dir / "metrics.csv", metrics, runs)
        return cls(paper_rows(metrics), paper_rows(runs))

    def lrs(self, task: str) -> list[float]:
        return sorted(self.runs.loc[self.runs["task"] == task, "lr"].unique())

    def rhos(self, task: str) -> list[float]:
        return sorted(self.runs.loc[self.runs["task"] == task, "rho"].unique())

    def tasks(self) -> list[str]:
        return list(dict.fromkeys(self.runs["task"]))

    def run_row(self, key: RunKey) -> pd.Series | None:
        """runs.csv's row of the run `key` names (its run directory)."""
        match = self.runs[(self.runs["task"] == key.task) & (self.runs["run"] == key.name)]
        return None if match.empty else match.iloc[0]

    def shown_row(self, task: str, lr: float, rho: float) -> pd.Series | None:
        """runs.csv's row of the run a grid point shows (its first seed that did not diverge)."""
        match = self.shown[_is_point(self.shown, task, lr, rho)]
        return None if match.empty else match.iloc[0]

    def frame(self, row: pd.Series) -> pd.DataFrame:
        m = self.metrics
        frame = m[_is_point(m, row["task"], row["lr"], row["rho"]) & (m["seed"] == row["seed"])]
        return frame.sort_values("step", kind="stable")

    def panel(self, task: str, lr: float, rho: float) -> tuple[pd.DataFrame | None, str | None]:
        """The shown run's measurements in step order, or None and why it has nothing to draw."""
        row = self.shown_row(task, lr, rho)
        if row is None:
            return None, f"no run with ρ = {fmt_value(rho)} in this grid"
        if row["status"] == "diverged":
            return None, f"diverged at step {int(row['steps'])}: left out"
        frame = self.frame(row)
        return (frame, None) if len(frame) else (None, "no measurements")

    def notes(self, task: str, rhos: list[float]) -> list[str]:
        """What a figure of the task at these rho values leaves out, and which seeds it shows."""
        lines = []
        points = self.runs[(self.runs["task"] == task) & self.runs["rho"].apply(
            lambda r: any(math.isclose(r, x) for x in rhos))]
        for (_, lr, rho, *_), point in points.groupby(POINT_COLUMNS, sort=False):
            shown = self.shown_row(task, lr, rho)
            diverged = point[point["status"] == "diverged"]
            run = f"η = {fmt_value(lr)}, ρ = {fmt_value(rho)}"
            if shown["status"] == "diverged":
                lines.append(f"Left out, diverged: {_describe(run, shown)}")
            elif len(diverged):
                lines.append(f"{run}: seed {int(shown['seed'])} shown; "
                             + "; ".join(_describe(f"seed {int(r['seed'])}", r) for _, r in diverged.iterrows()))
        return lines


def paper_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the paper's runs (SAM and GD at the task's own batch size): the paper's figures,
    run figures and grid figures draw these; samedge.beyond draws the other optimizers and batch sizes."""
    keep = (table["optimizer"] == PAPER_OPTIMIZER) & (table["batch"].astype(str) == DEFAULT_BATCH)
    return table[keep].reset_index(drop=True)


def _is_point(table: pd.DataFrame, task: str, lr: float, rho: float) -> pd.Series:
    """Rows of (task, lr, rho); lr and rho up to float rounding (a CLI --lr 0.3 vs a CSV 0.3)."""
    return ((table["task"] == task) & np.isclose(table["lr"], lr, rtol=1e-9, atol=0)
            & np.isclose(table["rho"], rho, rtol=1e-9, atol=0))


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run `samedge aggregate` first")
    table = read_table(path)
    missing = [col for col in columns if col not in table.columns]
    if missing:
        raise ConfigError(f"{path}: missing columns {missing}")
    return table


def _check_rows(path: Path, metrics: pd.DataFrame, runs: pd.DataFrame) -> None:
    """Every run's rows must be those aggregate wrote (runs.csv's digest of them), and no row may
    belong to a run runs.csv does not list: an edited table is refused before anything is drawn."""
    rows = run_rows(metrics)
    for run in runs.itertuples(index=False):
        key = row_key(run._asdict())
        if rows_digest(rows.pop(key, metrics.iloc[:0])) != getattr(run, ROWS_DIGEST):
            raise ConfigError(f"{path}: the rows of run {run.task}/{run.run} (seed {run.seed}) are not those "
                              "`samedge aggregate` wrote (edited?); rerun `samedge aggregate`")
    if rows:
        stray = ", ".join(f"{column}={value}" for column, value in zip(KEY_COLUMNS, next(iter(rows))))
        raise ConfigError(f"{path}: rows of {stray}, a run runs.csv does not list (edited?); "
                          "rerun `samedge aggregate`")


def _describe(run: str, row: pd.Series) -> str:
    reason = row["reason"]
    return f"{run}: {reason}" if isinstance(reason, str) and reason else f"{run} (at step {int(row['steps'])})"


# ---------------------------------------------------------------- the facet machinery

def _long(frame: pd.DataFrame, series: dict[str, str], **columns: str) -> pd.DataFrame:
    """frame's columns (keys of series) as long-form rows (_x, series label, value, columns...)."""
    return (frame[["_x", *series]].rename(columns=series)
            .melt(id_vars="_x", var_name="series", value_name="value").assign(**columns))


def _facets(long: pd.DataFrame, labels: list[str], wrap: int | None = None, **facet: object) -> sns.FacetGrid:
    """A FacetGrid of line plots of `long` (_x, series, value + facet columns), one fixed style per label."""
    grid = sns.FacetGrid(long, col_wrap=wrap, height=PANEL_SIZE[1], aspect=PANEL_SIZE[0] / PANEL_SIZE[1],
                         sharex=False, sharey=False, despine=False, **facet)
    grid.map_dataframe(sns.lineplot, x="_x", y="value", hue="series", style="series", hue_order=labels,
                       style_order=labels, palette={lab: _style(lab).color for lab in labels},
                       dashes={lab: _style(lab).dashes for lab in labels}, estimator=None, errorbar=None,
                       legend=False, linewidth=1.2)
    return grid


def _finish(grid: sns.FacetGrid, title: str, xlabel: str, ylabel: str, legend: list[str],
            notes: list[str]) -> Figure:
    """Titles, axis labels, the legend beside the panels and the notes under them."""
    grid.set_axis_labels(xlabel, ylabel)
    for ax in grid.axes.flat:
        if ax.get_gid() == "empty":
            ax.set(xlabel="", ylabel="")
    fig = grid.figure
    if legend:  # beside the panels; not grid.add_legend, which draws the whole figure twice to place it
        fig.legend(_legend_handles(legend), legend, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title, y=1.0, va="bottom")
    if notes:
        fig.text(0.01, 0.0, "\n".join(notes), ha="left", va="top", fontsize=7.5, gid="footnote")
    return fig


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8,
            color="#555555", wrap=True)
    ax.set(xticks=[], yticks=[], gid="empty")


def _legend_handles(labels: list[str]) -> list[Line2D]:
    return [Line2D([], [], color=_style(lab).color, linewidth=1.4,
                   linestyle=(0, _style(lab).dashes) if _style(lab).dashes else "-") for lab in labels]


def footnote(fig: Figure) -> str:
    """The notes under a figure (what it leaves out and why)."""
    return "\n".join(t.get_text() for t in fig.texts if t.get_gid() == "footnote")


def save(fig: Figure, pdf: Path, png: Path) -> None:
    """Write the figure as PDF and PNG (atomically), then free it. The tight box is measured once for
    both (bbox_inches="tight" draws each format twice: once to measure, once to write)."""
    with mpl.rc_context(THEME):
        if fig.get_layout_engine() is not None:  # constrained layout places the axes when drawn
            fig.draw_without_rendering()
        box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(mpl.rcParams["savefig.pad_inches"])
        for path, fmt in ((pdf, "pdf"), (png, "png")):
            with atomic_write(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches=box, metadata=SAVE_METADATA[fmt])
    plt.close(fig)


def _plain(value: float, _pos: int | None = None) -> str:
    return f"{value:g}"


class ReadableLogLocator(ticker.Locator):
    """Major ticks of a log axis, at least two in view: decades where the axis spans two or more,
    else 1-2-5 times a power of ten, else plain linear steps (a short range, e.g. a loss from 0.02
    to 0.2, would otherwise show a single label)."""

    def __call__(self) -> np.ndarray:
        return self.tick_values(*self.axis.get_view_interval())

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        lo, hi = sorted((vmin, vmax))
        inside = np.array([])
        for locator in (ticker.LogLocator(), ticker.LogLocator(subs=(1.0, 2.0, 5.0)), ticker.MaxNLocator(nbins=4)):
            ticks = locator.tick_values(lo, hi)
            inside = ticks[(ticks >= lo) & (ticks <= hi) & (ticks > 0)]
            if len(inside) >= 2:
                break
        return inside


def _log_y(ax: Axes) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ReadableLogLocator())
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(_plain))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _zoom_ylim(ax: Axes, frame: pd.DataFrame, top_col: str, bottom_col: str) -> None:
    """Zoom on where the eigenvalues and the SAM edge live, past early transients and 2/eta."""
    if not np.isfinite(frame[[top_col, bottom_col, "sam_edge"]]).any().all():
        return  # nothing finite to zoom on: keep the automatic limits
    top = max(np.nanquantile(frame[top_col], 0.95), np.nanmedian(frame["sam_edge"]))
    ax.set_ylim(min(0.0, np.nanquantile(frame[bottom_col], 0.05)), 1.3 * top)


# ---------------------------------------------------------------- the paper's figures

def edge_ratio_figure() -> Figure:
    """Figure 1: alpha/2 (sqrt(1 + 4/alpha) - 1) against alpha (analytic)."""
    alpha = np.logspace(-3, 3, 601)
    frame = pd.DataFrame({"alpha": alpha, "ratio": edge_ratio(alpha)})
    fig, ax = plt.subplots(figsize=(4.6, 3.2), layout="constrained")
    sns.lineplot(data=frame, x="alpha", y="ratio", color=_CB[0], linewidth=1.6, ax=ax,
                 label=r"$\frac{\alpha}{2}\left(\sqrt{1 + 4/\alpha} - 1\right)$")
    ax.plot(alpha[alpha < 1], np.sqrt(alpha[alpha < 1]), color="#777777", linestyle=":",
            label=r"$\sqrt{\alpha}$ ($\alpha \to 0$)")
    ax.axhline(1.0, color="#222222", linestyle=(0, (5, 2)), linewidth=1, label=r"1 ($\alpha \to \infty$)")
    golden = edge_ratio(1.0)
    ax.plot([1.0], [golden], "o", color=_CB[3], markersize=4)
    ax.annotate(rf"$\alpha$ = 1: $(\sqrt{{5}}-1)/2 \approx$ {golden:.3f}", (1.0, golden),
                xytext=(8, -14), textcoords="offset points", fontsize=8)
    ax.set(xscale="log", ylim=(0, 1.08), xlabel=r"$\alpha = \eta\|g\| / (2\rho)$",
           ylabel=r"SAM edge / $(2/\eta)$", title=f"Figure 1: {FIGURES[1].title}")
    ax.legend(loc="lower right", frameon=False)
    return fig


Draw = Callable[[dict[float, pd.DataFrame]], pd.DataFrame]   # {rho: run metrics} -> long-form rows
Adjust = Callable[[Axes, dict[float, pd.DataFrame]], None]   # per-panel scales and limits


def _lr_figure(results: Results, number: int, x: str, rhos: list[float], draw: Draw, ylabel: str,
               legend: list[str], adjust: Adjust | None = None) -> Figure:
    """A panel per learning rate of the task; draw() turns the drawable runs {rho: metrics} into rows."""
    spec = FIGURES[number]
    xcol, xlabel = X_AXES[x]
    lrs = results.lrs(spec.task)
    notes = results.notes(spec.task, rhos)
    notes += [f"ρ = {fmt_value(r)} is not in this profile's {spec.task} grid: nothing to draw"
              for r in rhos if lrs and not any(math.isclose(r, g) for g in results.rhos(spec.task))]
    panels = [f"η = {fmt_value(lr)}" for lr in lrs] or [f"no {spec.task} runs in the results"]
    drawn, why = {}, {}
    for lr, panel in zip(lrs, panels):
        found = {rho: results.panel(spec.task, lr, rho) for rho in rhos}
        drawn[panel] = {rho: frame.assign(_x=frame[xcol]) for rho, (frame, _) in found.items() if frame is not None}
        why[panel] = [f"{loss_label(spec.task, rho)}: {text}" if len(rhos) > 1 else text
                      for rho, (_, text) in found.items() if text]
    rows = [draw(frames).assign(panel=panel) for panel, frames in drawn.items() if frames]
    long = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["_x", "series", "value", "panel"])
    grid = _facets(long, legend, wrap=min(len(panels), MAX_COLS), col="panel", col_order=panels)
    grid.set_titles(template="{col_name}")
    for panel, ax in grid.axes_dict.items():
        if not drawn.get(panel):
            _empty(ax, "\n".join(why.get(panel) or [panel]))
            continue
        if adjust is not None:
            adjust(ax, drawn[panel])
        if why[panel]:
            ax.text(0.02, 0.02, "\n".join(why[panel]), transform=ax.transAxes, fontsize=6.5, color="#555555")
    return _finish(grid, f"Figure {number}: {spec.title}", xlabel, ylabel, legend, notes)


def _only(frames: dict[float, pd.DataFrame]) -> pd.DataFrame:
    (frame,) = frames.values()
    return frame


def eigenvalue_figure(results: Results, number: int, x: str = "step") -> Figure:
    """Figures 2/3, 7/8, 12/13: lambda_1..3 with 2/eta (and, for SAM, the SAM edge), a panel per eta."""
    spec = FIGURES[number]
    sam = spec.kind == "eigs_sam"
    series = {**LAM, "gd_edge": GD_EDGE} | ({"sam_edge": SAM_EDGE} if sam else {})
    rho = get_task(spec.task).paper.rho if sam else 0.0

    def adjust(ax: Axes, frames: dict[float, pd.DataFrame]) -> None:
        if sam:  # 2/eta is an order of magnitude above SAM's eigenvalues (non-positive ones not drawn)
            _log_y(ax)

    return _lr_figure(results, number, x, [rho], lambda frames: _long(_only(frames), series),
                      "Hessian eigenvalue", list(series.values()), adjust)


def zoom_figure(results: Results, number: int, x: str = "step") -> Figure:
    """Figures 4, 9 (lambda_1..3) and 14 (operator norm) against the SAM edge, zoomed, no 2/eta."""
    spec = FIGURES[number]
    opnorm = spec.kind == "opnorm_sam_zoom"
    series = ({"opnorm": OPNORM} if opnorm else dict(LAM)) | {"sam_edge": SAM_EDGE}

    def with_opnorm(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(opnorm=frame[list(LAM)].abs().max(axis=1, skipna=False))

    def adjust(ax: Axes, frames: dict[float, pd.DataFrame]) -> None:
        top, bottom = ("opnorm", "opnorm") if opnorm else ("lambda_1", "lambda_3")
        _zoom_ylim(ax, with_opnorm(_only(frames)), top, bottom)

    ylabel = "operator norm of the Hessian" if opnorm else "Hessian eigenvalue"
    return _lr_figure(results, number, x, [get_task(spec.task).paper.rho],
                      lambda frames: _long(with_opnorm(_only(frames)), series), ylabel, list(series.values()), adjust)


def loss_figure(results: Results, number: int, x: str = "step") -> Figure:
    """Figures 5, 10, 15: training loss of the base optimizer and SAM at the task's rho, a panel per eta."""
    task = FIGURES[number].task
    rhos = [0.0, get_task(task).paper.rho]
    labels = [loss_label(task, rho) for rho in rhos]

    def draw(frames: dict[float, pd.DataFrame]) -> pd.DataFrame:
        return pd.concat([_long(f, {"loss": loss_label(task, rho)}) for rho, f in frames.items()])

    ylabel = "training loss" + (" (minibatch)" if get_task(task).minibatch else "")
    return _lr_figure(results, number, x, rhos, draw, ylabel, labels, lambda ax, _: _log_y(ax))


def alignment_figure(results: Results, number: int, x: str = "step") -> Figure:
    """Figures 6, 11, 16: |cos| of the gradient and of SAM's gradient with v_1, a panel per eta."""
    task = FIGURES[number].task

    def draw(frames: dict[float, pd.DataFrame]) -> pd.DataFrame:
        frame = _only(frames)
        return _long(frame.assign(**{c: frame[c].abs() for c in ALIGN}), ALIGN)

    return _lr_figure(results, number, x, [get_task(task).paper.rho], draw,
                      "alignment with v₁ (|cos|)", list(ALIGN.values()),
                      lambda ax, _: ax.set_ylim(0, 1.02))


PLOTTERS: dict[str, Callable[..., Figure]] = {
    "eigs_gd": eigenvalue_figure, "eigs_sam": eigenvalue_figure, "eigs_sam_zoom": zoom_figure,
    "opnorm_sam_zoom": zoom_figure, "loss": loss_figure, "alignment": alignment_figure,
}


def paper_figure(number: int, results: Results | None, x: str = "step") -> Figure:
    if number not in FIGURES:
        raise ConfigError(f"figure: unknown figure number {number}; expected 1..{max(FIGURES)}")
    if x not in X_AXES:
        raise ConfigError(f"--x: expected one of {list(X_AXES)}, got {x!r}")
    with mpl.rc_context(THEME):
        if number == 1:
            return edge_ratio_figure()
        return PLOTTERS[FIGURES[number].kind](results, number, x)


# ---------------------------------------------------------------- a run's set, a task's grid

RUN_PANELS = ["top Hessian eigenvalues", "λ₁ / SAM edge (band: ±10%)", "training loss", "alignment with v₁ (|cos|)"]


def completed_runs(results: Results) -> list[RunKey]:
    """Every run (every seed) that did not diverge: the ones with a figure set."""
    runs = results.runs[results.runs["status"] != "diverged"]
    return [RunKey(task, *parse_run_name(run)) for task, run in runs[["task", "run"]].itertuples(index=False)]


def run_figure(results: Results, key: RunKey, x: str = "step") -> Figure:
    """A run's supplementary set: eigenvalues with both edges, lambda_1/SAM edge, loss, alignment.

    Diverged runs (and runs not in the results) are errors: the supplementary set leaves them out.
    key names the run directory (seed None: the task's default seed).
    """
    row = results.run_row(key)
    if row is None:
        raise ConfigError(f"run {key.label()}: no run with ρ = {fmt_value(key.rho)} in this grid")
    if row["status"] == "diverged":
        raise ConfigError(f"run {key.label()}: diverged at step {int(row['steps'])}: left out")
    xcol, xlabel = X_AXES[x]
    frame = results.frame(row).assign(_x=lambda f: f[xcol])
    loss_name = loss_label(key.task, key.rho)
    with np.errstate(divide="ignore", invalid="ignore"):
        long = pd.concat([
            _long(frame, EIGS, panel=RUN_PANELS[0]),
            _long(frame.assign(r=frame["lambda_1"] / frame["sam_edge"]), {"r": RATIO}, panel=RUN_PANELS[1]),
            _long(frame, {"loss": loss_name}, panel=RUN_PANELS[2]),
            _long(frame.assign(**{c: frame[c].abs() for c in ALIGN}), ALIGN, panel=RUN_PANELS[3])])
    method = f"SAM ρ = {fmt_value(key.rho)}" if key.rho > 0 else base_optimizer(key.task)
    seed = f", seed {int(row['seed'])}"
    with mpl.rc_context(THEME):
        grid = _facets(long, [*EIGS.values(), RATIO, loss_name, *ALIGN.values()], wrap=2,
                       col="panel", col_order=RUN_PANELS)
        grid.set_titles(template="{col_name}")
        eig, ratio, loss, align = (grid.axes_dict[p] for p in RUN_PANELS)
        if frame.empty:
            for ax in grid.axes.flat:
                _empty(ax, "no measurements")
        else:
            _dress_run(eig, ratio, loss, align, log_eigs=key.rho > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                _clip_ratio(ratio, frame["_x"].to_numpy(), (frame["lambda_1"] / frame["sam_edge"]).to_numpy())
        title = f"{task_label(key.task)}, η = {fmt_value(key.lr)}, {method}{seed}"
        return _finish(grid, title, xlabel, "", [], [])


def _dress_run(eig: Axes, ratio: Axes, loss: Axes, align: Axes, log_eigs: bool) -> None:
    if log_eigs:  # SAM: 2/eta far above the eigenvalues
        _log_y(eig)
    ratio.axhspan(0.9, 1.1, color=_CB[3], alpha=0.12, linewidth=0)
    ratio.axhline(1.0, color=_CB[3], linestyle=(0, (2, 1.2)), linewidth=1)
    _log_y(loss)
    align.set_ylim(0, 1.02)
    for ax, labels in ((eig, EIGS), (align, ALIGN)):  # panel legends: the panels share no series
        ax.legend(_legend_handles(list(labels.values())), list(labels.values()), fontsize=7,
                  ncols=2 if ax is eig else 1, loc="best")


RATIO_VIEW = (0.0, 2.0)  # the widest lambda_1/SAM-edge range drawn: the +-10% band stays a tenth of the panel


def _clip_ratio(ax: Axes, x: np.ndarray, ratio: np.ndarray) -> None:
    """Limit the ratio panel to the data within RATIO_VIEW (and always the band), so an early
    spike does not flatten the band; clipped points are marked on the panel's edge, with the
    extreme value written beside them."""
    finite = np.isfinite(ratio)
    if not finite.any():
        return
    lo = max(RATIO_VIEW[0], min(0.85, np.min(ratio[finite]) - 0.05))
    hi = min(RATIO_VIEW[1], max(1.15, np.max(ratio[finite]) + 0.05))
    ax.set_ylim(lo, hi)
    for side, edge, marker, arrow, extreme in (("above", hi, "^", "▲", np.max), ("below", lo, "v", "▼", np.min)):
        clipped = finite & ((ratio > edge) if side == "above" else (ratio < edge))
        if clipped.any():
            ax.plot(x[clipped], np.full(clipped.sum(), edge), marker, color=_CB[0], markersize=4, clip_on=False,
                    gid="clipped")
            ax.annotate(f"{arrow} clipped, {side} {edge:.3g}: {extreme(ratio[clipped]):.3g}", (x[clipped][0], edge),
                        xytext=(6, -10 if side == "above" else 4), textcoords="offset points", fontsize=7,
                        color="#555555")


def grid_figure(results: Results, task: str, x: str = "step") -> Figure:
    """A task's whole grid: top-3 eigenvalues, 2/eta and the SAM edge, a panel per (lr, rho), log scale."""
    if task not in results.tasks():
        raise ConfigError(f"figure grid: no {task} runs in the results; tasks there: {results.tasks()}")
    xcol, xlabel = X_AXES[x]
    lrs, rhos = results.lrs(task), results.rhos(task)
    rows, empty = [], {}
    for lr in lrs:
        for rho in rhos:
            frame, why = results.panel(task, lr, rho)
            cell = (f"ρ = {fmt_value(rho)}", f"η = {fmt_value(lr)}")
            if frame is None:
                empty[cell] = why
            else:
                rows.append(_long(frame.assign(_x=frame[xcol]), EIGS, row=cell[0], col=cell[1]))
    long = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["_x", "series", "value", "row", "col"])
    with mpl.rc_context(THEME):
        grid = _facets(long, list(EIGS.values()), row="row", col="col",
                       row_order=[f"ρ = {fmt_value(r)}" for r in rhos], col_order=[f"η = {fmt_value(lr)}" for lr in lrs])
        grid.set_titles(template="{col_name}, {row_name}")
        for cell, ax in grid.axes_dict.items():
            if cell in empty:
                _empty(ax, empty[cell])
            else:
                _log_y(ax)
        notes = results.notes(task, rhos) + ["Log scale: non-positive eigenvalues are not drawn."]
        return _finish(grid, f"{task_label(task)}: the top Hessian eigenvalues against 2/η and the SAM edge",
                       xlabel, "Hessian eigenvalue", list(EIGS.values()), notes)
