"""The GPU check in one command: embedding and training throughput, and every method's loss curve.

On one CUDA GPU (at most 8 minutes on an H100 or H200), with AMP and channels_last:

1. **Embedding**: ``phenossl.embed`` of VGG13-BN and ResNet50 at 196 px, cells/s, against a bare
   ``model(x)`` loop on the same batches (``bench_embedding.bench_model``). Target: VGG13-BN at
   least 10,000 cells/s on an H100.
2. **Training**: the trainer's views/s for SimCLR / ResNet18 (CIFAR stem) at 32 px and
   MoCoV2+ / VGG13-BN at 68 and 196 px, against a bare forward+backward loop of the same backbone
   and batch (``bench_training.bench_case``). Target: within 0.9 of the bare loop.
3. **Methods**: a 3-epoch run of each of the 13 methods from its CIFAR preset (optimiser,
   learning rate, batch, heads) on synthetic CIFAR-format data (``write_cifar_like``: coloured
   stripes), one warm-up epoch so the last two run at the preset's peak rate. Checked: every
   logged loss is finite, and the test-set features of the final backbone do not collapse
   (``phenossl.training.evaluate.collapse.collapse_stats``: effective rank, per-dimension std).

Writes ``benchmarks/results/gpu_check.json``, prints one line per measurement, and exits 0 when
every loss is finite and no method collapses, 1 otherwise (the throughput targets are reported,
not enforced), 2 without CUDA (one line on stderr).

    python benchmarks/gpu_check.py                          # the real check, on a CUDA machine
    python benchmarks/gpu_check.py --device cpu --tiny      # dry run of every piece, tiny scale
    python benchmarks/gpu_check.py --parts methods --methods simclr,ressl
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

# the sibling benchmarks, reused as they are
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_embedding
import bench_training
from _common import write_json

import phenossl
from phenossl.data.datasets import build_dataset, write_cifar_like
from phenossl.ssl.methods import METHODS
from phenossl.training.evaluate.collapse import collapse_stats
from phenossl.training.train.config import TrainConfig
from phenossl.training.train.optim import optimizer_summary
from phenossl.training.train.trainer import train

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_check.json"
PARTS = ("embedding", "training", "methods")
EMBED_TARGET_CELLS_PER_S = 10_000.0  # VGG13-BN at 196 px on an H100
TRAIN_TARGET_RATIO = 0.9  # trainer views/s over the bare forward+backward loop
TIME_LIMIT_S = 480.0


@dataclass(frozen=True)
class Scale:
    """Sizes of one scale: the real GPU check or the tiny CPU dry run."""

    embed_size: int
    embed_batch: int
    embed_batches: int
    train_sizes: tuple[int, int, int]  # SimCLR, MoCoV2+ small, MoCoV2+ large
    train_batch: int | None  # None: each case's GPU batch (512 / 128)
    train_steps: int
    repeats: int
    n_train: int
    n_test: int
    method_batch: int | None  # None: the preset's batch (512, or 256 for DINO and VICReg)
    method_size: int
    epochs: int = 3
    backbone: str = "resnet18"  # of the method runs (with the CIFAR stem when a ResNet)


GPU = Scale(196, 256, 20, (32, 68, 196), None, 30, 3, 4096, 1024, None, 32)
TINY = Scale(32, 2, 1, (16, 32, 40), 4, 2, 1, 32, 16, 8, 16)


def require_device(name: str) -> torch.device:
    """The device to check; exits with status 2 and one line when CUDA is asked but absent."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"gpu_check: CUDA is not available (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda}); run it on a GPU machine, or use --device cpu --tiny for a "
            "dry run",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return device


def check_embedding(scale: Scale, device: torch.device) -> list[dict[str, Any]]:
    """``phenossl.embed`` against a bare ``model(x)`` loop, VGG13-BN and ResNet50."""
    args = argparse.Namespace(
        size=scale.embed_size,
        batch_size=scale.embed_batch,
        batches=scale.embed_batches,
        repeats=scale.repeats,
        uint8=False,
    )
    rows = []
    for name in ("vgg13_bn", "resnet50"):
        row = bench_embedding.bench_model(name, args, device)
        row.update(size=scale.embed_size, batch_size=scale.embed_batch)
        if name == "vgg13_bn":
            row["target_cells_per_s"] = EMBED_TARGET_CELLS_PER_S
            row["meets_target"] = row["embed_cells_per_s"] >= EMBED_TARGET_CELLS_PER_S
        rows.append(row)
        print(
            f"embed {name:>9} {scale.embed_size} px: {row['embed_cells_per_s']:10.1f} cells/s "
            f"(bare {row['bare_cells_per_s']:10.1f}, ratio {row['ratio']:.3f})"
        )
    return rows


def training_cases(scale: Scale) -> list[bench_training.Case]:
    """SimCLR/ResNet18 and MoCoV2+/VGG13-BN (two sizes), at this scale's image sizes."""
    cases = {case.name: case for case in bench_training.CASES}
    simclr, moco = cases["simclr_resnet18"], cases["mocov2plus_vgg13"]
    small, mid, large = scale.train_sizes
    return [
        replace(simclr, cuda_size=small, cpu_size=small),
        replace(moco, name=f"mocov2plus_vgg13_{mid}", cuda_size=mid, cpu_size=mid),
        replace(moco, name=f"mocov2plus_vgg13_{large}", cuda_size=large, cpu_size=large),
    ]


