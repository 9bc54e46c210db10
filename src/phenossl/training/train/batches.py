"""Batches for the training loop that keep the device busy.

Two feeders with one interface, ``feeder.batches(order) -> iterator of (images, indices)`` where
``order`` is a ``(steps, batch)`` int64 tensor of dataset indices and ``images`` a uint8
``(batch, C, H, W)`` tensor on the training device:

- :class:`DeviceFeeder` holds the whole dataset as one uint8 tensor on the device (CIFAR, MNIST:
  150 MB and 47 MB) and indexes each batch there: no host work and no copy per step.
- :class:`PrefetchFeeder` reads batch ``i + 1`` with ``dataset.get_batch`` in a background
  thread, into pinned memory on CUDA, while the device trains on batch ``i``; the copy to the
  device is non-blocking. For lazy datasets (memory-mapped CropSets).

:func:`make_feeder` chooses between them (``data.preload``).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from phenossl._prefetch import read_ahead
from phenossl.data.image_dataset import ImageDataset

__all__ = ["DeviceFeeder", "PrefetchFeeder", "make_feeder"]

#: ``preload="auto"`` holds datasets up to this many bytes on the device
AUTO_PRELOAD_BYTES = 1 << 30
_PRELOAD_CHUNK = 4096


def dataset_bytes(dataset: ImageDataset) -> int:
    """Size of the dataset as uint8 pixels."""
    return len(dataset) * dataset.channels * dataset.image_size**2


class DeviceFeeder:
    """The whole dataset as one uint8 tensor on ``device``; batches are indexed there."""

    def __init__(self, dataset: ImageDataset, device: torch.device) -> None:
        n = len(dataset)
        shape = (n, dataset.channels, dataset.image_size, dataset.image_size)
        self.images = torch.empty(shape, dtype=torch.uint8, device=device)
        for start in range(0, n, _PRELOAD_CHUNK):
            indices = torch.arange(start, min(n, start + _PRELOAD_CHUNK))
            images, _ = dataset.get_batch(indices)
            self.images[start : start + len(indices)].copy_(
                _checked(images, indices, dataset), non_blocking=True
            )
        self.device = device

    def batches(self, order: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        order = order.to(self.device, non_blocking=True)
        for indices in order:
            yield self.images[indices], indices

    def close(self) -> None:
        """Nothing to release (the tensor goes with the feeder)."""


class PrefetchFeeder:
    """``dataset.get_batch`` in a background thread, one batch ahead of the training step."""

    def __init__(self, dataset: ImageDataset, device: torch.device, depth: int = 2) -> None:
        self.dataset = dataset
        self.device = device
        self.depth = depth
        self.pin = device.type == "cuda"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phenossl-prefetch")

    def _load(self, indices: Tensor) -> Tensor:
        images, _ = self.dataset.get_batch(indices)
        images = _checked(images, indices, self.dataset)
        return images.pin_memory() if self.pin else images

    def batches(self, order: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        for images, indices in read_ahead(self._load, order, self._pool, self.depth):
            yield (
                images.to(self.device, non_blocking=True),
                indices.to(self.device, non_blocking=True),
            )

    def close(self) -> None:
        """Stop the background thread."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def make_feeder(
    dataset: ImageDataset, device: torch.device, preload: str = "auto"
) -> DeviceFeeder | PrefetchFeeder:
    """:class:`DeviceFeeder` for ``preload="always"`` (or ``"auto"`` and at most
    :data:`AUTO_PRELOAD_BYTES`), :class:`PrefetchFeeder` otherwise."""
    if preload not in ("auto", "always", "never"):
        raise ValueError(f"data.preload={preload!r}; expected 'auto', 'always' or 'never'")
    if preload == "always" or (preload == "auto" and dataset_bytes(dataset) <= AUTO_PRELOAD_BYTES):
        return DeviceFeeder(dataset, device)
    return PrefetchFeeder(dataset, device)


def _checked(images: Any, indices: Tensor, dataset: ImageDataset) -> Tensor:
    size = dataset.image_size
    expected = (len(indices), dataset.channels, size, size)
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.shape != expected:
        got = (
            f"{images.dtype} {tuple(images.shape)}"
            if isinstance(images, Tensor)
            else type(images).__name__
        )
        raise ValueError(
            f"{type(dataset).__name__}.get_batch returned {got}; expected a uint8 tensor of "
            f"shape {expected}"
        )
    return images
