"""`samedge aggregate`: every run's metrics.csv and run.json, checked, into tidy tables in OUT_DIR:
metrics.csv (all runs' rows), runs.csv (one row per run) and edge_agreement.csv/.json (per grid
point, how closely lambda_1 follows the SAM edge and 2/eta over the second half of the run)."""
from __future__ import annotations

import argparse
from pathlib import Path

from samedge.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    from samedge.aggregate import aggregate

    if args.profile is not None and args.params is None:
        raise ConfigError("--profile needs --params")
    for path in aggregate(args.runs_dir, args.out_dir, args.params, args.profile):
        print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "aggregate", help="collect runs into metrics.csv, runs.csv and edge_agreement.csv/.json",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", type=Path, default=Path("results/runs"),
                        help="folder holding TASK/lrLR_rhoRHO/ run folders (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=Path("results"),
                        help="where the tables go (default: %(default)s)")
    parser.add_argument("--params", type=Path, default=None,
                        help="params.yaml: aggregate exactly the runs of the profile's grid "
                             "(a missing run is an error); default: every run found in --runs-dir")
    parser.add_argument("--profile", default=None, help="profile of --params (default: its active one)")
    parser.set_defaults(func=run)
