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
from pathlib import Path
from typing import NoReturn

from samedge.errors import SamedgeError, one_line
from samedge.io import FULL

# One module samedge.cli.<command> each: it defines the subcommand's options and imports its heavy
# libraries (torch, pandas, seaborn) only when it runs, so `samedge --help` answers at once. They
# are imported by name, so a pipeline stage's code (samedge.codedeps) is its own command's module only.
COMMANDS = ("fetch", "train", "aggregate", "figure")


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block before them), exit 2 as ever."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="samedge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        importlib.import_module(f"{__name__}.{command}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `samedge` entry point: a SamedgeError (the user's input or files) is one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SamedgeError as exc:
        print(f"samedge {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        where = f"the folder {Path(exc.filename).parent}" if exc.filename else "a folder it writes"
        print(f"samedge {args.command}: error: {where} is full ({exc.strerror}); what was written before is "
              "kept: free space, then run the same command again (a run resumes from its last checkpoint)",
              file=sys.stderr)
        return 2
