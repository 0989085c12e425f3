"""The paper's figures as a table (number -> slug, task, kind, title) and their file names.

Kept free of plotting imports so the Snakefile can import it to name rule outputs:
results/figures/fig{NN:02d}_{slug}.pdf/.png, per run results/figures/runs/{task}_lr{lr}_rho{rho}.pdf/.png.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from samedge.config import TASKS, run_name


class FigureSpec(NamedTuple):
    slug: str
    task: str | None  # None: analytic, needs no results
    kind: str         # which plotting function of samedge.figures draws it
    title: str


# The rho of the paper's SAM figures: 0.1 for the image tasks, 0.3 for the language model.
SAM_RHO = {"mnist": 0.1, "cifar10": 0.1, "shakespeare": 0.3}
TASK_LABEL = {"mnist": "MNIST (MLP)", "cifar10": "CIFAR-10 (CNN)", "shakespeare": "tiny_shakespeare (Transformer)"}
# Full-batch GD for the image tasks, minibatch SGD for the language model.
BASE_OPTIMIZER = {"mnist": "GD", "cifar10": "GD", "shakespeare": "SGD"}


def _task_figures(task: str) -> list[FigureSpec]:
    base, rho, label = BASE_OPTIMIZER[task], SAM_RHO[task], TASK_LABEL[task]
    zoom = (FigureSpec(f"{task}_sam_opnorm_zoom", task, "opnorm_sam_zoom",
                       f"{label}, SAM ρ = {rho}: operator norm and the SAM edge")
            if task == "shakespeare" else
            FigureSpec(f"{task}_sam_eigenvalues_zoom", task, "eigs_sam_zoom",
                       f"{label}, SAM ρ = {rho}: top Hessian eigenvalues near the SAM edge"))
    return [
        FigureSpec(f"{task}_{base.lower()}_eigenvalues", task, "eigs_gd",
                   f"{label}, {base}: top Hessian eigenvalues"),
        FigureSpec(f"{task}_sam_eigenvalues", task, "eigs_sam",
                   f"{label}, SAM ρ = {rho}: top Hessian eigenvalues"),
        zoom,
        FigureSpec(f"{task}_loss", task, "loss", f"{label}: training loss, {base} and SAM ρ = {rho}"),
        FigureSpec(f"{task}_alignment", task, "alignment",
                   f"{label}, SAM ρ = {rho}: alignment of the gradients with v₁"),
    ]


FIGURES: dict[int, FigureSpec] = dict(enumerate(
    [FigureSpec("edge_ratio", None, "edge_ratio", "SAM edge / (2/η) against α = η‖g‖/(2ρ)"),
     *(spec for task in TASKS for spec in _task_figures(task))], start=1))


def figure_stem(number: int) -> str:
    return f"fig{number:02d}_{FIGURES[number].slug}"


def figure_files(number: int, out_dir: str | Path = "results/figures") -> tuple[Path, Path]:
    """The (pdf, png) that `samedge figure NUMBER --out out_dir` writes."""
    return _pair(Path(out_dir) / figure_stem(number))


def run_figure_files(task: str, lr: float, rho: float,
                     out_dir: str | Path = "results/figures") -> tuple[Path, Path]:
    """The (pdf, png) of one run's supplementary figure set, under out_dir/runs/."""
    return _pair(Path(out_dir) / "runs" / f"{task}_{run_name(lr, rho)}")


def _pair(stem: Path) -> tuple[Path, Path]:
    # Not Path.with_suffix: "..._rho0.1" would lose its ".1".
    return stem.parent / f"{stem.name}.pdf", stem.parent / f"{stem.name}.png"
