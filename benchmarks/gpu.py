"""Each paper-size training step against its arithmetic floor, on one CUDA GPU.

    python benchmarks/gpu.py [--data-dir data] [--profile paper-quick] [--out table.md]

Per task of the profile (the paper's models and batches): ms per SAM and per GD step (steps queued
back to back, one sync at the end: what the training loop does), the matmul/conv FLOPs of one SAM
step counted by torch's FlopCounterMode, the floor = FLOPs / the float32 matmul peak measured in
this same run (TF32 off, as in training), their ratio against the targets, the cost of one HVP in
the tracker's block relative to one gradient, a warm top-k measurement (ms and HVPs), the same
SAM step replayed from a CUDA graph (samedge.sam.GraphedSamGradient: ms, and whether it equals the
eager step bit for bit) and the peak GPU memory. Without CUDA it says so and exits 0. Ratios
only; absolute ms are context.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"mnist": 1.3, "cifar10": 4.0, "shakespeare": 4.0}  # SAM step / floor
POINT = {"mnist": (0.1, 0.1), "cifar10": (0.003, 0.1), "shakespeare": (0.1, 0.3)}  # (lr, rho) stepped
STEPS = 20
DRILL_TASKS = ("mnist", "cifar10")  # gpu_check.sh's resume and rerun drills repeat one job of each
TIMING_COLUMNS = ["train_seconds", "wall_seconds"]  # the metrics columns a rerun may change


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_call_ms(fn: Callable[[], Any], calls: int, device: torch.device) -> float:
    """Mean ms of `calls` back-to-back calls after one warm-up, synced once at each end."""
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return 1000 * (time.perf_counter() - start) / calls


def matmul_peak_flops(device: torch.device, n: int = 8192, calls: int = 10) -> float:
    """float32 FLOP/s of an n x n matmul (TF32 off), the ceiling the floors are computed against."""
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    return 2 * n**3 / (per_call_ms(lambda: a @ b, calls, device) / 1000)


def counted_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def graphed(model: Any, loss_fn: Any, batch: Any, lr: float, rho: float,
            device: torch.device) -> tuple[str, str]:
    """(ms per CUDA-graph SAM step, whether its gradients equal the eager ones bit for bit), at the
    current weights; the reason if the capture fails."""
    from samedge.sam import GraphedSamGradient, apply_update, sam_gradient_tensors

    try:
        step = GraphedSamGradient(model, loss_fn, batch, rho)
        replayed = step()
        eager = sam_gradient_tensors(model, loss_fn, batch, rho)
        pairs = ((eager.loss, replayed.loss), (eager.grad, replayed.grad),
                 (eager.sam_grad, replayed.sam_grad))
        exact = all(torch.equal(a, b) for a, b in pairs)
        ms = per_call_ms(lambda: apply_update(model, step().sam_grad, lr), STEPS, device)
    except Exception as err:  # noqa: BLE001 - a benchmark reports a failed capture and goes on
        return "-", f"failed: {type(err).__name__}: {str(err)[:80]}"
    return f"{ms:.2f}", "bit-exact" if exact else "differs"


def hvp_per_gradient(model: Any, loss_fn: Any, batch: Any, block: int, device: torch.device) -> float:
    """One HVP inside the tracker's block of `block` vectors, in gradients."""
    from samedge.hvp import HVPOperator
    from samedge.objective import loss_and_grad

    op = HVPOperator(model, loss_fn, batch)
    vectors = torch.randn(op.dim, block, device=device)
    return per_call_ms(lambda: op.matmat(vectors), 3, device) / block / per_call_ms(
        lambda: loss_and_grad(model, loss_fn, batch), 5, device)


def warm_measurement(tracker: Any, model: Any, loss_fn: Any, batch: Any, step: Callable[[], None],
                     device: torch.device) -> str:
    """ms (HVPs) of a measurement warm-started from one 10 training steps earlier."""
    tracker.measure(model, loss_fn, batch)
    for _ in range(10):
        step()
    sync(device)
    start = time.perf_counter()
    warm = tracker.measure(model, loss_fn, batch)
    sync(device)
    return f"{1000 * (time.perf_counter() - start):.0f} ({warm.hvps})"


