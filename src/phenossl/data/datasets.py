"""Training datasets by name: CIFAR-10/100, MNIST, an ImageNet-100 folder and CropSets.

``build_dataset(name, root, split=..., download=False, **options)`` returns an
:class:`~phenossl.data.image_dataset.ImageDataset` (the "Training datasets" contract in
docs/architecture.md). What ``root`` holds:

=============== ===================================================================================
``cifar10``     ``root/cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``,
                ``batches.meta``): torchvision's python-pickle layout. Option ``labels`` for
``cifar100``    ``root/cifar-100-python/`` (``train``, ``test``, ``meta``): ``"fine"`` (100
                classes, default) or ``"coarse"`` (20 superclasses). Splits ``train``/``test``.
``mnist``       the four official IDX files (``train-images-idx3-ubyte.gz``,
                ``train-labels-idx1-ubyte.gz``, ``t10k-*``), ``.gz`` or not, in ``root`` or in
                ``root/MNIST/raw`` (where torchvision downloads them). Splits ``train``/``test``.
``imagenet100`` ``root/<split>/<wnid>/*.JPEG`` (any of ``IMAGE_EXTENSIONS``); splits ``train``
                and ``val`` (``test`` reads ``root/test`` when present, else ``root/val``).
                Options ``resize`` (short side, 256), ``crop`` (centre crop, 224), ``workers``.
``cropset``     a CropSet folder. ``split`` keeps the rows whose ``split`` column has that value
                (None: every row); option ``label_column`` (e.g. ``treatment``) gives the
                classes; ``stats_samples`` crops estimate ``mean``/``std``.
=============== ===================================================================================

Every dataset also takes ``limit`` (keep N images: the first N, or a random N with
``limit_seed``) for quick runs.

CIFAR and MNIST are read straight from their files (see :mod:`phenossl.data.cifar` and
:mod:`phenossl.data.idx`: torchvision's md5 checks would reject the small data tests write and
re-compressed MNIST files) and live in memory as one uint8 tensor. ``download=True`` fetches
a missing CIFAR/MNIST folder with torchvision; ImageNet-100 and CropSets cannot be downloaded.

``mean``/``std``: computed exactly from the split's own pixels for CIFAR and MNIST (on the real
training sets CIFAR-10 gives (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616) and MNIST
0.1307 / 0.3081), ImageNet's standard values for ImageNet-100, a sample of crops for CropSets.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phenossl.data.cifar import cifar_folder, read_cifar, write_cifar_like
from phenossl.data.idx import read_idx
from phenossl.data.image_dataset import (
    CropSetDataset,
    ImageDataset,
    ImageFolderDataset,
    TensorImageDataset,
)

__all__ = ["DATASETS", "ImageDataset", "build_dataset", "limit_dataset", "write_cifar_like"]

_CIFAR_FILES = {10: "data_batch_1..5, test_batch, batches.meta", 100: "train, test, meta"}
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def build_dataset(
    name: str,
    root: str | os.PathLike,
    *,
    split: str | None = "train",
    download: bool = False,
    **options: Any,
) -> ImageDataset:
    """Open a training/evaluation dataset by name; see the module docstring for each name.

    Parameters
    ----------
    name
        One of :data:`DATASETS`.
    root
        Where the data lives (a CropSet folder for ``cropset``).
    split
        ``"train"``/``"test"`` (``"val"`` for ImageNet-100); for a CropSet the value of its
        ``split`` column, or None for every crop.
    download
        Fetch a missing CIFAR/MNIST folder with torchvision (needs the internet).
    options
        Dataset options (module docstring), plus ``limit`` and ``limit_seed`` for every dataset.

    Raises
    ------
    ValueError
        Unknown name, split or option (the message lists the accepted ones), or malformed files.
    FileNotFoundError
        The data is not where it should be; the message says what is expected where.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    builder = _BUILDERS[name]
    limit = options.pop("limit", None)
    limit_seed = options.pop("limit_seed", None)
    accepted = [p for p in inspect.signature(builder).parameters if p not in _COMMON]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for dataset {name!r}; accepted: "
            f"{', '.join([*accepted, 'limit', 'limit_seed'])}"
        )
    dataset = builder(Path(root), split=split, download=bool(download), **options)
    return dataset if limit is None else limit_dataset(dataset, limit, seed=limit_seed)


def limit_dataset(dataset: ImageDataset, limit: int, *, seed: int | None = None) -> ImageDataset:
    """The first ``limit`` images, or ``limit`` random ones (in index order) with a ``seed``.

    The whole dataset comes back when it has at most ``limit`` images.
    """
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1:
        raise ValueError(f"limit={limit!r}; expected a positive integer")
    n = len(dataset)
    if limit >= n:
        return dataset
    if seed is None:
        rows = np.arange(limit)
    else:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=int(limit), replace=False))
    return dataset.subset(rows)


