"""Single-cell crops of one field (see the Crops contract in docs/architecture.md).

``crop_cells`` cuts fixed-size crops centred on each nucleus of one field; many fields' crops
go on disk as a CropSet (:mod:`phenossl.data.cropset`).

Crop geometry: a crop of ``size`` pixels covers rows ``cy - size // 2 .. cy - size // 2 + size``
(same for columns), where ``cy`` is the nucleus centroid rounded to the nearest pixel; the
centroid pixel lands at ``crop[:, size // 2, size // 2]``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from phenossl.cells.segment import Segmentation

__all__ = ["BORDER_POLICIES", "Crops", "crop_cells", "to_uint8"]

BORDER_POLICIES = ("drop", "pad")


@dataclass(repr=False)
class Crops:
    """Crops of one field.

    Attributes
    ----------
    images
        ``uint8 (N, 3, size, size)``, channels DAPI, Tubulin, Actin, ``round(255 * value)``.
    table
        The segmentation table rows of the cropped cells, in crop order (index 0..N-1).
    n_dropped
        Cells left out because their crop would leave the field (``border="drop"``).
    """

    images: np.ndarray
    table: pd.DataFrame
    n_dropped: int

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"Crops(n={len(self)}, size={self.images.shape[-1]}, n_dropped={self.n_dropped})"


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Map a normalised float image to ``uint8`` as ``round(255 * clip(value, 0, 1))``."""
    scaled = np.multiply(image, np.float32(255), dtype=np.float32)
    np.clip(scaled, 0, 255, out=scaled)
    np.rint(scaled, out=scaled)
    return scaled.astype(np.uint8)


def crop_cells(
    image: np.ndarray,
    segmentation: Segmentation,
    *,
    size: int = 196,
    border: str = "drop",
    field_id: str | None = None,
) -> Crops:
    """Cut a ``size x size`` crop centred on every nucleus of a segmented field.

    Parameters
    ----------
    image
        The normalised float ``(3, H, W)`` field that was segmented (``uint8`` is used as is).
    segmentation
        Its :class:`~phenossl.cells.segment.Segmentation`; crops are centred on
        ``table.centroid_y`` / ``centroid_x`` rounded to the nearest pixel.
    size
        Crop side in pixels (the paper's 196).
    border
        ``"drop"`` (default, as in the paper): a crop must lie fully inside the field; cells
        closer to the border are left out and counted in ``n_dropped``. ``"pad"``: keep every
        cell and fill the part of the crop outside the field with zeros.
    field_id
        Named in the warning issued when the field has no cells.

    Returns
    -------
    Crops
        ``uint8 (N, 3, size, size)`` crops, the kept table rows and the number dropped.

    Examples
    --------
    >>> from phenossl.cells.segment import segment
    >>> yy, xx = np.mgrid[:128, :128]
    >>> image = np.zeros((3, 128, 128), np.float32)
    >>> for cy, cx in ((40, 40), (88, 80)):
    ...     d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    ...     image[0][d2 < 12**2] = 1.0
    ...     image[1:, d2 < 24**2] = 0.5
    >>> crops = crop_cells(image, segment(image), size=32)
    >>> crops
    Crops(n=2, size=32, n_dropped=0)
    >>> crops.images.shape, crops.images.dtype
    ((2, 3, 32, 32), dtype('uint8'))
    """
    if border not in BORDER_POLICIES:
        raise ValueError(f"border={border!r}: expected one of {BORDER_POLICIES}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    size = int(size)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image: expected a (3, H, W) array, got shape {image.shape}")
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image: expected a normalised float (or uint8) array, got {image.dtype}")
    if image.shape[1:] != segmentation.nuclei.shape:
        raise ValueError(
            f"image shape {image.shape[1:]} does not match the segmentation's "
            f"{segmentation.nuclei.shape}"
        )
    table = segmentation.table
    if len(table) == 0:
        where = f" in field {field_id}" if field_id is not None else ""
        warnings.warn(f"no cells found{where}: no crops", stacklevel=2)
        return Crops(np.zeros((0, 3, size, size), np.uint8), table.iloc[:0].copy(), 0)

    centre_y = table["centroid_y"].to_numpy(np.float64)
    centre_x = table["centroid_x"].to_numpy(np.float64)
    bad = ~(np.isfinite(centre_y) & np.isfinite(centre_x))
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(f"segmentation table: centroid_y/centroid_x not finite in rows {rows}")
    height, width = image.shape[1:]
    half = size // 2
    top = np.floor(centre_y + 0.5).astype(np.intp) - half
    left = np.floor(centre_x + 0.5).astype(np.intp) - half
    inside = (top >= 0) & (left >= 0) & (top + size <= height) & (left + size <= width)
    keep = inside if border == "drop" else np.ones(len(table), dtype=bool)
    n_kept = int(keep.sum())
    pixels = image if image.dtype == np.uint8 or n_kept == 0 else to_uint8(image)

    allocate = np.empty if border == "drop" else np.zeros  # "drop": every crop is filled
    out = allocate((n_kept, 3, size, size), dtype=np.uint8)
    for k, (y, x, whole) in enumerate(zip(top[keep], left[keep], inside[keep])):
        if whole:
            out[k] = pixels[:, y : y + size, x : x + size]
        else:  # "pad": copy the part of the crop that overlaps the field
            y0, x0 = max(y, 0), max(x, 0)
            y1, x1 = min(y + size, height), min(x + size, width)
            if y0 < y1 and x0 < x1:
                out[k, :, y0 - y : y1 - y, x0 - x : x1 - x] = pixels[:, y0:y1, x0:x1]
    kept = table[keep].reset_index(drop=True)
    return Crops(images=out, table=kept, n_dropped=int((~keep).sum()))
