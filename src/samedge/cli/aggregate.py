"""`samedge aggregate`: every run's metrics.csv and run.json, checked, into tidy tables in OUT_DIR:
metrics.csv (all runs' rows), runs.csv (one row per run), edge_agreement.csv and edge.json (per grid
point, how closely lambda_1 follows the SAM edge and 2/eta over the second half of the run).
`samedge aggregate --params params.yaml [--profile P]` reads and writes the profile's own folders
(results/P/runs -> results/P); --runs-dir/--out-dir name any others."""
from __future__ import annotations

import argparse
from pathlib import Path

from samedge.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    from samedge.aggregate import aggregate
    from samedge.config import load_params
    from samedge.layout import Layout

    if args.profile is not None and args.params is None:
        raise ConfigError("--profile needs --params")
    if args.params is not None:  # the profile's own folders, unless named
        layout = Layout(args.profile or load_params(args.params)["profile"])
        args.runs_dir = args.runs_dir or layout.runs
        args.out_dir = args.out_dir or layout.results
    if args.runs_dir is None or args.out_dir is None:
        raise ConfigError("give --params (and --profile), or both --runs-dir and --out-dir")
    for path in aggregate(args.runs_dir, args.out_dir, args.params, args.profile):
        print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "aggregate", help="collect runs into metrics.csv, runs.csv, edge_agreement.csv and edge.json",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="folder holding TASK/lrLR_rhoRHO/ run folders (default with --params: "
                             "the profile's, results/PROFILE/runs)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where the tables go (default with --params: results/PROFILE)")
    parser.add_argument("--params", type=Path, default=None,
                        help="params.yaml: aggregate exactly the runs of the profile's grid "
                             "(a missing run is an error); default: every run found in --runs-dir")
    parser.add_argument("--profile", default=None, help="profile of --params (default: its active one)")
    parser.set_defaults(func=run)
