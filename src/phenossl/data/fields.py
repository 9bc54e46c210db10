"""Read one multichannel field (DAPI, Tubulin, Actin) and normalise it per channel.

Reading path. TIFF files (``.tif``/``.tiff``, all of BBBC021) are decoded with ``tifffile``
directly; every other format goes through ``bioio.BioImage`` and whichever bioio reader plugin is
installed. For TIFF both end in the same decoder (``bioio-tifffile`` wraps ``tifffile``), but the
bioio layer builds xarray/dask metadata on every open. On one real 1024 x 1280 uint16 BBBC021
channel (best of 30, one core): ``tifffile.imread`` 1.2 ms, ``bioio_tifffile.Reader(path).data``
6.4 ms, ``BioImage(path, reader=bioio_tifffile.Reader).get_image_data("YX")`` 8.4 ms and
``BioImage(path)`` with its plugin lookup 17 ms. A field is three files and the segmentation budget
leaves ~20 ms per field for reading + normalising, so TIFF takes the direct path
(``benchmarks/bench_fields.py`` measures all of these).

Normalisation maps each channel's low percentile to 0 and its high percentile to 1, then clips to
[0, 1]. For integer images the percentiles come from an exact histogram (``np.bincount`` +
cumulative counts): the same values as ``np.percentile``'s linear interpolation, in 2.2 ms instead
of 12.5 ms per channel. A whole field reads and normalises in about 16 ms.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Channel order of :func:`read_field`'s output, and the field-table columns holding their paths.
CHANNEL_NAMES: tuple[str, ...] = ("DAPI", "Tubulin", "Actin")
CHANNEL_KEYS: tuple[str, ...] = ("dapi", "tubulin", "actin")

TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")

# Integer channels whose value range is below this use the histogram path.
_MAX_HISTOGRAM_BINS = 1 << 24
_HISTOGRAM_BLOCK = 1 << 16

PathLike = str | os.PathLike[str]


class FieldReadError(ValueError):
    """An image file exists but cannot be decoded (corrupt, truncated, unsupported or not 2D).

    Attributes
    ----------
    path
        The offending file.
    reason
        What went wrong.
    """

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image file {self.path}: {reason}")


def read_channel(path: PathLike) -> np.ndarray:
    """Read one single-channel 2D image, in its stored dtype (e.g. ``uint16``).

    Singleton axes are dropped, so a ``(1, 1, H, W)`` file reads as ``(H, W)``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    FieldReadError
        The file cannot be decoded or does not hold a single 2D plane.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        data = _read_tiff(path) if path.suffix.lower() in TIFF_SUFFIXES else _read_bioio(path)
    except MemoryError:
        raise
    except Exception as exc:  # decoders raise many types (ValueError, RuntimeError, OSError...)
        raise FieldReadError(path, f"{type(exc).__name__}: {exc}") from exc
    data = np.squeeze(data)
    if data.ndim != 2:
        raise FieldReadError(
            path, f"expected a single 2D plane, got an array of shape {data.shape}"
        )
    return data


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(path)


def _read_bioio(path: Path) -> np.ndarray:
    import bioio

    return np.asarray(bioio.BioImage(path).data)


def read_field(
    dapi: PathLike | Any,
    tubulin: PathLike | None = None,
    actin: PathLike | None = None,
    *,
    normalize: bool = True,
    percentiles: Sequence[float] = (1.0, 99.8),
) -> np.ndarray:
    """Read a field's three channels as one ``float32 (3, H, W)`` array: DAPI, Tubulin, Actin.

    Parameters
    ----------
    dapi, tubulin, actin
        The three channel files; or, as ``dapi`` alone, one field-table row (a mapping or
        ``pandas.Series`` with ``dapi``, ``tubulin`` and ``actin`` entries).
    normalize
        Map each channel's ``percentiles`` to 0 and 1 and clip to [0, 1] (see
        :func:`normalize_percentiles`); ``False`` returns the raw intensities as float32.
    percentiles
        Low and high percentiles, in [0, 100].

    Raises
    ------
    FileNotFoundError
        A channel file does not exist (named).
    FieldReadError
        A channel file cannot be decoded, is not 2D, or (with ``normalize``) holds NaN
        (``path`` attribute; a ``ValueError``).
    ValueError
        The channels differ in shape (the three shapes are named), or a row lacks a path.

    Examples
    --------
    >>> import numpy as np, tifffile
    >>> for name in ("dapi.tif", "tubulin.tif", "actin.tif"):
    ...     tifffile.imwrite(name, np.arange(64, dtype=np.uint16).reshape(8, 8))
    >>> image = read_field("dapi.tif", "tubulin.tif", "actin.tif")
    >>> image.shape, image.dtype
    ((3, 8, 8), dtype('float32'))
    >>> float(image.min()), float(image.max())  # each channel scaled to its percentiles
    (0.0, 1.0)
    """
    paths = _channel_paths(dapi, tubulin, actin)
    low, high = _check_percentiles(percentiles)
    channels = [read_channel(p) for p in paths]
    shapes = [c.shape for c in channels]
    if len(set(shapes)) != 1:
        described = ", ".join(f"{n} {s} ({p})" for n, s, p in zip(CHANNEL_NAMES, shapes, paths))
        raise ValueError(f"the three channels of a field must have the same shape, got {described}")
    out = np.empty((len(channels), *shapes[0]), dtype=np.float32)
    for path, channel, target in zip(paths, channels, out):
        if not normalize:
            target[...] = channel
            continue
        try:
            _normalize_channel(channel, target, low, high)
        except ValueError as exc:  # NaN in a float image: say which file
            raise FieldReadError(path, str(exc)) from exc
    return out


