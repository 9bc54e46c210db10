"""Training throughput of the trainer against bare loops on the same batches.

Three paths per case, each timed over the same number of optimiser steps of the same size:

- ``trainer``: the real ``phenossl.training.train.trainer.iter_train`` run (data on the device,
  augmentation on the device, normalisation, forward, loss, backward, optimiser step at the
  scheduled rate, momentum update, private RNG, metrics, progress events). Its rate is that of
  the second epoch as logged in ``metrics.jsonl`` (the first one warms up oneDNN/cuDNN).
- ``bare_backbone``: ``backbone(view1)``, ``backbone(view2)``, a mean as loss, backward and the
  same optimiser's step, on the two views the trainer computes for the same batches, prepared
  before the clock starts (the brief's "bare forward+backward+step loop").
- ``bare_method``: the SSL method's ``training_step`` on those prepared views, backward, step
  and ``after_optimizer_step``: the method's own network work (projector, loss and, for
  MoCoV2+, the momentum encoder's forward passes and EMA) without anything the trainer adds.

``ratio_vs_backbone = trainer / bare_backbone`` is the brief's ratio;
``ratio_vs_method = trainer / bare_method`` is the trainer's own overhead (augmentation, data
feeding, bookkeeping). The paths alternate (ABC, CBA, ...) and each rate comes from its fastest
repeat; CPU-time ratios of this process are reported too (less sensitive to other processes on
a shared machine). On CUDA the rates are also given in views/s (2 views per image) against the
targets: >= 20,000 views/s for SimCLR/ResNet18 at 32 px and >= 3,000 views/s for
MoCoV2+/VGG13 at 196 px on an H100.

    python benchmarks/bench_training.py                 # CPU: 32 px and 64 px, a few minutes
    python benchmarks/bench_training.py --full          # the VGG13 case at 196 px
    python benchmarks/bench_training.py --device cuda   # GPU batches and step counts

Writes ``benchmarks/results/training.json`` (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import time_abba, torch_machine, write_json

from phenossl._device import autocast, resolve_device
from phenossl.augment import build_augmentation
from phenossl.data.cropset import CropSetWriter
from phenossl.data.datasets import build_dataset, write_cifar_like
from phenossl.training.train.config import TrainConfig
from phenossl.training.train.optim import build_optimizer
from phenossl.training.train.trainer import TrainStep, build_method_for, iter_train

RESULTS = Path(__file__).resolve().parent / "results" / "training.json"


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    preset: str
    backbone: str
    cifar_stem: bool
    composition: str
    dataset: str  # "cifar10" (32 px) or "cropset"
    cpu_size: int
    cpu_batch: int
    cuda_size: int
    cuda_batch: int
    target_views_per_s: float  # on an H100


CASES = (
    Case(
        name="simclr_resnet18",
        method="simclr",
        preset="simclr",
        backbone="resnet18",
        cifar_stem=True,
        composition="cifar",
        dataset="cifar10",
        cpu_size=32,
        cpu_batch=32,
        cuda_size=32,
        cuda_batch=512,
        target_views_per_s=20_000.0,
    ),
    Case(
        name="mocov2plus_vgg13",
        method="mocov2plus",
        preset="mocov2plus_cells",
        backbone="vgg13_bn",
        cifar_stem=False,
        composition="cell_affine_crop",
        dataset="cropset",
        cpu_size=64,
        cpu_batch=16,
        cuda_size=196,
        cuda_batch=128,
        target_views_per_s=3_000.0,
    ),
    Case(
        name="phenossl_cells",  # the shipped recipe: training/phenossl_cells.yaml
        method="mocov2plus",
        preset="mocov2plus_cells",
        backbone="vgg13_bn",
        cifar_stem=False,
        composition="fluorescence",
        dataset="cropset",
        cpu_size=48,
        cpu_batch=64,
        cuda_size=48,
        cuda_batch=64,
        target_views_per_s=3_000.0,
    ),
)


def write_data(case: Case, folder: Path, n: int, size: int) -> Path:
    """``n`` training images for ``case`` in its on-disk format; returns the data root."""
    if case.dataset == "cifar10":
        write_cifar_like(folder, n_train=n, n_test=1, seed=0)
        return folder
    rng = np.random.default_rng(0)
    with CropSetWriter(folder / "crops", size) as writer:
        for start in range(0, n, 512):
            count = min(512, n - start)
            images = rng.integers(0, 256, size=(count, 3, size, size), dtype=np.uint8)
            writer.add(images, pd.DataFrame({"field_id": ["bench"] * count}))
    return folder / "crops"


def make_config(case: Case, root: Path, size: int, batch: int, device: str) -> TrainConfig:
    augmentation = {"name": case.composition}
    if case.dataset == "cropset":
        augmentation["size"] = size
    return TrainConfig.from_dict(
        {
            "data": {"dataset": case.dataset, "root": str(root), "split": None}
            if case.dataset == "cropset"
            else {"dataset": case.dataset, "root": str(root)},
            "model": {"backbone": case.backbone, "cifar_stem": case.cifar_stem},
            "method": {"name": case.method, "preset": case.preset},
            "augmentation": [augmentation],
            "optim": {"batch_size": batch, "epochs": 2, "warmup_epochs": 0},
            "run": {"device": device, "log_every": 10**9, "checkpoint_every": 10**9},
        }
    )


def time_trainer(config: TrainConfig, out: Path, steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the trainer's second epoch (``steps`` steps)."""
    cpu_start = cpu_end = None
    for event in iter_train(config, out, resume=False):
        if event.done == steps and event.message.startswith("epoch 1/"):  # after epoch 1's save
            cpu_start = time.process_time()
        if event.done == 2 * steps and cpu_end is None:
            cpu_end = time.process_time()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    epochs = [r for r in map(json.loads, lines) if r["kind"] == "epoch"]
    return epochs[1]["time_s"], cpu_end - cpu_start


