"""The kNN monitor of a training run: how well the current backbone separates the classes.

At the end of an epoch the frozen backbone (eval mode, no augmentation) embeds a bank of
training images and the queries of a held-out split
(:func:`~phenossl.training.evaluate.protocols.extract_features`); each query takes the weighted vote of
its ``k`` nearest bank features (:func:`~phenossl.training.evaluate.protocols.knn_accuracy`, solo-learn's
online kNN). Images are resized to the training views' size when the augmentations have one and
normalised with the backbone's ``input_mean``/``input_std`` (the dataset's statistics).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from phenossl.data.image_dataset import ImageDataset
from phenossl.training.train.config import KnnMonitorConfig

__all__ = ["KnnMonitor"]


class KnnMonitor:
    """``monitor(backbone) -> {"knn_top1": accuracy, "knn_time_s": seconds}``.

    Parameters
    ----------
    bank, queries
        Labelled datasets with the same classes (the training set, the held-out split).
    settings
        ``run.eval`` of the config (``k``, ``temperature``).
    device
        Where the features are computed.
    amp
        Autocast on CUDA.
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
        amp: bool = True,
        input_size: int | None = None,
    ) -> None:
        for role, dataset in (("training", bank), (f"'{settings.split}'", queries)):
            if not dataset.classes:
                raise ValueError(
                    f"run.eval.knn needs labels, but the {role} images of {dataset.name!r} have "
                    "none (for a cropset set data.options.label_column)"
                )
        if list(queries.classes) != list(bank.classes):
            raise ValueError(
                f"run.eval.split={settings.split!r}: its classes differ from the training "
                f"split's ({len(queries.classes)} vs {len(bank.classes)})"
            )
        self.bank = bank
        self.queries = queries
        self.settings = settings
        self.device = device
        self.amp = amp
        self.input_size = input_size

    def __call__(self, backbone: nn.Module) -> dict[str, Any]:
        from phenossl.training.evaluate.protocols import extract_features, knn_accuracy

        started = time.perf_counter()
        options: dict[str, Any] = {
            "device": self.device,
            "input_size": self.input_size,
            "amp": self.amp,
        }
        bank, bank_labels = extract_features(backbone, self.bank, **options)
        queries, labels = extract_features(backbone, self.queries, **options)
        accuracy = knn_accuracy(
            bank[bank_labels >= 0],
            bank_labels[bank_labels >= 0],
            queries[labels >= 0],
            labels[labels >= 0],
            k=self.settings.k,
            temperature=self.settings.temperature,
            device=self.device,
        )
        return {"knn_top1": accuracy, "knn_time_s": time.perf_counter() - started}
