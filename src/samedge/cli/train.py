"""`samedge train`: one run of a task at one learning rate eta with an optimizer (default SAM at
radius rho, GD at rho = 0; --optimizer momentum/adam/rmsprop/usam or one of your own),
measuring the Hessian's top eigenvalues as it goes. Writes OUT/metrics.csv and OUT/run.json, last
and atomically; checkpoints go to a folder of their own and are removed when the run ends.

Every input is checked before anything is written: a bad value, key, profile, missing data, an
output folder that cannot be written or that another run holds is one line naming it, exit 2.
Started again with the same command after a kill, a run resumes from its checkpoint.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from samedge.errors import ConfigError, SamedgeError

def resolve_device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here (use --device auto or cpu)")
    return torch.device(name)


def load_data(args: argparse.Namespace, cfg: dict, device: Any) -> Any:
    """The run's batches; a config its data cannot satisfy (e.g. more examples than there are) is a ConfigError."""
    from samedge.batches import batch_source

    try:
        return batch_source(args.task, cfg, Path(args.data_dir), device)
    except SamedgeError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{args.task} data in {args.data_dir}: {exc}") from exc


def build_spec(args: argparse.Namespace) -> Any:
    import torch

    from samedge.config import check_data_size, check_lr_rho, check_schedule, load_params, load_run_config
    from samedge.optimizers import build
    from samedge.rundir import check_checkpoint_dir, check_out_dir, default_checkpoint_dir
    from samedge.runs import check_own_out
    from samedge.tasks import get_task
    from samedge.tasks.contract import check_task
    from samedge.train import RunSpec

    check_lr_rho(args.lr, args.rho)
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: expected a number of threads >= 1")
    out_dir = Path(args.out)
    check_out_dir(out_dir)
    checkpoint_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else default_checkpoint_dir(out_dir)
    check_checkpoint_dir(checkpoint_dir, out_dir)
    seed = [] if args.seed is None else [f"seed={args.seed}"]
    cfg = load_run_config(args.params, args.profile, args.task, [*args.set, *seed], args.optimizer)
    check_schedule(cfg)
    optimizer = build(cfg["optimizer"], args.lr, args.rho)
    check_own_out(out_dir, {"task": args.task, "lr": args.lr, "rho": args.rho, "seed": cfg["seed"], "config": cfg})
    check_data_size(args.task, cfg, args.data_dir, "--params")
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = load_data(args, cfg, device)
    check_task(get_task(args.task), cfg, data, device)  # a broken task contract: one line, before any output
    profile = args.profile or load_params(args.params)["profile"]
    return RunSpec(args.task, args.lr, args.rho, profile, cfg, out_dir, checkpoint_dir, device, data, optimizer)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    from samedge.rundir import claim
    from samedge.train import run as train

    spec = build_spec(args)
    with claim(spec.out_dir, spec.checkpoint_dir):
        record = train(spec)
    print(f"{record['status']}: {args.task} {spec.cfg['optimizer']['name']} lr={args.lr:g} rho={args.rho:g} seed={spec.cfg['seed']}, "
          f"{record['steps']} steps, {record['measurements']} measurements -> {spec.out_dir}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train one task at one eta and rho, tracking the Hessian's top eigenvalues",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True,
                   help="a task of the profile: mnist, cifar10, shakespeare, or one named under `tasks:` in params.yaml")
    p.add_argument("--lr", required=True, type=float, help="learning rate eta (> 0); GD's edge is 2/eta")
    p.add_argument("--rho", type=float, default=0.0,
                   help="SAM radius rho of the SAM family (sam, usam; >= 0; default 0 = plain GD)")
    p.add_argument("--optimizer", default=None,
                   help="sam, usam, momentum, adam, rmsprop or one named under `optimizers:` in params.yaml "
                        "(default: the task's `optimizer:` block, else sam); settings with --set optimizer.KEY=VALUE")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the initialisation and batches (default: the task's `seed` in params.yaml)")
    p.add_argument("--out", required=True,
                   help="this run's own folder for metrics.csv and run.json, e.g. results/quick/runs/mnist/lr0.3_rho0.1")
    p.add_argument("--profile", default=None, help="profile of params.yaml (default: its `profile:` key)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the task's config, e.g. train.max_steps=100 (YAML value; repeatable)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to train (default: auto = cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--params", default="params.yaml", help="the params file (default: %(default)s)")
    p.add_argument("--data-dir", default="data", help="where `samedge fetch` put the data (default: %(default)s)")
    p.add_argument("--checkpoint-dir", default=None,
                   help="folder for this run's checkpoint, outside --out (default: OUT.ckpt beside OUT)")
    p.set_defaults(func=run)
