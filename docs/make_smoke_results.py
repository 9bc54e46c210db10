"""Run every experiment sweep of training/ at smoke scale, then ``phenossl report`` on the store.

This is the "Done means" check of the experiments, as a user runs it: for each sweep config,
``phenossl sweep training/<config>.yaml --smoke --store <work>/results``, then
``phenossl report <work>/results --out docs/smoke-results``. The data are the smallest that
exercise every code path without a download:

- CIFAR-10 / CIFAR-100: small CIFAR-like sets in the official pickle layout
  (:func:`phenossl.data.cifar.write_cifar_like`: coloured stripes, learnable, *not* CIFAR);
- ImageNet-100: a tiny image folder of the same kind (JPEG files, 10 classes);
- MNIST: the real files in ``../shared/data/mnist`` (the MNIST sweeps are skipped without them);
- BBBC021: CropSets of the paper's subsets cut from a synthetic plate
  (:mod:`phenossl.data.synthetic`).

The accuracies are therefore smoke numbers on stand-in data: they show that every table and
figure is regenerated from the store, not what the paper's settings reach.

    python docs/make_smoke_results.py                       # ~15 min on 2 CPU cores
    python docs/make_smoke_results.py --only fig4_mnist_clustering table4_mnist_backbones
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAINING = REPO / "training"
MNIST = REPO.parent / "shared" / "data" / "mnist"
SUBSETS = {"nocodazole": "nocodazole", "taxol": "taxol", "cytochalasin_b": "cytochalasin B"}
CPU = ["--device", "cpu"]


def write_image_folder(root: Path, *, classes: int = 10, per_class=(16, 8), seed: int = 0) -> None:
    """``root/{train,val}/<wnid>/*.JPEG``: 80 px images, one hue and stripe pattern per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:80, 0:80] / 80.0
    for split, n in zip(("train", "val"), per_class):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array([(c * 37) % 255, (c * 91) % 255, (c * 53) % 255]) / 255.0
            for i in range(n):
                phase = rng.uniform(0, 2 * np.pi)
                stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (c + 2) * (xx + (c % 3) * yy) + phase)
                image = stripes[..., None] * colour + rng.normal(0, 0.05, (80, 80, 3))
                pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{c}_{i}.JPEG", quality=90)


def write_data(data: Path, mnist: Path | None) -> None:
    """Everything the sweeps read under ``data/`` (the configs' relative paths)."""
    from phenossl._progress import run
    from phenossl.data.bbbc021 import load_image_table, select_fields
    from phenossl.data.cifar import write_cifar_like
    from phenossl.data.synthetic import iter_write_synthetic_plate
    from phenossl.pipeline import iter_make_cropset

    write_cifar_like(data / "cifar10", n_train=1000, n_test=500, num_classes=10, seed=0)
    write_cifar_like(data / "cifar100", n_train=1000, n_test=500, num_classes=100, seed=0)
    write_image_folder(data / "imagenet100")
    if mnist is not None:
        (data / "mnist").symlink_to(mnist.resolve(), target_is_directory=True)
    plate = run(iter_write_synthetic_plate(data / "plate", seed=0, sites=1, n_control_wells=8))
    table = load_image_table(plate)
    for name, compound in SUBSETS.items():
        fields = select_fields(table, compounds=[compound], n_top=4, include_dmso=True)
        run(iter_make_cropset(fields, data / "crops" / f"{name}_dmso", paper_subset=compound))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "smoke-results")
    parser.add_argument("--work", type=Path, default=None, help="data and store (default: tmp)")
    parser.add_argument("--mnist", type=Path, default=MNIST)
    parser.add_argument("--only", nargs="+", default=None, help="config names (no .yaml)")
    args = parser.parse_args()

    from phenossl.training.sweep.config import is_sweep_config

    work = args.work or Path(tempfile.mkdtemp(prefix="phenossl-smoke-"))
    data = work / "data"
    mnist = args.mnist if (args.mnist / "train-images-idx3-ubyte.gz").is_file() else None
    if not data.is_dir():
        print(f"writing the stand-in data under {data}", flush=True)
        write_data(data, mnist)
    configs = sorted(p for p in TRAINING.glob("*.yaml") if is_sweep_config(p))
    if args.only:
        configs = [p for p in configs if p.stem in args.only]
    store = work / "results"
    timings: dict[str, float | str] = {}
    for config in configs:
        if "mnist" in config.stem and mnist is None:
            timings[config.stem] = f"skipped: no MNIST files at {args.mnist}"
            continue
        command = [sys.executable, "-m", "phenossl", "-q", "sweep", str(config), "--smoke"]
        command += ["--store", str(store), *CPU]
        print("$", " ".join(command[2:]), flush=True)
        started = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        timings[config.stem] = round(time.perf_counter() - started, 1)
    report = [sys.executable, "-m", "phenossl", "-q", "report", str(store), "--out"]
    subprocess.run([*report, str(args.out)], check=True)
    (args.out / "sweep_seconds.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(json.dumps(timings, indent=2))
    print(f"report -> {args.out / 'index.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
