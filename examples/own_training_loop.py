"""Your own training loop, the paper's measurements: samedge.monitor.EdgeMonitor.

A plain PyTorch loop (torch.optim.SGD, full batch) on a small regression problem; the monitor is
called once per step at the current weights, before the update, and measures every `every` steps:
the loss, ||g||, the top-3 Hessian eigenvalues, 2/eta, the SAM edge, the alignments and the HVPs
spent. It writes the same metrics.csv and run.json as `samedge train`, so `samedge aggregate` and
`samedge figure` read them.

    python examples/own_training_loop.py --out results/own_loop
    samedge aggregate --runs-dir results/own_loop/runs --out-dir results/own_loop
    samedge figure grids --results results/own_loop --out results/own_loop/figures
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from samedge.monitor import EdgeMonitor
from samedge.runs import RunKey, run_dir


def main(out: Path, lr: float = 2.0, steps: int = 300, every: int = 30) -> Path:
    torch.manual_seed(0)
    x = torch.randn(256, 16)
    y = torch.tanh(x @ torch.randn(16, 32) / 4) @ torch.randn(32, 4) / 32 ** 0.5
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))
    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs - targets).pow(2).mean()

    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    monitor = EdgeMonitor(lr=lr, rho=0.0, every=every)
    for step in range(steps):
        row = monitor.observe(step, model, loss_fn, (x, y))   # at w_t, before the update
        if row is not None:
            print(f"step {step:4d}  loss {row['loss']:.4f}  lambda_1 {row['lambda_1']:.3f}  2/eta {row['gd_edge']:.3f}")
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    return monitor.write(run_dir(out / "runs", RunKey("own", lr, 0.0)), task="own")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/own_loop"), help="(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=300, help="training steps (default: %(default)s)")
    print("wrote", main(parser.parse_args().out, steps=parser.parse_args().steps))
