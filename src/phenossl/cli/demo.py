"""`phenossl demo`: the whole pipeline on a synthetic plate."""

from __future__ import annotations

import argparse
from pathlib import Path

from phenossl.cli._common import (
    add_command,
    nonnegative_int,
    positive_int,
    run_with_progress,
    writable_folder,
)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "demo", _cmd_demo)
    p.add_argument("--out", type=Path, default=Path("phenossl-demo"), help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--epochs",
        type=nonnegative_int,
        default=3,
        help="MoCoV2+ fine-tune epochs (default 3; 0 skips the fine-tune)",
    )
    p.add_argument(
        "--input-size",
        type=positive_int,
        default=48,
        help="input size of the random-init model (default 48); the shipped model and its "
        "fine-tune use the size it was trained at",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def _cmd_demo(args: argparse.Namespace) -> int:
    """synthetic plate -> cells -> embeddings -> clusters -> report, in a few CPU minutes

    End-to-end demo on a synthetic plate: nocodazole (4 concentrations) vs DMSO cells cropped at the
    shipped model's crop size, KMeans K=2 on the held-out test cells, and the AMI of a random-init
    VGG13-BN, the shipped model phenossl-cells and a short MoCoV2+ fine-tune of it on the training
    split, each next to its randomised-label control.
    """

    from phenossl.clustering_report import format_ami
    from phenossl.demo import iter_demo

    writable_folder(args.out, "--out")
    report = run_with_progress(
        iter_demo(
            args.out,
            seed=args.seed,
            device=args.device,
            train_epochs=args.epochs,
            input_size=args.input_size,
            overwrite=args.overwrite,
        ),
        args,
        "demo",
        percent=True,
    )
    models = report.get("models") or {"random": {"label": "random-init model"}}
    width = max(len(m["label"]) for m in models.values())
    for summary in models.values():
        print(f"{summary['label']:<{width}}  {format_ami({**report, **summary})}")
    print(f"report -> {args.out / 'report' / 'report.json'}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `demo`."""
    _add_demo(sub)
