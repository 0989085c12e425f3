"""samedge reproduces "Sharpness-Aware Minimization and the Edge of Stability" (Long & Bartlett,
2023): it trains with SAM (GD at rho = 0), tracks the top Hessian eigenvalues against the SAM edge
and 2/eta, and draws the paper's figures.

Start with `make pipeline` (every step below, for the profile in params.yaml), or by hand:
  samedge fetch mnist                                   get and verify a task's data
  samedge train --task mnist --lr 0.3 --rho 0.1 --out results/quick/runs/mnist/lr0.3_rho0.1
  samedge aggregate --params params.yaml                collect the profile's runs into results/<profile>/*.csv
  samedge figure all                                    draw the paper's figures 1-16 (results/<profile>/figures)
`samedge COMMAND --help` explains each command's options.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from samedge.errors import SamedgeError

# One module samedge.cli.<command> each: it defines the subcommand's options and imports its heavy
# libraries (torch, pandas, seaborn) only when it runs, so `samedge --help` answers at once. They
# are imported by name, so a pipeline stage's code (samedge.codedeps) is its own command's module only.
COMMANDS = ("fetch", "train", "aggregate", "figure")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samedge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        importlib.import_module(f"{__name__}.{command}").register(sub)
    return parser


def one_line(exc: BaseException) -> str:
    """A message on one line: a log grep or a scheduler's summary keeps the whole of it."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    """The `samedge` entry point: a SamedgeError (the user's input or files) is one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SamedgeError as exc:
        print(f"samedge {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
