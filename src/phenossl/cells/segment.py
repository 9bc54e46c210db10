"""Nuclei and cell segmentation of one normalised BBBC021-like field.

``segment(image)`` labels nuclei on the DAPI channel and grows one cell per nucleus on the
cytoplasm channels, then measures a per-cell table (see the Segmentation contract in
``docs/architecture.md``).

Nuclei
    The DAPI channel is smoothed and thresholded automatically (Otsu by default); holes up to
    ``max_hole_area`` are filled and objects below ``min_nucleus_area`` removed as debris.
    Touching nuclei are split by a watershed on ``g = distance to background x intensity``
    seeded at every local maximum of ``g``; neighbouring basins are merged back, in order of
    decreasing saddle height, unless the saddle between them is below ``split_ratio`` times
    the smaller peak. The test is relative, so it treats small and large nuclei alike, and
    both a narrow neck and a dim contact line between two nuclei deepen the saddle.
Cells
    A seeded watershed from the nuclei over the mean of the cytoplasm channels, restricted to a
    foreground mask (automatic threshold) and to pixels at most ``max_cell_distance`` from a
    nucleus. It floods a landscape in the spirit of CellProfiler's "Propagation": distance
    from the nucleus plus ``cell_edge_weight`` times the intensity gradient, so boundaries
    between touching cells follow intensity edges where there are some and fall half-way
    between the nuclei where there are none. Cell *i* is the cell of nucleus *i* and always
    contains it.
Table
    ``np.bincount`` reductions over the label images (no per-object loops).

Speed: decisions (labelling, distance transforms, watersheds) are taken on block-averaged images,
``downsample`` (nuclei, default 2) and ``cell_downsample`` (cells, default 4) times smaller in
each axis, then painted back at full resolution. Outer outlines follow the full-resolution
threshold of the linearly interpolated smoothed image, so only the borders between touching
cells show the working resolution. The distance transform and watershed of the nucleus split
run on a mosaic of the nuclei's bounding boxes. ``benchmarks/bench_segmentation.py`` times every
stage on the real 1024 x 1280 field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import filters
from skimage.segmentation import watershed

__all__ = ["TABLE_COLUMNS", "Segmentation", "segment", "segment_cells", "segment_nuclei"]

TABLE_COLUMNS = (
    "label",
    "centroid_y",
    "centroid_x",
    "nucleus_area",
    "cell_area",
    "dapi_mean",
    "tubulin_mean",
    "actin_mean",
)
_CHANNEL_COLUMNS = ("dapi_mean", "tubulin_mean", "actin_mean")
_THRESHOLDS: dict[str, Callable[..., float]] = {
    "otsu": filters.threshold_otsu,
    "li": filters.threshold_li,
    "triangle": filters.threshold_triangle,
}
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(repr=False)
class Segmentation:
    """Labels and per-cell measurements of one field.

    Attributes
    ----------
    nuclei
        ``int32 (H, W)`` nucleus labels, 0 = background, 1..N.
    cells
        ``int32 (H, W)`` cell labels; the cell of nucleus *i* has label *i* and contains it.
    table
        One row per cell, columns ``TABLE_COLUMNS``: ``label``, ``centroid_y``/``centroid_x``
        (nucleus centroid, pixels), ``nucleus_area``/``cell_area`` (pixels), and the mean
        normalised intensity over the cell of each channel (``dapi_mean``, ``tubulin_mean``,
        ``actin_mean`` for channels 0, 1, 2).
    """

    nuclei: np.ndarray
    cells: np.ndarray
    table: pd.DataFrame

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"Segmentation(n_cells={len(self)}, shape={self.nuclei.shape})"


def segment(
    image: np.ndarray,
    *,
    nucleus_channel: int = 0,
    cytoplasm_channels: Sequence[int] = (1, 2),
    smooth_sigma: float = 2.0,
    nucleus_threshold: str | float = "otsu",
    min_nucleus_area: int = 150,
    max_hole_area: int = 400,
    split_ratio: float = 0.8,
    cell_threshold: str | float = "otsu",
    max_cell_distance: float = 60.0,
    cell_edge_weight: float = 1000.0,
    downsample: int = 2,
    cell_downsample: int = 4,
) -> Segmentation:
    """Segment nuclei and cells in a normalised ``(3, H, W)`` field.

    Defaults are in pixels of a BBBC021 field (MCF-7 at 20x: nuclei about 25-40 px across,
    150-300 cells per 1024 x 1280 field).

    Parameters
    ----------
    image
        Float ``(3, H, W)`` image, channels DAPI, Tubulin, Actin, values about [0, 1] (the
        output of ``read_field``).
    nucleus_channel
        Channel holding the nuclear stain.
    cytoplasm_channels
        Channels whose mean outlines the cells. (The table's ``dapi_mean``, ``tubulin_mean``
        and ``actin_mean`` are always channels 0, 1 and 2, the contract's channel order.)
    smooth_sigma
        Gaussian smoothing (pixels) before thresholding, nuclei and cytoplasm: 2 px evens out
        chromatin texture without merging neighbours.
    nucleus_threshold, cell_threshold
        ``"otsu"``, ``"li"``, ``"triangle"`` (computed on the smoothed channel) or a fixed
        value in normalised intensity units.
    min_nucleus_area
        Objects smaller than this (pixels; 150 = a 14-px disc) are debris. A split part whose
        centre is closer to the background than the radius of such a disc is merged back.
    max_hole_area
        Holes in the nucleus mask up to this area (pixels) are filled.
    split_ratio
        Touching nuclei are kept apart where ``distance to background x smoothed intensity``
        drops along their contact to below this fraction of its peak in the smaller one (a
        narrow neck, a dim contact line, or both); 0 never splits. On the real field touching
        pairs score 0.3-0.77 and single, waisted or bean-shaped nuclei 0.85 and above.
    max_cell_distance
        A cell extends at most this far (pixels) from its nucleus: 60 px, about two nucleus
        diameters, is beyond a spread interphase MCF-7 cell.
    cell_edge_weight
        The cell watershed floods ``distance to the nucleus (px) + cell_edge_weight x
        gradient magnitude of the smoothed cytoplasm (intensity per px)``: 0 gives Voronoi
        cells within the foreground, large values follow intensity edges only. With 1000, an
        edge of 0.01 per px costs as much as 10 px of distance.
    downsample, cell_downsample
        Working-resolution factors of the nucleus and cell steps (1 = full resolution).

    Returns
    -------
    Segmentation
        Nucleus and cell labels (``int32 (H, W)``) and the per-cell table.

    Examples
    --------
    Two round cells, each a bright nucleus in a dimmer cytoplasm:

    >>> yy, xx = np.mgrid[:128, :128]
    >>> image = np.zeros((3, 128, 128), np.float32)
    >>> for cy, cx in ((40, 40), (88, 80)):
    ...     d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    ...     image[0][d2 < 12**2] = 1.0
    ...     image[1:, d2 < 24**2] = 0.5
    >>> seg = segment(image)
    >>> seg
    Segmentation(n_cells=2, shape=(128, 128))
    >>> seg.table[["label", "centroid_y", "centroid_x"]].round().astype(int).values.tolist()
    [[1, 40, 40], [2, 88, 80]]
    """
    image = _check_image(image)
    n_channels = image.shape[0]
    for name, index in [("nucleus_channel", nucleus_channel)] + [
        ("cytoplasm_channels", c) for c in cytoplasm_channels
    ]:
        if not 0 <= int(index) < n_channels:
            raise ValueError(f"{name}={index!r} is not a channel of an image with {n_channels}")
    if len(cytoplasm_channels) == 0:
        raise ValueError("cytoplasm_channels must name at least one channel")

    nuclei = segment_nuclei(
        image[nucleus_channel],
        smooth_sigma=smooth_sigma,
        threshold=nucleus_threshold,
        min_area=min_nucleus_area,
        max_hole_area=max_hole_area,
        split_ratio=split_ratio,
        downsample=downsample,
    )
    cells = segment_cells(
        [image[c] for c in cytoplasm_channels],
        nuclei,
        smooth_sigma=smooth_sigma,
        threshold=cell_threshold,
        max_distance=max_cell_distance,
        edge_weight=cell_edge_weight,
        downsample=cell_downsample,
    )
    return Segmentation(nuclei=nuclei, cells=cells, table=cell_table(image, nuclei, cells))


def segment_nuclei(
    dapi: np.ndarray,
    *,
    smooth_sigma: float = 2.0,
    threshold: str | float = "otsu",
    min_area: int = 150,
    max_hole_area: int = 400,
    split_ratio: float = 0.8,
    downsample: int = 2,
) -> np.ndarray:
    """Label nuclei in one nuclear-stain channel; see :func:`segment` for the parameters.

    Returns
    -------
    numpy.ndarray
        ``int32 (H, W)`` labels 1..N, 0 = background.
    """
    dapi = np.asarray(dapi, dtype=np.float32)
    if dapi.ndim != 2:
        raise ValueError(f"dapi: expected a 2-D (H, W) array, got shape {dapi.shape}")
    f = _check_factor("downsample", downsample)
    if split_ratio < 0 or split_ratio >= 1:
        raise ValueError(f"split_ratio must be in [0, 1), got {split_ratio}")
    area_scale = f * f

    small = _smooth(_block_mean(dapi, f), smooth_sigma / f)
    level = _threshold(small, threshold, "nucleus_threshold")
    # Full-resolution mask from the interpolated smooth image: smooth outlines. Its OR-pool is
    # the working mask, so every full-resolution foreground pixel has a labelled parent.
    full = _upsample_linear(small, f, dapi.shape) > level
    mask = _pool_any(full, f)

    holes = _small_holes(mask, max_hole_area / area_scale)
    mask |= holes
    labels, n = ndi.label(mask)
    labels, n = _remove_small(labels, n, min_area / area_scale)
    if n and split_ratio > 0:
        labels, n = _split_touching(
            labels, n, small, split_ratio, min_radius=np.sqrt(min_area / np.pi) / f
        )
    nuclei = _upsample_nearest(labels, f, dapi.shape)
    keep = full if not holes.any() else full | _upsample_nearest(holes, f, dapi.shape)
    nuclei *= keep
    return nuclei


def segment_cells(
    cytoplasm: np.ndarray | Sequence[np.ndarray],
    nuclei: np.ndarray,
    *,
    smooth_sigma: float = 2.0,
    threshold: str | float = "otsu",
    max_distance: float = 60.0,
    edge_weight: float = 1000.0,
    downsample: int = 4,
) -> np.ndarray:
    """Grow one cell per nucleus by a seeded watershed on the cytoplasm channels.

    Parameters
    ----------
    cytoplasm
        Cytoplasm channel(s): one ``(H, W)`` array, a ``(C, H, W)`` array or a sequence of
        ``(H, W)`` arrays; their mean is used.
    nuclei
        ``int (H, W)`` nucleus labels (the seeds).
    smooth_sigma, threshold, max_distance, edge_weight, downsample
        As ``smooth_sigma``, ``cell_threshold``, ``max_cell_distance``, ``cell_edge_weight``
        and ``cell_downsample`` of :func:`segment`.

    Returns
    -------
    numpy.ndarray
        ``int32 (H, W)`` cell labels; the cell of nucleus *i* has label *i* and contains every
        pixel of it.
    """
    channels = [cytoplasm] if np.ndim(cytoplasm) == 2 else list(cytoplasm)
    if not channels or any(np.shape(c) != nuclei.shape for c in channels):
        shapes = [np.shape(c) for c in channels]
        raise ValueError(f"cytoplasm: expected channels of shape {nuclei.shape}, got {shapes}")
    f = _check_factor("cell_downsample", downsample)
    shape = nuclei.shape
    nuclei = nuclei.astype(np.int32, copy=False)
    if not nuclei.any():
        return np.zeros(shape, dtype=np.int32)

    small = _block_mean(np.asarray(channels[0], dtype=np.float32), f)
    for channel in channels[1:]:
        small += _block_mean(np.asarray(channel, dtype=np.float32), f)
    small *= np.float32(1.0 / len(channels))
    small = _smooth(small, smooth_sigma / f)
    level = _threshold(small, threshold, "cell_threshold")

    # The working foreground is the OR-pool of the full-resolution one, so that the outer
    # outline can follow the full-resolution threshold of the interpolated image.
    full = _upsample_linear(small, f, shape) > level
    seeds = _pool_max(nuclei, f)
    distance = ndi.distance_transform_edt(seeds == 0).astype(np.float32)
    distance *= np.float32(f)  # full-resolution pixels
    mask = _pool_any(full, f)
    mask &= distance <= max_distance
    mask |= seeds > 0
    # Propagation-like landscape: distance from the nuclei, raised at cytoplasm edges.
    grad_y, grad_x = np.gradient(small)
    landscape = np.hypot(grad_y, grad_x)
    landscape *= np.float32(edge_weight / f)  # gradient per full-resolution pixel
    landscape += distance
    landscape[seeds > 0] = 0  # every nucleus starts flooding at once
    cells = watershed(landscape, seeds, mask=mask)

    cells = _upsample_nearest(cells.astype(np.int32, copy=False), f, shape)
    cells *= full
    np.copyto(cells, nuclei, where=nuclei > 0)  # a nucleus always lies in its own cell
    return cells


def cell_table(image: np.ndarray, nuclei: np.ndarray, cells: np.ndarray) -> pd.DataFrame:
    """Per-cell measurements (``TABLE_COLUMNS``) from nucleus and cell labels 1..N.

    Centroids and nucleus areas come from the nucleus labels, cell areas and the mean of each
    channel over the cell (nucleus included) from the cell labels. One row per label 1..N,
    N = ``nuclei.max()``.
    """
    n = int(nuclei.max(initial=0))
    # Reductions run over the labelled pixels only, gathered once per label image.
    flat = np.flatnonzero(nuclei)
    label = nuclei.ravel()[flat].astype(np.intp)
    rows, cols = np.divmod(flat, nuclei.shape[1])
    nucleus_area = np.bincount(label, minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid_y = np.bincount(label, rows.astype(np.float64), minlength=n + 1) / nucleus_area
        centroid_x = np.bincount(label, cols.astype(np.float64), minlength=n + 1) / nucleus_area

    flat = np.flatnonzero(cells)
    label = cells.ravel()[flat].astype(np.intp)
    cell_area = np.bincount(label, minlength=n + 1)[: n + 1]
    data = {
        "label": np.arange(1, n + 1, dtype=np.int32),
        "centroid_y": centroid_y[1:],
        "centroid_x": centroid_x[1:],
        "nucleus_area": nucleus_area[1:],
        "cell_area": cell_area[1:],
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, channel in zip(_CHANNEL_COLUMNS, image):
            values = channel.ravel()[flat].astype(np.float64)
            sums = np.bincount(label, values, minlength=n + 1)[: n + 1]
            data[name] = (sums / cell_area)[1:].astype(np.float32)
    return pd.DataFrame(data, columns=list(TABLE_COLUMNS))


# --- helpers -------------------------------------------------------------------------------


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(
            f"image: expected a (3, H, W) DAPI/Tubulin/Actin array, got shape {image.shape}"
        )
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(
            f"image: expected a normalised float array (read_field output), got {image.dtype}"
        )
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        bad = np.flatnonzero(~np.isfinite(image).reshape(3, -1).all(axis=1)).tolist()
        raise ValueError(
            f"image: channel(s) {bad} hold NaN or infinite values; segmentation needs finite "
            "intensities (read_field refuses such files)"
        )
    _check_segment_memory(image.shape)
    return image


#: peak bytes per pixel of segment() (float planes, labels, watershed queues): 96 measured with
#: tracemalloc on a 1024 x 1024 synthetic field, with a margin
_SEGMENT_BYTES_PER_PIXEL = 128


def _check_segment_memory(shape: tuple[int, ...]) -> None:
    import torch

    from phenossl._memory import check_fits

    pixels = int(np.prod(shape[1:]))
    if pixels > 4096 * 4096:  # BBBC021 fields are 1024 x 1280: only huge inputs are estimated
        check_fits(
            pixels * _SEGMENT_BYTES_PER_PIXEL,
            torch.device("cpu"),
            f"segmenting a {shape[1]} x {shape[2]} image",
            "the image size: segment tiles or a downsampled image",
        )


def _check_factor(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _threshold(image: np.ndarray, method: str | float, name: str) -> float:
    if isinstance(method, str):
        func = _THRESHOLDS.get(method)
        if func is None:
            raise ValueError(
                f"{name}={method!r}: expected one of {sorted(_THRESHOLDS)} or a number"
            )
        low, high = float(image.min()), float(image.max())
        if high <= low:
            return high  # flat image: nothing is above the threshold
        if method == "otsu":  # same 256-bin histogram as skimage's, built with bincount
            scale = np.float32(256 / (high - low))
            bins = np.minimum((image - np.float32(low)) * scale, 255).astype(np.uint8)
            counts = np.bincount(bins.ravel(), minlength=256)
            centres = low + (np.arange(256) + 0.5) * (high - low) / 256
            return float(func(hist=(counts, centres)))
        return float(func(image))
    return float(method)


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return image
    return ndi.gaussian_filter(image, sigma, truncate=3.0)


def _padded(image: np.ndarray, f: int) -> np.ndarray:
    pad = [(0, -s % f) for s in image.shape]
    return np.pad(image, pad, mode="edge") if any(p for _, p in pad) else image


def _block_reduce(
    image: np.ndarray, f: int, combine: np.ufunc, dtype: np.dtype | type | None = None
) -> np.ndarray:
    """``combine`` folded over each ``f x f`` block (edge-padded to a multiple of ``f``), as
    ``dtype`` (default: the image's); always a new array.
    """
    dtype = image.dtype if dtype is None else dtype
    if f == 1:
        return image.astype(dtype, copy=True)
    image = _padded(image, f)
    out = image[::f, ::f].astype(dtype, copy=True)
    for dy in range(f):
        for dx in range(f):
            if dy or dx:
                combine(out, image[dy::f, dx::f], out=out)
    return out


def _block_mean(image: np.ndarray, f: int) -> np.ndarray:
    """Mean over ``f x f`` blocks, float32."""
    out = _block_reduce(image, f, np.add, np.float32)
    if f > 1:
        out *= np.float32(1.0 / (f * f))
    return out


def _pool_any(mask: np.ndarray, f: int) -> np.ndarray:
    """True where any pixel of the ``f x f`` block is True."""
    return _block_reduce(mask, f, np.logical_or)


def _pool_max(labels: np.ndarray, f: int) -> np.ndarray:
    """Maximum label of each ``f x f`` block."""
    return _block_reduce(labels, f, np.maximum)


def _upsample_nearest(image: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Repeat every pixel ``f x f`` times and crop to ``shape`` (always a new array)."""
    if f == 1:
        return image[: shape[0], : shape[1]].copy()
    h, w = image.shape
    out = np.empty((h, f, w, f), dtype=image.dtype)
    out[...] = image[:, None, :, None]
    return out.reshape(h * f, w * f)[: shape[0], : shape[1]]


def _upsample_linear(image: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Linear interpolation of an ``f``-times block-averaged image back to ``shape``.

    Output pixel ``j`` sits at input coordinate ``(j + 0.5) / f - 0.5``; every phase ``j % f``
    is a fixed two-tap blend of neighbouring input pixels (edges replicated). Columns first:
    the strided writes then happen on the smaller intermediate array.
    """
    if f == 1:
        return image[: shape[0], : shape[1]]
    out = image
    for axis in (1, 0):
        padded = np.pad(out, [(1, 1) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        n = out.shape[axis]
        result_shape = list(out.shape)
        result_shape[axis] = n * f
        result = np.empty(result_shape, dtype=np.float32)
        centre = _take_slice(padded, axis, 1, n + 1)
        for phase in range(f):
            delta = (phase + 0.5) / f - 0.5
            other = (
                _take_slice(padded, axis, 2, n + 2)
                if delta >= 0
                else _take_slice(padded, axis, 0, n)
            )
            target = _take_slice(result, axis, phase, None, f)
            np.multiply(centre, np.float32(1 - abs(delta)), out=target)
            target += np.float32(abs(delta)) * other
        out = result
    return out[: shape[0], : shape[1]]


def _take_slice(
    array: np.ndarray, axis: int, start: int, stop: int | None, step: int = 1
) -> np.ndarray:
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, stop, step)
    return array[tuple(index)]


def _small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """Background components not touching the border with area <= ``max_area``."""
    background, n = ndi.label(~mask)
    if n == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(background.ravel(), minlength=n + 1)
    is_hole = sizes <= max_area
    is_hole[0] = False
    edges = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    is_hole[edges] = False
    return is_hole[background] if is_hole.any() else np.zeros_like(mask)


def _remove_small(labels: np.ndarray, n: int, min_area: float) -> tuple[np.ndarray, int]:
    """Drop components smaller than ``min_area`` and renumber the rest 1..n in order."""
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_area
    keep[0] = False
    return _renumber(labels, keep)


def _renumber(labels: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, int]:
    lut = np.zeros(len(keep), dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels], int(keep.sum())


def _split_touching(
    labels: np.ndarray, n: int, intensity: np.ndarray, ratio: float, min_radius: float
) -> tuple[np.ndarray, int]:
    """Split the components ``labels`` (1..n) into nuclei; see :func:`_split_landscape`.

    Each component is cut out with a one-pixel background margin and the tiles are packed
    into a compact mosaic, so the distance transform and watershed only visit the nuclei's
    bounding boxes (about a quarter of a BBBC021 field). Output labels are numbered by
    component, then by part.
    """
    boxes = ndi.find_objects(labels)
    order = sorted(range(n), key=lambda i: boxes[i][0].start - boxes[i][0].stop)  # tallest first
    width = max(labels.shape[1], max(b[1].stop - b[1].start for b in boxes)) + 2
    corners = [(0, 0)] * n
    x = y = shelf = 0
    for i in order:  # shelf packing of tiles (box + 1-pixel margin)
        h, w = boxes[i][0].stop - boxes[i][0].start + 2, boxes[i][1].stop - boxes[i][1].start + 2
        if x + w > width:
            x, y, shelf = 0, y + shelf, 0
        corners[i] = (y + 1, x + 1)
        x, shelf = x + w, max(shelf, h)
    mosaic = np.zeros((y + shelf, width), dtype=np.int32)
    mosaic_intensity = np.zeros(mosaic.shape, dtype=np.float32)
    tiles = []
    for i, box in enumerate(boxes):
        tile = tuple(slice(c, c + b.stop - b.start) for c, b in zip(corners[i], box))
        mosaic[tile][labels[box] == i + 1] = i + 1
        mosaic_intensity[tile] = intensity[box]
        tiles.append(tile)

    parts, single_part, n_parts = _split_landscape(mosaic, mosaic_intensity, ratio, min_radius)
    out = single_part[labels]  # components that stay whole
    for i in np.flatnonzero(single_part[1:] == 0).tolist():  # components split in several parts
        inside = labels[boxes[i]] == i + 1
        out[boxes[i]][inside] = parts[tiles[i]][inside]
    return out, n_parts


def _split_landscape(
    labels: np.ndarray, intensity: np.ndarray, ratio: float, min_radius: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Split touching nuclei where the landscape distance x intensity has a deep saddle.

    Every local maximum of ``g = distance to background * intensity`` seeds a watershed basin;
    adjacent basins are then merged in order of decreasing saddle height (a union-find over the
    region adjacency) unless the saddle is below ``ratio`` times the smaller of the two peaks
    and both peaks lie at least ``min_radius`` from the background. A narrow neck and a dim
    contact line both deepen the saddle. Basins that stay apart become separate nuclei.

    Returns
    -------
    parts, single_part, n_parts
        Parts are numbered 1..n_parts by component, then by position. ``single_part[c]`` is
        the part of component ``c`` when it stays whole (0 when it splits); ``parts`` labels the
        pixels of the components that split (0 elsewhere).
    """
    n_components = int(labels.max())
    mask = labels > 0
    dist = ndi.distance_transform_edt(mask).astype(np.float32)
    land = dist * np.maximum(intensity, 0)
    peaks = (ndi.maximum_filter(land, size=3) == land) & mask
    markers, n_markers = ndi.label(peaks, structure=_EIGHT)
    # A marker is a plateau of local maxima: its value is its basin's peak. Every component
    # holds at least one (its maximum).
    at = np.flatnonzero(markers)
    marker = markers.ravel()[at]
    component = np.zeros(n_markers + 1, dtype=np.intp)
    peak = np.zeros(n_markers + 1, dtype=np.float32)
    radius = np.zeros(n_markers + 1, dtype=np.float32)
    component[marker] = labels.ravel()[at]
    peak[marker] = land.ravel()[at]
    radius[marker] = dist.ravel()[at]

    parent = np.arange(n_markers + 1)
    several = np.bincount(component[1:], minlength=n_components + 1) > 1
    parts = np.zeros_like(labels)
    if several.any():  # flood and merge only the components with several peaks
        region = several[labels]
        basins = watershed(-land, markers * region, mask=region)
        a, b, saddle = _saddles(basins, land)

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for k in np.argsort(-saddle, kind="stable"):
            ra, rb = find(a[k]), find(b[k])
            if ra == rb:
                continue
            low_radius = min(radius[ra], radius[rb])
            if low_radius < min_radius or saddle[k] >= ratio * min(peak[ra], peak[rb]):
                parent[rb] = ra
                peak[ra] = max(peak[ra], peak[rb])
                radius[ra] = max(radius[ra], radius[rb])
        for i in range(n_markers + 1):
            parent[i] = find(i)

    # Number the parts (distinct roots) by component, then by root.
    key = component[1:] * (n_markers + 1) + parent[1:]
    unique_keys, part_of = np.unique(key, return_inverse=True)
    part = np.zeros(n_markers + 1, dtype=np.int32)
    part[1:] = part_of + 1
    if several.any():
        parts[region] = part[basins[region]]
    single_part = np.zeros(n_components + 1, dtype=np.int32)
    whole = ~several[component[1:]]
    single_part[component[1:][whole]] = part[1:][whole]
    return parts, single_part, len(unique_keys)


def _saddles(basins: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pair of 4-adjacent basins: the highest ``min(dist)`` across their border."""
    pairs, heights = [], []
    for axis in (0, 1):
        n = basins.shape[axis]
        lo = [slice(None), slice(None)]
        hi = [slice(None), slice(None)]
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        p, q = basins[tuple(lo)], basins[tuple(hi)]
        border = (p != q) & (p > 0) & (q > 0)
        pa, qa = p[border], q[border]
        pairs.append(np.stack([np.minimum(pa, qa), np.maximum(pa, qa)]))
        heights.append(np.minimum(dist[tuple(lo)][border], dist[tuple(hi)][border]))
    pair = np.concatenate(pairs, axis=1)
    height = np.concatenate(heights)
    if height.size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, np.zeros(0, dtype=np.float32)
    key = pair[0].astype(np.int64) * (int(basins.max()) + 1) + pair[1]
    order = np.lexsort((height, key))
    key, height, pair = key[order], height[order], pair[:, order]
    last = np.flatnonzero(np.r_[key[1:] != key[:-1], True])  # max height is last per key
    return pair[0, last], pair[1, last], height[last]
