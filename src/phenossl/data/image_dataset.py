"""Image datasets for training and evaluation: uint8 batches by index, plus labels and statistics.

An :class:`ImageDataset` (the "Training datasets" contract in docs/architecture.md) has
``len()``, ``classes`` (list of str, empty when unlabelled), ``channels``, ``image_size`` (side
of the square images), ``mean``/``std`` (per channel, in [0, 1] units), ``targets`` (int64
tensor, -1 where unlabelled) and ``get_batch(indices) -> (uint8 (b, C, S, S), int64 (b,))``.

Three kinds:

- :class:`TensorImageDataset`: every image in one uint8 tensor (CIFAR, MNIST); ``to(device)``
  moves it to the GPU whole, and batches then come out on that device.
- :class:`ImageFolderDataset`: ``folder/<class>/<image>`` decoded lazily (ImageNet-100).
- :class:`CropSetDataset`: a phenossl CropSet, memory-mapped (BBBC021 crops).

``subset(indices)`` gives a smaller dataset with the same classes and the parent's ``mean``/
``std``, so a quick run on a few thousand images normalises like the full dataset.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from phenossl._scaling import per_channel

if TYPE_CHECKING:
    from phenossl.data.cropset import CropSet

Indices = Tensor | np.ndarray | Sequence[int]
Stats = tuple[float, ...]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_STATS_CHUNK = 1024
# images a fingerprint hashes (evenly spaced over the dataset)
FINGERPRINT_IMAGES = 64


class ImageDataset(ABC):
    """Images addressed by index, with labels and normalisation statistics; see the module doc.

    Subclasses set ``name``, ``classes``, ``channels``, ``image_size`` and ``_targets`` (one
    label per image, which also gives the length) and implement ``_read``.
    """

    name: str
    classes: list[str]
    channels: int
    image_size: int
    _targets: Tensor

    def __len__(self) -> int:
        return len(self._targets)

    @property
    def targets(self) -> Tensor:
        """int64 ``(N,)`` class indices on the CPU (``-1`` where unlabelled)."""
        return self._targets

    @abstractmethod
    def _read(self, positions: np.ndarray) -> Tensor:
        """uint8 ``(b, C, S, S)`` images at validated int64 positions."""

    def get_batch(self, indices: Indices) -> tuple[Tensor, Tensor]:
        """Images ``uint8 (b, C, S, S)`` and targets ``int64 (b,)`` at ``indices`` (any order)."""
        positions = check_indices(indices, len(self), self.name)
        return self._read(positions), self.targets[torch.from_numpy(positions)]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        images, targets = self.get_batch([index])
        return images[0], int(targets[0])

    @property
    def mean(self) -> Stats:
        """Per-channel mean of the pixel values / 255."""
        return self._stats[0]

    @property
    def std(self) -> Stats:
        """Per-channel (population) standard deviation of the pixel values / 255."""
        return self._stats[1]

    @cached_property
    def _stats(self) -> tuple[Stats, Stats]:
        return pixel_statistics(self._stats_batches(), self.channels)

    def _stats_batches(self) -> Iterable[Tensor]:
        """Batches the statistics are computed from: every image, by default."""
        n = len(self)
        for start in range(0, n, _STATS_CHUNK):
            yield self._read(np.arange(start, min(n, start + _STATS_CHUNK), dtype=np.int64))

    @cached_property
    def fingerprint(self) -> str:
        """A content fingerprint: size, shape, every label and a sample of the images.

        Identifies the data by what it is, not where it lies: a run resumed on the same data
        reached by another path keeps its fingerprint; other data (another split, a
        re-normalised CropSet) does not. The images hashed are :data:`FINGERPRINT_IMAGES`
        evenly spaced ones, so the cost stays small for any dataset.

        Examples
        --------
        >>> images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
        >>> ds = TensorImageDataset(images, torch.tensor([0, 1, 0, 1]), name="x", classes=["a", "b"])
        >>> len(ds.fingerprint)
        16
        """
        import hashlib

        n = len(self)
        digest = hashlib.blake2b(digest_size=8)
        digest.update(f"{n}:{self.channels}:{self.image_size}:{len(self.classes)}".encode())
        digest.update(self.targets.numpy().astype("<i8").tobytes())
        if n:
            positions = np.unique(
                np.linspace(0, n - 1, min(n, FINGERPRINT_IMAGES)).astype(np.int64)
            )
            digest.update(np.ascontiguousarray(self._read(positions).cpu().numpy()).tobytes())
        return digest.hexdigest()

    def subset(self, indices: Indices) -> ImageDataset:
        """The images at ``indices`` as a dataset (same classes, the parent's ``mean``/``std``)."""
        return _Subset(self, check_indices(indices, len(self), self.name))

    def to(self, device: str | torch.device) -> ImageDataset:
        """Move the images to ``device`` where the dataset holds them in memory; else a no-op."""
        return self

    @property
    def device(self) -> torch.device:
        """Where :meth:`get_batch` returns its tensors."""
        return torch.device("cpu")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, n={len(self)}, "
            f"classes={len(self.classes)}, channels={self.channels}, "
            f"image_size={self.image_size})"
        )


