"""`samedge figure`: the paper's figures (FIGURES in figure_specs.py) and a figure set per run.

Every figure reads the aggregated tables results/metrics.csv and results/runs.csv (figure 1 is
analytic and reads nothing). Panels are one per learning rate of the task's grid (runs.csv). A
panel whose run diverged, has no measurements, or whose rho is not in the grid is drawn empty with
the reason; the footnote under the figure lists the diverged runs left out. Eigenvalues are the
signed top-3 eigenvalues (the paper plots magnitudes; they agree when they are positive).
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # figures built without pyplot: no backend state, no GUI
from matplotlib.lines import Line2D

from samedge.aggregate import KEY_COLUMNS, METRIC_COLUMNS, RUN_COLUMNS
from samedge.config import ConfigError, fmt_value
from samedge.edge import edge_ratio
from samedge.figure_specs import (BASE_OPTIMIZER, FIGURES, SAM_RHO, TASK_LABEL, figure_files,
                                  run_figure_files)
from samedge.io import atomic_write

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
LAM = {f"lambda_{i}": rf"$\lambda_{i}$" for i in (1, 2, 3)}
GD_EDGE, SAM_EDGE, OPNORM = r"$2/\eta$", "SAM edge", r"$\|H\|$ = max$_i\,|\lambda_i|$"
ALIGN = {"align_grad": r"$|\cos(\nabla L(w),\, v_1)|$",
         "align_sam_grad": r"$|\cos(\nabla L(w + \rho g/\|g\|),\, v_1)|$ (SAM)"}
RATIO = r"$\lambda_1$ / SAM edge"
STYLES = {
    LAM["lambda_1"]: Style(_CB[0], ""), LAM["lambda_2"]: Style(_CB[2], ""),
    LAM["lambda_3"]: Style(_CB[4], ""), OPNORM: Style(_CB[0], ""),
    GD_EDGE: Style("#222222", (5, 2)), SAM_EDGE: Style(_CB[3], (2, 1.2)),
    ALIGN["align_grad"]: Style(_CB[0], ""), ALIGN["align_sam_grad"]: Style(_CB[3], ""),
    RATIO: Style(_CB[0], ""),
}


def loss_label(task: str, rho: float) -> str:
    name = BASE_OPTIMIZER[task] if rho == 0 else "SAM"
    return rf"{name} ($\rho$ = {fmt_value(rho)})"


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

    @classmethod
    def load(cls, results_dir: str | Path) -> Results:
        results_dir = Path(results_dir)
        metrics = _read_table(results_dir / "metrics.csv", [*KEY_COLUMNS, *METRIC_COLUMNS])
        runs = _read_table(results_dir / "runs.csv", list(RUN_COLUMNS))
        return cls(metrics, runs)

    def lrs(self, task: str) -> list[float]:
        return sorted(self.runs.loc[self.runs["task"] == task, "lr"].unique())

    def _run_row(self, task: str, lr: float, rho: float) -> pd.Series | None:
        runs = self.runs
        match = runs[_is_run(runs, task, lr, rho)]
        return None if match.empty else match.iloc[0]

    def panel(self, task: str, lr: float, rho: float) -> tuple[pd.DataFrame | None, str | None]:
        """The run's measurements in step order, or None and why it has nothing to draw."""
        row = self._run_row(task, lr, rho)
        if row is None:
            return None, f"no run with ρ = {fmt_value(rho)} in this grid"
        if row["status"] == "diverged":
            return None, f"diverged at step {int(row['steps'])}: left out"
        m = self.metrics
        frame = m[_is_run(m, task, lr, rho)]
        if frame.empty:
            return None, "no measurements"
        return frame.sort_values("step", kind="stable"), None

    def diverged(self, task: str, rhos: list[float]) -> list[str]:
        """A line per diverged run of the task at these rho values (what the figure leaves out)."""
        runs = self.runs
        rows = runs[(runs["task"] == task) & (runs["status"] == "diverged")
                    & runs["rho"].apply(lambda r: any(math.isclose(r, x) for x in rhos))]
        return [_describe(row) for _, row in rows.iterrows()]


