"""`samedge fetch TASK`: get, verify and prepare a task's data set."""
from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from samedge.config import load_params
    from samedge.data import dataset, fetch
    from samedge.rundir import make_writable, remove_if_empty

    params = args.params or (Path("params.yaml") if Path("params.yaml").is_file() else None)
    if params is not None:
        load_params(params)  # registers the tasks of your own it names under `tasks:`
    dataset(args.task)  # an unknown task, or one without a data set, before anything is created
    created = make_writable(args.data_dir, "--data-dir")
    try:
        written = fetch(args.task, args.data_dir)
    except BaseException:
        remove_if_empty(created)  # a failed first fetch leaves no empty folder behind
        raise
    print(f"{args.task}: {len(written)} file(s) written; prepared data verified in "
          f"{args.data_dir / 'prepared' / args.task}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fetch", help="download, verify and prepare a task's data set", description=__doc__ + (
            "\n\nFiles go to DATA_DIR/raw/TASK (checked against recorded checksums) and the prepared "
            "arrays to DATA_DIR/prepared/TASK. With SAMEDGE_DATA_MIRROR set, files come from that local "
            "mirror and the network is never used. A rerun re-verifies and rewrites nothing; files in those folders that fetch did not write are left alone."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", metavar="TASK",
                        help="mnist, cifar10, shakespeare, or a task of your own named in params.yaml")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="data folder (default: %(default)s)")
    parser.add_argument("--params", type=Path, default=None,
                        help="params file naming your own tasks under `tasks:` (default: ./params.yaml if present)")
    parser.set_defaults(func=run)
