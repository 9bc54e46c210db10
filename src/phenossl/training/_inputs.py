"""Image batches into a model: scaling and normalisation, prefetching, a private random stream."""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from phenossl._device import memory_format
from phenossl.data.image_dataset import ImageDataset

if TYPE_CHECKING:
    from phenossl.models.backbones import Backbone

Normalize = tuple[Sequence[float], Sequence[float]]


class Preprocess:
    """uint8 batch -> float in [0, 1] -> optional resize -> ``(x - mean) / std`` on ``device``."""

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
        mean_t = channel_tensor(mean, channels, "mean")
        std_t = channel_tensor(std, channels, "std")
        if (std_t <= 0).any():
            raise ValueError(f"normalisation std {std_t.flatten().tolist()} must be > 0")
        if input_size is not None:
            check_positive(input_size, "input_size")
        self.mean = mean_t.to(device)
        self.std = std_t.to(device)
        self.size = input_size
        self.device = device

    def __call__(self, images: Tensor) -> Tensor:
        return self.scaled(images.to(self.device, non_blocking=True).float() / 255.0)

    def scaled(self, x: Tensor) -> Tensor:
        """Normalise a float batch already in [0, 1] (after augmentation)."""
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=memory_format(self.device))


class PrivateRNG:
    """A seeded random stream for code that draws from torch's global RNG (the augmentations).

    Inside :meth:`active` the global CPU (and CUDA) generator runs on this stream's state; on
    exit the stream's state is saved and the caller's restored, so other code is unaffected.
    """

    def __init__(self, seed: int, device: torch.device) -> None:
        self.cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=self.cuda):
            torch.manual_seed(seed)
            self._save()

    def _save(self) -> None:
        self.cpu_state = torch.get_rng_state()
        self.cuda_states = [torch.cuda.get_rng_state(d) for d in self.cuda]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=self.cuda):
            torch.set_rng_state(self.cpu_state)
            for d, state in zip(self.cuda, self.cuda_states):
                torch.cuda.set_rng_state(state, d)
            yield
            self._save()


def prefetch(
    dataset: ImageDataset, batches: Iterator[Tensor] | Sequence[Tensor]
) -> Iterator[tuple[Tensor, Tensor]]:
    """``dataset.get_batch`` of each index batch, reading the next batch in a thread."""
    if dataset.device.type != "cpu":  # in memory on the device: indexing is immediate
        for indices in batches:
            yield dataset.get_batch(indices)
        return
    pending: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                pending.put(item, timeout=0.1)
                return True
        return False

    def reader() -> None:
        try:
            for indices in batches:
                if not put(("batch", dataset.get_batch(indices))):
                    return
            put(("end", None))
        except BaseException as err:  # re-raised in the consumer
            put(("error", err))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        while True:
            kind, item = pending.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


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


def channel_tensor(values: Sequence[float], channels: int, what: str) -> Tensor:
    """One value per channel (a single value is repeated) as a ``(1, C, 1, 1)`` tensor."""
    flat = [float(v) for v in np.atleast_1d(np.asarray(values, dtype=np.float64))]
    if len(flat) == 1:
        flat *= channels
    if len(flat) != channels:
        raise ValueError(
            f"normalisation {what} has {len(flat)} values but the images have {channels} channels"
        )
    return torch.tensor(flat, dtype=torch.float32).view(1, -1, 1, 1)
