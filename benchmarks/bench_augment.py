"""Throughput of the augmentation compositions, and of kornia pipelines built the usual way.

For every composition: images per second on CPU (float32, one torch thread unless
``--threads``), at batch 256 for the 32-px compositions (CIFAR 3 x 32 x 32, MNIST 1 x 28 x 28 ->
32) and batch 64 for the 196-px cell compositions. For comparison, the same compositions as a
chain of ``kornia.augmentation`` modules (one resampling per geometric op, kornia's own parameter
sampling; MNIST padding approximated by a RandomAffine zoom since kornia has no per-sample
padding), and the hue shift alone (ours in closed form, kornia's HSV round trip, torchvision's
with one factor for the whole batch).

Usage::

    python benchmarks/bench_augment.py [--seconds 0.6] [--threads 1] [--device cpu]

Prints a table and writes ``benchmarks/results/augment.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import kornia
import kornia.augmentation as K
import torch
import torchvision.transforms.v2.functional as TF
from _common import write_json
from torch import nn

from phenossl.augment import build_augmentation
from phenossl.augment.intensity import adjust_hue

RESULTS = Path(__file__).parent / "results" / "augment.json"

# name -> (batch, channels, input side)
WORKLOADS = {
    "cifar": (256, 3, 32),
    "mnist_digit": (256, 1, 28),
    "mnist_handwriting": (256, 1, 28),
    "cell_affine_crop": (64, 3, 196),
    "cell_affine_rot360": (64, 3, 196),
    "cell_fig6_left": (64, 3, 196),
    "cell_fig6_right": (64, 3, 196),
    "identity": (256, 3, 32),
}


def _kornia_pipelines() -> dict[str, nn.Module]:
    """The compositions as plain kornia module chains (the obvious way to write them)."""
    rrc = K.RandomResizedCrop
    affine = {"degrees": 20.0, "translate": (0.1, 0.1), "shear": 10.0}
    flips = [K.RandomHorizontalFlip(p=0.5), K.RandomVerticalFlip(p=0.5)]

    def jitter() -> K.ColorJitter:
        return K.ColorJitter(0.4, 0.4, 0.4, 0.125, p=1.0)

    return {
        "cifar": nn.Sequential(
            rrc((32, 32), scale=(0.08, 1.0), resample="bicubic"),
            K.ColorJitter(0.4, 0.4, 0.2, 0.0, p=0.8),
            K.ColorJitter(hue=0.1, p=0.8),
            K.RandomGrayscale(p=0.2),
            K.RandomHorizontalFlip(p=0.5),
        ),
        "mnist_digit": nn.Sequential(
            K.RandomAffine(0.0, scale=(1 / 1.8, 1 / 1.2), p=1.0),
            K.RandomInvert(p=0.5),
            K.RandomRotation(25.0, p=1.0),
            rrc((32, 32), scale=(0.5, 0.9)),
        ),
        "mnist_handwriting": nn.Sequential(
            *flips,
            K.RandomRotation(180.0, p=1.0),
            rrc((32, 32), scale=(0.9, 1.1)),
            K.RandomErasing(scale=(0.02, 0.3), p=0.5),
        ),
        "cell_affine_crop": nn.Sequential(
            K.RandomAffine(**affine, p=1.0), jitter(), rrc((196, 196), scale=(0.9, 1.1))
        ),
        "cell_affine_rot360": nn.Sequential(
            K.RandomAffine(**affine, p=1.0), jitter(), K.RandomRotation(360.0, p=1.0)
        ),
        "cell_fig6_left": nn.Sequential(
            jitter(),
            *flips,
            K.RandomRotation(360.0, p=1.0),
            K.RandomAffine(**affine, p=1.0),
            rrc((196, 196), scale=(0.9, 1.1)),
        ),
        "cell_fig6_right": nn.Sequential(
            jitter(),
            *flips,
            K.RandomRotation(360.0, p=1.0),
            K.CenterCrop(139),
            K.Resize((196, 196)),
        ),
    }


def interleaved_rates(
    calls: dict[str, tuple[Callable[..., object], tuple]], batch: int, seconds: float
) -> dict[str, float]:
    """Images/s of each ``fn(*args)``: best of rounds taken in turn, so load drifts hit all alike.

    One warm-up call each, then rounds until ``seconds`` per call have passed (at least 3).
    """
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for fn, args in calls.values():
        fn(*args)
    sync()
    best = dict.fromkeys(calls, math.inf)
    spent = 0.0
    rounds = 0
    while rounds < 3 or spent < seconds * len(calls):
        for key, (fn, args) in calls.items():
            start = time.perf_counter()
            fn(*args)
            sync()
            elapsed = time.perf_counter() - start
            best[key] = min(best[key], elapsed)
            spent += elapsed
        rounds += 1
    return {key: batch / t for key, t in best.items()}


def bench_compositions(seconds: float, device: torch.device) -> list[dict]:
    kornia_chains = _kornia_pipelines()
    rows = []
    for name, (batch, channels, side) in WORKLOADS.items():
        x = torch.rand(batch, channels, side, side, device=device)
        ours = build_augmentation(name)
        out_side = ours(x).shape[-1]
        calls = {"phenossl": (ours, (x,))}
        if name in kornia_chains:
            calls["kornia"] = (kornia_chains[name].to(device), (x,))
        for impl, rate in interleaved_rates(calls, batch, seconds).items():
            rows.append(
                {
                    "composition": name,
                    "impl": impl,
                    "batch": batch,
                    "channels": channels,
                    "in_side": side,
                    "out_side": out_side,
                    "images_per_s": round(rate, 1),
                }
            )
            print(
                f"{name:20s} {impl:9s} B={batch:3d} {channels}x{side:3d} -> {out_side:3d}"
                f"  {rate:10.0f} img/s"
            )
    return rows


def bench_hue(seconds: float, device: torch.device) -> list[dict]:
    rows = []
    for batch, side in ((256, 32), (64, 196)):
        x = torch.rand(batch, 3, side, side, device=device)
        shift = torch.rand(batch, device=device) - 0.5
        impls = {
            "phenossl closed form (per sample)": (adjust_hue, (x, shift)),
            "kornia.enhance.adjust_hue (per sample)": (
                kornia.enhance.adjust_hue,
                (x, shift * 2 * math.pi),
            ),
            "torchvision adjust_hue (one factor)": (TF.adjust_hue, (x, 0.1)),
        }
        for impl, rate in interleaved_rates(impls, batch, seconds).items():
            rows.append(
                {
                    "op": "hue",
                    "impl": impl,
                    "batch": batch,
                    "side": side,
                    "images_per_s": round(rate, 1),
                }
            )
            print(f"hue {side:3d} px  {impl:40s} {rate:10.0f} img/s")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.6, help="time per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    print(f"load average {load} on {os.cpu_count()} CPUs (other processes slow every number)")
    print(
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"kornia={kornia.__version__}"
    )
    result = {
        "benchmark": "augment",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": load,
        "torch": torch.__version__,
        "kornia": kornia.__version__,
        "seconds_per_measurement": args.seconds,
        "compositions": bench_compositions(args.seconds, device),
        "hue": bench_hue(args.seconds, device),
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
