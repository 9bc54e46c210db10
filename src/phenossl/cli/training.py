"""`phenossl train`: train an SSL model from a config in training/."""

from __future__ import annotations

import argparse
from pathlib import Path

from phenossl.cli._common import add_command, add_overrides, run_with_progress, writable_folder


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", _cmd_train)
    p.add_argument("--config", required=True, type=Path, help="training config (YAML)")
    add_overrides(
        p,
        "override a config value by dotted key, value parsed as YAML (repeat), e.g. "
        "--set optim.lr=0.1 --set augmentation.0.hue=0.5",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run folder (default: runs/<config name>, with a _smoke suffix for --smoke)",
    )
    p.add_argument(
        "--smoke", action="store_true", help="apply the config's smoke section (tiny, fast run)"
    )
    p.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="start over instead of resuming from the run folder's last checkpoint",
    )
    p.add_argument(
        "--device",
        default=None,
        help="auto (cuda > mps > cpu), cpu, cuda, cuda:N (default: config)",
    )


def _cmd_train(args: argparse.Namespace) -> int:
    """train an SSL backbone from a YAML config (training/*.yaml)

    Train a self-supervised backbone. The run folder (--out) gets config.yaml, metrics.jsonl,
    checkpoints/last.pt (every epoch) and final.pt, which `phenossl embed --model` takes. Running
    the same command again resumes an interrupted run.
    """

    from phenossl.training.train.config import load_config, parse_overrides
    from phenossl.training.train.optim import describe_optimizer
    from phenossl.training.train.trainer import describe_precision, iter_train

    overrides = parse_overrides(args.overrides)
    if args.device is not None:
        overrides.append(("run.device", args.device))
    config = load_config(args.config, overrides=overrides, smoke=args.smoke)
    out = args.out or Path("runs") / (args.config.stem + ("_smoke" if args.smoke else ""))
    writable_folder(out, "--out")
    print(
        f"training {config.method.name} / {config.model.backbone} on {config.data.dataset} "
        f"for {config.optim.epochs} epochs -> {out}"
    )
    print(describe_optimizer(config.optim))
    print(describe_precision(config))
    final = run_with_progress(iter_train(config, out, resume=args.resume), args, "train", "step")
    print(f"final checkpoint -> {final}")
    print(f"metrics -> {out / 'metrics.jsonl'}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `train`."""
    _add_train(sub)
