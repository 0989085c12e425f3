"""`samedge figure`: draw the paper's figures, numbered as in the paper, from the tables of
`samedge aggregate` (figure 1 is analytic and needs none), the figure set of each run, or each
task's grid figure (a panel per lr x rho; any task, including your own), or the figures beyond
the paper: one per optimizer (its sharpness against its edge) and one per task (every optimizer's
sharpness / edge side by side), under OUT/optimizers/.
Each figure is written as PDF and PNG; a footnote lists the runs left out (e.g. diverged)."""
from __future__ import annotations

import argparse
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Any

from samedge.errors import ConfigError

TARGETS = ("all", "run", "runs", "grids", "optimizers", "summary")


def parse_target(text: str) -> int | str:
    from samedge.figure_specs import FIGURES

    if text in TARGETS:
        return text
    if text.isdigit() and int(text) in FIGURES:
        return int(text)
    raise ConfigError(f"unknown figure {text!r}; expected a number in 1..{max(FIGURES)}, 'all', 'run', 'runs', "
                      "'grids', 'optimizers' or 'summary'")


# One thing to draw: ("paper", number), ("run", RunKey), ("grid", task), or ("summary" | "optimizers", results folder).
Item = tuple[str, object]


def items(target: int | str, args: argparse.Namespace, results: Any) -> list[Item]:
    from samedge import figures
    from samedge.figure_specs import paper_figures
    from samedge.runs import RunKey

    if target == "run":
        return [("run", RunKey(args.task, args.lr, args.rho, args.seed))]
    if target == "runs":
        return [("run", key) for key in figures.completed_runs(results)]
    if target == "grids":
        return [("grid", task) for task in results.tasks()]
    if target == "summary":
        return [("summary", args.results)]
    if target == "optimizers":
        return [("optimizers", args.results)]
    return [("paper", number) for number in (paper_figures(results.tasks()) if target == "all" else [target])]


_results: Any = None  # the loaded tables, set before the workers fork (inherited, not pickled)


def draw(item: Item, out: Path, x: str) -> str:
    """Draw and save one figure; what to print about it (its PDF, and for a paper figure its notes)."""
    from samedge import figures
    from samedge.figure_specs import figure_files, grid_figure_files, run_figure_files

    kind, what = item
    if kind == "run":
        fig, files = figures.run_figure(_results, what, x=x), run_figure_files(what, out_dir=out)
    elif kind == "grid":
        fig, files = figures.grid_figure(_results, what, x=x), grid_figure_files(what, out_dir=out)
    elif kind == "summary":
        return "\n".join(map(str, summarise(Path(what), out)))
    elif kind == "optimizers":
        return "\n".join(map(str, draw_optimizer_figures(Path(what), out)))
    else:
        fig, files = figures.paper_figure(what, _results, x), figure_files(what, out)
    note = figures.footnote(fig) if kind == "paper" else ""
    figures.save(fig, *files)
    return "\n".join([str(files[0]), *(f"  {line}" for line in note.splitlines())])


def summarise(results_dir: Path, out: Path) -> list[Path]:
    """The report's landing page: the headline figure, then the HTML of the tables (embedding it)."""
    import pandas as pd

    from samedge import figures, summary
    from samedge.figure_specs import headline_files, summary_dir

    agreement = results_dir / "edge_agreement.csv"
    if not agreement.is_file():
        raise ConfigError(f"{agreement}: not found; run `samedge aggregate` first")
    files = headline_files(out)
    figures.save(summary.headline_figure(pd.read_csv(agreement)), *files)
    return [files[0], *summary.write_summary(results_dir, summary_dir(out), files[1])]


