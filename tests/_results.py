"""Synthetic frames of the result store's analysis shape (``ResultStore(path).frame()``).

Columns follow docs/architecture.md: ``run_id, experiment, method, seed, param.<name>...,
metric.<name>..., per_class.<protocol>`` (a float array per row) and ``class_names.<protocol>``.
Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from phenossl.data.cifar import CIFAR10_CLASSES

CIFAR10 = list(CIFAR10_CLASSES)
DIGITS = [str(d) for d in range(10)]


def _value_text(value) -> str:
    if isinstance(value, tuple | list):
        return "(" + ",".join(f"{v:g}" for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_frame(
    *,
    experiment: str = "hue_sweep",
    parameter: str = "hue",
    values: Sequence = tuple(np.linspace(0.0, 0.5, 6)),
    methods: Sequence[str] = ("simclr", "byol", "vicreg"),
    seeds: Sequence[int] = (5, 6, 7),
    classes: Sequence[str] = CIFAR10,
    slopes: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
    base: float = 0.7,
    noise: float = 0.02,
    protocols: Sequence[str] = ("linear",),
    finetune_slopes: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
    fixed: Mapping[str, object] | None = None,
    rng: int = 0,
) -> pd.DataFrame:
    """Runs of one sweep: class ``c`` of method ``m`` has accuracy ``base + slope[c] * x``
    plus Gaussian noise, with ``x`` the parameter value (an interval's lower bound when the
    values are tuples). ``slopes`` is one per class (all methods) or a mapping per method."""
    gen = np.random.default_rng(rng)
    rows = []
    for method in methods:
        for seed in seeds:
            for value in values:
                x = float(value[0]) if isinstance(value, tuple | list) else float(value)
                row = {
                    "run_id": f"{experiment}/{method}/{parameter}={_value_text(value)}/seed={seed}",
                    "experiment": experiment,
                    "method": method,
                    "seed": seed,
                    f"param.{parameter}": list(value) if isinstance(value, tuple) else value,
                    **{f"param.{k}": v for k, v in (fixed or {}).items()},
                }
                linear = _accuracy(gen, method, slopes, classes, base, x, noise)
                row["metric.top1"] = float(linear.mean())
                for protocol in protocols:
                    curve = finetune_slopes if protocol == "finetune" else slopes
                    acc = linear if protocol == "linear" else None
                    if acc is None:
                        acc = _accuracy(gen, method, curve, classes, base, x, noise)
                    row[f"per_class.{protocol}"] = acc
                    row[f"class_names.{protocol}"] = list(classes)
                    if protocol == "finetune":
                        row["metric.finetune_top1"] = float(acc.mean())
                rows.append(row)
    return pd.DataFrame(rows)


def _accuracy(gen, method, slopes, classes, base, x, noise) -> np.ndarray:
    if slopes is None:
        slope = np.zeros(len(classes))
    elif isinstance(slopes, Mapping):
        slope = np.asarray(slopes[method], dtype=float)
    else:
        slope = np.asarray(slopes, dtype=float)
    return np.clip(base + slope * x + gen.normal(0.0, noise, len(classes)), 0.0, 1.0)


def backbone_frame(
    *,
    experiment: str = "backbone_size",
    backbones: Sequence[str] = ("resnet18", "resnet50", "resnet101", "vgg11", "vgg16"),
    concentrations: Sequence[float] = (0.3, 3.0),
    seeds: Sequence[int] = (0, 1),
    rng: int = 0,
) -> pd.DataFrame:
    """The backbone-size study: pretrained backbones (no SSL method: ``method`` is None),
    K-means AMI per concentration, randomised-label control."""
    gen = np.random.default_rng(rng)
    rows = []
    for backbone in backbones:
        for concentration in concentrations:
            for seed in seeds:
                rows.append(
                    {
                        "run_id": f"{experiment}/backbone={backbone}/"
                        f"concentration={concentration:g}/seed={seed}",
                        "experiment": experiment,
                        "method": None,
                        "seed": seed,
                        "param.backbone": backbone,
                        "param.concentration": concentration,
                        "metric.ami": float(0.1 + 0.05 * concentration + gen.normal(0, 0.01)),
                        "metric.ami_control_mean": float(abs(gen.normal(0, 0.001))),
                        "metric.ami_control_std": 0.001,
                    }
                )
    return pd.DataFrame(rows)


def mnist_frame(
    *,
    experiment: str = "mnist_backbones",
    methods: Sequence[str] = ("byol", "mocov2plus"),
    backbones: Sequence[str] = ("vgg11_bn", "resnet18", "convnext_tiny"),
    seeds: Sequence[int] = (0, 1),
    montage: str | None = "runs/{run}/montage.png",
) -> pd.DataFrame:
    """MNIST linear top-1 by method and backbone (Table 4), with montage artifacts."""
    rows = []
    for m, method in enumerate(methods):
        for b, backbone in enumerate(backbones):
            for seed in seeds:
                run = f"{experiment}/{method}/backbone={backbone}/seed={seed}"
                acc = np.full(10, 0.5 + 0.05 * m + 0.01 * b + 0.001 * seed)
                row = {
                    "run_id": run,
                    "experiment": experiment,
                    "method": method,
                    "seed": seed,
                    "param.backbone": backbone,
                    "metric.top1": float(acc.mean()),
                    "metric.ami": 0.4 + 0.01 * b,
                    "per_class.linear": acc,
                    "class_names.linear": list(DIGITS),
                }
                if montage is not None:
                    row["artifacts"] = {"montage": montage.format(run=run.replace("/", "_"))}
                rows.append(row)
    return pd.DataFrame(rows)


def write_montages(frame: pd.DataFrame, root: Path) -> list[Path]:
    """Write a small PNG at every montage path of ``frame`` under the store ``root``."""
    from PIL import Image

    paths = []
    for artifacts in frame["artifacts"]:
        path = root / artifacts["montage"]
        path.parent.mkdir(parents=True, exist_ok=True)
        image = np.zeros((20, 40, 3), np.uint8)
        image[:, :20, 2] = 255
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths
