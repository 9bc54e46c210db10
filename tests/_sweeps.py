"""Tiny sweeps shared by test_sweep.py and test_executors.py.

The fixtures are registered in conftest.py and session-scoped, so the tiny sweep runs once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from phenossl.data.cifar import write_cifar_like
from phenossl.data.cropset import CropSetWriter
from phenossl.training.sweep.config import load_sweep
from phenossl.training.sweep.runner import sweep

TRAINING = Path(__file__).resolve().parents[1] / "training"


def tiny_settings(cifar_root: Path) -> dict:
    """Settings that shrink a CIFAR run to seconds: 32 images of 16 px, VGG11, 2 epochs."""
    return {
        "train.data.root": str(cifar_root),
        "train.data.limit": 32,
        "train.optim.batch_size": 16,
        "train.optim.epochs": 2,
        "train.model.backbone": "vgg11",
        "train.augmentation.0.size": 16,
        "train.run.eval.knn": False,
        "train.run.device": "cpu",
        "train.run.num_threads": 1,
        "evaluate.linear.epochs": 2,
        "evaluate.data.train_limit": 64,
        "evaluate.data.test_limit": 32,
        "evaluate.device": "cpu",
    }


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_like(root, n_train=128, n_test=64, seed=0)
    return root


def tiny_sweep(cifar_root: Path, **changes) -> dict:
    """2 good runs (hue_p 0 and 1) and 2 that fail at once (missing data), interleaved."""
    data = {
        "experiment": "tiny",
        "train": str(TRAINING / "cifar10_{method}.yaml"),
        "methods": ["simclr"],
        "grid": {
            "hue_p": {"values": [0.0, 1.0], "set": {"train.augmentation.0.hue_p": "{value}"}},
            "data": {"levels": {"ok": {}, "missing": {"train.data.root": "/nonexistent/cifar"}}},
        },
        "seeds": [5],
        "set": tiny_settings(cifar_root),
        "evaluate": {"linear": {}, "knn": {"k": 5}},
    }
    return {**data, **changes}


@pytest.fixture(scope="session")
def local_store(tiny_cifar, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    config = load_sweep(tiny_sweep(tiny_cifar))
    events = []
    summary = sweep(config, store, progress=events.append)
    return store, summary, events


@pytest.fixture(scope="session")
def tiny_cropset(tmp_path_factory) -> Path:
    """Nocodazole cells bright, DMSO cells dark: any backbone separates them."""
    path = tmp_path_factory.mktemp("crops") / "noc"
    rng = np.random.default_rng(0)
    rows = [("nocodazole", c) for c in (1.0, 3.0) for _ in range(6)] + [("DMSO", 0.0)] * 14
    table = pd.DataFrame(rows, columns=["compound", "concentration"])
    table["treatment"] = [f"{c}@{x:g}" for c, x in rows]
    level = np.where(table["compound"] == "DMSO", 40, 200)[:, None, None, None]
    images = np.clip(level + rng.normal(0, 20, (len(table), 3, 32, 32)), 0, 255).astype(np.uint8)
    with CropSetWriter(path, size=32) as writer:
        writer.add(images, table)
    return path
