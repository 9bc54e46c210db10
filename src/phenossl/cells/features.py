"""Hand-crafted per-cell measurements, CellProfiler style, as an embedding.

``cell_features(images)`` measures every crop of ``(N, 3, S, S)`` (DAPI, Tubulin, Actin) and
returns ``float32 (N, F)`` with :data:`FEATURE_NAMES` (``F`` = 96):

Intensity, whole crop (vectorised over the batch), per channel
    ``<ch>_mean``, ``_std``, ``_q10``, ``_q25``, ``_median``, ``_q75``, ``_q90``, ``_max``,
    ``_integrated`` (sum over the crop), in units of the crop's [0, 1] scale (uint8 / 255);
    ``corr_<a>_<b>``: Pearson correlation of two channels over the crop's pixels.
Crop-level segmentation (per crop)
    The nucleus is the Otsu object of the smoothed DAPI channel at the crop centre (or, when the
    centre is background, the one nearest to it); the cell is the part of the foreground (the
    smoothed mean of Tubulin and Actin above half its Otsu threshold, plus the nuclei) closer to
    that nucleus than to any other nucleus of the crop (a watershed on the distance to the
    nuclei), always containing its nucleus.
Shape
    ``nucleus_`` and ``cell_`` ``area``, ``perimeter``, ``eccentricity``, ``solidity``,
    ``extent``, ``major_axis``, ``minor_axis``, ``equivalent_diameter``, ``form_factor``
    (4 pi area / perimeter^2); ``nucleus_offset`` (distance of its centroid from the crop
    centre), ``cell_border_fraction`` (share of the crop border the cell touches: a truncated
    cell), ``nucleus_cell_area_ratio``. Pixels; 0 when no object is found.
Intensity in the objects, per channel
    ``<ch>_nucleus_mean``, ``<ch>_cytoplasm_mean`` (cell minus nucleus), ``<ch>_cell_integrated``.
Texture, per channel
    Haralick features from :func:`skimage.feature.graycomatrix` over the cell's pixels (16 grey
    levels, symmetric, averaged over 4 angles) at distances 1 and 3:
    ``<ch>_haralick_<prop>_d<d>`` for contrast, dissimilarity, homogeneity, energy, correlation
    and entropy.

:func:`standardize` z-scores features over a set; :func:`iter_feature_embedding` streams crops
batch by batch, measures them in worker processes, and returns the z-scored embedding with its
names and statistics (``phenossl embed --model features``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError
from skimage import filters, measure
from skimage.feature import graycomatrix
from skimage.segmentation import watershed

from phenossl._progress import Progress, ProgressGenerator

__all__ = [
    "FEATURE_NAMES",
    "FeatureEmbedding",
    "cell_features",
    "iter_feature_embedding",
    "standardize",
]

_CHANNELS = ("dapi", "tubulin", "actin")
_STATS = ("mean", "std", "q10", "q25", "median", "q75", "q90", "max", "integrated")
_QUANTILES = (0.10, 0.25, 0.50, 0.75, 0.90)
_PAIRS = ((0, 1), (0, 2), (1, 2))
_SHAPE = (
    "area",
    "perimeter",
    "eccentricity",
    "solidity",
    "extent",
    "major_axis",
    "minor_axis",
    "equivalent_diameter",
    "form_factor",
)
_OBJECT_INTENSITY = ("nucleus_mean", "cytoplasm_mean", "cell_integrated")
_HARALICK = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "entropy")
_DISTANCES = (1, 3)
_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
_LEVELS = 16
#: crops per task handed to a worker process
_TASK = 64


def _names() -> tuple[str, ...]:
    names = [f"{c}_{s}" for c in _CHANNELS for s in _STATS]
    names += [f"corr_{_CHANNELS[a]}_{_CHANNELS[b]}" for a, b in _PAIRS]
    names += [f"nucleus_{s}" for s in _SHAPE] + ["nucleus_offset"]
    names += [f"cell_{s}" for s in _SHAPE] + ["cell_border_fraction", "nucleus_cell_area_ratio"]
    names += [f"{c}_{s}" for c in _CHANNELS for s in _OBJECT_INTENSITY]
    names += [f"{c}_haralick_{p}_d{d}" for c in _CHANNELS for p in _HARALICK for d in _DISTANCES]
    return tuple(names)


#: the names of :func:`cell_features`' columns, in order
FEATURE_NAMES: tuple[str, ...] = _names()
_N_BATCH = len(_CHANNELS) * len(_STATS) + len(_PAIRS)  # the vectorised part comes first


def cell_features(images: np.ndarray, *, n_jobs: int = 1) -> tuple[np.ndarray, list[str]]:
    """Measure each crop: intensity, shape and texture features (see the module docstring).

    Parameters
    ----------
    images
        ``(N, 3, S, S)`` crops, channels DAPI, Tubulin, Actin; uint8 (divided by 255) or float
        in [0, 1].
    n_jobs
        Worker processes for the per-crop part (segmentation, shape, texture); 1 runs in this
        process, -1 uses every CPU.

    Returns
    -------
    features, names
        ``float32 (N, F)`` raw (not standardised) measurements and their ``F`` names
        (:data:`FEATURE_NAMES`).

    Examples
    --------
    >>> import numpy as np
    >>> crops = np.zeros((2, 3, 48, 48), np.uint8)
    >>> crops[:, :, 14:34, 14:34] = 200
    >>> features, names = cell_features(crops)
    >>> features.shape, names[0], names[-1]
    ((2, 96), 'dapi_mean', 'actin_haralick_entropy_d3')
    """
    images = _as_unit(images)
    if len(images) == 0:
        return np.zeros((0, len(FEATURE_NAMES)), np.float32), list(FEATURE_NAMES)
    out = np.empty((len(images), len(FEATURE_NAMES)), dtype=np.float32)
    out[:, :_N_BATCH] = _batch_intensity(images)
    chunks = [images[i : i + _TASK] for i in range(0, len(images), _TASK)]
    jobs = _jobs(n_jobs, len(chunks))
    if jobs == 1:
        parts = [_per_crop(chunk) for chunk in chunks]
    else:
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=jobs)(delayed(_per_crop)(chunk) for chunk in chunks)
    out[:, _N_BATCH:] = np.concatenate(parts)
    return out, list(FEATURE_NAMES)


def standardize(
    features: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-score features column by column: ``(features - mean) / std``.

    ``mean``/``std`` default to the set's own (float64, population std); a constant column
    (std 0) is only centred. Returns ``(z float32, mean, std)``, with the std actually used.

    Examples
    --------
    >>> z, mean, std = standardize(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> z.tolist(), mean.tolist(), std.tolist()
    ([[-1.0, 0.0], [1.0, 0.0]], [2.0, 5.0], [1.0, 1.0])
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features: expected an (N, F) array, got shape {features.shape}")
    mean = features.mean(axis=0) if mean is None else np.asarray(mean, dtype=np.float64)
    if std is None:
        std = features.std(axis=0)
        std = np.where(std > 0, std, 1.0)
    std = np.asarray(std, dtype=np.float64)
    if mean.shape != (features.shape[1],) or std.shape != mean.shape:
        raise ValueError(
            f"mean {mean.shape} / std {std.shape} do not match {features.shape[1]} features"
        )
    return ((features - mean) / std).astype(np.float32), mean, std


@dataclass
class FeatureEmbedding:
    """Standardised features of a set of crops, with what is needed to read them."""

    features: np.ndarray  # float32 (N, F), z-scored over the set
    names: list[str]
    mean: np.ndarray  # (F,) of the raw features
    std: np.ndarray  # (F,)

    def metadata(self) -> dict:
        """JSON-compatible record for an embeddings file."""
        return {
            "feature_names": list(self.names),
            "feature_mean": [float(v) for v in self.mean],
            "feature_std": [float(v) for v in self.std],
            "standardized": True,
        }


def iter_feature_embedding(
    batches: Iterable[Any], total: int = 0, *, n_jobs: int = -1
) -> ProgressGenerator[FeatureEmbedding]:
    """Measure crops batch by batch in worker processes; return them z-scored over the set.

    Parameters
    ----------
    batches
        ``(b, 3, S, S)`` uint8 or float crops (e.g. ``CropSet.iter_batches(512)``).
    total
        Number of crops, for progress (0: unknown).
    n_jobs
        Worker processes (-1: every CPU; 1: in this process).

    Examples
    --------
    >>> from phenossl import CropSet  # doctest: +SKIP
    >>> from phenossl._progress import run
    >>> cs = CropSet("crops/")  # doctest: +SKIP
    >>> emb = run(iter_feature_embedding(cs.iter_batches(512), len(cs)))  # doctest: +SKIP
    >>> emb.features.shape, emb.names[:2]  # doctest: +SKIP
    ((5759, 96), ['dapi_mean', 'dapi_std'])
    """
    yield Progress(0, total, "hand-crafted features")
    from joblib import Parallel

    jobs = _jobs(n_jobs, 1 << 30)
    dispatch = _TASK * jobs * 4  # crops gathered before handing them to the workers
    parts: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    done = 0
    with Parallel(n_jobs=jobs) if jobs > 1 else _Serial() as parallel:
        for index, batch in enumerate(itertools.chain(batches, [None])):
            if batch is not None:
                batch = np.asarray(batch)
                if batch.ndim != 4 or batch.shape[1] != len(_CHANNELS):
                    raise ValueError(
                        f"crops batch {index} has shape {batch.shape}; expected (b, 3, S, S) "
                        "(DAPI, Tubulin, Actin)"
                    )
                pending.append(batch)
            if pending and (batch is None or sum(map(len, pending)) >= dispatch):
                parts.append(_measure(np.concatenate(pending), parallel))
                done += len(parts[-1])
                pending = []
                yield Progress(done, total, f"features: {done} cells")
    if not parts:
        raise ValueError("no crops to measure")
    z, mean, std = standardize(np.concatenate(parts))
    return FeatureEmbedding(z, list(FEATURE_NAMES), mean, std)


# --- internals ----------------------------------------------------------------------------------


class _Serial:
    """The in-process stand-in for a ``joblib.Parallel`` context."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def __call__(self, tasks: Iterable) -> list:
        return [func(*args, **kwargs) for func, args, kwargs in tasks]


