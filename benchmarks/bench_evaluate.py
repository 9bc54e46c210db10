"""Evaluation protocols on real MNIST pixels: time and accuracy, with scikit-learn as a reference.

Features are the raw pixels (784 values in [0, 1]), so the numbers check the protocols
themselves, with no backbone in the way:

- ``linear_eval`` with its defaults (standardised features, SGD momentum 0.9, lr 0.1, cosine,
  batch 256, 100 epochs) against scikit-learn's multinomial ``LogisticRegression`` (L-BFGS) on
  the same standardised features: both fit a softmax regression, so their test accuracies
  should agree within about a point (raw-pixel softmax regression on MNIST: ~92 %).
- ``knn_eval`` (k=20, T=0.07, cosine) against scikit-learn's ``KNeighborsClassifier`` with the
  cosine metric and plain majority vote, and our ``weighted=False`` (the same rule: equal up to
  ties).
- the time to read MNIST from its ``.gz`` files and compute its statistics, and to extract
  VGG11-BN features (random init) from ``--feature-images`` images.

    python benchmarks/bench_evaluate.py                  # ~8 min on 2 busy CPU cores
    python benchmarks/bench_evaluate.py --train-limit 10000 --epochs 30

Writes ``benchmarks/results/evaluate.json`` (``--out``) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from _common import write_json

from phenossl.data.datasets import build_dataset
from phenossl.models.backbones import build_backbone
from phenossl.training.evaluate.protocols import extract_features, knn_eval, linear_eval

RESULTS = Path(__file__).resolve().parent / "results" / "evaluate.json"
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=MNIST)
    parser.add_argument("--train-limit", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--feature-images", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    results: dict = {
        "machine": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
    }

    start = time.perf_counter()
    train = build_dataset("mnist", args.mnist, limit=args.train_limit, limit_seed=0)
    test = build_dataset("mnist", args.mnist, split="test")
    results["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    stats = (train.mean, train.std)
    results["stats_s"] = time.perf_counter() - start
    results["mnist_mean_std"] = [stats[0][0], stats[1][0]]

    x_train = train.images.flatten(1).float() / 255
    x_test = test.images.flatten(1).float() / 255
    y_train, y_test = train.targets, test.targets
    results["n_train"], results["n_test"] = len(x_train), len(x_test)

    start = time.perf_counter()
    ours = linear_eval(x_train, y_train, x_test, y_test, epochs=args.epochs, device=args.device)
    results["linear"] = {"top1": ours.top1, "seconds": time.perf_counter() - start}
    results["linear"]["epochs"] = args.epochs

    mean, std = x_train.mean(0), x_train.std(0, correction=0).clamp_min(1e-6)
    start = time.perf_counter()
    sk = LogisticRegression(max_iter=300)
    sk.fit(((x_train - mean) / std).numpy(), y_train.numpy())
    sk_top1 = float((sk.predict(((x_test - mean) / std).numpy()) == y_test.numpy()).mean())
    results["sklearn_logistic"] = {"top1": sk_top1, "seconds": time.perf_counter() - start}

    start = time.perf_counter()
    knn = knn_eval(x_train, y_train, x_test, y_test, device=args.device)
    results["knn_weighted"] = {"top1": knn.top1, "seconds": time.perf_counter() - start}
    majority = knn_eval(x_train, y_train, x_test, y_test, weighted=False, device=args.device)
    results["knn_majority"] = {"top1": majority.top1}
    start = time.perf_counter()
    sk_knn = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute")
    sk_knn.fit(x_train.numpy(), y_train.numpy())
    sk_knn_top1 = float((sk_knn.predict(x_test.numpy()) == y_test.numpy()).mean())
    results["sklearn_knn_majority"] = {"top1": sk_knn_top1, "seconds": time.perf_counter() - start}

    subset = test.subset(np.arange(min(args.feature_images, len(test))))
    backbone = build_backbone("vgg11_bn", in_channels=1, seed=0)
    start = time.perf_counter()
    features, _ = extract_features(backbone, subset, batch_size=256, device=args.device)
    seconds = time.perf_counter() - start
    results["features_vgg11_bn"] = {
        "images": len(subset),
        "seconds": seconds,
        "images_per_s": len(subset) / seconds,
        "dim": int(features.shape[1]),
    }

    write_json(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
