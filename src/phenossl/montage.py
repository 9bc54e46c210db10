"""Display images of crops: RGB composites and galleries of centroid-nearest cells.

Colours match the GUI's additive channel layers: DAPI blue, Tubulin green, Actin red. Each
channel drives one RGB primary, so the additive composite is a channel reordering.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from phenossl._atomic import atomic_open

# RGB output channel <- crop channel (crops are DAPI, Tubulin, Actin)
_RGB_FROM_CROP = (2, 1, 0)  # red = Actin, green = Tubulin, blue = DAPI


def to_rgb(images: Any) -> np.ndarray:
    """DAPI/Tubulin/Actin crops ``(N, 3, S, S)`` -> display RGB ``(N, S, S, 3)`` uint8.

    uint8 input is used as is; float input is taken as [0, 1] (clipped) and scaled to 0..255.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images has shape {images.shape}; expected (N, 3, S, S) DAPI/Tubulin/Actin crops"
        )
    if images.dtype.kind == "f":
        images = np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif images.dtype != np.uint8:
        raise ValueError(f"images has dtype {images.dtype}; expected uint8 or float in [0, 1]")
    return np.ascontiguousarray(images[:, _RGB_FROM_CROP].transpose(0, 2, 3, 1))


def centroid_gallery(
    images: Any, nearest: np.ndarray, *, pad: int = 2, pad_value: int = 255
) -> np.ndarray:
    """Tile the centroid-nearest crops into one RGB image, one row per cluster.

    Parameters
    ----------
    images
        Crops ``(N, 3, S, S)``: an array, a CropSet-like object with ``images(indices)``, or an
        object with an ``images`` array (the result of ``crop_cells``).
    nearest
        int ``(K, n)`` row indices, closest first; -1 marks an empty slot (a black tile).
    pad
        Pixels of ``pad_value`` around and between tiles.

    Returns
    -------
    numpy.ndarray
        uint8 ``(K * S + (K + 1) * pad, n * S + (n + 1) * pad, 3)``.
    """
    nearest = np.asarray(nearest)
    if nearest.ndim != 2 or nearest.shape[1] == 0 or nearest.dtype.kind not in "iu":
        raise ValueError(
            f"nearest has shape {nearest.shape} and dtype {nearest.dtype}; expected integer "
            "indices (K, n) with n >= 1"
        )
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad={pad!r}; expected an integer >= 0")
    if (nearest < -1).any():
        raise ValueError("nearest has indices below -1; expected row indices or -1 padding")
    wanted = np.unique(nearest[nearest >= 0])
    tiles = to_rgb(_take(images, wanted))
    size = tiles.shape[1] if len(tiles) else _crop_size(images)
    k, n = nearest.shape
    step = size + pad
    out = np.full((k * step + pad, n * step + pad, 3), pad_value, dtype=np.uint8)
    position = {int(index): i for i, index in enumerate(wanted)}
    for row in range(k):
        for col in range(n):
            y, x = pad + row * step, pad + col * step
            index = int(nearest[row, col])
            out[y : y + size, x : x + size] = tiles[position[index]] if index >= 0 else 0
    return out


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 image as PNG (via Pillow, atomically); returns the path."""
    from PIL import Image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(
            f"rgb has shape {rgb.shape} and dtype {rgb.dtype}; expected (H, W, 3) uint8"
        )
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        Image.fromarray(rgb).save(handle, format="PNG")
    return path


def _take(images: Any, indices: np.ndarray) -> np.ndarray:
    """Rows ``indices`` (sorted, unique) of an array, a CropSet-like or a Crops-like object."""
    getter: Any = getattr(images, "images", None)
    if callable(getter):  # CropSet: reads only the requested rows from disk
        n = len(images)
        source = None
    else:
        source = np.asarray(getter if getter is not None else images)
        n = len(source)
    if len(indices) and indices[-1] >= n:
        raise ValueError(f"nearest refers to row {int(indices[-1])}, but there are {n} crops")
    return np.asarray(getter(indices) if source is None else source[indices])


def _crop_size(images: Any) -> int:
    size = getattr(images, "size", None)
    if isinstance(size, int):
        return size
    shape = np.shape(getattr(images, "images", images))
    if len(shape) != 4:
        raise ValueError(f"cannot tell the crop size of images with shape {shape}")
    return int(shape[-1])
