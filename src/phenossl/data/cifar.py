"""CIFAR-10/100 in torchvision's python-pickle layout: a safe reader and a small-data writer.

The official "python version" archives unpack to::

    cifar-10-batches-py/  data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/     train, test, meta

Each data file is a pickled dict with ``data`` (uint8 ``(n, 3072)``: 1024 red, 1024 green, 1024
blue values, each a 32 x 32 image in row order), ``labels`` (CIFAR-10) or ``fine_labels`` and
``coarse_labels`` (CIFAR-100), ``filenames`` and ``batch_label``; the meta file holds the class
names (``label_names``; ``fine_label_names`` and ``coarse_label_names``).

Why not ``torchvision.datasets.CIFAR10``: it refuses any folder whose files do not have the
official md5 sums, so the small data that tests and smoke runs write in the official layout
(:func:`write_cifar_like`) would be rejected. :func:`read_cifar` reads the same files with an
unpickler that only rebuilds numpy arrays, lists, dicts and strings, so a file a user hands us
cannot run code. torchvision is still what ``download=True`` uses (see ``data.datasets``).
"""

from __future__ import annotations

import colorsys
import io
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FOLDERS = {10: "cifar-10-batches-py", 100: "cifar-100-python"}
_FILES = {
    10: {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    100: {"train": ["train"], "test": ["test"]},
}
_META = {10: "batches.meta", 100: "meta"}
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SIZE = 32
_ROW = 3 * IMAGE_SIZE * IMAGE_SIZE

# the globals a CIFAR pickle needs: numpy array reconstruction (numpy 1 and 2 module names), and
# _codecs.encode and bytes, which protocol-2 pickles written by Python 3 use for (empty) bytes
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("__builtin__", "bytes"),
    ("builtins", "bytes"),
}


@dataclass(frozen=True)
class CifarSplit:
    """One split of CIFAR read from disk."""

    images: np.ndarray  # uint8 (N, 3, 32, 32)
    labels: np.ndarray  # int64 (N,)
    classes: list[str]


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a CIFAR file holds only arrays, lists and strings"
        )


def _load_pickle(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file missing: {path}")
    try:
        with open(path, "rb") as fh:
            obj = _SafeUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{path}: not a CIFAR python-pickle file ({err}); expected the files of the official "
            "'python version' archive"
        ) from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: holds a {type(obj).__name__}; expected a dict")
    # Python 2 pickles of the official files may decode keys as bytes
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def cifar_folder(root: str | os.PathLike, num_classes: int) -> Path:
    """The folder holding the CIFAR files: ``root/<official folder>``, or ``root`` itself."""
    _check_num_classes(num_classes)
    root = Path(root)
    return root if root.name == FOLDERS[num_classes] else root / FOLDERS[num_classes]


def read_cifar(
    root: str | os.PathLike, *, num_classes: int = 10, split: str = "train", labels: str = "fine"
) -> CifarSplit:
    """Read one split of CIFAR-10 or CIFAR-100 from the official python-pickle files.

    Parameters
    ----------
    root
        The folder holding ``cifar-10-batches-py`` / ``cifar-100-python`` (or that folder).
    num_classes
        10 or 100.
    split
        ``"train"`` or ``"test"``.
    labels
        CIFAR-100 only: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).

    Raises
    ------
    FileNotFoundError
        The folder or one of its files is missing (the message lists what is expected).
    ValueError
        A file is not a CIFAR pickle, or its arrays have the wrong shape, dtype or labels.
    """
    _check_num_classes(num_classes)
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}; CIFAR has 'train' and 'test'")
    if labels not in ("fine", "coarse") or (num_classes == 10 and labels != "fine"):
        raise ValueError(f"labels={labels!r}; expected 'fine' (or 'coarse' for CIFAR-100)")
    folder = cifar_folder(root, num_classes)
    meta = _load_pickle(folder / _META[num_classes])
    names_key = "label_names" if num_classes == 10 else f"{labels}_label_names"
    label_key = "labels" if num_classes == 10 else f"{labels}_labels"
    classes = meta.get(names_key)
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{folder / _META[num_classes]}: no list of class names {names_key!r}")
    images, targets = [], []
    for name in _FILES[num_classes][split]:
        path = folder / name
        entry = _load_pickle(path)
        data, y = entry.get("data"), entry.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
            raise ValueError(f"{path}: 'data' must be a uint8 array (n, {_ROW})")
        if data.shape[1] != _ROW:
            raise ValueError(f"{path}: 'data' has shape {data.shape}; expected (n, {_ROW})")
        y = np.asarray(y if y is not None else [], dtype=np.int64)
        if y.shape != (len(data),):
            raise ValueError(f"{path}: {y.size} {label_key!r} for {len(data)} images")
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise ValueError(
                f"{path}: {label_key!r} outside 0..{len(classes) - 1} (the meta file's classes)"
            )
        images.append(data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE))
        targets.append(y)
    return CifarSplit(np.concatenate(images), np.concatenate(targets), list(classes))