def _is_run(table: pd.DataFrame, task: str, lr: float, rho: float) -> pd.Series:
    """Rows of (task, lr, rho); lr and rho up to float rounding (a CLI --lr 0.3 vs a CSV 0.3)."""
    return ((table["task"] == task) & np.isclose(table["lr"], lr, rtol=1e-9, atol=0)
            & np.isclose(table["rho"], rho, rtol=1e-9, atol=0))


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run `samedge aggregate` first")
    table = pd.read_csv(path)
    missing = [col for col in columns if col not in table.columns]
    if missing:
        raise ConfigError(f"{path}: missing columns {missing}")
    return table


def _describe(row: pd.Series) -> str:
    run, reason = f"η = {fmt_value(row['lr'])}, ρ = {fmt_value(row['rho'])}", row["reason"]
    return f"{run}: {reason}" if isinstance(reason, str) and reason else f"{run} (at step {int(row['steps'])})"


# ---------------------------------------------------------------- drawing helpers

def _lines(ax: Axes, frame: pd.DataFrame, x: str, series: dict[str, str]) -> None:
    """Draw frame's columns (keys of series) against x with their labels' fixed styles."""
    labels = list(series.values())
    long = (frame[[x, *series]].rename(columns=series)
            .melt(id_vars=x, var_name="series", value_name="value"))
    sns.lineplot(data=long, x=x, y="value", hue="series", style="series", hue_order=labels,
                 style_order=labels, palette={lab: _style(lab).color for lab in labels},
                 dashes={lab: _style(lab).dashes for lab in labels}, estimator=None,
                 errorbar=None, legend=False, linewidth=1.2, ax=ax)
    ax.set(xlabel="", ylabel="")


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8,
            color="#555555", wrap=True)
    ax.set(xticks=[], yticks=[], gid="empty")


def _legend_handles(labels: list[str]) -> list[Line2D]:
    return [Line2D([], [], color=_style(lab).color, linewidth=1.4,
                   linestyle=(0, _style(lab).dashes) if _style(lab).dashes else "-") for lab in labels]