class BareLoops:
    """The two bare loops over views prepared like the trainer's, for the same batches."""

    def __init__(self, config: TrainConfig, root: Path, steps: int, device: torch.device) -> None:
        dataset = build_dataset(config.data.dataset, root, split=config.data.split)
        batch = config.optim.batch_size
        self.device = device
        self.steps = steps
        self.step_fn = _train_step(config, dataset, device, steps)
        self.views = []
        for i in range(steps):
            images, _ = dataset.get_batch(torch.arange(i * batch, (i + 1) * batch))
            self.views.append(self.step_fn.views(images.to(device)))
        self.indices = torch.arange(batch, device=device)
        self.backbone = _train_step(config, dataset, device, steps).method.backbone
        group = [{"name": "backbone", "params": list(self.backbone.parameters())}]
        self.backbone_optimizer = build_optimizer(group, config.optim)

    def backbone_loop(self) -> tuple[float, float]:
        def step(i: int) -> None:
            (x1, x2), *_ = self.views[i]
            self.backbone_optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, enabled=self.step_fn.amp):
                loss = self.backbone(x1).float().mean() + self.backbone(x2).float().mean()
            loss.backward()
            self.backbone_optimizer.step()

        return self._timed(step)

    def method_loop(self) -> tuple[float, float]:
        method, optimizer = self.step_fn.method, self.step_fn.optimizer

        def step(i: int) -> None:
            (pair, *_) = self.views[i]
            optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, enabled=self.step_fn.amp):
                loss = method.training_step(pair, self.indices)["loss"]
            loss.backward()
            optimizer.step()
            method.after_optimizer_step(i)

        return self._timed(step)

    def _timed(self, step) -> tuple[float, float]:
        step(0)  # warm-up
        _sync(self.device)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(self.steps):
            step(i)
        _sync(self.device)
        return time.perf_counter() - wall, time.process_time() - cpu