class TensorImageDataset(ImageDataset):
    """A dataset held in memory as one uint8 tensor ``(N, C, S, S)``.

    Parameters
    ----------
    images
        uint8 ``(N, C, S, S)``.
    targets
        int ``(N,)``, class indices into ``classes`` or -1.
    name
        Dataset name, for messages.
    classes
        Class names.
    mean, std
        Per-channel statistics; computed from ``images`` when None.
    """

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        *,
        name: str,
        classes: Sequence[str],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[2] != images.shape[3]:
            raise ValueError(
                f"{name}: images must be uint8 (N, C, S, S), got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        self.name = name
        self.classes = list(classes)
        self.channels = int(images.shape[1])
        self.image_size = int(images.shape[2])
        self.images = images
        self._targets = _check_targets(targets, len(images), len(self.classes), name)
        self._device_targets = self._targets.to(images.device)
        if (mean is None) != (std is None):
            raise ValueError(f"{name}: give both mean and std, or neither")
        if mean is not None:
            self._stats = (
                per_channel(mean, self.channels, f"{name}: mean"),
                per_channel(std, self.channels, f"{name}: std"),
            )

    @property
    def device(self) -> torch.device:
        return self.images.device

    def _read(self, positions: np.ndarray) -> Tensor:
        return self.images[torch.from_numpy(positions).to(self.images.device)]

    def get_batch(self, indices: Indices) -> tuple[Tensor, Tensor]:
        positions = check_indices(indices, len(self), self.name)
        index = torch.from_numpy(positions).to(self.images.device)
        return self.images[index], self._device_targets[index]

    def _stats_batches(self) -> Iterable[Tensor]:
        yield self.images

    def subset(self, indices: Indices) -> TensorImageDataset:
        """A compact copy of the images at ``indices`` (same device, the parent's statistics)."""
        positions = torch.from_numpy(check_indices(indices, len(self), self.name))
        return TensorImageDataset(
            self.images[positions.to(self.images.device)],
            self._targets[positions],
            name=self.name,
            classes=self.classes,
            mean=self.mean,
            std=self.std,
        )

    def to(self, device: str | torch.device) -> TensorImageDataset:
        """Move the images (and targets) to ``device``; returns ``self``."""
        self.images = self.images.to(device)
        self._device_targets = self._targets.to(device)
        return self


class ImageFolderDataset(ImageDataset):
    """Images in ``folder/<class>/<file>``, decoded lazily to fixed-size uint8 RGB tensors.

    Each image is converted to RGB, resized so its short side is ``resize`` pixels (bilinear,
    antialiased) and centre-cropped to ``crop`` x ``crop``: torchvision's standard ImageNet
    evaluation transform (256, then 224), so batches are fixed-size tensors. Classes are the
    sub-folder names in sorted order; files with the extensions in ``IMAGE_EXTENSIONS``
    (any case) are images. ``mean``/``std`` are ImageNet's standard values (computing them would
    decode every image).

    Parameters
    ----------
    folder
        The split folder, e.g. ``imagenet100/train``.
    resize, crop
        Short side after resizing, and side of the centre crop (``crop <= resize``).
    workers
        Threads decoding the images of a batch (default: up to 8, one per CPU).
    name
        Dataset name, for messages.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        resize: int = 256,
        crop: int = 224,
        workers: int | None = None,
        name: str = "imagefolder",
    ) -> None:
        folder = Path(folder)
        for key, value in (("resize", resize), ("crop", crop)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}={value!r}; expected a positive integer")
        if crop > resize:
            raise ValueError(f"crop={crop} is larger than resize={resize} (the short side)")
        if not folder.is_dir():
            raise FileNotFoundError(
                f"image folder not found: {folder}; expected {folder}/<class>/<image files>"
            )
        class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
        files, labels = [], []
        for label, class_dir in enumerate(class_dirs):
            found = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            files += found
            labels += [label] * len(found)
        if not files:
            raise FileNotFoundError(
                f"no images in {folder}; expected {folder}/<class>/<image> with extensions "
                f"{', '.join(IMAGE_EXTENSIONS)}"
            )
        self.name = name
        self.folder = folder
        self.classes = [p.name for p in class_dirs]
        self.channels = 3
        self.image_size = crop
        self.resize = resize
        self.files = files
        self.workers = workers or min(8, os.cpu_count() or 1)
        self._targets = torch.tensor(labels, dtype=torch.int64)
        self._stats = (IMAGENET_MEAN, IMAGENET_STD)

    def _read(self, positions: np.ndarray) -> Tensor:
        out = torch.empty((len(positions), 3, self.image_size, self.image_size), dtype=torch.uint8)
        if len(positions) == 0:
            return out
        paths = [self.files[i] for i in positions]
        if self.workers == 1 or len(paths) == 1:
            images: Iterable[Tensor] = map(self._decode, paths)
        else:
            with ThreadPoolExecutor(min(self.workers, len(paths))) as pool:
                images = list(pool.map(self._decode, paths))
        for row, image in enumerate(images):
            out[row] = image
        return out

    def _decode(self, path: Path) -> Tensor:
        from PIL import Image, UnidentifiedImageError
        from torchvision.transforms.v2 import functional as F

        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise ValueError(f"cannot decode image {path}: {err}") from None
        tensor = F.pil_to_tensor(rgb)
        tensor = F.resize(tensor, [self.resize], antialias=True)
        return F.center_crop(tensor, [self.image_size, self.image_size])


class CropSetDataset(ImageDataset):
    """A phenossl CropSet as an image dataset, read lazily from its memory-mapped shards.

    Parameters
    ----------
    cropset
        An open :class:`~phenossl.data.cropset.CropSet`.
    label_column
        Column of ``cells.csv`` whose values are the classes (e.g. ``treatment``, ``compound``,
        ``moa``); None leaves the crops unlabelled (``classes`` empty, targets -1). Classes are
        the column's distinct values over the *whole* CropSet, sorted (numbers numerically,
        written with ``%g``), so every split of one CropSet numbers them alike; a missing value
        has target -1.
    split
        Keep only the rows whose ``split`` column equals this value; None keeps every row.
    stats_samples
        ``mean``/``std`` are computed from this many crops drawn at random (seed 0) from the
        selected rows, or from all of them when there are fewer.
    name
        Dataset name, for messages.
    """

    def __init__(
        self,
        cropset: CropSet,
        *,
        label_column: str | None = None,
        split: str | None = None,
        stats_samples: int = 2048,
        name: str = "cropset",
    ) -> None:
        table = cropset.table
        where = f"CropSet {cropset.path}"
        if isinstance(stats_samples, bool) or not isinstance(stats_samples, int):
            raise ValueError(f"stats_samples={stats_samples!r}; expected a positive integer")
        if stats_samples < 1:
            raise ValueError(f"stats_samples={stats_samples!r}; expected a positive integer")
        classes: list[str] = []
        codes = np.full(len(table), -1, dtype=np.int64)
        if label_column is not None:
            if label_column not in table.columns:
                raise ValueError(
                    f"{where}: no column {label_column!r} in cells.csv; columns are "
                    f"{', '.join(map(str, table.columns))}"
                )
            classes, codes = _category_codes(table[label_column])
        if split is not None:
            if "split" not in table.columns:
                raise ValueError(
                    f"{where}: split={split!r} was asked for but cells.csv has no 'split' "
                    "column; pass split=None to use every crop"
                )
            mask = (table["split"].astype("string") == split).fillna(False).to_numpy(bool)
            if not mask.any():
                found = sorted(table["split"].dropna().astype(str).unique())
                raise ValueError(
                    f"{where}: no crop has split {split!r}; the 'split' column holds {found}"
                )
            cropset = cropset.subset(mask)
            codes = codes[mask]
        self.name = name
        self.cropset = cropset
        self.classes = classes
        self.channels = len(cropset.metadata.get("channels", ())) or 3
        self.image_size = int(cropset.size)
        self.stats_samples = stats_samples
        self._targets = torch.from_numpy(codes)

    def _read(self, positions: np.ndarray) -> Tensor:
        return torch.from_numpy(self.cropset.images(positions))

    def _stats_batches(self) -> Iterable[Tensor]:
        n = len(self)
        if n <= self.stats_samples:
            yield from super()._stats_batches()
            return
        rows = np.sort(np.random.default_rng(0).choice(n, self.stats_samples, replace=False))
        for start in range(0, len(rows), 256):
            yield self._read(rows[start : start + 256])


class _Subset(ImageDataset):
    """A view on some rows of a lazy dataset."""

    def __init__(self, parent: ImageDataset, positions: np.ndarray) -> None:
        self.parent = parent
        self.positions = positions
        self.name = parent.name
        self.classes = parent.classes
        self.channels = parent.channels
        self.image_size = parent.image_size
        self._stats = (parent.mean, parent.std)
        self._targets = parent.targets[torch.from_numpy(positions)]

    @property
    def device(self) -> torch.device:
        return self.parent.device

    def _read(self, positions: np.ndarray) -> Tensor:
        return self.parent._read(self.positions[positions])


def check_indices(indices: Indices, n: int, name: str = "dataset") -> np.ndarray:
    """``indices`` as int64 numpy positions in ``[0, n)`` (negative ones count from the end).

    Examples
    --------
    >>> check_indices([0, -1], 3)
    array([0, 2])
    """
    if isinstance(indices, Tensor):
        indices = indices.detach().cpu().numpy()
    positions = np.asarray(indices)
    if positions.size == 0:
        return np.zeros(0, dtype=np.int64)
    if positions.dtype == bool or not np.issubdtype(positions.dtype, np.integer):
        raise ValueError(f"{name}: indices must be integers, got {positions.dtype}")
    positions = positions.astype(np.int64).reshape(-1)
    low, high = positions.min(), positions.max()
    if low < -n or high >= n:
        bad = low if low < -n else high
        raise IndexError(f"{name}: index {bad} out of range for a dataset of {n} images")
    return np.where(positions < 0, positions + n, positions)


def pixel_statistics(batches: Iterable[Tensor], channels: int) -> tuple[Stats, Stats]:
    """Exact per-channel mean and standard deviation of uint8 images, in [0, 1] units.

    Counts each channel's 256 values over every batch (so the result does not depend on how the
    images are batched) and takes the moments of the histogram in float64.

    Examples
    --------
    >>> import torch
    >>> pixel_statistics([torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)], channels=1)
    ((0.5,), (0.5,))
    """
    counts = torch.zeros((channels, 256), dtype=torch.float64)
    for batch in batches:
        if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] != channels:
            raise ValueError(
                f"expected uint8 (b, {channels}, H, W) batches, got {batch.dtype} "
                f"{tuple(batch.shape)}"
            )
        for c in range(channels):
            plane = batch[:, c].reshape(-1).to(torch.int64)
            counts[c] += torch.bincount(plane, minlength=256).to(device="cpu", dtype=torch.float64)
    total = counts.sum(dim=1)
    if (total == 0).any():
        raise ValueError("cannot compute statistics of an empty dataset")
    values = torch.arange(256, dtype=torch.float64) / 255.0
    mean = (counts * values).sum(dim=1) / total
    var = (counts * (values - mean[:, None]) ** 2).sum(dim=1) / total
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


def _category_codes(column: pd.Series) -> tuple[list[str], np.ndarray]:
    values = column.dropna().unique()
    if pd.api.types.is_numeric_dtype(column):
        categories = sorted(values)
        names = [format(float(v), "g") for v in categories]
    else:
        categories = sorted(values, key=str)
        names = [str(v) for v in categories]
    codes = pd.Categorical(column, categories=categories).codes.astype(np.int64)
    return names, codes


def _check_targets(targets: Tensor, n: int, num_classes: int, name: str) -> Tensor:
    targets = torch.as_tensor(targets).to(device="cpu", dtype=torch.int64).reshape(-1)
    if len(targets) != n:
        raise ValueError(f"{name}: {len(targets)} targets for {n} images")
    if n and (targets.min() < -1 or targets.max() >= num_classes):
        raise ValueError(
            f"{name}: targets outside -1..{num_classes - 1} (there are {num_classes} classes)"
        )
    return targets
