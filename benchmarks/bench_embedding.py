"""Throughput of ``phenossl.embed`` against a bare ``model(x)`` loop on the same batches.

Both paths see the same pre-built float32 batches in [0, 1] on the host and the same backbone in
eval mode under ``torch.inference_mode``; the bare loop skips everything ``embed`` adds (input
scaling, batching, device transfer, output collection and checks, progress events). On CUDA the
bare loop gets its batches already on the GPU, in channels_last, under the same autocast, so the
ratio there also prices the host-to-device copies. The paths alternate (ABBA order) and the rate
of each comes from its fastest repeat, the one least disturbed by other processes (the ratio of
medians is reported too). On a shared machine wall times are noisy, so the ratio of this
process's CPU times (``ratio_cpu_time``, meaningful on CPU) is reported as well.

    python benchmarks/bench_embedding.py                       # ~2 min on 2 CPU cores
    python benchmarks/bench_embedding.py --batches 8 --repeats 3 --uint8
    python benchmarks/bench_embedding.py --device cuda --batches 50

Writes ``benchmarks/results/embedding.json`` (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import time_abba, torch_machine, write_json

import phenossl
from phenossl._device import autocast, memory_format, resolve_device
from phenossl.models.backbones import build_backbone

RESULTS = Path(__file__).resolve().parent / "results" / "embedding.json"


def bare_loop(
    model: torch.nn.Module, batches: list[torch.Tensor], device: torch.device
) -> tuple[float, float]:
    """(wall, CPU) seconds for ``model(x)`` over batches already on the device."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode(), autocast(device):
        for x in batches:
            model(x)
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def embed_loop(
    model: torch.nn.Module, batches, device: torch.device, batch_size: int
) -> tuple[float, float]:
    """(wall, CPU) seconds for ``phenossl.embed`` over the same batches (host arrays/tensors)."""
    wall, cpu = time.perf_counter(), time.process_time()
    phenossl.embed(batches, model, device=device, batch_size=batch_size)
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    model = build_backbone(name, seed=0).eval().to(device, memory_format=memory_format(device))
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch_size, 3, args.size, args.size)
    host = [torch.rand(shape, generator=generator) for _ in range(args.batches)]
    on_device = [x.to(device, memory_format=memory_format(device)) for x in host]
    paths = {
        "bare": lambda: bare_loop(model, on_device, device),
        "embed": lambda: embed_loop(model, host, device, args.batch_size),
    }
    if args.uint8:
        as_uint8 = [(x * 255).round().to(torch.uint8).numpy() for x in host]
        paths["embed_uint8"] = lambda: embed_loop(model, as_uint8, device, args.batch_size)

    bare_loop(model, on_device[:1], device)  # warm-up: allocator, oneDNN/cuDNN plans
    embed_loop(model, host[:1], device, args.batch_size)
    seconds, cpu_seconds = time_abba(paths, args.repeats)

    n_cells = args.batches * args.batch_size
    rates = {key: n_cells / min(values) for key, values in seconds.items()}
    result = {"model": name, "n_cells": n_cells, "seconds": seconds, "cpu_seconds": cpu_seconds}
    result.update({f"{key}_cells_per_s": round(rate, 2) for key, rate in rates.items()})
    result["ratio"] = round(rates["embed"] / rates["bare"], 3)
    result["ratio_of_medians"] = round(_median_ratio(seconds, "embed"), 3)
    # CPU time of this process: insensitive to other processes competing for the cores
    result["ratio_cpu_time"] = round(_median_ratio(cpu_seconds, "embed"), 3)
    if args.uint8:
        result["ratio_uint8"] = round(rates["embed_uint8"] / rates["bare"], 3)
        result["ratio_uint8_cpu_time"] = round(_median_ratio(cpu_seconds, "embed_uint8"), 3)
    return result


def _median_ratio(seconds: dict[str, list[float]], key: str) -> float:
    """Throughput of ``key`` relative to the bare loop, from median times."""
    return float(np.median(seconds["bare"]) / np.median(seconds[key]))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["vgg13_bn", "resnet18"])
    parser.add_argument("--size", type=int, default=196)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=2, help="timed batches per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--uint8", action="store_true", help="also time embed on uint8 input")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    report = {
        "benchmark": "embedding throughput: phenossl.embed vs bare model(x)",
        **torch_machine(device),
        "size": args.size,
        "batch_size": args.batch_size,
        "batches": args.batches,
        "repeats": args.repeats,
        "results": [bench_model(name, args, device) for name in args.models],
    }
    write_json(args.out, report)

    print(f"{device} ({report['torch_threads']} threads), {args.size} px, batch {args.batch_size}")
    for row in report["results"]:
        extra = f"  uint8 ratio {row['ratio_uint8']:.3f}" if args.uint8 else ""
        print(
            f"{row['model']:>10}: bare {row['bare_cells_per_s']:8.1f} cells/s  "
            f"embed {row['embed_cells_per_s']:8.1f} cells/s  ratio {row['ratio']:.3f} "
            f"(medians {row['ratio_of_medians']:.3f}, CPU time {row['ratio_cpu_time']:.3f}){extra}"
        )
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