def _train_step(config: TrainConfig, dataset, device: torch.device, steps: int) -> TrainStep:
    method = build_method_for(config, dataset).to(device)
    step_fn = TrainStep(
        method,
        build_optimizer(method.parameter_groups(), config.optim),
        [(build_augmentation(a.name, **a.params), a.weight) for a in config.augmentation],
        dataset.mean,
        dataset.std,
        config,
        device=device,
        total_steps=steps,
        warmup_steps=0,
    )
    method.to(memory_format=step_fn.memory_format)
    method.on_train_start(steps)
    return step_fn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_case(case: Case, args: argparse.Namespace, device: torch.device) -> dict:
    cuda = device.type == "cuda"
    size = case.cuda_size if cuda or args.full else case.cpu_size
    batch = args.batch_size or (case.cuda_batch if cuda else case.cpu_batch)
    steps = args.steps or (30 if cuda else 4)
    with tempfile.TemporaryDirectory(prefix="phenossl-bench-") as tmp:
        tmp = Path(tmp)
        root = write_data(case, tmp / "data", steps * batch, size)
        config = make_config(case, root, size, batch, str(device))
        bare = BareLoops(config, root, steps, device)
        paths = {
            "trainer": lambda: time_trainer(config, tmp / "run", steps),
            "bare_backbone": bare.backbone_loop,
            "bare_method": bare.method_loop,
        }
        seconds, cpu_seconds = time_abba(paths, args.repeats)
    images = steps * batch
    rates = {key: images / min(values) for key, values in seconds.items()}
    result = {
        "case": case.name,
        "method": case.method,
        "backbone": case.backbone,
        "composition": case.composition,
        "size": size,
        "batch_size": batch,
        "steps": steps,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
    }
    for key, rate in rates.items():
        result[f"{key}_images_per_s"] = round(rate, 2)
        result[f"{key}_views_per_s"] = round(2 * rate, 2)
    for base in ("backbone", "method"):
        result[f"ratio_vs_{base}"] = round(rates["trainer"] / rates[f"bare_{base}"], 3)
        result[f"ratio_vs_{base}_cpu_time"] = round(
            float(np.median(cpu_seconds[f"bare_{base}"]) / np.median(cpu_seconds["trainer"])), 3
        )
    if cuda:
        result["target_views_per_s"] = case.target_views_per_s
        result["meets_target"] = result["trainer_views_per_s"] >= case.target_views_per_s
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda")
    parser.add_argument("--cases", nargs="+", default=[c.name for c in CASES])
    parser.add_argument("--full", action="store_true", help="VGG13 at 196 px on the CPU too")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per case/device")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (CPU 4, CUDA 30)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cases = [c for c in CASES if c.name in args.cases]

    report = {
        "benchmark": "training throughput: trainer vs bare backbone / method loops",
        **torch_machine(device),
        "full": args.full,
        "repeats": args.repeats,
        "target_ratio_cpu": 0.85,
        "results": [bench_case(case, args, device) for case in cases],
    }
    write_json(args.out, report)

    print(f"{device} ({report['torch_threads']} threads)")
    for r in report["results"]:
        print(
            f"{r['case']:>17} {r['size']:>3} px batch {r['batch_size']:>3}: trainer "
            f"{r['trainer_images_per_s']:9.1f} img/s ({r['trainer_views_per_s']:9.1f} views/s)  "
            f"bare backbone {r['bare_backbone_images_per_s']:9.1f}  bare method "
            f"{r['bare_method_images_per_s']:9.1f}  ratio vs backbone {r['ratio_vs_backbone']:.3f} "
            f"(CPU time {r['ratio_vs_backbone_cpu_time']:.3f})  vs method "
            f"{r['ratio_vs_method']:.3f} (CPU time {r['ratio_vs_method_cpu_time']:.3f})"
            + (
                f"  target {r['target_views_per_s']:.0f} views/s"
                if "target_views_per_s" in r
                else ""
            )
        )
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