def _cifar(
    root: Path, *, split: str | None, download: bool, num_classes: int, labels: str = "fine"
) -> ImageDataset:
    name = f"cifar{num_classes}"
    split = _check_split(name, split, ("train", "test"))
    folder = cifar_folder(root, num_classes)
    if not folder.is_dir():
        if not download:
            files = _CIFAR_FILES[num_classes]
            raise FileNotFoundError(
                f"{name} not found: expected the folder {folder} holding torchvision's "
                f"python-pickle files ({files}); pass download=True to fetch it"
            )
        _torchvision_download(name, root, split)
    data = read_cifar(root, num_classes=num_classes, split=split, labels=labels)
    return TensorImageDataset(
        torch.from_numpy(data.images),
        torch.from_numpy(data.labels),
        name=name,
        classes=data.classes,
    )


def _mnist(root: Path, *, split: str | None, download: bool) -> ImageDataset:
    split = _check_split("mnist", split, ("train", "test"))
    stems = MNIST_FILES[split]
    paths = [_find_mnist_file(root, stem) for stem in stems]
    if None in paths:
        if not download:
            wanted = ", ".join(f"{s}.gz" for s in stems)
            raise FileNotFoundError(
                f"mnist {split} files not found: expected {wanted} (or uncompressed) in {root} "
                f"or {root / 'MNIST' / 'raw'}; pass download=True to fetch them"
            )
        _torchvision_download("mnist", root, split)
        paths = [_find_mnist_file(root, stem) for stem in stems]
    first, second = paths
    if first is None or second is None:  # the download did not leave them where expected
        raise FileNotFoundError(f"mnist {split} files not found in {root} after the download")
    images, labels = read_idx(first, ndim=3), read_idx(second, ndim=1)
    if len(images) != len(labels):
        raise ValueError(
            f"{paths[0]} holds {len(images)} images but {paths[1]} {len(labels)} labels"
        )
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"{paths[0]}: images are {images.shape[1:]}; expected square images")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{paths[1]}: label {labels.max()} outside the digits 0..9")
    return TensorImageDataset(
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        name="mnist",
        classes=[str(d) for d in range(10)],
    )


def _find_mnist_file(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw"):
        for name in (f"{stem}.gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def _imagenet100(
    root: Path,
    *,
    split: str | None,
    download: bool,
    resize: int = 256,
    crop: int = 224,
    workers: int | None = None,
) -> ImageDataset:
    split = _check_split("imagenet100", split, ("train", "val", "test"))
    folder = root / split
    if split == "test" and not folder.is_dir():
        folder = root / "val"
    if not folder.is_dir() and download:
        raise ValueError(
            "imagenet100 cannot be downloaded: build the folder from ImageNet (ILSVRC-2012) with "
            f"the 100-class list of Tian et al. and put it at {root}/train and {root}/val"
        )
    return ImageFolderDataset(folder, resize=resize, crop=crop, workers=workers, name="imagenet100")


def _cropset(
    root: Path,
    *,
    split: str | None,
    download: bool,
    label_column: str | None = None,
    stats_samples: int = 2048,
) -> ImageDataset:
    from phenossl.data.cropset import CropSet

    if download:
        raise ValueError("a CropSet cannot be downloaded; make one with `phenossl crops`")
    if split is not None and not isinstance(split, str):
        raise ValueError(f"split={split!r}; expected a value of the CropSet's split column or None")
    return CropSetDataset(
        CropSet(root), label_column=label_column, split=split, stats_samples=stats_samples
    )


def _check_split(name: str, split: str | None, accepted: tuple[str, ...]) -> str:
    if split not in accepted:
        raise ValueError(f"split={split!r} for {name}; expected one of {', '.join(accepted)}")
    return split


def _torchvision_download(name: str, root: Path, split: str) -> None:
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100, "mnist": datasets.MNIST}
    cls[name](root=str(root), train=split == "train", download=True)


_COMMON = ("root", "split", "download", "num_classes")
_BUILDERS: dict[str, Callable[..., ImageDataset]] = {
    "cifar10": partial(_cifar, num_classes=10),
    "cifar100": partial(_cifar, num_classes=100),
    "mnist": _mnist,
    "imagenet100": _imagenet100,
    "cropset": _cropset,
}
#: dataset names accepted by :func:`build_dataset`
DATASETS: tuple[str, ...] = tuple(_BUILDERS)