def _measure(batch: np.ndarray, parallel) -> np.ndarray:
    from joblib import delayed

    images = _as_unit(batch)
    out = np.empty((len(images), len(FEATURE_NAMES)), dtype=np.float32)
    out[:, :_N_BATCH] = _batch_intensity(images)
    chunks = [images[i : i + _TASK] for i in range(0, len(images), _TASK)]
    if len(chunks) == 1:  # one task: no worker process is worth its start-up
        out[:, _N_BATCH:] = _per_crop(chunks[0])
    elif chunks:
        out[:, _N_BATCH:] = np.concatenate(parallel(delayed(_per_crop)(c) for c in chunks))
    return out


def _jobs(n_jobs: int, tasks: int) -> int:
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs={n_jobs!r}; expected -1 (every CPU) or an integer >= 1")
    cpus = os.cpu_count() or 1
    return max(1, min(cpus if n_jobs == -1 else n_jobs, tasks))


def _as_unit(images: np.ndarray) -> np.ndarray:
    """float32 crops in [0, 1], checked."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != len(_CHANNELS):
        raise ValueError(
            f"images: expected (N, 3, S, S) crops (DAPI, Tubulin, Actin), got {images.shape}"
        )
    if images.dtype == np.uint8:
        return images.astype(np.float32) * np.float32(1 / 255)
    if images.dtype.kind != "f":
        raise ValueError(f"images: expected uint8 or float in [0, 1], got {images.dtype}")
    images = images.astype(np.float32, copy=False)
    finite = np.isfinite(images).reshape(len(images), -1).all(axis=1)
    if not finite.all():
        raise ValueError(f"images: crops {np.flatnonzero(~finite)[:10].tolist()} hold NaN or inf")
    return images


def _batch_intensity(images: np.ndarray) -> np.ndarray:
    """Whole-crop intensity statistics and channel correlations of a batch, ``(N, 30)``."""
    n, c = images.shape[:2]
    flat = images.reshape(n, c, -1)
    mean = flat.mean(axis=2)
    std = flat.std(axis=2)
    quantiles = np.quantile(flat, _QUANTILES, axis=2)  # (5, n, c)
    stats = [mean, std, *quantiles, flat.max(axis=2), flat.sum(axis=2)]
    per_channel = np.stack(stats, axis=2).reshape(n, -1)  # channel-major, as in _names()
    centred = flat - mean[:, :, None]
    norm = np.sqrt((centred**2).sum(axis=2))
    corr = []
    for a, b in _PAIRS:
        denominator = norm[:, a] * norm[:, b]
        numerator = (centred[:, a] * centred[:, b]).sum(axis=1)
        corr.append(np.divide(numerator, denominator, out=np.zeros(n), where=denominator > 0))
    return np.concatenate([per_channel, np.stack(corr, axis=1)], axis=1)


def _per_crop(images: np.ndarray) -> np.ndarray:
    """Shape, object intensity and texture features of each crop, ``(n, F - 30)``."""
    return np.stack([_one_crop(image) for image in images]).astype(np.float32)


def _one_crop(image: np.ndarray) -> np.ndarray:
    nucleus, cell = _segment_crop(image)
    shape_n = _shape(nucleus)
    shape_c = _shape(cell)
    size = image.shape[-1]
    offset = 0.0
    if nucleus.any():
        cy, cx = ndi.center_of_mass(nucleus)
        offset = float(np.hypot(cy - (size // 2), cx - (size // 2)))
    border = np.concatenate([cell[0], cell[-1], cell[1:-1, 0], cell[1:-1, -1]])
    ratio = shape_n[0] / shape_c[0] if shape_c[0] > 0 else 0.0
    cytoplasm = cell & ~nucleus
    objects = []
    for channel in image:
        objects += [
            _masked_mean(channel, nucleus),
            _masked_mean(channel, cytoplasm),
            float(channel[cell].sum()),
        ]
    texture = [_haralick(channel, cell) for channel in image]
    return np.concatenate(
        [shape_n, [offset], shape_c, [float(border.mean()), ratio], objects, *texture]
    )


def _segment_crop(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the nucleus at the crop centre and of its cell."""
    size = image.shape[-1]
    dapi = filters.gaussian(image[0], sigma=1.0, preserve_range=True)
    if np.ptp(dapi) <= 1e-6:
        empty = np.zeros(dapi.shape, bool)
        return empty, empty
    nuclei = ndi.binary_fill_holes(dapi > filters.threshold_otsu(dapi))
    nuclei_labels, n = ndi.label(nuclei)
    if n == 0:
        empty = np.zeros(dapi.shape, bool)
        return empty, empty
    centre = nuclei_labels[size // 2, size // 2]
    if centre == 0:  # the object whose nearest pixel is closest to the centre
        _, (iy, ix) = ndi.distance_transform_edt(nuclei_labels == 0, return_indices=True)
        centre = nuclei_labels[iy[size // 2, size // 2], ix[size // 2, size // 2]]
    nucleus = nuclei_labels == centre
    cyto = filters.gaussian(image[1:].mean(axis=0), sigma=1.5, preserve_range=True)
    foreground = nuclei.copy()
    if np.ptp(cyto) > 1e-6:
        # half Otsu: a crop is mostly cell, and Otsu alone splits bright from dim cytoplasm
        foreground |= cyto > 0.5 * filters.threshold_otsu(cyto)
    # the nearest nucleus owns a foreground pixel (a Voronoi split between touching cells)
    distance = ndi.distance_transform_edt(nuclei_labels == 0)
    regions = watershed(distance, markers=nuclei_labels, mask=foreground)
    cell = (regions == centre) | nucleus
    return nucleus, ndi.binary_fill_holes(cell)


def _shape(mask: np.ndarray) -> list[float]:
    """Region shape from image moments, as :func:`skimage.measure.regionprops` defines them."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return [0.0] * len(_SHAPE)
    area = float(len(ys))
    dy, dx = ys - ys.mean(), xs - xs.mean()
    # inertia tensor eigenvalues of the region (regionprops' axis lengths are 4 sqrt(eig))
    cyy, cxx, cxy = (dy * dy).mean(), (dx * dx).mean(), (dx * dy).mean()
    root = np.sqrt(((cyy - cxx) / 2) ** 2 + cxy**2)
    big, small = (cyy + cxx) / 2 + root, max((cyy + cxx) / 2 - root, 0.0)
    eccentricity = np.sqrt(1 - small / big) if big > 0 else 0.0
    perimeter = float(measure.perimeter(mask))
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    return [
        area,
        perimeter,
        float(eccentricity),
        area / _hull_area(ys, xs),
        area / float(height * width),
        4 * np.sqrt(big),
        4 * np.sqrt(small),
        float(np.sqrt(4 * area / np.pi)),
        float(4 * np.pi * area / perimeter**2) if perimeter > 0 else 0.0,
    ]


def _hull_area(ys: np.ndarray, xs: np.ndarray) -> float:
    """Area of the convex hull of the pixels' squares (so never below the pixel count).

    Only each row's first and last pixel can be hull vertices; ``ys`` is sorted (row-major
    ``np.nonzero``), so they are the ends of the runs of equal ``ys``.
    """
    starts = np.flatnonzero(np.r_[True, ys[1:] != ys[:-1]])
    rows = ys[starts]
    left, right = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    corners = np.concatenate(
        [
            np.stack([rows + oy, edge + ox], axis=1)
            for oy in (-0.5, 0.5)
            for edge, ox in ((left, -0.5), (right, 0.5))
        ]
    )
    try:
        return float(ConvexHull(corners).volume)
    except QhullError:  # unreachable for pixel squares; keep solidity finite regardless
        return float(len(ys))


def _masked_mean(channel: np.ndarray, mask: np.ndarray) -> float:
    return float(channel[mask].mean()) if mask.any() else 0.0


def _haralick(channel: np.ndarray, mask: np.ndarray) -> list[float]:
    """Haralick features of the masked pixels: level 0 marks outside and is left out.

    The properties are those of :func:`skimage.feature.graycoprops` (tested against it),
    computed for every distance and angle at once; a distance with no pair of cell pixels
    gives zeros.
    """
    levels = np.minimum((channel * _LEVELS).astype(np.int64), _LEVELS - 1) + 1
    levels = np.where(mask, levels, 0).astype(np.uint8)
    glcm = graycomatrix(levels, _DISTANCES, _ANGLES, levels=_LEVELS + 1, symmetric=True)
    p = glcm[1:, 1:].astype(np.float64)
    total = p.sum(axis=(0, 1), keepdims=True)
    p /= np.where(total > 0, total, 1)
    i = np.arange(_LEVELS, dtype=np.float64)[:, None, None, None]
    j = i.reshape(1, -1, 1, 1)
    diff = i - j
    mean_i, mean_j = (p * i).sum(axis=(0, 1)), (p * j).sum(axis=(0, 1))
    std_i = np.sqrt((p * (i - mean_i) ** 2).sum(axis=(0, 1)))
    std_j = np.sqrt((p * (j - mean_j) ** 2).sum(axis=(0, 1)))
    covariance = (p * (i - mean_i) * (j - mean_j)).sum(axis=(0, 1))
    spread = std_i * std_j
    # graycoprops: correlation 1 for a constant region
    correlation = np.where(spread > 1e-15, covariance / np.where(spread > 1e-15, spread, 1), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=(0, 1))
    props = np.stack(
        [
            (p * diff**2).sum(axis=(0, 1)),
            (p * np.abs(diff)).sum(axis=(0, 1)),
            (p / (1 + diff**2)).sum(axis=(0, 1)),
            np.sqrt((p**2).sum(axis=(0, 1))),
            correlation,
            entropy,
        ]
    )  # (props, distances, angles)
    out = props.mean(axis=2)
    out[:, total.reshape(len(_DISTANCES), -1).sum(axis=1) == 0] = 0.0
    return out.reshape(-1).tolist()
