"""The figures as a table (number -> slug, task, kind, title) and their file names.

Kept free of plotting imports so the Snakefile can import it to name rule outputs:
results/figures/fig{NN:02d}_{slug}.pdf/.png (the paper's figures, numbered as in the paper: figure 1,
then five for each built-in task that declares `paper=` in its module), per run
results/figures/runs/{task}_{run}.pdf/.png, per task results/figures/tasks/{task}_grid.pdf/.png.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from samedge.runs import RunKey
from samedge.tasks import BUILTIN, get_task


class FigureSpec(NamedTuple):
    slug: str
    task: str | None  # None: analytic, needs no results
    kind: str         # which plotting function of samedge.figures draws it
    title: str


def _task_figures(name: str) -> list[FigureSpec]:
    task = get_task(name)
    base, rho, label = task.base_optimizer, task.paper.rho, task.label
    zoom = (FigureSpec(f"{name}_sam_opnorm_zoom", name, "opnorm_sam_zoom",
                       f"{label}, SAM ρ = {rho}: operator norm and the SAM edge")
            if task.paper.zoom == "opnorm" else
            FigureSpec(f"{name}_sam_eigenvalues_zoom", name, "eigs_sam_zoom",
                       f"{label}, SAM ρ = {rho}: top Hessian eigenvalues near the SAM edge"))
    return [
        FigureSpec(f"{name}_{base.lower()}_eigenvalues", name, "eigs_gd",
                   f"{label}, {base}: top Hessian eigenvalues"),
        FigureSpec(f"{name}_sam_eigenvalues", name, "eigs_sam",
                   f"{label}, SAM ρ = {rho}: top Hessian eigenvalues"),
        zoom,
        FigureSpec(f"{name}_loss", name, "loss", f"{label}: training loss, {base} and SAM ρ = {rho}"),
        FigureSpec(f"{name}_alignment", name, "alignment",
                   f"{label}, SAM ρ = {rho}: alignment of the gradients with v₁"),
    ]


FIGURES: dict[int, FigureSpec] = dict(enumerate(
    [FigureSpec("edge_ratio", None, "edge_ratio", "SAM edge / (2/η) against α = η‖g‖/(2ρ)"),
     *(spec for name in BUILTIN if get_task(name).paper for spec in _task_figures(name))], start=1))


def paper_figures(tasks: Iterable[str]) -> list[int]:
    """The paper figures that runs of these tasks can fill: the analytic one and the tasks' own (a
    profile without a paper task draws no empty panels)."""
    tasks = set(tasks)
    return [number for number, spec in FIGURES.items() if spec.task is None or spec.task in tasks]


def figure_stem(number: int) -> str:
    return f"fig{number:02d}_{FIGURES[number].slug}"


def figure_files(number: int, out_dir: str | Path = "results/figures") -> tuple[Path, Path]:
    """The (pdf, png) that `samedge figure NUMBER --out out_dir` writes."""
    return _pair(Path(out_dir) / figure_stem(number))


def run_figure_files(key: RunKey, out_dir: str | Path = "results/figures") -> tuple[Path, Path]:
    """The (pdf, png) of one run's supplementary figure set, under out_dir/runs/."""
    return _pair(Path(out_dir) / "runs" / f"{key.task}_{key.name}")


def grid_figure_files(task: str, out_dir: str | Path = "results/figures") -> tuple[Path, Path]:
    """The (pdf, png) of a task's grid figure (a panel per lr x rho), under out_dir/tasks/."""
    return _pair(Path(out_dir) / "tasks" / f"{task}_grid")


def optimizer_figure_files(optimizer: str, out_dir: str | Path = "results/figures") -> tuple[Path, Path]:
    """The (pdf, png) of an optimizer's figure (its sharpness against its edge), under out_dir/optimizers/."""
    return _pair(Path(out_dir) / "optimizers" / optimizer)


def side_by_side_figure_files(task: str, out_dir: str | Path = "results/figures") -> tuple[Path, Path]:
    """The (pdf, png) of a task's figure of every optimizer side by side, under out_dir/optimizers/."""
    return _pair(Path(out_dir) / "optimizers" / f"{task}_side_by_side")


def summary_dir(out_dir: str | Path = "results/figures") -> Path:
    """Where `samedge figure summary` writes the report's landing page, headline figure and table pages."""
    return Path(out_dir) / "summary"


def headline_files(out_dir: str | Path = "results/figures") -> tuple[Path, Path]:
    """The (pdf, png) of the headline figure: lambda_1 over its edge at every grid point."""
    return _pair(summary_dir(out_dir) / "headline")


def _pair(stem: Path) -> tuple[Path, Path]:
    # Not Path.with_suffix: "..._rho0.1" would lose its ".1".
    return stem.parent / f"{stem.name}.pdf", stem.parent / f"{stem.name}.png"
