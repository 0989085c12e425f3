"""`samedge <command>`: thin dispatch; each command lives in the module named for what it does."""
from __future__ import annotations

import argparse
import importlib
import sys

from samedge.config import ConfigError

# Modules exposing register(subparsers); imported lazily so `samedge fetch` does not load seaborn.
COMMAND_MODULES = {
    "fetch": "samedge.data",
    "train": "samedge.train_cli",
    "aggregate": "samedge.aggregate",
    "figure": "samedge.figures",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samedge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in dict.fromkeys(COMMAND_MODULES.values()):
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"samedge {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
