"""`samedge train`: one task x lr x rho run. Every input is checked before anything is written."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from samedge.batches import batch_source
from samedge.config import TASKS, load_params, load_run_config
from samedge.train import RunSpec, run


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here (use --device auto or cpu)")
    return torch.device(name)


def check_schedule(cfg: dict) -> None:
    train = cfg["train"]
    if not (train["max_steps"] or train["time_budget_s"]):
        raise ValueError("train: set max_steps or time_budget_s, or the run never ends")
    if not (train["measure_every_steps"] or train["measure_every_s"]):
        raise ValueError("train: set measure_every_steps or measure_every_s, or nothing is measured")


def build_spec(args: argparse.Namespace) -> RunSpec:
    if not args.lr > 0:
        raise ValueError(f"--lr: expected a positive learning rate, got {args.lr}")
    if not args.rho >= 0:
        raise ValueError(f"--rho: expected rho >= 0, got {args.rho}")
    cfg = load_run_config(args.params, args.profile, args.task, args.set)
    check_schedule(cfg)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out: {out_dir} exists and is not a directory")
    checkpoint_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else out_dir.with_name(out_dir.name + ".ckpt")
    data = batch_source(args.task, cfg, Path(args.data_dir), device)
    profile = args.profile or load_params(args.params)["profile"]
    return RunSpec(args.task, args.lr, args.rho, profile, cfg, out_dir, checkpoint_dir, device, data)


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    try:
        spec = build_spec(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"samedge train: error: {exc}", file=sys.stderr)
        return 2
    record = run(spec)
    print(f"{record['status']}: {args.task} lr={args.lr:g} rho={args.rho:g}, {record['steps']} steps, "
          f"{record['measurements']} measurements -> {spec.out_dir}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train one task x lr x rho and log the Hessian's top eigenvalues",
                              description=__doc__)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--lr", required=True, type=float, help="learning rate eta (> 0)")
    p.add_argument("--rho", required=True, type=float, help="SAM radius (0 = GD)")
    p.add_argument("--profile", default=None, help="profile in params.yaml (default: its `profile:` key)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of this task, e.g. train.max_steps=100 (repeatable)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    p.add_argument("--data-dir", default="data", help="where `samedge fetch` put the data (default: data)")
    p.add_argument("--checkpoint-dir", default=None, help="default: OUT.ckpt beside OUT")
    p.add_argument("--out", required=True, help="run directory for metrics.csv and run.json")
    p.set_defaults(func=main)