def _channel_paths(dapi: Any, tubulin: PathLike | None, actin: PathLike | None) -> list[Path]:
    if not isinstance(dapi, str | os.PathLike) and hasattr(dapi, "keys"):
        if tubulin is not None or actin is not None:
            raise TypeError("read_field: pass either one field-table row or three paths, not both")
        missing = [k for k in CHANNEL_KEYS if k not in dapi]
        if missing:
            raise ValueError(
                f"read_field: the field row lacks {', '.join(missing)}; "
                f"expected entries {', '.join(CHANNEL_KEYS)}"
            )
        return [Path(dapi[k]) for k in CHANNEL_KEYS]
    if tubulin is None or actin is None:
        missing = [n for n, v in zip(CHANNEL_KEYS[1:], (tubulin, actin)) if v is None]
        raise ValueError(
            f"read_field: missing the {' and '.join(missing)} path(s); pass dapi, tubulin and "
            "actin paths, or one field-table row"
        )
    return [Path(dapi), Path(tubulin), Path(actin)]


def normalize_percentiles(
    image: np.ndarray, percentiles: Sequence[float] = (1.0, 99.8)
) -> np.ndarray:
    """Percentile-normalise each channel of a ``(H, W)`` or ``(C, H, W)`` image to float32 [0, 1].

    Each channel's low percentile maps to 0 and its high percentile to 1, then values are clipped
    to [0, 1]. Percentiles use linear interpolation (``np.percentile``'s default) and are computed
    from an exact histogram for integer images. A channel whose two percentiles coincide (e.g. a
    constant one) maps to 0 at or below that value and 1 above it, never NaN.

    Raises
    ------
    ValueError
        ``image`` is not 2D or 3D, ``percentiles`` are not ``0 <= low < high <= 100``, or a float
        channel holds NaN or infinity.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"image must be a non-empty (H, W) or (C, H, W) array, got {image.shape}")
    low, high = _check_percentiles(percentiles)
    out = np.empty(image.shape, dtype=np.float32)
    if image.ndim == 2:
        _normalize_channel(image, out, low, high)
    else:
        for channel, target in zip(image, out):
            _normalize_channel(channel, target, low, high)
    return out


def channel_percentiles(channel: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Percentiles of one channel (linear interpolation), exact and fast for integer data."""
    channel = np.asarray(channel)
    q = np.asarray(percentiles, dtype=np.float64)
    if channel.dtype == np.bool_:
        channel = channel.view(np.uint8)
    if channel.dtype.kind in "ui":
        flat = channel.ravel()
        low, high = int(flat.min()), int(flat.max())
        if high - low < _MAX_HISTOGRAM_BINS:
            return _histogram_percentiles(*_histogram(flat, low, high), q)
    values = np.percentile(channel, q)
    if not np.isfinite(values).all():
        raise ValueError("image holds NaN or infinite values; percentiles are undefined")
    return values


def _histogram(flat: np.ndarray, low: int, high: int) -> tuple[np.ndarray, int]:
    # np.bincount copies its input to intp (8 bytes a pixel). Counting in blocks keeps that copy
    # small and reused instead of a fresh 10 MB array per 1024 x 1280 channel, whose page faults
    # cost more than the counting itself.
    # Small unsigned values (8/16-bit images) are counted from 0, saving a subtraction per block.
    offset = 0 if flat.dtype.kind == "u" and high < (1 << 16) else low
    counts = np.zeros(high - offset + 1, dtype=np.intp)
    for start in range(0, flat.size, _HISTOGRAM_BLOCK):
        block = flat[start : start + _HISTOGRAM_BLOCK]
        if offset:
            block = np.subtract(block, offset, dtype=np.int64, casting="unsafe")
        counts += np.bincount(block, minlength=len(counts))
    return counts, offset


def _histogram_percentiles(counts: np.ndarray, offset: int, q: np.ndarray) -> np.ndarray:
    # The k-th smallest value (0-based) is the first bin whose cumulative count exceeds k; then
    # interpolate between ranks floor(pos) and floor(pos) + 1 as np.percentile(method="linear").
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])
    position = q / 100.0 * (n - 1)
    below = np.floor(position)
    ranks = np.stack([below, np.minimum(below + 1, n - 1)]).astype(np.int64)
    lower, upper = np.searchsorted(cumulative, ranks, side="right").astype(np.float64)
    return offset + lower + (upper - lower) * (position - below)


def _normalize_channel(channel: np.ndarray, out: np.ndarray, low: float, high: float) -> None:
    lo, hi = channel_percentiles(channel, (low, high))
    if hi > lo:
        np.subtract(channel, lo, out=out, dtype=np.float32, casting="unsafe")
        np.multiply(out, np.float32(1.0 / (hi - lo)), out=out)
        np.clip(out, 0.0, 1.0, out=out)
    else:
        np.greater(channel, lo, out=out, casting="unsafe")


def _check_percentiles(percentiles: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(p) for p in percentiles)
    except (TypeError, ValueError):
        raise ValueError(
            f"percentiles must be two numbers (low, high), got {percentiles!r}"
        ) from None
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}")
    return low, high