def check_training(
    scale: Scale, device: torch.device, cases: list[bench_training.Case] | None = None
) -> list[dict[str, Any]]:
    """The trainer's views/s against the bare forward+backward loop of the same backbone."""
    args = argparse.Namespace(
        full=False, batch_size=scale.train_batch, steps=scale.train_steps, repeats=scale.repeats
    )
    rows = []
    for case in training_cases(scale) if cases is None else cases:
        row = bench_training.bench_case(case, args, device)
        row["target_ratio"] = TRAIN_TARGET_RATIO
        row["meets_ratio_target"] = row["ratio_vs_backbone"] >= TRAIN_TARGET_RATIO
        rows.append(row)
        print(
            f"train {case.name:>20} {row['size']:>3} px batch {row['batch_size']:>3}: "
            f"{row['trainer_views_per_s']:10.1f} views/s (bare backbone "
            f"{row['bare_backbone_views_per_s']:10.1f}, ratio {row['ratio_vs_backbone']:.3f})"
        )
    return rows


def method_config(name: str, root: Path, scale: Scale, device: torch.device) -> TrainConfig:
    """``name``'s CIFAR preset on the synthetic data, ``scale.epochs`` epochs, 1 warm-up."""
    method: dict[str, Any] = {"name": name}
    if name == "deepclusterv2" and scale.n_train < 3000:  # k-means: one image per prototype
        method["num_prototypes"] = min(8, scale.n_train)
    optim: dict[str, Any] = {"epochs": scale.epochs, "warmup_epochs": 1}
    if scale.method_batch is not None:
        optim["batch_size"] = scale.method_batch
    return TrainConfig.from_dict(
        {
            "data": {"dataset": "cifar10", "root": str(root)},
            "model": {"backbone": scale.backbone, "cifar_stem": scale.backbone.startswith("res")},
            "method": method,
            "augmentation": [{"name": "cifar", "size": scale.method_size}],
            "optim": optim,
            "run": {"device": str(device), "log_every": 1, "checkpoint_every": 10**9},
        }
    )


def check_method(name: str, root: Path, out: Path, scale: Scale, device: torch.device) -> dict:
    """One method's loss curve and the collapse statistics of its final features."""
    config = method_config(name, root, scale, device)
    started = time.perf_counter()
    final = train(config, out / name)
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    steps = [r["loss"] for r in records if r["kind"] == "step"]
    epochs = [r["loss"] for r in records if r["kind"] == "epoch"]
    test = build_dataset("cifar10", root, split="test")
    images, _ = test.get_batch(torch.arange(len(test)))
    features = phenossl.embed(images.numpy(), model=final, device=device, batch_size=256)
    stats = collapse_stats(features)
    finite = all(math.isfinite(v) for v in steps + epochs)
    row = {
        "method": name,
        **{k: v for k, v in optimizer_summary(config.optim).items() if k != "scheduler"},
        "steps": len(steps),
        "epoch_losses": epochs,
        "first_step_loss": steps[0],
        "last_step_loss": steps[-1],
        "finite": finite,
        **{f"feature_{k}": v for k, v in stats.items()},
        "ok": finite and not stats["collapsed"],
        "seconds": round(seconds, 2),
    }
    print(
        f"method {name:>13}: loss {epochs[0]:.4g} -> {epochs[-1]:.4g} over {len(steps)} steps, "
        f"effective rank {stats['effective_rank']:.1f}/{stats['dim']}, std x sqrt(D) "
        f"{stats['std_normalised']:.3f}: {'ok' if row['ok'] else 'FAILED'}"
    )
    return row


def check_methods(scale: Scale, device: torch.device, methods: list[str]) -> list[dict]:
    """:func:`check_method` for each method on one synthetic CIFAR-format set."""
    with tempfile.TemporaryDirectory(prefix="phenossl-gpu-check-") as tmp:
        root = Path(tmp) / "cifar10"
        write_cifar_like(root, n_train=scale.n_train, n_test=scale.n_test, seed=0)
        return [check_method(name, root, Path(tmp) / "runs", scale, device) for name in methods]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a dry run of the code")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    parser.add_argument("--methods", default=",".join(sorted(METHODS)), help="for 'methods'")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [p for p in parts if p not in PARTS] + [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown part or method {unknown}; parts {PARTS}, methods {sorted(METHODS)}")
    device = require_device(args.device)
    scale = TINY if args.tiny else GPU
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    started = time.perf_counter()
    report: dict[str, Any] = {
        "check": "gpu_check: embedding, training throughput, 13-method loss curves",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "tiny": args.tiny,
        "amp_and_channels_last": device.type == "cuda",
    }
    checks = {"embedding": check_embedding, "training": check_training}
    seconds = {}
    for part in parts:
        t = time.perf_counter()
        if part == "methods":
            report[part] = check_methods(scale, device, methods)
        else:
            report[part] = checks[part](scale, device)
        seconds[part] = round(time.perf_counter() - t, 1)
    total = time.perf_counter() - started
    failed = [r["method"] for r in report.get("methods", []) if not r["ok"]]
    report.update(
        seconds=seconds,
        total_seconds=round(total, 1),
        within_time_limit=total <= TIME_LIMIT_S,
        failed_methods=failed,
        ok=not failed,
    )
    write_json(args.out, report)
    verdict = "ok" if not failed else f"FAILED: {', '.join(failed)} (NaN loss or collapse)"
    print(f"gpu_check {verdict} in {total:.0f} s -> {args.out}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
