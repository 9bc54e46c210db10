"""Image batches into a model: scaling and normalisation, prefetching, argument checks."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from phenossl._device import memory_format
from phenossl._prefetch import read_ahead
from phenossl._scaling import InputScaler, per_channel
from phenossl.data.image_dataset import ImageDataset

if TYPE_CHECKING:
    from phenossl.models.backbones import Backbone

Normalize = tuple[Sequence[float], Sequence[float]]


class Preprocess:
    """uint8 batch -> float in [0, 1] -> optional resize -> ``(x - mean) / std`` on ``device``.

    The statistics are ``normalize`` when given, else the backbone's ``input_mean`` /
    ``input_std``, else the dataset's.
    """

    def __init__(
        self,
        backbone: nn.Module,
        dataset: ImageDataset,
        normalize: Normalize | None,
        input_size: int | None,
        device: torch.device,
    ) -> None:
        if normalize is not None:
            mean, std = normalize
        elif getattr(backbone, "input_mean", None) is not None:
            mean, std = cast("Backbone", backbone).input_mean, cast("Backbone", backbone).input_std
        else:
            mean, std = dataset.mean, dataset.std
        channels = dataset.channels
        mean = per_channel(mean, channels, "normalisation mean")
        std = per_channel(std, channels, "normalisation std", positive=True)
        if input_size is not None:
            check_positive(input_size, "input_size")
        self.scaler = InputScaler(
            mean, std, device, input_size=input_size, memory_format=memory_format(device)
        )
        self.size = input_size
        self.device = device

    def __call__(self, images: Tensor) -> Tensor:
        return self.scaler(images)

    def scaled(self, x: Tensor) -> Tensor:
        """Normalise a float batch already in [0, 1] (after augmentation)."""
        return self.scaler(x)


def prefetch(dataset: ImageDataset, batches: Iterable[Tensor]) -> Iterator[tuple[Tensor, Tensor]]:
    """``dataset.get_batch`` of each index batch, reading the next batch in a thread."""
    if dataset.device.type != "cpu":  # in memory on the device: indexing is immediate
        for indices in batches:
            yield dataset.get_batch(indices)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="phenossl-prefetch") as pool:
        for batch, _ in read_ahead(dataset.get_batch, batches, pool):
            yield batch


def in_order(n: int, batch_size: int) -> list[Tensor]:
    """Index batches ``0..n-1`` in order."""
    return list(torch.arange(n).split(batch_size))


def check_positive(value: Any, name: str) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}; expected a positive integer")


def check_finite(value: Any, name: str, *, positive: bool = False) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is a finite number (> 0 if asked)."""
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or (positive and value <= 0) or (not positive and value < 0):
        raise ValueError(
            f"{name}={value!r}; expected a finite number {'> 0' if positive else '>= 0'}"
        )
