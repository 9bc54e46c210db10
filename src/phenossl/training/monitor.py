"""The kNN monitor of a training run: how well the current backbone separates the classes.

At the end of an epoch the backbone (in eval mode, no augmentation) embeds a bank of training
images and the queries of a held-out split; every query takes the similarity-weighted vote of
its ``k`` nearest bank features (cosine similarity, weights ``exp(s / T)``, as in Wu et al.
2018 and solo-learn's online kNN), and the monitor reports the top-1 accuracy. The images are
scaled like the training views: ``/ 255``, resized to the augmentations' output size when they
have one, normalised with the backbone's ``input_mean``/``input_std``.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phenossl._device import autocast
from phenossl.training.config import KnnMonitorConfig
from phenossl.training.feeding import ImageDataset

__all__ = ["KnnMonitor", "weighted_knn_predict"]

_BATCH = 256


def weighted_knn_predict(
    bank: Tensor, bank_labels: Tensor, queries: Tensor, k: int, temperature: float, classes: int
) -> Tensor:
    """Class predicted for each query by the ``exp(cos / T)``-weighted vote of its k nearest
    bank rows; ``bank`` ``(N, D)``, ``queries`` ``(M, D)`` (any scale), labels in
    ``[0, classes)``."""
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    predictions = []
    for start in range(0, queries.shape[0], _BATCH):
        q = F.normalize(queries[start : start + _BATCH].float(), dim=1)
        similarity, nearest = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(q.shape[0], classes, device=q.device)
        votes.scatter_add_(1, bank_labels[nearest], (similarity / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


class KnnMonitor:
    """``monitor(backbone) -> {"knn_top1": accuracy, "knn_time_s": seconds}``.

    Parameters
    ----------
    bank, queries
        Labelled datasets (``get_batch`` gives uint8 images and int64 targets).
    settings
        ``run.eval`` of the config (``k``, ``temperature``, ``bank_limit``).
    device
        Where the features are computed.
    input_size
        Resize the images to this side first (the training views' size), or None.
    """

    def __init__(
        self,
        bank: ImageDataset,
        queries: ImageDataset,
        settings: KnnMonitorConfig,
        *,
        device: torch.device,
        input_size: int | None = None,
    ) -> None:
        if list(queries.classes) != list(bank.classes):
            raise ValueError(
                f"run.eval.split: the query classes {list(queries.classes)[:5]}... differ from "
                f"the training classes {list(bank.classes)[:5]}..."
            )
        n_bank = len(bank) if settings.bank_limit is None else min(len(bank), settings.bank_limit)
        self.bank, self.n_bank = bank, n_bank
        self.queries = queries
        self.settings = settings
        self.device = device
        self.input_size = input_size
        self.classes = len(bank.classes)

    def __call__(self, backbone: nn.Module) -> dict[str, Any]:
        started = time.perf_counter()
        was_training = backbone.training
        backbone.eval()
        try:
            bank, bank_labels = self._features(backbone, self.bank, self.n_bank)
            queries, labels = self._features(backbone, self.queries, len(self.queries))
        finally:
            backbone.train(was_training)
        predicted = weighted_knn_predict(
            bank, bank_labels, queries, self.settings.k, self.settings.temperature, self.classes
        )
        accuracy = float((predicted == labels).float().mean())
        return {"knn_top1": accuracy, "knn_time_s": time.perf_counter() - started}

    @torch.no_grad()
    def _features(
        self, backbone: nn.Module, dataset: ImageDataset, n: int
    ) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(backbone.input_mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(backbone.input_std, device=self.device).view(1, -1, 1, 1)
        features, targets = [], []
        for start in range(0, n, _BATCH):
            images, labels = dataset.get_batch(torch.arange(start, min(n, start + _BATCH)))
            x = images.to(self.device, non_blocking=True).float().div_(255.0)
            if self.input_size is not None and x.shape[-2:] != (self.input_size,) * 2:
                x = F.interpolate(x, size=self.input_size, mode="bilinear", antialias=True)
            with autocast(self.device):
                features.append(backbone((x - mean) / std).float())
            targets.append(labels.to(self.device))
        labels = torch.cat(targets)
        if int(labels.min()) < 0:
            raise ValueError("kNN monitor: some images have no label (target -1)")
        return torch.cat(features), labels
