"""Beyond the paper: each optimizer's step cost against GD's.

One step = the optimizer's gradients at w_t and its update (samedge.optimizers), on the paper's MLP
(random MNIST-shaped inputs: the cost does not depend on the values). Each ratio is the median of
back-to-back pairs (common.paired_ratio) of that step and a GD step on the same model and batch,
so the machine's load cancels. Expected: SAM and USAM ~2 (two gradients), momentum, Adam and
RMSprop ~1 (one gradient plus an elementwise update). Each optimizer starts from the same weights.
(A preconditioned optimizer's measurement also costs a second, k = 1 eigen solve of P^-1 H; its
HVPs are counted in metrics.csv's hvp_count.)

    python benchmarks/optimizer_costs.py [--width 200 --depth 3 --n 1000 --repeats 15] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, mlp, paired_ratio  # noqa: E402
from samedge import optimizers  # noqa: E402
from samedge.models import mse_loss  # noqa: E402

CASES = [({"name": "sam"}, 0.1), ({"name": "usam"}, 0.1), ({"name": "momentum"}, 0.0),
         ({"name": "momentum", "nesterov": True}, 0.0), ({"name": "adam"}, 0.0), ({"name": "rmsprop"}, 0.0)]
LR = 0.01


def stepper(block: dict, rho: float, model: torch.nn.Module, data) -> tuple[object, object]:
    opt = optimizers.build(block, LR, rho)
    opt.bind(model)
    return opt, lambda: opt.update(model, opt.gradients(model, mse_loss, data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    data = (torch.randn(args.n, 1, 28, 28, generator=gen), torch.randint(0, 10, (args.n,), generator=gen))
    model = mlp(args.width, args.depth)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    rows = []
    for block, rho in CASES:
        model.load_state_dict(start)
        _, gd = stepper({"name": "sam"}, 0.0, model, data)
        _, step = stepper(block, rho, model, data)
        ratio, ratios = paired_ratio(step, gd, args.repeats)
        rows.append([optimizers.label(block) or "sam", rho, f"{ratio:.2f}", f"{min(ratios):.2f}-{max(ratios):.2f}"])
    load = os.getloadavg()
    lines = [f"MLP width {args.width} depth {args.depth}, {args.n} examples as one batch, 1 thread, "
             f"median of {args.repeats} back-to-back pairs; load average {load[0]:.1f} on {os.cpu_count()} cores", "",
             *md_table(["optimizer", "rho", "step time / GD step time (median)", "range over pairs"], rows)]
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
