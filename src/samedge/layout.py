"""Where a profile's work lives: every profile has its own folders, so profiles coexist.

    results/<profile>/runs/<task>/<run>/      one run (samedge.runs: metrics.csv, run.json)
    results/<profile>/{metrics,runs,edge_agreement}.csv, edge.json   the tables (samedge.aggregate)
    results/<profile>/figures/, report.html   figures and the HTML report
    results/<profile>/benchmarks/<task>/<run>.tsv   Snakemake's per-job timings
    results/<profile>/code/<stage>.json       the code digests DVC's stages depend on
    checkpoints/<profile>/<task>/<run>/       resumable state of unfinished runs
    logs/<profile>/...                        every job's log
    data/, logs/fetch/                        shared: the data sets are the same for every profile

The workflow, the Makefile, dvc.yaml and the CLI defaults take their paths from here.
`python -m samedge.layout report [PROFILE]` prints a profile's report path (the Makefile's);
`python -m samedge.layout migrate PROFILE` moves a workspace of the old single-profile layout
(results/runs, results/*.csv, ...) into that profile's folders, never overwriting anything.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from samedge.errors import ConfigError

TABLES = ("metrics.csv", "runs.csv", "edge_agreement.csv", "edge.json")  # what `samedge aggregate` writes
# Names the old layout or the shared folders use at the level of a profile's folder.
RESERVED = frozenset({"runs", "figures", "benchmarks", "fetch"})


@dataclass(frozen=True)
class Layout:
    """The folders of one profile, relative to `root` (the workspace; "." in the workflow)."""

    profile: str
    root: Path = Path(".")

    def __post_init__(self) -> None:
        if (not self.profile or "/" in self.profile or self.profile.startswith(".")
                or self.profile in RESERVED):
            raise ConfigError(f"profile {self.profile!r}: not usable as a folder name "
                              f"(reserved: {sorted(RESERVED)})")

    @property
    def results(self) -> Path:
        return self.root / "results" / self.profile

    @property
    def runs(self) -> Path:
        return self.results / "runs"

    @property
    def figures(self) -> Path:
        return self.results / "figures"

    @property
    def benchmarks(self) -> Path:
        return self.results / "benchmarks"

    @property
    def code(self) -> Path:
        return self.results / "code"

    @property
    def report(self) -> Path:
        return self.results / "report.html"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints" / self.profile

    @property
    def logs(self) -> Path:
        return self.root / "logs" / self.profile

    def table(self, name: str) -> Path:
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}; one of {TABLES}")
        return self.results / name


# The old single-profile layout, as (old path, new path) relative to the workspace and the
# profile's Layout: everything results/, checkpoints/ and logs/ held before profiles had folders.
def _old_layout(new: Layout) -> list[tuple[Path, Path]]:
    root = new.root
    moves = [(root / "results" / name, new.results / name)  # edge_agreement.json: the old summary
             for name in (*TABLES, "edge_agreement.json", "runs", "figures", "benchmarks", "report.html")]
    moves += [(root / "checkpoints" / "runs", new.checkpoints)]
    moves += [(root / "logs" / name, new.logs / name) for name in ("train", "figures", "aggregate.log")]
    return [(old, dest) for old, dest in moves if old.exists()]


def migrate(new: Layout) -> list[tuple[Path, Path]]:
    """Move the old layout's files into `new`'s folders. Every destination is checked first: if
    any exists, nothing moves (ConfigError naming it). Renames only (same filesystem): no file is
    copied, rewritten or deleted, and modification times are kept."""
    moves = _old_layout(new)
    taken = [dest for _, dest in moves if dest.exists()]
    if taken:
        raise ConfigError(f"{taken[0]} already exists: move it away or pick another profile; nothing was moved")
    for old, dest in moves:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(old, dest)
    return moves


def _active_profile(params: Path) -> str:
    import yaml

    if not params.is_file():
        raise ConfigError(f"params file not found: {params}")
    return yaml.safe_load(params.read_text())["profile"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samedge.layout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("report", "migrate"))
    parser.add_argument("profile", nargs="?", default="",
                        help="the profile (default: params.yaml's `profile:`)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    try:
        layout = Layout(args.profile or _active_profile(args.params))
        if args.action == "report":
            print(layout.report)
            return 0
        moves = migrate(layout)
    except ConfigError as exc:
        print(f"samedge.layout {args.action}: error: {exc}", file=sys.stderr)
        return 2
    for old, dest in moves:
        print(f"{old} -> {dest}")
    print(f"moved {len(moves)} paths into the folders of profile {layout.profile!r}" if moves
          else "nothing of the old layout found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
