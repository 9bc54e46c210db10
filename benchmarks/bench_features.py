"""Throughput of the hand-crafted features (``phenossl embed --model features``), in crops/s.

Measures, on real crops (``--cropset``, or the shared BBBC021 crops imported to a temporary
CropSet when ``../shared/data`` has them, else synthetic round cells):

- ``intensity``: the vectorised whole-batch intensity statistics alone;
- ``per_crop``: segmentation, shape, object intensities and Haralick texture in this process;
- ``embed_serial`` / ``embed_parallel``: the whole ``iter_feature_embedding`` (reading the
  CropSet, measuring, z-scoring) with 1 worker and with every CPU;
- ``vgg13_bn``: ``phenossl.embed`` with a random-init VGG13-BN on the same crops, for scale
  (``--cnn-crops`` of them; 0 skips it).

    python benchmarks/bench_features.py                      # ~2 min on 2 CPU cores
    python benchmarks/bench_features.py --cropset real_crops/ --limit 2000

Writes ``benchmarks/results/features.json`` (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write_json

from phenossl._progress import run
from phenossl.cells.features import (
    FEATURE_NAMES,
    _as_unit,
    _batch_intensity,
    _per_crop,
    iter_feature_embedding,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "features.json"
SHARED_CROPS = ROOT.parent / "shared" / "data" / "bbbc021_crops"


def load_crops(args: argparse.Namespace, tmp: Path) -> tuple[np.ndarray, str]:
    """uint8 (N, 3, S, S) crops and where they came from."""
    from phenossl.data.cropset import CropSet

    if args.cropset is not None:
        cs = CropSet(args.cropset)
        source = str(args.cropset)
    elif (SHARED_CROPS / "crops.npz").is_file():
        from phenossl.cells.import_crops import import_crops

        cs = import_crops(SHARED_CROPS / "crops.npz", SHARED_CROPS / "cells.csv", tmp / "cs")
        source = f"{SHARED_CROPS} (imported, normalize=plate)"
    else:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:68, :68] - 34
        crops = rng.integers(0, 20, (args.limit, 3, 68, 68)).astype(np.int64)
        for k in range(args.limit):
            r_n, r_c = rng.uniform(6, 12), rng.uniform(16, 30)
            crops[k, 0][yy**2 + xx**2 < r_n**2] += 180
            crops[k, 1:][:, yy**2 + xx**2 < r_c**2] += 90
        return np.clip(crops, 0, 255).astype(np.uint8), "synthetic round cells, 68 px"
    n = min(len(cs), args.limit)
    rows = np.random.default_rng(0).choice(len(cs), n, replace=False) if n < len(cs) else None
    return cs.images(np.sort(rows) if rows is not None else np.arange(n)), source


def rate(func, n: int) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    func()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "crops": n,
        "seconds": round(wall, 3),
        "crops_per_s": round(n / wall, 1),
        "process_cpu_seconds": round(cpu, 3),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cropset", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=5759, help="crops measured (default all)")
    parser.add_argument(
        "--per-crop", type=int, default=500, help="crops of the serial per-crop run"
    )
    parser.add_argument("--cnn-crops", type=int, default=512, help="crops embedded by VGG13-BN")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        crops, source = load_crops(args, Path(tmp))
    n = len(crops)
    unit = _as_unit(crops[: args.per_crop])
    _per_crop(unit[:8])  # warm-up (imports, caches)
    results = {
        "intensity": rate(lambda: _batch_intensity(_as_unit(crops)), n),
        "per_crop": rate(lambda: _per_crop(unit), len(unit)),
    }
    batches = [crops[i : i + 64] for i in range(0, n, 64)]
    results["embed_serial"] = rate(lambda: run(iter_feature_embedding(batches, n, n_jobs=1)), n)
    results["embed_parallel"] = rate(lambda: run(iter_feature_embedding(batches, n, n_jobs=-1)), n)
    if args.cnn_crops:
        import phenossl

        m = min(args.cnn_crops, n)
        phenossl.embed(crops[:64], "vgg13_bn", device="cpu")  # warm-up
        results["vgg13_bn"] = rate(
            lambda: phenossl.embed(crops[:m], "vgg13_bn", device="cpu", batch_size=64), m
        )
    report = {
        "benchmark": "bench_features",
        "source": source,
        "crop_size": int(crops.shape[-1]),
        "n_features": len(FEATURE_NAMES),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "results": results,
        "note": "wall-clock on a shared machine; process_cpu_seconds excludes worker processes",
    }
    write_json(args.out, report)
    print(
        f"{n} crops of {crops.shape[-1]} px from {source}, {len(FEATURE_NAMES)} features, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'step':<16}{'crops':>8}{'seconds':>10}{'crops/s':>10}")
    for name, r in results.items():
        print(f"{name:<16}{r['crops']:>8}{r['seconds']:>10.2f}{r['crops_per_s']:>10.1f}")
    print(f"-> {args.out}")
    return report


if __name__ == "__main__":
    main()
