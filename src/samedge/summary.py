"""The report's answer first: the edge-agreement table as HTML (rounded, one row per grid point, the
claim it tests and whether it holds), the headline figure (lambda_1 over its edge at every grid
point), and every table of the results rendered as an HTML page with its CSV as a download beside it.

Written by `samedge figure summary` under results/figures/summary/: landing.html (the fragment the
report's landing page includes: workflow/report/workflow.rst), headline.pdf/.png, and one
<table>.html per table (the report's Tables category).
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from samedge.config import fmt_value
from samedge.figures import THEME, plt
from samedge.io import atomic_write

TOLERANCE = 0.1  # |median lambda_1/edge - 1| within which a run "sits at its edge" (the +-10% band)
# The two tables of the results and what each is called in the report.
TABLES = {"edge_agreement": "Edge agreement: one row per grid point", "runs": "Runs: one row per run"}
STYLE = """<style>
.samedge table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
.samedge th, .samedge td { border-bottom: 1px solid #ddd; padding: 0.2rem 0.6rem; text-align: right; }
.samedge th { background: #f3f4f6; }
.samedge td.holds-yes { color: #166534; font-weight: 600; }
.samedge td.holds-no { color: #991b1b; font-weight: 600; }
.samedge a.csv { font-size: 0.85rem; }
.samedge img { max-width: 100%; }
</style>"""
# The report's landing-page column is narrow (max-w-lg); the answer needs the width.
WIDEN = "<style>.prose.max-w-lg { max-width: 72rem !important; }</style>"


def claim(row: pd.Series) -> str:
    """The paper's claim a grid point tests: GD/SGD sits at 2/eta, SAM at its own edge."""
    return "λ₁ at 2/η (GD edge)" if row["rho"] == 0 else "λ₁ at the SAM edge"


def verdict(row: pd.Series) -> str:
    """yes / no (median lambda_1/edge within the band or not), or why the row cannot say."""
    if row["status"] == "diverged":
        return f"diverged ({row['diverged_at']})" if pd.notna(row["diverged_at"]) else "diverged"
    if pd.isna(row["sam_ratio_median"]):
        return "no measurements"
    return "yes" if abs(row["sam_ratio_median"] - 1) <= TOLERANCE else "no"


def agreement_view(table: pd.DataFrame) -> pd.DataFrame:
    """edge_agreement.csv as a reader wants it: rounded, labelled, the claim and its verdict.
    At rho = 0 the SAM edge is 2/eta, so the sam_ratio columns are the ratio to the row's own edge."""
    return pd.DataFrame({
        "task": table["task"], "η": table["lr"].map(fmt_value), "ρ": table["rho"].map(fmt_value),
        "claim tested": table.apply(claim, axis=1),
        "median λ₁/edge": table["sam_ratio_median"],
        "IQR": [f"{a:.3f}–{b:.3f}" if pd.notna(a) else "" for a, b in zip(table["sam_ratio_q25"], table["sam_ratio_q75"])],
        "within ±10%": table["sam_ratio_within_10pct"].map(lambda v: f"{v:.0%}" if pd.notna(v) else ""),
        "measurements": table["n_second_half"].astype("Int64").astype(str) + " of " + table["n_measurements"].astype("Int64").astype(str),
        "holds": table.apply(verdict, axis=1),
    })


def _rounded(table: pd.DataFrame) -> pd.DataFrame:
    """A table of the results with its floats at 4 significant digits (the CSV keeps them all)."""
    return table.apply(lambda col: col.map(lambda v: f"{v:.4g}" if pd.notna(v) else "") if col.dtype.kind == "f" else col)


def table_html(view: pd.DataFrame) -> str:
    classes = [[f"holds-{'yes' if v == 'yes' else 'no'}" if c == "holds" else "" for c in view.columns]
               for v in view.get("holds", pd.Series([""] * len(view)))]
    styler = (view.style.set_uuid("samedge").hide(axis="index").format(precision=3, na_rep="")  # stable ids: byte-stable pages
              .set_td_classes(pd.DataFrame(classes, index=view.index, columns=view.columns)))
    return styler.to_html(table_attributes='class="samedge-table"')


def csv_link(path: Path) -> str:
    """The CSV as a download beside its rendered table (a data URI: the report is one file)."""
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<a class="csv" download="{html.escape(path.name)}" href="data:text/csv;base64,{data}">'
            f'⬇ {html.escape(path.name)} (CSV, every column at full precision)</a>')


def headline_figure(table: pd.DataFrame) -> Figure:
    """lambda_1 / edge (median and IQR over the second half of each run) at every grid point, GD and
    SAM side by side, a panel per task, with the +-10% band: the paper's claim in one figure."""
    frame = table[table["sam_ratio_median"].notna()].assign(
        point=lambda t: "η = " + t["lr"].map(fmt_value),
        optimizer=lambda t: np.where(t["rho"] == 0, "GD/SGD (ρ = 0) vs 2/η", "SAM vs SAM edge"))
    tasks = list(dict.fromkeys(table["task"]))
    with mpl.rc_context(THEME):
        fig, axes = plt.subplots(1, max(1, len(tasks)), squeeze=False, figsize=(3.2 * max(1, len(tasks)), 2.9),
                                 layout="constrained")
        _draw_headline(fig, axes[0], frame, tasks)
    return fig


def _draw_headline(fig: Figure, axes: np.ndarray, frame: pd.DataFrame, tasks: list[str]) -> None:
    palette = dict(zip(["GD/SGD (ρ = 0) vs 2/η", "SAM vs SAM edge"], sns.color_palette("colorblind", 4)[::3]))
    for ax, task in zip(axes, tasks):
        rows = frame[frame["task"] == task]
        ax.axhspan(1 - TOLERANCE, 1 + TOLERANCE, color="#999999", alpha=0.18, linewidth=0)
        ax.axhline(1.0, color="#555555", linewidth=0.8)
        points = list(dict.fromkeys(rows.sort_values("lr")["point"]))
        for i, (optimizer, group) in enumerate(rows.groupby("optimizer", sort=True)):
            for _, row in group.iterrows():
                x = points.index(row["point"]) + (i - 0.5) * 0.25
                label = f"{optimizer}, ρ = {fmt_value(row['rho'])}" if row["rho"] else optimizer
                ax.errorbar(x, row["sam_ratio_median"], color=palette[optimizer], marker="o", markersize=4,
                            yerr=[[row["sam_ratio_median"] - row["sam_ratio_q25"]],
                                  [row["sam_ratio_q75"] - row["sam_ratio_median"]]], capsize=2, label=label)
        ax.set_xticks(range(len(points)), points)
        ax.set_xlim(-0.6, len(points) - 0.4)
        ax.set_title(task, fontsize=10)
    axes[0].set_ylabel("λ₁ / its edge (median, IQR)")
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=len(handles),
               frameon=False, fontsize=8)
    fig.suptitle("Does λ₁ sit at its edge of stability? (band: ±10%)", fontsize=11)


def write_summary(results_dir: Path, out_dir: Path, png: Path) -> list[Path]:
    """landing.html (the table of the claims and the headline figure, embedded) and one HTML page per
    table, under out_dir; the headline figure's PNG must already be at `png`."""
    agreement_csv = results_dir / "edge_agreement.csv"
    view = agreement_view(pd.read_csv(agreement_csv))
    image = base64.b64encode(png.read_bytes()).decode()
    landing = (f'{WIDEN}{STYLE}<div class="samedge">'
               f'<img alt="headline figure: lambda_1 over its edge at every grid point" src="data:image/png;base64,{image}">'
               f"<p>A row <em>holds</em> when the run's median λ₁ / edge over the second half of its measurements is "
               f"within ±{TOLERANCE:.0%} of 1.</p>{table_html(view)}<p>{csv_link(agreement_csv)}</p></div>")
    written = [_write(out_dir / "landing.html", landing)]
    for name, title in TABLES.items():
        csv = results_dir / f"{name}.csv"
        shown = view if name == "edge_agreement" else _rounded(pd.read_csv(csv))
        page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{STYLE}</head>"
                f"<body class='samedge' style='font-family: sans-serif'><h3>{html.escape(title)}</h3>"
                f"<p>{csv_link(csv)}</p>{table_html(shown)}</body></html>")
        written.append(_write(out_dir / f"{name}.html", page))
    return written


def _write(path: Path, text: str) -> Path:
    with atomic_write(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path
