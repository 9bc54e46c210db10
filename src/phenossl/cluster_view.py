"""What a person looks at after clustering the cells of a pipeline run (no Qt, no napari).

- :func:`cluster_colors`: one palette for the clusters, wherever they are drawn;
- :func:`iter_cluster_gallery`: the cells nearest each centroid, cut again from their fields,
  one row per cluster, a crosshair on each tile's cell and a left panel naming each row;
- :func:`segment_again` and :func:`field_clusters`: a field's cells as the run segmented them,
  with the cluster of each;
- :func:`composition_columns`: the cluster x label composition as plain columns with a total.

The napari widget, the CLI and experiments share these; the GUI only turns them into layers.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from phenossl._progress import ProgressGenerator

# Okabe-Ito: readable on a dark canvas and for colour-blind viewers
_CLUSTER_PALETTE = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#CC79A7",
    "#D55E00",
    "#0072B2",
    "#BBBBBB",
)
# matplotlib's tab20, for more clusters than the palette has
_TAB20 = (
    "#1F77B4", "#AEC7E8", "#FF7F0E", "#FFBB78", "#2CA02C", "#98DF8A", "#D62728", "#FF9896",
    "#9467BD", "#C5B0D5", "#8C564B", "#C49C94", "#E377C2", "#F7B6D2", "#7F7F7F", "#C7C7C7",
    "#BCBD22", "#DBDB8D", "#17BECF", "#9EDAE5",
)  # fmt: skip

GALLERY_PAD = 4
GALLERY_PAD_VALUE = 48


def cluster_colors(k: int) -> np.ndarray:
    """``(k, 4)`` float32 RGBA colours of clusters ``0..k-1`` (the same in every view).

    Examples
    --------
    >>> cluster_colors(2).shape
    (2, 4)
    """
    if k < 1:
        raise ValueError(f"k={k}; expected at least one cluster")
    if k <= len(_CLUSTER_PALETTE):
        names = _CLUSTER_PALETTE[:k]
    elif k <= len(_TAB20):
        names = _TAB20[:k]
    else:
        names = ()
    if names:
        rgb: list[Sequence[float]] = [
            [int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)] for c in names
        ]
    else:  # evenly spaced hues, alternating lightness
        rgb = [colorsys.hls_to_rgb(i / k, 0.55 if i % 2 else 0.65, 0.85) for i in range(k)]
    return np.column_stack([np.asarray(rgb, dtype=np.float32), np.ones(k, np.float32)])


# --- gallery -------------------------------------------------------------------------------


def iter_cluster_gallery(
    fields: pd.DataFrame,
    cells: pd.DataFrame,
    assignments: np.ndarray,
    nearest: np.ndarray,
    *,
    crop_size: int,
    percentiles: Sequence[float] = (1.0, 99.8),
) -> ProgressGenerator[np.ndarray]:
    """The labelled gallery of a run's centroid-nearest cells; yields progress per field read.

    Parameters
    ----------
    fields, cells
        The run's field table and per-cell table (:func:`phenossl.cells.recrop.iter_recrop`).
    assignments
        Cluster of each row of ``cells``.
    nearest
        ``(K, n)`` rows of ``cells`` nearest each centroid, -1 for an empty slot.
    crop_size, percentiles
        As in the run, so that the tiles are the crops it embedded.

    Returns
    -------
    numpy.ndarray
        uint8 RGB: a panel naming each row (:func:`labelled_gallery`) beside the tiles.
    """
    from phenossl.cells.recrop import iter_recrop
    from phenossl.montage import centroid_gallery

    nearest = np.asarray(nearest)
    k = nearest.shape[0]
    crops = yield from iter_recrop(
        fields, cells, nearest.ravel(), crop_size=crop_size, percentiles=percentiles
    )
    slots = np.where(nearest.ravel() >= 0, np.arange(nearest.size), -1).reshape(nearest.shape)
    tiles = centroid_gallery(crops, slots, pad=GALLERY_PAD, pad_value=GALLERY_PAD_VALUE)
    tiles = mark_tile_centres(tiles, nearest.shape, pad=GALLERY_PAD)
    sizes = np.bincount(np.asarray(assignments, dtype=np.int64), minlength=k).tolist()
    return labelled_gallery(tiles, k, sizes)


def mark_tile_centres(
    tiles: np.ndarray, shape: tuple[int, int], *, pad: int, color: Sequence[int] = (255, 255, 255)
) -> np.ndarray:
    """Draw a small open crosshair at the centre of each tile of a centroid gallery.

    Each tile is a crop centred on its cell's nucleus; the four ticks (with a gap in the middle,
    so the nucleus stays visible) mark which of the cells in the crop is meant. ``shape`` is the
    gallery's ``(rows, columns)`` of tiles and ``pad`` its padding (``centroid_gallery``'s).
    """
    out = np.array(tiles, copy=True)
    rows, cols = shape
    size = (out.shape[1] - pad) // cols - pad
    if size < 8:
        return out
    arm, gap = max(2, size // 10), max(2, size // 12)
    for r in range(rows):
        for c in range(cols):
            cy = pad + r * (size + pad) + size // 2
            cx = pad + c * (size + pad) + size // 2
            for sign in (-1, 1):
                y0, y1 = sorted((cy + sign * gap, cy + sign * (gap + arm)))
                x0, x1 = sorted((cx + sign * gap, cx + sign * (gap + arm)))
                out[y0:y1, cx] = color
                out[cy, x0:x1] = color
    return out


def labelled_gallery(
    tiles: np.ndarray,
    k: int,
    sizes: Sequence[int],
    *,
    background: int = 24,
) -> np.ndarray:
    """Prefix each row of a centroid gallery with its cluster's colour, number and size.

    ``tiles`` is :func:`phenossl.montage.centroid_gallery`'s ``(K rows)`` RGB image; the result
    adds a left panel in which row ``c`` reads ``cluster c`` and ``n cells`` in the cluster's
    colour, beside a bar of that colour.
    """
    from PIL import Image, ImageDraw, ImageFont

    tiles = np.asarray(tiles)
    if tiles.ndim != 3 or tiles.shape[2] != 3 or tiles.dtype != np.uint8:
        raise ValueError(f"tiles has shape {tiles.shape} and dtype {tiles.dtype}; expected RGB")
    if len(sizes) != k:
        raise ValueError(f"{len(sizes)} cluster sizes for k={k}")
    height = tiles.shape[0]
    row = height / k
    font_px = int(np.clip(row / 5, 11, 28))
    font = ImageFont.load_default(size=font_px)
    texts = [(f"cluster {c}", f"{sizes[c]:,} cells") for c in range(k)]
    text_width = int(max(font.getbbox(t)[2] for pair in texts for t in pair))
    bar = max(4, font_px // 3)
    width = bar + text_width + 3 * font_px // 2
    panel = Image.new("RGB", (width, height), (background,) * 3)
    draw = ImageDraw.Draw(panel)
    colors = (cluster_colors(k)[:, :3] * 255).round().astype(int)
    for c, (title, subtitle) in enumerate(texts):
        top = round(c * row)
        color = tuple(int(v) for v in colors[c])
        draw.rectangle([0, top + 2, bar - 1, round((c + 1) * row) - 3], fill=color)
        middle = top + row / 2
        draw.text((bar + font_px // 2, middle - font_px * 1.1), title, fill=color, font=font)
        draw.text(
            (bar + font_px // 2, middle + font_px * 0.1), subtitle, fill=(230,) * 3, font=font
        )
    return np.concatenate([np.asarray(panel, dtype=np.uint8), tiles], axis=1)


# --- one field's cells ----------------------------------------------------------------------


def segment_again(
    row: Mapping[str, Any],
    segment_params: Mapping[str, Any],
    *,
    percentiles: Sequence[float] = (1.0, 99.8),
) -> Any:
    """Segment one field exactly as a run did (same normalisation and parameters).

    The pipeline keeps each cell's table row, not the label images; this gives them back for
    one field (its ``label`` values are the table's).
    """
    from phenossl.cells.segment import segment
    from phenossl.data.fields import read_field

    image = read_field(row, percentiles=percentiles)
    return segment(image, **dict(segment_params))


def field_clusters(
    cells: pd.DataFrame, assignments: np.ndarray, field_id: str, columns: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """One field's cells of a run: their labels, their clusters and their ``columns``.

    Examples
    --------
    >>> cells = pd.DataFrame({"field_id": ["a", "b", "a"], "label": [1, 1, 2]})
    >>> labels, clusters, table = field_clusters(cells, np.array([0, 1, 1]), "a", ["label"])
    >>> labels.tolist(), clusters.tolist()
    ([1, 2], [0, 1])
    """
    mine = (cells["field_id"] == field_id).to_numpy()
    table = cells.loc[mine, [c for c in columns if c in cells.columns]].reset_index(drop=True)
    labels = cells.loc[mine, "label"].to_numpy()
    return labels, np.asarray(assignments)[mine], table


# --- tables ---------------------------------------------------------------------------------


def composition_columns(composition: pd.DataFrame, column: str) -> dict[str, list[int]]:
    """Cluster x label counts as ``{header: counts per cluster}``, with a ``total`` column.

    Concentrations are headed ``<value> µM``.

    Examples
    --------
    >>> table = pd.DataFrame({"DMSO": [3, 1], "taxol": [0, 4]})
    >>> composition_columns(table, "compound")
    {'DMSO': [3, 1], 'taxol': [0, 4], 'total': [3, 5]}
    """
    data: dict[str, list[int]] = {
        (f"{float(c):g} µM" if column == "concentration" else str(c)): composition[c]
        .astype(int)
        .tolist()
        for c in composition.columns
    }
    data["total"] = composition.sum(axis=1).astype(int).tolist()
    return data