def task_row(task: str, profile: str, data_dir: Path, peak: float, device: torch.device) -> list[Any]:
    from samedge.config import load_run_config
    from samedge.sam import apply_update, sam_gradient_tensors
    from samedge.tasks import get_task
    from samedge.tracker import EigenTracker

    cfg = load_run_config(REPO / "params.yaml", profile, task, [])
    spec = get_task(task)
    torch.manual_seed(cfg["seed"])
    model = spec.build_model(cfg["model"]).to(device)
    batch = spec.batches(cfg, data_dir, device).batch(0)
    lr, rho = POINT[task]
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    def step(r: float) -> Callable[[], None]:
        return lambda: apply_update(model, sam_gradient_tensors(model, spec.loss, batch, r).sam_grad, lr)

    sam_ms, gd_ms = per_call_ms(step(rho), STEPS, device), per_call_ms(step(0.0), STEPS, device)
    flops = counted_flops(step(rho))
    floor_ms = 1000 * flops / peak
    tracker = EigenTracker(k=cfg["tracker"]["k"], tol=cfg["tracker"]["tol"],
                           max_iters=cfg["tracker"]["max_iters"], seed=cfg["seed"])
    hvp = hvp_per_gradient(model, spec.loss, batch, tracker.k + tracker.guard, device)
    warm = warm_measurement(tracker, model, spec.loss, batch, step(rho), device)
    graph_ms, graph_exact = graphed(model, spec.loss, batch, lr, rho, device) if cuda else ("-", "-")
    ratio = sam_ms / floor_ms
    verdict = "PASS" if ratio <= TARGETS[task] else "MISS"
    peak_gib = f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}" if cuda else "-"
    return [task, f"{sam_ms:.2f}", f"{gd_ms:.2f}", f"{flops / 1e9:.4g}", f"{floor_ms:.2f}", f"{ratio:.2f}",
            f"<= {TARGETS[task]:g} {verdict}", graph_ms, graph_exact, f"{hvp:.2f}", warm, peak_gib]


HEADER = ["task", "SAM ms/step", "GD ms/step", "GFLOP/SAM step", "floor ms", "SAM/floor", "target",
          "CUDA-graph SAM ms/step", "graph vs eager", "HVP/gradient (block)", "warm measurement ms (HVPs)",
          "peak GiB"]


