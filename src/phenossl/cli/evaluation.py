"""`phenossl evaluate`: a checkpoint's linear-probe, kNN and fine-tuning accuracy on a dataset."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from phenossl.cli._common import (
    CLIError,
    add_command,
    positive_float,
    positive_int,
    run_with_progress,
    writable_file,
)

PROTOCOLS = ("linear", "knn", "finetune")
# the names of phenossl.data.datasets.DATASETS, written out so `--help` needs no torch import
_DATASET_HELP = "cifar10, cifar100, mnist, imagenet100 or cropset"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `evaluate`."""
    p = add_command(sub, "evaluate", _cmd_evaluate)
    p.add_argument("checkpoint", type=Path, help="phenossl checkpoint (.pt)")
    p.add_argument("--dataset", required=True, help=_DATASET_HELP)
    p.add_argument("--data-root", required=True, type=Path, help="where the dataset lives")
    p.add_argument(
        "--protocol",
        choices=[*PROTOCOLS, "all"],
        default="linear",
        help="linear probe, kNN, fine-tuning, or all three (default linear)",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="epochs of the linear probe and of fine-tuning (default 100 and 30)",
    )
    p.add_argument(
        "--lr", type=positive_float, default=None, help="learning rate (default 0.1 / 0.01)"
    )
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--k", type=positive_int, default=20, help="kNN neighbours (default 20)")
    p.add_argument("--temperature", type=positive_float, default=0.07, help="kNN temperature")
    p.add_argument(
        "--augmentation",
        default=None,
        help="fine-tuning augmentation: a phenossl.augment composition name (default none)",
    )
    p.add_argument("--train-split", default="train", help="split to train on (default train)")
    p.add_argument("--test-split", default="test", help="split to test on (default test)")
    p.add_argument(
        "--limit", type=positive_int, default=None, help="use N training images (seeded)"
    )
    p.add_argument(
        "--test-limit", type=positive_int, default=None, help="use N test images (seeded)"
    )
    p.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, repeatable (e.g. label_column=treatment for a CropSet)",
    )
    p.add_argument(
        "--input-size", type=positive_int, default=None, help="resize images before the model"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the results")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """checkpoint -> linear-probe / kNN / fine-tuning accuracy on a labelled dataset

    Evaluate a phenossl checkpoint's backbone on a labelled dataset: a linear classifier and a
    weighted kNN on frozen features (computed once), and/or fine-tuning of the whole network. Prints
    top-1 and a per-class summary; --out writes every metric and the per-class accuracies as JSON.
    Accuracies are fractions in [0, 1].
    """

    from phenossl._json import write_json
    from phenossl.data.datasets import build_dataset
    from phenossl.models.checkpoint import load_backbone
    from phenossl.training.evaluate import protocols as ev

    if args.out is not None:
        writable_file(args.out, "--out")
    backbone, meta = load_backbone(args.checkpoint)
    options = parse_options(args.data_option)
    train, test = (
        build_dataset(
            args.dataset, args.data_root, split=split, limit=limit, limit_seed=args.seed, **options
        )
        for split, limit in ((args.train_split, args.limit), (args.test_split, args.test_limit))
    )
    _check_datasets(train, test, backbone.in_channels)
    protocols = PROTOCOLS if args.protocol == "all" else (args.protocol,)
    given = _given(epochs=args.epochs, lr=args.lr)
    settings: dict[str, dict[str, Any]] = {
        "linear": {"batch_size": args.batch_size, **given},
        "knn": {"k": args.k, "temperature": args.temperature},
        "finetune": {"batch_size": args.batch_size, "augmentation": args.augmentation, **given},
    }
    gen = ev.iter_protocols(
        backbone,
        train,
        test,
        linear=settings["linear"] if "linear" in protocols else None,
        knn=settings["knn"] if "knn" in protocols else None,
        finetune=settings["finetune"] if "finetune" in protocols else None,
        batch_size=args.batch_size,
        device=args.device,
        input_size=args.input_size,
        seed=args.seed,
    )
    results = run_with_progress(gen, args, "evaluate", percent=True).scores

    for name, result in results.items():
        print(format_result(name, result, train.classes))
    if args.out is not None:
        report = {
            "checkpoint": str(args.checkpoint.resolve()),
            "checkpoint_metadata": {
                k: meta.get(k) for k in ("method", "backbone", "epoch", "seed")
            },
            "dataset": args.dataset,
            "data_root": str(args.data_root.resolve()),
            "splits": {"train": args.train_split, "test": args.test_split},
            "n_train": len(train),
            "n_test": len(test),
            "classes": train.classes,
            "settings": {k: v for k, v in vars(args).items() if k not in ("handler", "out")},
            "protocols": {name: r.to_dict(train.classes) for name, r in results.items()},
        }
        write_json(args.out, report, parents=True)
        print(f"results -> {args.out}")
    return 0


def _check_datasets(train: Any, test: Any, in_channels: int) -> None:
    if not train.classes:
        raise CLIError(
            f"dataset {train.name!r} has no labels; for a CropSet pass "
            "--data-option label_column=COLUMN"
        )
    if train.classes != test.classes:
        raise CLIError("the train and test splits have different classes")
    if train.channels != in_channels:
        raise CLIError(
            f"the checkpoint's backbone takes {in_channels} channel(s) but {train.name!r} "
            f"images have {train.channels}"
        )


def parse_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; values become int, float, None or stay strings."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--data-option {item!r}: expected KEY=VALUE")
        options[key] = _value(text)
    return options


def _value(text: str) -> Any:
    if text.lower() in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def format_result(name: str, result: Any, classes: list[str]) -> str:
    """One line of top-1/top-5, one of the per-class accuracy summary."""
    head = f"{name}: top-1 {100 * result.top1:.2f} %"
    if result.top5 is not None:
        head += f"   top-5 {100 * result.top5:.2f} %"
    pairs = [(a, c) for a, c in zip(result.per_class, classes) if not math.isnan(a)]
    if not pairs:
        return head
    worst, best = min(pairs), max(pairs)
    mean = sum(a for a, _ in pairs) / len(pairs)
    return (
        f"{head}\n  per-class accuracy: mean {100 * mean:.2f} %, lowest {worst[1]} "
        f"{100 * worst[0]:.2f} %, highest {best[1]} {100 * best[0]:.2f} %"
    )
