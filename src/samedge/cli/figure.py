"""`samedge figure`: draw the paper's figures, numbered as in the paper, from the tables of
`samedge aggregate` (figure 1 is analytic and needs none), the figure set of each run, or each
task's grid figure (a panel per lr x rho; any task, including your own).
Each figure is written as PDF and PNG; a footnote lists the runs left out (e.g. diverged)."""
from __future__ import annotations

import argparse
from pathlib import Path

from samedge.errors import ConfigError

TARGETS = ("all", "run", "runs", "grids")


def parse_target(text: str) -> int | str:
    from samedge.figure_specs import FIGURES

    if text in TARGETS:
        return text
    if text.isdigit() and int(text) in FIGURES:
        return int(text)
    raise ConfigError(f"unknown figure {text!r}; expected a number in 1..{max(FIGURES)}, 'all', 'run', 'runs' "
                      "or 'grids'")


def run(args: argparse.Namespace) -> int:
    from samedge import figures
    from samedge.figure_specs import FIGURES, figure_files, grid_figure_files, run_figure_files
    from samedge.runs import RunKey

    target = parse_target(args.target)
    params = None
    if args.params is not None or Path("params.yaml").is_file():
        from samedge.config import load_params

        params = load_params(args.params or Path("params.yaml"))  # names and labels of your own tasks
    _profile_folders(args, params)
    if args.x not in figures.X_AXES:
        raise ConfigError(f"--x {args.x!r}: expected one of {list(figures.X_AXES)}")
    if target == "run" and None in (args.task, args.lr, args.rho):
        raise ConfigError("figure run: needs --task, --lr and --rho")
    results = None if target == 1 else figures.Results.load(args.results)
    if target in ("run", "runs"):
        keys = ([RunKey(args.task, args.lr, args.rho, args.seed)] if target == "run"
                else figures.completed_runs(results))
        for key in keys:
            files = run_figure_files(key, out_dir=args.out)
            figures.save(figures.run_figure(results, key, x=args.x), *files)
            print(files[0])
        return 0
    if target == "grids":
        for task in results.tasks():
            files = grid_figure_files(task, out_dir=args.out)
            figures.save(figures.grid_figure(results, task, x=args.x), *files)
            print(files[0])
        return 0
    for number in FIGURES if target == "all" else [target]:
        fig = figures.paper_figure(number, results, args.x)
        note = figures.footnote(fig)
        files = figure_files(number, args.out)
        figures.save(fig, *files)
        print(files[0], *(f"  {line}" for line in note.splitlines()), sep="\n")
    return 0


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
    parser.add_argument("target", metavar="NUMBER|all|run|runs|grids",
                        help="a figure number as in the paper; 'all'; 'run' (one run's set, with "
                             "--task/--lr/--rho[/--seed]); 'runs' (the set of every run that did not diverge); "
                             "'grids' (a grid figure per task in the results, under OUT/tasks/)")
    parser.add_argument("--profile", default=None,
                        help="the profile whose tables to draw (default: params.yaml's `profile:`)")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder with metrics.csv and runs.csv from `samedge aggregate` "
                             "(default: the profile's, results/PROFILE)")
    parser.add_argument("--out", type=Path, default=None,
                        help="figures folder; per-run sets go to OUT/runs/ (default: results/PROFILE/figures)")
    parser.add_argument("--x", default="seconds",
                        help="x-axis: 'seconds' (training time, as in the paper) or 'step' (default: %(default)s)")
    parser.add_argument("--task", help="figure run: the task")
    parser.add_argument("--lr", type=float, help="figure run: the learning rate")
    parser.add_argument("--rho", type=float, help="figure run: rho")
    parser.add_argument("--params", type=Path, default=None,
                        help="params file naming your own tasks under `tasks:` (default: ./params.yaml if present)")
    parser.add_argument("--seed", type=int, default=None,
                        help="figure run: the seed of a run with several seeds (default: the task's default seed)")
    parser.set_defaults(func=run)