def _layout(n: int, title: str, legend: list[str], notes: list[str],
            max_cols: int = MAX_COLS) -> tuple[Figure, list[Axes]]:
    """A figure with n panels (up to max_cols a row) above a footer holding the legend and notes.

    The footer is a row of the layout, so the legend and the notes never overlap the panels.
    """
    n = max(n, 1)
    ncols = min(n, max_cols)
    nrows = math.ceil(n / ncols)
    width = PANEL_SIZE[0] * ncols
    per_row = max(1, min(len(legend), int(width // (3.2 if max(map(len, legend), default=0) > 30 else 1.2))))
    footer = 0.32 * math.ceil(len(legend) / per_row) + 0.16 * len(notes) + 0.05
    mosaic = [[f"p{r * ncols + c}" for c in range(ncols)] for r in range(nrows)] + [["footer"] * ncols]
    fig = Figure(figsize=(width, PANEL_SIZE[1] * nrows + footer + 0.35), layout="constrained")
    axd = fig.subplot_mosaic(mosaic, height_ratios=[PANEL_SIZE[1]] * nrows + [footer])
    fig.suptitle(title)
    foot = axd["footer"]
    foot.axis("off")
    if legend:
        foot.legend(_legend_handles(legend), legend, loc="upper center", ncols=per_row, frameon=False)
    if notes:
        foot.text(0.0, 0.0, "\n".join(notes), transform=foot.transAxes, ha="left", va="bottom",
                  fontsize=7.5, gid="footnote")
    axes = [axd[f"p{i}"] for i in range(nrows * ncols)]
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _axis_labels(axes: list[Axes], max_cols: int, xlabel: str, ylabel: str) -> None:
    """x label under the lowest panel of each column, y label left of each row."""
    ncols = min(len(axes), max_cols)
    for i, ax in enumerate(axes):
        drawn = ax.get_gid() != "empty"
        ax.set_xlabel(xlabel if drawn and i + ncols >= len(axes) else "")
        ax.set_ylabel(ylabel if drawn and i % ncols == 0 else "")


def footnote(fig: Figure) -> str:
    """The notes under a figure (what it leaves out and why)."""
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == "footnote")


def save(fig: Figure, pdf: Path, png: Path) -> None:
    for path, fmt in ((pdf, "pdf"), (png, "png")):
        with atomic_write(path) as tmp, mpl.rc_context(THEME):
            fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight", metadata=SAVE_METADATA[fmt])


class _PlainLogFormatter(ticker.LogFormatter):
    """Log-axis labels as plain numbers (0.5, 2, 30) instead of 5 x 10^-1."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def _log_y(ax: Axes) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


def _zoom_ylim(ax: Axes, frame: pd.DataFrame, top_col: str, bottom_col: str) -> None:
    """Zoom on where the eigenvalues and the SAM edge live, past early transients and 2/eta."""
    if not np.isfinite(frame[[top_col, bottom_col, "sam_edge"]]).any().all():
        return  # nothing finite to zoom on: keep the automatic limits
    top = max(np.nanquantile(frame[top_col], 0.95), np.nanmedian(frame["sam_edge"]))
    ax.set_ylim(min(0.0, np.nanquantile(frame[bottom_col], 0.05)), 1.3 * top)


# ---------------------------------------------------------------- the figures

def edge_ratio_figure() -> Figure:
    """Figure 1: alpha/2 (sqrt(1 + 4/alpha) - 1) against alpha (analytic)."""
    alpha = np.logspace(-3, 3, 601)
    frame = pd.DataFrame({"alpha": alpha, "ratio": edge_ratio(alpha)})
    fig = Figure(figsize=(4.6, 3.2), layout="constrained")
    ax = fig.subplots()
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


def _lr_figure(results: Results, number: int, x: str, rhos: list[float],
               draw: Callable[[Axes, dict[float, pd.DataFrame]], None],
               ylabel: str, legend: list[str]) -> Figure:
    """A panel per learning rate of the task; draw() gets the drawable runs {rho: metrics}."""
    spec = FIGURES[number]
    xcol, xlabel = X_AXES[x]
    lrs = results.lrs(spec.task)
    notes = [f"Left out, diverged: {d}" for d in results.diverged(spec.task, rhos)]
    grid_rhos = set(results.runs.loc[results.runs["task"] == spec.task, "rho"])
    notes += [f"ρ = {fmt_value(r)} is not in this profile's {spec.task} grid: nothing to draw"
              for r in rhos if lrs and not any(math.isclose(r, g) for g in grid_rhos)]
    fig, axes = _layout(len(lrs), f"Figure {number}: {spec.title}", legend, notes)
    if not lrs:
        _empty(axes[0], f"no {spec.task} runs in the results")
    for ax, lr in zip(axes, lrs):
        ax.set_title(f"η = {fmt_value(lr)}")
        panels = {rho: results.panel(spec.task, lr, rho) for rho in rhos}
        frames = {rho: frame.assign(_x=frame[xcol]) for rho, (frame, _) in panels.items() if frame is not None}
        why = [f"{loss_label(spec.task, rho)}: {text}" if len(rhos) > 1 else text
               for rho, (_, text) in panels.items() if text]
        if not frames:
            _empty(ax, "\n".join(why))
            continue
        draw(ax, frames)
        if why:
            ax.text(0.02, 0.02, "\n".join(why), transform=ax.transAxes, fontsize=6.5, color="#555555")
    _axis_labels(axes, MAX_COLS, xlabel, ylabel)
    return fig


def eigenvalue_figure(results: Results, number: int, x: str = "seconds") -> Figure:
    """Figures 2/3, 7/8, 12/13: lambda_1..3 with 2/eta (and, for SAM, the SAM edge), a panel per eta."""
    spec = FIGURES[number]
    sam = spec.kind == "eigs_sam"
    series = {**LAM, "gd_edge": GD_EDGE} | ({"sam_edge": SAM_EDGE} if sam else {})

    def draw(ax: Axes, frames: dict[float, pd.DataFrame]) -> None:
        (frame,) = frames.values()
        _lines(ax, frame, "_x", series)
        if sam:  # 2/eta is an order of magnitude above SAM's eigenvalues (non-positive ones not drawn)
            _log_y(ax)

    rho = SAM_RHO[spec.task] if sam else 0.0
    return _lr_figure(results, number, x, [rho], draw, "Hessian eigenvalue", list(series.values()))


def zoom_figure(results: Results, number: int, x: str = "seconds") -> Figure:
    """Figures 4, 9 (lambda_1..3) and 14 (operator norm) against the SAM edge, zoomed, no 2/eta."""
    spec = FIGURES[number]
    opnorm = spec.kind == "opnorm_sam_zoom"
    series = ({"opnorm": OPNORM} if opnorm else dict(LAM)) | {"sam_edge": SAM_EDGE}

    def draw(ax: Axes, frames: dict[float, pd.DataFrame]) -> None:
        (frame,) = frames.values()
        frame = frame.assign(opnorm=frame[list(LAM)].abs().max(axis=1, skipna=False))
        _lines(ax, frame, "_x", series)
        _zoom_ylim(ax, frame, "opnorm" if opnorm else "lambda_1", "opnorm" if opnorm else "lambda_3")

    ylabel = "operator norm of the Hessian" if opnorm else "Hessian eigenvalue"
    return _lr_figure(results, number, x, [SAM_RHO[spec.task]], draw, ylabel, list(series.values()))


def loss_figure(results: Results, number: int, x: str = "seconds") -> Figure:
    """Figures 5, 10, 15: training loss of the base optimizer and SAM at the task's rho, a panel per eta."""
    task = FIGURES[number].task
    rhos = [0.0, SAM_RHO[task]]
    labels = [loss_label(task, rho) for rho in rhos]

    def draw(ax: Axes, frames: dict[float, pd.DataFrame]) -> None:
        wide = pd.concat([f[["_x", "loss"]].rename(columns={"loss": loss_label(task, rho)})
                          for rho, f in frames.items()])
        _lines(ax, wide, "_x", {lab: lab for lab in labels if lab in wide.columns})
        _log_y(ax)

    ylabel = "training loss" + (" (minibatch)" if task == "shakespeare" else "")
    return _lr_figure(results, number, x, rhos, draw, ylabel, labels)


def alignment_figure(results: Results, number: int, x: str = "seconds") -> Figure:
    """Figures 6, 11, 16: |cos| of the gradient and of SAM's gradient with v_1, a panel per eta."""
    task = FIGURES[number].task

    def draw(ax: Axes, frames: dict[float, pd.DataFrame]) -> None:
        (frame,) = frames.values()
        _lines(ax, frame.assign(**{c: frame[c].abs() for c in ALIGN}), "_x", ALIGN)
        ax.set_ylim(0, 1.02)

    return _lr_figure(results, number, x, [SAM_RHO[task]], draw,
                      r"alignment with $v_1$ ($|\cos|$)", list(ALIGN.values()))


PLOTTERS: dict[str, Callable[..., Figure]] = {
    "eigs_gd": eigenvalue_figure, "eigs_sam": eigenvalue_figure, "eigs_sam_zoom": zoom_figure,
    "opnorm_sam_zoom": zoom_figure, "loss": loss_figure, "alignment": alignment_figure,
}


def paper_figure(number: int, results: Results | None, x: str = "seconds") -> Figure:
    if number not in FIGURES:
        raise ConfigError(f"figure: unknown figure number {number}; expected 1..{max(FIGURES)}")
    if x not in X_AXES:
        raise ConfigError(f"--x: expected one of {list(X_AXES)}, got {x!r}")
    with mpl.rc_context(THEME):
        if number == 1:
            return edge_ratio_figure()
        return PLOTTERS[FIGURES[number].kind](results, number, x)


def run_figure(results: Results, task: str, lr: float, rho: float, x: str = "seconds") -> Figure:
    """A run's supplementary set: eigenvalues with both edges, lambda_1/SAM edge, loss, alignment.

    Diverged runs (and runs not in the results) are errors: the supplementary set leaves them out.
    """
    frame, why = results.panel(task, lr, rho)
    if frame is None and why != "no measurements":
        raise ConfigError(f"run {task} lr={fmt_value(lr)} rho={fmt_value(rho)}: {why}")
    xcol, xlabel = X_AXES[x]
    method = f"SAM ρ = {fmt_value(rho)}" if rho > 0 else BASE_OPTIMIZER[task]
    with mpl.rc_context(THEME):
        fig, axes = _layout(4, f"{TASK_LABEL[task]}, η = {fmt_value(lr)}, {method}", [], [], max_cols=2)
        titles = ["top Hessian eigenvalues", r"$\lambda_1$ / SAM edge (band: ±10%)",
                  "training loss", r"alignment with $v_1$ ($|\cos|$)"]
        for ax, title in zip(axes, titles):
            ax.set_title(title)
            if frame is None:
                _empty(ax, why)
        if frame is not None:
            _draw_run(axes, frame.assign(_x=frame[xcol]), loss_label(task, rho), log_eigs=rho > 0)
        _axis_labels(axes, 2, xlabel, "")
    return fig


def _draw_run(axes: list[Axes], frame: pd.DataFrame, loss_name: str, log_eigs: bool) -> None:
    eig, ratio, loss, align = axes
    eigs = {**LAM, "gd_edge": GD_EDGE, "sam_edge": SAM_EDGE}
    _lines(eig, frame, "_x", eigs)
    if log_eigs:  # SAM: 2/eta far above the eigenvalues
        _log_y(eig)
    with np.errstate(divide="ignore", invalid="ignore"):
        _lines(ratio, frame.assign(r=frame["lambda_1"] / frame["sam_edge"]), "_x", {"r": RATIO})
    ratio.axhspan(0.9, 1.1, color=_CB[3], alpha=0.12, linewidth=0)
    ratio.axhline(1.0, color=_CB[3], linestyle=(0, (2, 1.2)), linewidth=1)
    _lines(loss, frame.assign(l=frame["loss"]), "_x", {"l": loss_name})
    _log_y(loss)
    _lines(align, frame.assign(**{c: frame[c].abs() for c in ALIGN}), "_x", ALIGN)
    align.set_ylim(0, 1.02)
    for ax, labels in ((eig, eigs), (align, ALIGN)):  # panel legends: the panels share no series
        ax.legend(_legend_handles(list(labels.values())), list(labels.values()), fontsize=7,
                  ncols=2 if ax is eig else 1, loc="best")


# ---------------------------------------------------------------- command line

def _parse_target(text: str) -> int | str:
    if text in ("all", "run", "runs"):
        return text
    if text.isdigit() and int(text) in FIGURES:
        return int(text)
    raise ConfigError(f"figure: unknown figure {text!r}; expected a number in 1..{max(FIGURES)}, "
                      "'all', 'run' or 'runs'")


def _completed_runs(results: Results) -> list[tuple[str, float, float]]:
    runs = results.runs[results.runs["status"] != "diverged"]
    return list(runs[["task", "lr", "rho"]].itertuples(index=False, name=None))


def _main(args: argparse.Namespace) -> int:
    target = _parse_target(args.target)
    if target == "run" and None in (args.task, args.lr, args.rho):
        raise ConfigError("figure run: needs --task, --lr and --rho")
    results = None if target == 1 else Results.load(args.results)
    if target in ("run", "runs"):
        keys = [(args.task, args.lr, args.rho)] if target == "run" else _completed_runs(results)
        for key in keys:
            files = run_figure_files(*key, out_dir=args.out)
            save(run_figure(results, *key, x=args.x), *files)
            print(files[0])
        return 0
    for number in FIGURES if target == "all" else [target]:
        fig = paper_figure(number, results, args.x)
        note = footnote(fig)
        files = figure_files(number, args.out)
        save(fig, *files)
        print(files[0], *(f"  {line}" for line in note.splitlines()), sep="\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "figure", help="draw a paper figure (1-16), all of them, or the per-run figure sets",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="NUMBER|all|run|runs",
                        help="a figure number as in the paper; 'all'; 'run' (one run's set, with "
                             "--task/--lr/--rho); 'runs' (the set of every run that did not diverge)")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="directory with metrics.csv and runs.csv (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("results/figures"),
                        help="figures directory; per-run sets go to OUT/runs/ (default: %(default)s)")
    parser.add_argument("--x", default="seconds", choices=list(X_AXES),
                        help="x-axis: training seconds as in the paper, or steps (default: %(default)s)")
    parser.add_argument("--task", help="figure run: the task")
    parser.add_argument("--lr", type=float, help="figure run: the learning rate")
    parser.add_argument("--rho", type=float, help="figure run: rho")
    parser.set_defaults(func=_main)
