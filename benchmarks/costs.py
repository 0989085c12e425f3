"""Section 3 (time): HVP time / gradient time and SAM step time / GD step time on the paper's MLP.

Each ratio is the median over repeats of two calls timed back to back (common.paired_ratio), on
MNIST examples as one batch. Beside the measured ratios: the floor that matrix-multiply arithmetic
sets for an exact HVP of this network, and a torch.profiler split of where the time goes.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from common import Section, fmt, images, mlp, n_params, paired_ratio, timed, tracker_block
from samedge.hvp import HVPOperator
from samedge.models import mse_loss
from samedge.objective import loss_and_grad
from samedge.sam import sam_step

MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}


def matmul_floor(layer_sizes: list[int], block: int) -> float:
    """Multiply-adds of an exact HVP per vector over those of a gradient, for a ReLU MLP with a
    squared loss (ReLU has no curvature, so only the linear layers count).

    Gradient: forward X W, backward dW = X^T dY and dX = dY W^T (no dX for the first layer).
    Tangent pass of forward-over-reverse, per vector: X' W + X W', X'^T dY + X^T dY',
    dY' W^T + dY W'^T, with X' = 0 at the input layer. The primal gradient is shared by a block.
    """
    macs = [a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:])]
    grad = 2 * sum(macs) + sum(macs[1:])
    tangent = 2 * macs[0] + 6 * sum(macs[1:])
    return (grad + block * tangent) / (block * grad)


def matmul_seconds(fn: Callable[[], object]) -> tuple[float, float]:
    """(total, matrix-multiply) CPU seconds of one call, by torch.profiler."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    return total, sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / 1e6


def section(sec: Section, width: int, depth: int, n: int, repeats: int, data_dir: Path) -> None:
    block = tracker_block()
    x, y = images("mnist", n, data_dir)
    data = (x, y)
    model = mlp(width, depth)
    op = HVPOperator(model, mse_loss, data)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(op.dim, 1, generator=gen)
    V = torch.randn(op.dim, block, generator=gen)
    grad = lambda: loss_and_grad(model, mse_loss, data)  # noqa: E731
    grad_s = timed(grad)[1]
    sec.lines += ["", "### HVP / gradient and SAM / GD", ""]
    sec.lines.append(f"MLP (width {width}, depth {depth}, {n_params(model):,} parameters) on {n} MNIST "
                     f"examples as one batch; medians of {repeats} back-to-back pairs; one gradient took "
                     f"about {fmt(grad_s)} s here.")
    single, singles = paired_ratio(lambda: op.matmat(v), grad, repeats)
    sec.target("HVP time / gradient time (one vector: double backprop)", single, 2.0,
               note="pairs " + ", ".join(fmt(r) for r in singles))
    per_vec, blocks = paired_ratio(lambda: op.matmat(V), grad, repeats)
    per_vec /= block
    sec.target(f"HVP time / gradient time (per vector in a block of {block}: forward-over-reverse, vmapped)",
               per_vec, 2.0, note="the tracker's first pass sends k + guard vectors; pairs "
                                  + ", ".join(fmt(r / block) for r in blocks))
    _explain_hvp(sec, [784] + [width] * depth + [10], block, single, per_vec, grad, lambda: op.matmat(V))
    lr = 1e-6  # the step must update the weights as training does; a tiny lr keeps the point fixed
    sam, sams = paired_ratio(lambda: sam_step(model, mse_loss, data, lr, 0.1),
                             lambda: sam_step(model, mse_loss, data, lr, 0.0), repeats)
    sec.target("SAM step time / GD step time (rho 0.1 vs rho 0)", sam, 2.05,
               note="pairs " + ", ".join(fmt(r) for r in sams))


def _explain_hvp(sec: Section, layer_sizes: list[int], block: int, single: float, per_vec: float,
                 grad: Callable[[], object], hvp_block: Callable[[], object]) -> None:
    floor1, floor_b = matmul_floor(layer_sizes, 1), matmul_floor(layer_sizes, block)
    sec.add("matrix-multiply floor of HVP / gradient, one vector", floor1,
            note="multiply-adds of an exact HVP over a gradient's, this MLP")
    sec.add(f"matrix-multiply floor of HVP / gradient, per vector in a block of {block}", floor_b)
    g_total, g_mm = matmul_seconds(grad)
    h_total, h_mm = matmul_seconds(hvp_block)
    sec.add("profiled: block HVP matmul seconds per vector / gradient matmul seconds", h_mm / block / g_mm,
            note=f"gradient {fmt(g_mm)} of {fmt(g_total)} s in matmuls; block {fmt(h_mm)} of {fmt(h_total)} s")
    sec.add("profiled: share of the block HVP outside matmuls", 1 - h_mm / h_total,
            note="elementwise tangent ops (add, threshold_backward), zero fills, vmap plumbing")
    if single > 2.0 or per_vec > 2.0:
        sec.lines += ["",
            f"Why HVP / gradient exceeds 2.0: an exact HVP of this ReLU MLP needs {fmt(floor1)} times a "
            f"gradient's multiply-adds for one vector (the tangent pass alone is about twice a gradient's "
            f"matrix products, since every layer's product gains a second one), and {fmt(floor_b)} per vector "
            f"in a block of {block}, where the primal gradient is computed once (double backprop and "
            f"forward-over-reverse need the same products). Measured: {fmt(single)} and {fmt(per_vec)}. "
            f"The profiler puts the block's matmuls at "
            f"{fmt(h_mm / block / g_mm)} times the gradient's per vector (batched bmm runs a little slower than "
            f"the gradient's mm) and {1 - h_mm / h_total:.0%} of the block's time outside matmuls. Larger blocks "
            f"lower the floor (toward {fmt(matmul_floor(layer_sizes, 10 ** 6))}), so 2.0 is reachable only per "
            "vector of wide blocks, not for a single vector."]
