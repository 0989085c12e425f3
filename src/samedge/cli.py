"""`samedge <command>`: thin dispatch; each command lives in the module named for what it does."""
from __future__ import annotations

import argparse
import importlib
import sys

from samedge.config import ConfigError

# Modules exposing register(subparsers). Only the module of the command being run is imported,
# so `samedge figure` does not pay for torch and `samedge train` does not pay for seaborn.
COMMAND_MODULES = {
    "fetch": "samedge.data",
    "train": "samedge.train_cli",
    "aggregate": "samedge.aggregate",
    "figure": "samedge.figures",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samedge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else COMMAND_MODULES.values()
    for module in dict.fromkeys(wanted):
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"samedge {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