def markdown(rows: list[list[Any]], peak: float, profile: str, device_name: str) -> str:
    lines = [f"Device: {device_name}, torch {torch.__version__}, profile {profile}; "
             f"float32 matmul peak measured here (TF32 off): {peak / 1e12:.1f} TFLOP/s; "
             "floor = counted matmul/conv FLOPs / that peak.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def claims(edge_table: Path) -> str:
    """The paper's claims read off results/edge_agreement.csv: per image task, SAM at rho = 0.1 with
    the largest lr that did not diverge (median lambda_1 / SAM edge), and GD with the largest lr
    whose median lambda_1 / (2/eta) reaches 0.9; each should lie in [0.9, 1.1]."""
    import pandas as pd

    table = pd.read_csv(edge_table)
    kept = table[~table["diverged"].astype(bool)]
    lines = ["| task | claim | lr | median ratio | in [0.9, 1.1] |", "|---|---|---|---|---|"]
    for task in ("mnist", "cifar10"):
        runs = kept[kept["task"] == task]
        sam = runs[runs["rho"] == 0.1].sort_values("lr").tail(1)
        gd = runs[(runs["rho"] == 0) & (runs["gd_ratio_median"] >= 0.9)].sort_values("lr").tail(1)
        for claim, rows, column in (("SAM rho 0.1: lambda_1 / SAM edge", sam, "sam_ratio_median"),
                                    ("GD: lambda_1 / (2/eta)", gd, "gd_ratio_median")):
            if rows.empty:
                lines.append(f"| {task} | {claim} | - | - | MISS (no such run) |")
                continue
            lr, ratio = rows["lr"].iloc[0], rows[column].iloc[0]
            verdict = "PASS" if 0.9 <= ratio <= 1.1 else "MISS"
            lines.append(f"| {task} | {claim} | {lr:g} | {ratio:.3f} | {verdict} |")
    return "\n".join(lines) + "\n"


def packing(results: Path, wall_s: float) -> str:
    """How much the training jobs overlapped in a pipeline run: per task, the jobs' summed seconds
    (Snakemake's benchmark files) and their mean training ms per step (run.json); over all, the
    summed job seconds / the run's wall seconds (the concurrency packing achieved)."""
    import pandas as pd

    from samedge.runs import find_runs, read_run

    records = [read_run(results / "runs", key) for key in find_runs(results / "runs")]
    lines = ["| task | jobs | job seconds (sum) | train ms/step (mean over runs) |", "|---|---|---|---|"]
    total = 0.0
    for folder in sorted(p for p in (results / "benchmarks").iterdir() if p.is_dir()):
        seconds = sum(float(pd.read_csv(tsv, sep="\t")["s"].iloc[0]) for tsv in folder.glob("*.tsv"))
        runs = [run.record for run in records if run.key.task == folder.name]
        per_step = [1000 * r["train_seconds"] / r["steps"] for r in runs if r.get("steps")]
        total += seconds
        mean = f"{sum(per_step) / len(per_step):.2f}" if per_step else "-"
        lines.append(f"| {folder.name} | {len(runs)} | {seconds:.0f} | {mean} |")
    lines.append(f"\nTraining job seconds / pipeline wall seconds: {total:.0f} / {wall_s:.0f} = "
                 f"{total / wall_s:.2f} jobs at once on average.")
    return "\n".join(lines) + "\n"


def drill_runs(params_path: Path, profile: str) -> list[str]:
    """The jobs gpu_check.sh's drills repeat, as "task lr rho run": per task of DRILL_TASKS, SAM at
    the middle lr of its grid and its smallest rho > 0, the task's own seed (a run the DAG made too)."""
    from samedge.config import fmt_value, load_params
    from samedge.runs import RunKey

    grid = load_params(params_path)["profiles"][profile]
    lines = []
    for task in DRILL_TASKS:
        lrs, rhos = sorted(grid[task]["grid"]["lr"]), sorted(r for r in grid[task]["grid"]["rho"] if r > 0)
        key = RunKey(task, lrs[len(lrs) // 2], rhos[0])
        lines.append(f"{task} {fmt_value(key.lr)} {fmt_value(key.rho)} {key.name}")
    return lines


def first_difference(a: Any, b: Any) -> str | None:
    """Where two metrics tables first differ (shape, column, or step and value), or None."""
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return f"shape {a.shape} vs {b.shape}"
    for column in a.columns:
        differs = ~((a[column] == b[column]) | (a[column].isna() & b[column].isna()))
        if differs.any():
            row = differs.idxmax()
            return f"{column} at step {a['step'].iloc[row]}: {a[column].iloc[row]!r} vs {b[column].iloc[row]!r}"
    return None


def same_metrics(label: str, runs: list[Path]) -> str:
    """One markdown row: whether the runs' metrics.csv are bit-identical, timing columns aside
    (pandas reads back the exact floats it wrote), and how often each run resumed."""
    import json

    import pandas as pd

    missing = [str(run) for run in runs if not (run / "metrics.csv").is_file()]
    if missing:
        return f"| {label} | {len(runs)} | - | FAIL: no metrics.csv in {', '.join(missing)} |"
    frames = [pd.read_csv(run / "metrics.csv").drop(columns=TIMING_COLUMNS) for run in runs]
    resumes = "/".join(str(json.loads((run / "run.json").read_text()).get("resumes", "-")) for run in runs)
    found = [d for d in (first_difference(frames[0], other) for other in frames[1:]) if d]
    verdict = f"DIFFERS: {found[0]}" if found else f"bit-identical ({len(frames[0])} rows)"
    return f"| {label} | {len(runs)} | {resumes} | {verdict} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "data", help="prepared data (samedge fetch)")
    parser.add_argument("--profile", default="paper-quick", help="params.yaml profile with the paper's sizes")
    parser.add_argument("--tasks", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--claims", type=Path, metavar="EDGE_AGREEMENT_CSV",
                        help="print only the paper's claims as read off this table (no GPU needed)")
    parser.add_argument("--packing", nargs=2, metavar=("RESULTS_DIR", "WALL_SECONDS"),
                        help="print only how the training jobs of a pipeline run overlapped (no GPU needed)")
    parser.add_argument("--drill-runs", metavar="PROFILE",
                        help="print the jobs gpu_check.sh's drills repeat (task lr rho run), one a line")
    parser.add_argument("--same-metrics", nargs="+", metavar=("LABEL", "RUN_DIR"),
                        help="print one table row: are these runs' metrics bit-identical (timing aside)?")
    args = parser.parse_args(argv)
    if args.drill_runs:
        print("\n".join(drill_runs(REPO / "params.yaml", args.drill_runs)))
        return 0
    if args.same_metrics:
        print(same_metrics(args.same_metrics[0], [Path(p) for p in args.same_metrics[1:]]))
        return 0
    if args.claims:
        print(claims(args.claims), end="")
        return 0
    if args.packing:
        print(packing(Path(args.packing[0]), float(args.packing[1])), end="")
        return 0
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here; nothing to measure")
        return 0
    from samedge.io import atomic_write
    from samedge.train import configure_device

    device = torch.device("cuda")
    configure_device(device)  # TF32 off, as in training
    peak = matmul_peak_flops(device)
    rows = [task_row(task, args.profile, args.data_dir, peak, device) for task in args.tasks]
    table = markdown(rows, peak, args.profile, torch.cuda.get_device_name(device))
    print(table, end="")
    if args.out:
        with atomic_write(args.out) as tmp:
            Path(tmp).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
