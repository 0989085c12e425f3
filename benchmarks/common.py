"""Shared pieces of the benchmark scripts: problems, timing, result records and the verdicts.

Every figure is a ratio of two quantities measured in the same process (or the same run), so that
the load other users put on a shared machine cancels to first order; absolute seconds are kept
only as context.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import Tensor, nn

from samedge.data import load_task
from samedge.models import MLP, mse_loss
from samedge.sam import sam_step
from samedge.tracker import EigenTracker

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Record:
    """One line of results.csv: a measured value, the target it is held against (if any), and how."""

    section: str
    item: str
    value: float
    unit: str = ""
    target: str = ""
    status: str = ""
    note: str = ""

    def row(self) -> dict[str, Any]:
        return {"section": self.section, "item": self.item, "value": self.value, "unit": self.unit,
                "target": self.target, "status": self.status, "note": self.note}


@dataclass
class Section:
    """A section of results.md: its records, tables (markdown lines) and explanations."""

    title: str
    records: list[Record] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def add(self, item: str, value: float, unit: str = "", note: str = "") -> Record:
        rec = Record(self.title, item, value, unit, note=note)
        self.records.append(rec)
        return rec

    def target(self, item: str, value: float, bound: float, unit: str = "", note: str = "") -> Record:
        """A record held against `value <= bound`: PASS or MISS (NaN, i.e. not measured, is a MISS)."""
        rec = self.add(item, value, unit, note)
        rec.target = f"<= {fmt(bound)}"
        rec.status = "PASS" if value <= bound else "MISS"
        return rec


def bound_ratio(bound: float) -> float:
    """Training time per unit of tracker time at which the tracker's share of a run equals `bound`."""
    return (1 - bound) / bound


def fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, int):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.2e}"
    return f"{x:.{digits}g}"


def _cell(value: Any) -> str:
    return (value if isinstance(value, str) else fmt(value)).replace("|", "\\|")  # a bare pipe ends a cell


def md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def paired_ratio(num: Callable[[], Any], den: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median over `repeats` of time(num) / time(den), the two run back to back each time.

    Pairing adjacent calls cancels slow drifts of the machine's load; the median drops bursts.
    A first untimed call of each warms caches and allocators.
    """
    num(), den()
    ratios = []
    for _ in range(repeats):
        t_num = timed(num)[1]
        t_den = timed(den)[1]
        ratios.append(t_num / t_den)
    return statistics.median(ratios), ratios


@contextmanager
def hvp_clock() -> Iterator[list[float]]:
    """[seconds, vectors] spent in and sent through HVPOperator.matmat while the block runs (every
    HVP goes through it): a solve's time splits into operator passes and its own linear algebra."""
    from samedge.hvp import HVPOperator

    box = [0.0, 0]
    original = HVPOperator.matmat

    def clocked(self, vectors):
        start = time.perf_counter()
        try:
            return original(self, vectors)
        finally:
            box[0] += time.perf_counter() - start
            box[1] += vectors.shape[1]

    with mock.patch.object(HVPOperator, "matmat", clocked):
        yield box


def images(task: str, n: int, data_dir: Path) -> tuple[Tensor, Tensor]:
    """The first n prepared training examples of an image task (mnist, cifar10)."""
    data = load_task(task, data_dir, n)
    return data.x_train, data.y_train


def mlp(width: int, depth: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(width=width, depth=depth)


def train(model: nn.Module, data: Any, steps: int, lr: float, rho: float) -> None:
    """Plain SAM steps, to move a model off its initialisation (or between two measurements)."""
    for _ in range(steps):
        sam_step(model, mse_loss, data, lr, rho)


def tracker_block() -> int:
    """Vectors in the first pass of a tracker's solve (k + guard at EigenTracker's defaults)."""
    tracker = EigenTracker()
    return tracker.k + tracker.guard


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