def run(args: argparse.Namespace) -> int:
    global _results
    from samedge import figures
    from samedge.runs import check_output_folder

    targets = [parse_target(text) for text in args.target]
    params = None
    if args.params is not None or Path("params.yaml").is_file():
        from samedge.config import load_params

        params = load_params(args.params or Path("params.yaml"))  # names and labels of your own tasks
    _profile_folders(args, params)
    if args.x not in figures.X_AXES:
        raise ConfigError(f"--x {args.x!r}: expected one of {list(figures.X_AXES)}")
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: expected a number of processes >= 1")
    if "run" in targets and None in (args.task, args.lr, args.rho):
        raise ConfigError("figure run: needs --task, --lr and --rho")
    check_output_folder(args.out, "--out")
    _results = None if targets == [1] else figures.Results.load(args.results)
    todo = [item for target in targets for item in items(target, args, _results)]
    if args.jobs == 1 or len(todo) < 2:
        for item in todo:
            print(draw(item, args.out, args.x), flush=True)
        return 0
    # Forked workers share the imports and tables the parent has loaded (a few seconds each otherwise).
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(args.jobs, len(todo)), mp_context=context) as pool:
        for text in pool.map(draw, todo, repeat(args.out), repeat(args.x)):
            print(text, flush=True)
    return 0


def draw_optimizer_figures(results_dir: Path, out: Path) -> list[Path]:
    """Per optimizer, its sharpness against its edge; per task, every optimizer side by side (their PDFs)."""
    from samedge import beyond_figures, figures
    from samedge.figure_specs import optimizer_figure_files, side_by_side_figure_files

    metrics, runs = beyond_figures.load(results_dir)
    drawn = []
    for optimizer in dict.fromkeys(runs["optimizer"]):
        files = optimizer_figure_files(optimizer, out)
        figures.save(beyond_figures.optimizer_figure(metrics, runs, optimizer), *files)
        drawn.append(files[0])
    for task in dict.fromkeys(runs["task"]):
        files = side_by_side_figure_files(task, out)
        figures.save(beyond_figures.side_by_side_figure(metrics, runs, task), *files)
        drawn.append(files[0])
    return drawn


def _profile_folders(args: argparse.Namespace, params: dict | None) -> None:
    """--results and --out default to the profile's folders (results/PROFILE, its figures/)."""
    from samedge.layout import Layout

    if args.results is not None and args.out is not None:
        return
    if args.profile is None and params is None:
        raise ConfigError("name the profile (--profile, with a params.yaml here or --params), "
                          "or both --results and --out")
    layout = Layout(args.profile or params["profile"])
    args.results = args.results or layout.results
    args.out = args.out or layout.figures


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "figure", help="draw a paper figure (1-16), all of them, or the per-run figure sets",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="NUMBER|all|run|runs|grids|optimizers|summary", nargs="+",
                        help="one or more of: a figure number as in the paper; 'all' (every paper figure the "
                             "results' tasks fill: figure 1 and those tasks' own); 'run' (one run's set, with "
                             "--task/--lr/--rho[/--seed]); 'runs' (the set of every run that did not diverge); "
                             "'grids' (a grid figure per task in the results, under OUT/tasks/); 'optimizers' "
                             "(per optimizer, its sharpness against its edge; per task, every optimizer side by "
                             "side; under OUT/optimizers/); 'summary' (the report's landing page: the "
                             "edge-agreement table as HTML and the headline figure, under OUT/summary/)")
    parser.add_argument("--profile", default=None,
                        help="the profile whose tables to draw (default: params.yaml's `profile:`)")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder with metrics.csv and runs.csv from `samedge aggregate` "
                             "(default: the profile's, results/PROFILE)")
    parser.add_argument("--out", type=Path, default=None,
                        help="figures folder; per-run sets go to OUT/runs/ (default: results/PROFILE/figures)")
    parser.add_argument("--x", default="step",
                        help="x-axis: 'step', or 'seconds' (training time, measurements excluded, as in the paper)"
                             " (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes drawing side by side (default: %(default)s)")
    parser.add_argument("--task", help="figure run: the task")
    parser.add_argument("--lr", type=float, help="figure run: the learning rate")
    parser.add_argument("--rho", type=float, help="figure run: rho")
    parser.add_argument("--params", type=Path, default=None,
                        help="params file naming your own tasks under `tasks:` (default: ./params.yaml if present)")
    parser.add_argument("--seed", type=int, default=None,
                        help="figure run: the seed of a run with several seeds (default: the task's default seed)")
    parser.set_defaults(func=run)
