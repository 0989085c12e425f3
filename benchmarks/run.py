"""The benchmark suite's one command: `python benchmarks/run.py [--size tiny|default] [--out DIR]`.

Writes DIR/results.md (the tables, each target with PASS/MISS), DIR/results.csv (every measured
figure, long form), DIR/peers.csv (section 1 per method) and DIR/trajectory.csv (section 2 per
measurement). `--size default` fits about 20 minutes on 2 CPU cores; `--size tiny` is the smoke test's.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path


def _threads_arg(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_known_args(argv)[0].threads


# BLAS reads its thread count once, when numpy/scipy load: set it before they are imported (scipy's
# eigsh runs on OpenBLAS, not on torch's pool). Subprocesses inherit it.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(_threads_arg(sys.argv[1:]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import before_after  # noqa: E402
import costs  # noqa: E402
import eigen_peers  # noqa: E402
import memory  # noqa: E402
import quick_e2e  # noqa: E402
import trajectory  # noqa: E402
from common import REPO, Section, fmt, md_table  # noqa: E402
from samedge.io import atomic_write  # noqa: E402
from samedge.layout import Layout  # noqa: E402
from samedge.train import configure_device  # noqa: E402

K, TOL = 3, 1e-3


def _problem(name: str, task: str, model: dict, n: int, steps: tuple[int, int], lr: float, reference: str,
             lanczos_max_steps: int, with_cohen: bool, slow_peers: bool = True, max_iters: int = 100,
             method: str = "autograd") -> dict:
    return {"problem": {"name": name, "task": task, "model": model, "n": n, "pre_steps": steps[0],
                        "gap_steps": steps[1], "lr": lr, "rho": 0.1, "k": K, "tol": TOL, "seed": 0,
                        "max_iters": max_iters, "method": method},
            "reference": reference, "lanczos_max_steps": lanczos_max_steps, "with_cohen": with_cohen,
            "slow_peers": slow_peers}


def _mlp(width: int, depth: int) -> dict:
    return {"width": width, "depth": depth, "init_scale": 1.0}


def _cnn(*channels: int) -> dict:
    return {"channels": list(channels), "init_scale": 1.0}


SIZES = {
    "tiny": {
        "problems": [_problem("small", "mnist", _mlp(2, 1), 32, (2, 2), 0.3, "dense", 20, True, max_iters=20),
                     _problem("larger", "mnist", _mlp(4, 1), 32, (2, 2), 0.3, "lanczos", 20, False, max_iters=20),
                     _problem("cnn", "cifar10", _cnn(2, 2), 16, (2, 2), 0.01, "lanczos", 20, False, False, 20,
                              "double_backprop")],
        "trajectory": {"steps": 11, "overrides": {"model": {"width": 8, "depth": 2, "init_scale": 1.0},
                                                  "n_train": 64, "every": 10}},
        "costs": {"width": 16, "depth": 2, "n": 100, "repeats": 2},
        "memory": {"sizes": (100, 1000), "chunk": 50, "width": 8, "depth": 2},
    },
    "default": {
        # small: the quick profile's lr and the gap of its measurement cadence; paper: the paper's grids;
        # quick CNN: the quick profile's CNN, data, cadence and HVP method (its params.yaml tracker block).
        "problems": [_problem("small", "mnist", _mlp(6, 2), 1000, (40, 40), 0.3, "dense", 150, True),
                     _problem("paper MLP", "mnist", _mlp(1000, 3), 1000, (20, 20), 0.1, "lanczos", 60, False),
                     _problem("quick CNN", "cifar10", _cnn(8, 16), 256, (25, 25), 0.01, "lanczos", 60, False,
                              False, method="double_backprop")],
        "trajectory": {"steps": None, "overrides": {}},
        "costs": {"width": 1000, "depth": 3, "n": 5000, "repeats": 3},
        "memory": {"sizes": (6000, 60000), "chunk": 1000, "width": 1000, "depth": 3},
    },
}


def _trajectory_config(size: dict, args: argparse.Namespace) -> tuple[dict, float, float]:
    cfg, lr, rho = trajectory.quick_config(args.params)
    over = size["trajectory"]["overrides"]
    if over:
        cfg["model"] = over["model"]
        cfg["data"]["n_train"] = over["n_train"]
        cfg["train"]["measure_every_steps"] = over["every"]
    return cfg, lr, rho


def _trajectory_sections(size: dict, args: argparse.Namespace, costs_sec: Section) -> tuple[Section, list[dict]]:
    cfg, lr, rho = _trajectory_config(size, args)
    traj = trajectory.run(cfg, lr, rho, args.data_dir, size["trajectory"]["steps"])
    trajectory.tracker_share(costs_sec, traj)
    return trajectory.section(traj), traj.rows


def header(args: argparse.Namespace, seconds: float, load: tuple[float, float]) -> list[str]:
    peers = ", ".join(f"{p} {version(p)}" for p in ("torch", "scipy", "pyhessian", "hessian-eigenthings"))
    return [
        "# samedge benchmarks",
        "",
        f"`python benchmarks/run.py --size {args.size}`: {fmt(seconds)} s on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch/BLAS thread(s), load average {fmt(load[0])} at the "
        f"start and {fmt(load[1])} at the end (other users share the machine: every figure is a ratio "
        f"measured in one process or run; absolute seconds are context only). {peers}. "
        "Deterministic CPU kernels, as `samedge train` sets them.",
    ]


def _kept(out: Path, sections: list[Section]) -> tuple[list[str], pd.DataFrame]:
    """The sections of an existing results.md / results.csv that this run did not redo (their own
    load and date are in their text), so `--sections 5` adds to the last full run instead of erasing it."""
    if not (out / "results.md").is_file() or not (out / "results.csv").is_file():
        return [], pd.DataFrame()
    redone = {s.title for s in sections}
    text = (out / "results.md").read_text().split("\n## ")[1:]
    kept = [f"## {part.rstrip()}" for part in text if part[0].isdigit() and part.split("\n")[0] not in redone]
    if kept:  # the run that measured them, as its header said
        kept.insert(0, "Sections " + ", ".join(p.split(".")[0][3:] for p in kept) + " are kept from an earlier run: "
                    + (out / "results.md").read_text().split("\n")[2])
    old = pd.read_csv(out / "results.csv")
    return kept, old[~old["section"].isin(redone)]


def write(out: Path, lines: list[str], sections: list[Section], tables: dict[str, list[dict]]) -> None:
    kept, kept_records = _kept(out, sections)
    records = [r for s in sections for r in s.records]
    summary = [[r.section.split(".")[0], r.item, fmt(r.value, 4), r.target, f"**{r.status}**", r.note]
               for r in records if r.target]
    summary += [[str(r.section).split(".")[0], r.item, fmt(r.value, 4), r.target, f"**{r.status}**",
                 "" if pd.isna(r.note) else r.note] for r in kept_records.itertuples() if isinstance(r.target, str)]
    body = lines + ["", "## Targets", "", *md_table(["sec", "measured", "value", "target", "status", "note"], summary)]
    for part in kept:
        body += ["", part]
    for s in sections:
        body += ["", f"## {s.title}", "", *s.lines]
        plain = [[r.item, fmt(r.value, 4), r.unit, r.target, r.status, r.note] for r in s.records]
        if plain:
            body += ["", *md_table(["figure", "value", "unit", "target", "status", "note"], plain)]
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "results.md") as tmp:
        tmp.write_text("\n".join(body) + "\n")
    with atomic_write(out / "results.csv") as tmp:
        pd.concat([kept_records, pd.DataFrame([r.row() for r in records])]).to_csv(tmp, index=False)
    for name, rows in tables.items():
        with atomic_write(out / f"{name}.csv") as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data", help="prepared data (samedge fetch mnist)")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--results", type=Path, default=Layout("quick", REPO).results,
                        help="a pipeline run's results folder (default: the quick profile's)")
    parser.add_argument("--sections", default="1234", help="which sections to run, e.g. 13; 5 (the solver "
                        "against the one of --before) only when named")
    parser.add_argument("--before", default=before_after.BEFORE, help="git revision of the earlier solver (section 5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1, as the pipeline's runs: on a shared machine a second "
                             "thread's barrier waits can slow kernels tenfold)")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    configure_device(torch.device("cpu"))
    torch.set_num_threads(args.threads)
    start, load0 = time.perf_counter(), os.getloadavg()[0]
    sections: list[Section] = []
    tables: dict[str, list[dict]] = {}
    costs_sec = Section("3. Costs: HVP / gradient, SAM / GD, tracker share, memory")
    if "1" in args.sections:
        sec, tables["peers"] = eigen_peers.section(size, args.data_dir)
        sections.append(sec)
    if "2" in args.sections:
        sec, tables["trajectory"] = _trajectory_sections(size, args, costs_sec)
        sections.append(sec)
    if "3" in args.sections:
        costs.section(costs_sec, **size["costs"], data_dir=args.data_dir)
        memory.section(costs_sec, **size["memory"], data_dir=args.data_dir, threads=args.threads)
    if costs_sec.records:
        sections.append(costs_sec)
    if "4" in args.sections:
        sections.append(quick_e2e.section(args.results))
    if "5" in args.sections:
        sec, tables["before_after"] = before_after.section(args.before, _trajectory_config(size, args), args.data_dir,
                                                           size["problems"][1:], size["trajectory"]["steps"])
        sections.append(sec)
    lines = header(args, time.perf_counter() - start, (load0, os.getloadavg()[0]))
    write(args.out, lines, sections, tables)
    print("\n".join(f"{r.status or '-':4} {r.item}: {fmt(r.value, 4)} {r.target}"
                    for s in sections for r in s.records), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
