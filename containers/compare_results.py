"""Compares the result files of two runs of the same profile (make container-check: the host's and
the container's): every file under results/ and data/ must exist in both and hold the same values,
timing aside. Prints one line per difference and exits 1 on any.

- Tables (.csv): the same columns and rows, every value equal (NaN equals NaN), except the timing
  columns (*_seconds): how long something took depends on the machine, not on what it computed;
  and the digests of files that hold such times (*_sha256: a run's metrics.csv, its rows).
- Records (.json): every value equal, except timing (*_seconds), those digests (*_sha256) and
  `versions`, the record of the software that ran (the image's Python is not the host's, by design).
- Figures and the report (.png, .pdf, .svg, .html) draw training time or embed the date, and
  Snakemake's benchmark tables (results/<profile>/benchmarks/) hold only each job's time and memory:
  present in both; the figures' numbers are the tables'.
- Everything else (arrays, raw data, text): byte for byte.

Usage: python compare_results.py HOST_WORKSPACE CONTAINER_WORKSPACE"""
from __future__ import annotations

import json
import re
import math
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

ROOTS = ("results", "data")
PRESENCE_ONLY = {".png", ".pdf", ".svg", ".html"}
MEASUREMENTS = re.compile(r"results/[^/]+/benchmarks/")  # Snakemake's `benchmark:` files (results/<profile>/benchmarks/): seconds, memory, I/O
NOT_RESULTS = {".snakemake_timestamp"}  # Snakemake's own bookkeeping
SET_ASIDE_KEYS = {"versions"}


def is_timing(name: str) -> bool:
    """A time, or the digest of a file that holds times (each run's metrics.csv has train_seconds)."""
    return name.endswith(("_seconds", "_sha256"))


def result_files(workspace: Path) -> set[str]:
    return {str(path.relative_to(workspace)) for root in ROOTS if (workspace / root).is_dir()
            for path in (workspace / root).rglob("*") if path.is_file() and path.name not in NOT_RESULTS}


def csv_differences(host: Path, container: Path) -> list[str]:
    a, b = pd.read_csv(host), pd.read_csv(container)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return [f"columns or row count differ: {list(a.columns)} x {len(a)} vs {list(b.columns)} x {len(b)}"]
    lines = []
    for column in (c for c in a.columns if not is_timing(c)):
        differs = ~((a[column] == b[column]) | (a[column].isna() & b[column].isna()))
        if differs.any():
            row = int(differs.idxmax())
            lines.append(f"column {column} differs in {int(differs.sum())} of {len(a)} rows "
                         f"(first row {row}: {a[column][row]} vs {b[column][row]})")
    return lines


def flat(value, prefix: str = "") -> dict[str, object]:
    """Every leaf of a JSON value by its path, timing and set-aside keys left out."""
    if isinstance(value, dict):
        return {path: leaf for key, item in value.items()
                if not is_timing(key) and key not in SET_ASIDE_KEYS
                for path, leaf in flat(item, f"{prefix}.{key}" if prefix else key).items()}
    if isinstance(value, list):
        return {path: leaf for i, item in enumerate(value) for path, leaf in flat(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def same(x: object, y: object) -> bool:
    return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))


def json_differences(host: Path, container: Path) -> list[str]:
    a, b = flat(json.loads(host.read_text())), flat(json.loads(container.read_text()))
    return [f"{key}: {a.get(key, '(missing)')!r} vs {b.get(key, '(missing)')!r}"
            for key in sorted(a.keys() | b.keys()) if not same(a.get(key, KeyError), b.get(key, KeyError))]


def how_compared(rel: str) -> str:
    suffix = Path(rel).suffix.lower()
    if suffix in PRESENCE_ONLY or MEASUREMENTS.match(rel):
        return "by presence"
    return {".csv": "tables", ".json": "records"}.get(suffix, "byte for byte")


def file_differences(rel: str, host: Path, container: Path) -> list[str]:
    kind = how_compared(rel)
    if kind == "by presence":
        return []
    if kind == "tables":
        return csv_differences(host, container)
    if kind == "records":
        return json_differences(host, container)
    return [] if host.read_bytes() == container.read_bytes() else ["bytes differ"]


def differences(host: Path, container: Path) -> list[str]:
    """`path: what differs` (host value first), one per difference."""
    a, b = result_files(host), result_files(container)
    lines = [f"{rel}: only in the host's run" for rel in sorted(a - b)]
    lines += [f"{rel}: only in the container's run" for rel in sorted(b - a)]
    lines += [f"{rel}: {line}" for rel in sorted(a & b)
              for line in file_differences(rel, host / rel, container / rel)]
    return lines


def main(argv: list[str]) -> int:
    host, container = map(Path, argv)
    found = differences(host, container)
    print("\n".join(found), end="\n" if found else "")
    kinds = Counter(how_compared(rel) for rel in result_files(host))
    print(f"compared {sum(kinds.values())} result files: "
          + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())), file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