def write_cifar_like(
    root: str | os.PathLike,
    *,
    n_train: int = 500,
    n_test: int = 100,
    num_classes: int = 10,
    seed: int = 0,
) -> Path:
    """Write small, learnable CIFAR-like data in the exact official python-pickle layout.

    Class ``c`` has its own hue (``c mod 10``) and its own stripe pattern (orientation and
    frequency, from ``c`` for CIFAR-10 and ``c // 10`` for CIFAR-100); each image adds a random
    phase, brightness and pixel noise. Labels are balanced and shuffled. CIFAR-10 gets the
    official class names, CIFAR-100 the names ``class_00``.. and 20 coarse classes
    ``superclass_00``.. (fine class ``c`` belongs to superclass ``c // 5``). The training images
    are spread over ``data_batch_1..5`` as evenly as possible.

    Parameters
    ----------
    root
        Folder to write into; ``root/cifar-10-batches-py`` (or ``cifar-100-python``) must not
        exist yet.
    n_train, n_test
        Number of images per split.
    num_classes
        10 or 100.
    seed
        Seed of the images and labels.

    Returns
    -------
    Path
        The written ``cifar-10-batches-py`` / ``cifar-100-python`` folder.
    """
    _check_num_classes(num_classes)
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name}={n!r}; expected an integer >= 0")
    folder = Path(root) / FOLDERS[num_classes]
    if folder.exists():
        raise FileExistsError(f"{folder} already exists; write_cifar_like writes a new folder")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    train_x, train_y = _render(n_train, num_classes, rng)
    test_x, test_y = _render(n_test, num_classes, rng)
    if num_classes == 10:
        chunks = np.array_split(np.arange(n_train), 5)
        for i, rows in enumerate(chunks, start=1):
            labels = {"labels": train_y[rows].tolist()}
            _write_batch(
                folder / f"data_batch_{i}", train_x[rows], labels, f"training batch {i} of 5"
            )
        labels = {"labels": test_y.tolist()}
        _write_batch(folder / "test_batch", test_x, labels, "testing batch 1 of 1")
        meta = {
            "num_cases_per_batch": math.ceil(n_train / 5),
            "label_names": list(CIFAR10_CLASSES),
            "num_vis": _ROW,
        }
    else:
        for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
            labels = {"fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist()}
            _write_batch(folder / name, x, labels, name)
        meta = {
            "fine_label_names": [f"class_{c:02d}" for c in range(100)],
            "coarse_label_names": [f"superclass_{c:02d}" for c in range(20)],
        }
    _dump(folder / _META[num_classes], meta)
    return folder


def _render(n: int, num_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``uint8 (n, 3, 32, 32)`` and their balanced, shuffled labels."""
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    hue = (labels % 10) / 10.0
    colour = np.array([colorsys.hsv_to_rgb(h, 0.75, 0.85) for h in hue]).reshape(n, 3, 1, 1)
    pattern = labels if num_classes == 10 else labels // 10
    angle = np.pi * pattern / 10.0
    frequency = (1.0 + (pattern % 3)) / 8.0  # cycles per pixel: 1/8, 1/4, 3/8
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    along = xx * np.cos(angle)[:, None, None] + yy * np.sin(angle)[:, None, None]
    stripes = 0.5 + 0.5 * np.cos(2 * np.pi * frequency[:, None, None] * along + phase)
    brightness = rng.uniform(0.8, 1.2, size=(n, 1, 1, 1))
    image = colour * (0.45 + 0.55 * stripes[:, None]) * brightness
    image += rng.normal(0.0, 0.05, size=image.shape)
    return np.clip(np.round(255 * image), 0, 255).astype(np.uint8), labels


def _write_batch(
    path: Path, images: np.ndarray, labels: dict[str, list[int]], batch_label: str
) -> None:
    names = [f"{path.name}_{i:06d}.png" for i in range(len(images))]
    entry = {
        "batch_label": batch_label,
        **labels,
        "data": images.reshape(len(images), _ROW),
        "filenames": names,
    }
    _dump(path, entry)


def _dump(path: Path, obj: dict[str, Any]) -> None:
    # protocol 2, as the official files (Python 2 pickles)
    buffer = io.BytesIO()
    pickle.dump(obj, buffer, protocol=2)
    path.write_bytes(buffer.getvalue())


def _check_num_classes(num_classes: int) -> None:
    if num_classes not in FOLDERS:
        raise ValueError(f"num_classes={num_classes!r}; expected 10 (CIFAR-10) or 100 (CIFAR-100)")
