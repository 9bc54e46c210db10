"""Import single-cell crops made elsewhere (arrays, image files) into a CropSet.

Sources: an array file (``.npy``, or one array of an ``.npz``) of shape ``(N, C, H, W)`` or
``(N, H, W, C)`` (uint8, uint16, any integer or float), or a folder of single-cell image files
(TIFF, PNG, ...) named by a column of the per-cell table; plus that table (one row per crop, in
order). The crops are reordered to the CropSet's channels (DAPI, Tubulin, Actin) and mapped to
``uint8`` like the crops of ``phenossl crops`` (see :data:`NORMALIZATIONS`).

Normalisation (``normalize``), per channel, to ``round(255 * clip((x - lo) / (hi - lo), 0, 1))``:

``"plate"`` (default)
    ``lo``/``hi`` are the ``percentiles`` (default 1, 99.8: those of
    :func:`phenossl.data.fields.read_field`) of all pixels of the plate's crops (``plate_column``;
    without that column every crop is one plate), so intensities stay comparable between the
    cells of a plate, as they are between the cells of one field in ``phenossl crops``. Computed
    exactly when a plate has at most ``sample_pixels`` pixels per channel, otherwise from that
    many pixels drawn at random from the plate's crops.
``"crop"``
    ``lo``/``hi`` of each crop's own pixels: every crop fills 0..255 (loses brightness
    differences between cells).
``"none"``
    for ``uint8`` input only: stored as is.

Where ``hi <= lo`` (a constant channel) pixels above ``lo`` become 255 and the others 0.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phenossl._json import write_json
from phenossl._progress import Progress, ProgressCallback, ProgressGenerator, drives
from phenossl.cells.crops import to_uint8
from phenossl.data.cropset import CHANNELS, CropSet, CropSetWriter
from phenossl.data.fields import _check_percentiles, channel_percentiles, normalize_percentiles

__all__ = [
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "NORMALIZATIONS",
    "import_crops",
    "iter_import_crops",
]

LAYOUTS = ("auto", "nchw", "nhwc")
NORMALIZATIONS = ("plate", "crop", "none")
IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
#: a source channel named like this is dropped (e.g. a fourth channel the CropSet has no slot for)
SKIP_CHANNEL = "-"
#: float32 bytes of one chunk of crops normalised at once (the memory bound of an import)
CHUNK_BYTES = 1 << 26
#: columns of the user's table that would collide with the CropSet's own; renamed ``source_<name>``
_RESERVED = ("cell_id", "shard", "index")


def iter_import_crops(
    source: str | os.PathLike | np.ndarray,
    table: str | os.PathLike | pd.DataFrame,
    out: str | os.PathLike,
    *,
    channels: Sequence[str] | str = CHANNELS,
    layout: str = "auto",
    normalize: str = "plate",
    percentiles: Sequence[float] = (1.0, 99.8),
    plate_column: str = "plate",
    holdout: str | None = None,
    key: str | None = None,
    file_columns: Sequence[str] | str = ("file",),
    sample_pixels: int = 1 << 18,
    shard_size: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> ProgressGenerator[CropSet]:
    """Build a CropSet from crops made elsewhere, yielding progress per chunk of crops.

    Parameters
    ----------
    source
        An array file (``.npy``; ``.npz`` with one array, or ``key``), an in-memory array, or a
        folder of single-cell image files named by ``file_columns`` of ``table``.
    table
        Per-cell CSV (or DataFrame), one row per crop in the source's order. Every column is
        kept in ``cells.csv``; ``cell_id``, ``shard`` and ``index`` are renamed
        ``source_<name>`` (the CropSet's own columns); ``treatment`` (``compound@concentration``,
        ``%g``) and ``field_id`` (``plate/well/s<site>``) are added when derivable and absent.
    out
        CropSet folder to create.
    channels
        Names of the source's channels in their order (a sequence or comma-separated string),
        case-insensitive: a permutation of DAPI, Tubulin, Actin, plus ``"-"`` for a source
        channel to drop. The crops are reordered to DAPI, Tubulin, Actin.
    layout
        ``"auto"`` (the channel axis is the one of length ``len(channels)`` beside two equal
        axes), ``"nchw"`` or ``"nhwc"``; for image files, the same for each file's
        ``(C, H, W)`` or ``(H, W, C)``.
    normalize
        ``"plate"``, ``"crop"`` or ``"none"`` (see the module docstring).
    percentiles
        Low and high percentiles mapped to 0 and 255.
    plate_column
        Column grouping crops for ``normalize="plate"`` and checked by ``holdout``.
    holdout
        A :meth:`pandas.DataFrame.query` over the table; matching rows get ``split`` =
        ``"test"``, the others ``"train"``. A plate on both sides is an error.
    key
        The array of an ``.npz`` holding several.
    file_columns
        For a folder source: one column of multi-channel file names, or one column per source
        channel (single-channel files). Names are relative to ``source`` (or absolute).
    sample_pixels
        Pixels per plate and channel from which ``"plate"`` percentiles are computed.
    shard_size
        Crops per CropSet shard, also read and normalised at once; None: as many as make
        :data:`CHUNK_BYTES` of float32 (1,209 crops of 68 px, 145 of 196 px).
    seed
        Seed of the pixel sample of ``"plate"``.
    overwrite
        Replace an existing CropSet at ``out``.

    Returns
    -------
    CropSet
        The new CropSet; ``import.json`` in its folder records the source, the channel
        mapping, the normalisation (with each plate's ``lo``/``hi``), the renamed columns and
        the split counts.

    Raises
    ------
    ValueError
        Bad shape or dtype, NaN/inf, channel names, table length or columns, holdout query.
    FileNotFoundError
        Missing source, table or image file (named with its table row).
    FileExistsError
        ``out`` exists and is not empty, without ``overwrite``.

    Examples
    --------
    >>> from phenossl.cells.import_crops import import_crops
    >>> cs = import_crops("crops.npz", "cells.csv", "cropset/",
    ...                   holdout="replicate != 1")  # doctest: +SKIP
    >>> cs.size, cs.table["split"].value_counts()  # doctest: +SKIP
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize={normalize!r}: expected one of {', '.join(NORMALIZATIONS)}")
    low, high = _check_percentiles(percentiles)
    for name, value in (("sample_pixels", sample_pixels), ("shard_size", shard_size)):
        if value is None and name == "shard_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}; expected an integer >= 1")
    order = channel_order(channels)
    cells = _read_table(table)
    reader = _open_source(source, cells, order, layout, key, file_columns)
    n, size = reader.shape[0], reader.shape[2]
    if shard_size is None:
        shard_size = max(1, CHUNK_BYTES // (len(CHANNELS) * size * size * 4))
    if len(cells) != n:
        raise ValueError(
            f"{_name(table)} has {len(cells)} rows but {reader.label} holds {n} crops; "
            "expected one row per crop, in order"
        )
    if normalize == "none" and reader.dtype != np.uint8:
        raise ValueError(
            f"normalize='none' keeps uint8 crops as they are, but {reader.label} is "
            f"{reader.dtype}; use normalize='plate' or 'crop'"
        )
    cells, renamed = _prepare_table(cells, holdout, plate_column)
    out = Path(out)
    created = not out.exists()
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise FileExistsError(
            f"{out} is not empty; pass overwrite=True (--overwrite) to replace it"
        )

    plates = _plate_groups(cells, plate_column)
    limits = None
    passes = 2 if normalize == "plate" else 1
    total = passes * n
    yield Progress(0, total, f"importing {n} crops of {size} px from {reader.label}")
    if normalize == "plate":
        sampler = _PlateSampler(plates, size * size, sample_pixels, seed)
        for start, chunk in reader.chunks(shard_size):
            sampler.add(start, chunk)
            yield Progress(start + len(chunk), total, "plate percentiles")
        limits = sampler.limits((low, high))

    try:
        writer = CropSetWriter(out, size, overwrite=overwrite)
        done = (passes - 1) * n
        for start, chunk in reader.chunks(shard_size):
            stop = start + len(chunk)
            if limits is not None:  # normalize == "plate"
                images = _scale(chunk, *limits[plates[start:stop]].transpose(1, 0, 2))
            elif normalize == "crop":
                images = np.stack([to_uint8(normalize_percentiles(c, (low, high))) for c in chunk])
            else:
                images = np.ascontiguousarray(chunk)
            writer.add(images, cells.iloc[start:stop])
            done += len(chunk)
            yield Progress(done, total, f"{stop} crops")
        summary = _summary(
            reader, cells, order, normalize, (low, high), plate_column, plates, limits, renamed
        )
        summary["holdout"] = holdout
        write_json(out / "import.json", summary)
        writer.close()
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return CropSet(out)


@drives(iter_import_crops)
def import_crops(*, progress: ProgressCallback | None = None) -> CropSet:
    """Build a CropSet from crops made elsewhere; see :func:`iter_import_crops`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from phenossl.cells.import_crops import import_crops
    >>> crops = np.random.default_rng(0).integers(0, 4000, (4, 68, 68, 3), dtype=np.uint16)
    >>> table = pd.DataFrame({"plate": ["P1", "P1", "P2", "P2"], "compound": "DMSO",
    ...                       "concentration": 0.0})
    >>> cs = import_crops(crops, table, "cs/", channels="Actin,Tubulin,DAPI")
    >>> cs.size, list(cs.table.columns)
    (68, ['cell_id', 'plate', 'compound', 'concentration', 'treatment', 'shard', 'index'])
    """


def channel_order(channels: Sequence[str] | str) -> list[int | None]:
    """For each source channel, its CropSet channel index (None: dropped).

    ``channels`` names the source's channels in order (comma-separated or a sequence),
    case-insensitively; each of DAPI, Tubulin, Actin exactly once, ``"-"`` for channels to drop.

    Examples
    --------
    >>> channel_order("Actin,Tubulin,DAPI")
    [2, 1, 0]
    >>> channel_order(["dapi", "-", "tubulin", "actin"])
    [0, None, 1, 2]
    """
    names = channels.split(",") if isinstance(channels, str) else list(channels)
    names = [str(name).strip() for name in names]
    known = {c.lower(): i for i, c in enumerate(CHANNELS)}
    unknown = [name for name in names if name != SKIP_CHANNEL and name.lower() not in known]
    if unknown:
        raise ValueError(
            f"unknown channel name(s) {unknown} in channels={','.join(names)!r}; known names: "
            f"{', '.join(CHANNELS)} (case-insensitive), or {SKIP_CHANNEL!r} to drop a channel"
        )
    order = [None if name == SKIP_CHANNEL else known[name.lower()] for name in names]
    named = [i for i in order if i is not None]
    if sorted(named) != list(range(len(CHANNELS))):
        missing = [CHANNELS[i] for i in range(len(CHANNELS)) if i not in named]
        twice = sorted({CHANNELS[i] for i in named if named.count(i) > 1})
        raise ValueError(
            f"channels={','.join(names)!r} must name each of {', '.join(CHANNELS)} exactly once"
            + (f"; missing {missing}" if missing else "")
            + (f"; repeated {twice}" if twice else "")
        )
    return order


# --- the table --------------------------------------------------------------------------------


def _name(table: Any) -> str:
    return "table" if isinstance(table, pd.DataFrame) else str(table)


def _read_table(table: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table.reset_index(drop=True).copy()
    path = Path(table)
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV table ({err})") from None


def _prepare_table(
    cells: pd.DataFrame, holdout: str | None, plate_column: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rename colliding columns, derive treatment/field_id, add the holdout split."""
    reserved = (*_RESERVED, "split") if holdout is not None else _RESERVED
    renamed = {c: f"source_{c}" for c in reserved if c in cells.columns}
    clash = [new for new in renamed.values() if new in cells.columns]
    if clash:
        raise ValueError(f"table: cannot rename {list(renamed)} to {clash}: those columns exist")
    cells = cells.rename(columns=renamed)
    if "treatment" not in cells.columns and {"compound", "concentration"} <= set(cells.columns):
        concentration = pd.to_numeric(cells["concentration"], errors="coerce")
        label = {c: f"{c:g}" for c in pd.unique(concentration)}
        cells["treatment"] = cells["compound"].astype(str) + "@" + concentration.map(label)
    if "field_id" not in cells.columns and {"plate", "well", "site"} <= set(cells.columns):
        cells["field_id"] = (
            cells["plate"].astype(str)
            + "/"
            + cells["well"].astype(str)
            + "/s"
            + cells["site"].astype(str)
        )
    if holdout is not None:
        cells["split"] = _holdout_split(cells, holdout, plate_column)
    return cells, renamed


def _holdout_split(cells: pd.DataFrame, query: str, plate_column: str) -> np.ndarray:
    try:
        held = cells.eval(query)
    except Exception as err:  # pandas raises many types for a bad expression
        raise ValueError(
            f"holdout={query!r} is not a valid query over the table's columns "
            f"{list(cells.columns)}: {err}"
        ) from None
    held = np.asarray(held)
    if held.dtype != bool or held.shape != (len(cells),):
        raise ValueError(
            f"holdout={query!r} must give one True/False per row, e.g. 'replicate != 1'"
        )
    if held.all() or not held.any():
        side = "every" if held.all() else "no"
        raise ValueError(f"holdout={query!r} selects {side} row; a hold-out needs both sides")
    if plate_column in cells.columns:
        sides = pd.Series(held).groupby(cells[plate_column].to_numpy()).nunique()
        split_plates = sides.index[sides.to_numpy() > 1].tolist()
        if split_plates:
            raise ValueError(
                f"holdout={query!r} puts plate(s) {split_plates[:5]} partly in train and partly in "
                "test; a plate-level hold-out must keep each plate on one side"
            )
    return np.where(held, "test", "train")


def _plate_groups(cells: pd.DataFrame, plate_column: str) -> np.ndarray:
    """Integer plate code per row (all 0 when there is no plate column)."""
    if plate_column not in cells.columns:
        return np.zeros(len(cells), dtype=np.intp)
    codes, _ = pd.factorize(cells[plate_column].astype(str), sort=True)
    return codes.astype(np.intp)


# --- the pixels -------------------------------------------------------------------------------


class _PlateSampler:
    """Collects a bounded pixel sample per plate and channel, then its percentiles."""

    def __init__(self, plates: np.ndarray, pixels: int, budget: int, seed: int) -> None:
        self.plates = plates
        self.pixels = pixels
        self.rng = np.random.default_rng(seed)
        n_plates = int(plates.max()) + 1 if len(plates) else 0
        counts = np.bincount(plates, minlength=n_plates)
        # each crop of a plate contributes `take` pixels (all when the plate fits the budget)
        self.take = np.minimum(pixels, np.maximum(1, budget // np.maximum(counts, 1)))
        # a plate of more crops than the budget has pixels: only `budget` random crops count
        keep = np.ones(len(plates), dtype=bool)
        for plate in np.flatnonzero(counts > budget):
            rows = np.flatnonzero(plates == plate)
            keep[rows] = False
            keep[self.rng.choice(rows, budget, replace=False)] = True
        self.keep = keep
        self.values: list[list[list[np.ndarray]]] = [[] for _ in range(n_plates)]

    def add(self, start: int, chunk: np.ndarray) -> None:
        flat = chunk.reshape(len(chunk), chunk.shape[1], -1)
        plates = self.plates[start : start + len(chunk)]
        keep = self.keep[start : start + len(chunk)]
        for plate in np.unique(plates[keep]):
            rows = flat[(plates == plate) & keep]
            take = int(self.take[plate])
            if take < self.pixels:
                rows = rows[:, :, self.rng.choice(self.pixels, take, replace=False)]
            self.values[plate].append(rows.transpose(1, 0, 2).reshape(rows.shape[1], -1))

    def limits(self, percentiles: tuple[float, float]) -> np.ndarray:
        """``float32 (plates, 2, C)``: the low and high percentile per plate and channel."""
        out = []
        for parts in self.values:
            values = np.concatenate(parts, axis=1)
            out.append(np.stack([channel_percentiles(v, percentiles) for v in values], axis=1))
        return np.asarray(out, dtype=np.float32)


def _scale(chunk: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``uint8`` crops from per-crop, per-channel limits ``lo``/``hi`` of shape ``(n, C)``."""
    lo, hi = lo[:, :, None, None], hi[:, :, None, None]
    span = hi - lo
    flat = span <= 0
    scale = np.where(flat, np.float32(0), np.float32(1) / np.where(flat, 1, span))
    unit = np.subtract(chunk, lo, dtype=np.float32)
    np.multiply(unit, scale, out=unit)
    if flat.any():  # a constant channel: 1 above its level, 0 elsewhere (as read_field does)
        unit = np.where(flat, (chunk > lo).astype(np.float32), unit)
    return to_uint8(unit)


class _Source:
    """Crops in CropSet channel order, ``(n, 3, S, S)`` chunks in the source's dtype."""

    label: str
    shape: tuple[int, int, int, int]
    dtype: np.dtype

    def chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        for start, raw in self._raw_chunks(size):
            if raw.dtype.kind == "f":
                finite = np.isfinite(raw).reshape(len(raw), -1).all(axis=1)
                if not finite.all():
                    rows = (start + np.flatnonzero(~finite)).tolist()
                    raise ValueError(
                        f"{self.label}: crop(s) at row(s) {rows[:10]} hold NaN or infinite "
                        f"values ({len(rows)} in rows {start}..{start + len(raw) - 1})"
                    )
            yield start, raw

    def _raw_chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        raise NotImplementedError


def _check_dtype(dtype: np.dtype, label: str) -> np.dtype:
    if dtype.kind not in "uif":
        raise ValueError(f"{label}: dtype {dtype} is not an integer or float image type")
    return dtype


def _channel_axis(shape: tuple[int, ...], n_channels: int, layout: str, label: str) -> str:
    """``"first"`` or ``"last"``: where the channel axis of ``(C, H, W)``/``(H, W, C)`` is."""
    first = shape[0] == n_channels and shape[1] == shape[2]
    last = shape[2] == n_channels and shape[0] == shape[1]
    if layout == "nchw":
        found = first
    elif layout == "nhwc":
        found = last
    else:
        found = first or last
        if first and last:
            raise ValueError(
                f"{label}: crop shape {shape} is ambiguous (channels first or last?); pass "
                "layout='nchw' or 'nhwc'"
            )
    if not found:
        want = {"nchw": "(C, S, S)", "nhwc": "(S, S, C)"}.get(layout, "(C, S, S) or (S, S, C)")
        raise ValueError(
            f"{label}: crops of shape {shape} do not match {want} with C = {n_channels} "
            f"channel(s) (as many as named in channels) and square S x S crops"
        )
    return "first" if (layout == "nchw" or (layout == "auto" and first)) else "last"


def _reorder(chunk: np.ndarray, axis: str, order: list[int | None]) -> np.ndarray:
    """``(n, C_src, ...)`` or ``(n, ..., C_src)`` -> ``(n, 3, S, S)`` in CropSet order."""
    if axis == "last":
        chunk = np.moveaxis(chunk, -1, 1)
    pick = [order.index(i) for i in range(len(CHANNELS))]
    return np.ascontiguousarray(chunk[:, pick])


class _ArraySource(_Source):
    def __init__(self, source: Any, order: list[int | None], layout: str, key: str | None):
        self._array: np.ndarray | None = None
        self._zip: tuple[Path, str] | None = None
        if isinstance(source, np.ndarray):
            self.label, self._array, raw_shape, dtype = "array", source, source.shape, source.dtype
        else:
            path = Path(source)
            self.label = str(path)
            if not path.is_file():
                raise FileNotFoundError(f"crops file not found: {path}")
            if path.suffix.lower() == ".npz":
                raw_shape, dtype = self._open_npz(path, key)
            elif path.suffix.lower() == ".npy":
                if key is not None:
                    raise ValueError(f"key={key!r} applies to an .npz file, not {path}")
                try:
                    self._array = np.load(path, mmap_mode="r", allow_pickle=False)
                except (ValueError, OSError) as err:
                    raise ValueError(f"{path}: not a readable .npy array ({err})") from None
                raw_shape, dtype = self._array.shape, self._array.dtype
            else:
                raise ValueError(f"{path}: expected an .npy or .npz file, or a folder of images")
        if len(raw_shape) != 4:
            raise ValueError(
                f"{self.label}: expected a 4-D array (N, C, H, W) or (N, H, W, C), got shape "
                f"{tuple(raw_shape)}"
            )
        self.dtype = _check_dtype(np.dtype(dtype), self.label)
        self._axis = _channel_axis(tuple(raw_shape[1:]), len(order), layout, self.label)
        size = raw_shape[2] if self._axis == "first" else raw_shape[1]
        self.shape = (int(raw_shape[0]), len(CHANNELS), int(size), int(size))
        self._raw_shape = tuple(int(s) for s in raw_shape)
        self._order = order

    def _open_npz(self, path: Path, key: str | None) -> tuple[tuple[int, ...], np.dtype]:
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
                if key is None:
                    if len(names) != 1:
                        raise ValueError(
                            f"{path} holds {len(names)} arrays {names}; name one with key"
                        )
                    key = names[0]
                elif key not in names:
                    raise ValueError(f"{path} has no array {key!r}; its arrays are {names}")
                with archive.open(key + ".npy") as handle:
                    shape, fortran, dtype = _read_npy_header(handle)
        except zipfile.BadZipFile:
            raise ValueError(f"{path}: not a readable .npz file") from None
        if fortran or dtype.hasobject:
            raise ValueError(f"{path}[{key}]: expected a C-ordered numeric array")
        self._zip = (path, key)
        return shape, dtype

    def _raw_chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        n = self._raw_shape[0]
        if self._array is not None:
            for start in range(0, n, size):
                raw = np.asarray(self._array[start : start + size])
                yield start, _reorder(raw, self._axis, self._order)
            return
        # .npz: stream the member (compressed or not), one chunk of rows in memory at a time
        assert self._zip is not None  # an .npz source when not an array
        path, key = self._zip
        row_bytes = int(np.prod(self._raw_shape[1:])) * self.dtype.itemsize
        with zipfile.ZipFile(path) as archive, archive.open(key + ".npy") as handle:
            _read_npy_header(handle)
            for start in range(0, n, size):
                rows = min(size, n - start)
                data = handle.read(rows * row_bytes)
                if len(data) != rows * row_bytes:
                    raise ValueError(f"{path}[{key}]: truncated at crop {start}")
                raw = np.frombuffer(data, dtype=self.dtype).reshape(rows, *self._raw_shape[1:])
                yield start, _reorder(raw, self._axis, self._order)


def _read_npy_header(handle: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    return np.lib.format.read_array_header_2_0(handle)


class _FileSource(_Source):
    """One image file per crop (multi-channel), or one per crop and channel."""

    def __init__(
        self,
        folder: Path,
        cells: pd.DataFrame,
        order: list[int | None],
        layout: str,
        file_columns: Sequence[str] | str,
    ) -> None:
        columns = [file_columns] if isinstance(file_columns, str) else list(file_columns)
        missing = [c for c in columns if c not in cells.columns]
        if missing:
            raise ValueError(
                f"table has no file column(s) {missing}; its columns are {list(cells.columns)} "
                "(name the column of image file names with file_columns / --file-column)"
            )
        if len(columns) not in (1, len(order)):
            raise ValueError(
                f"file_columns {columns}: give one column of multi-channel files or one per "
                f"source channel ({len(order)})"
            )
        self.label = str(folder)
        self._order, self._layout = order, layout
        self._paths = [
            [self._resolve(folder, cells[c].iat[r], r, c) for c in columns]
            for r in range(len(cells))
        ]
        if not self._paths:
            raise ValueError(f"table lists no image files for {folder}")
        first = self._read(0)
        self.dtype = first.dtype
        self.shape = (len(cells), *first.shape[1:])

    @staticmethod
    def _resolve(folder: Path, name: Any, row: int, column: str) -> Path:
        if pd.isna(name) or not str(name).strip():
            raise ValueError(f"table row {row} (CSV line {row + 2}): column {column!r} is empty")
        path = Path(str(name).strip())
        path = path if path.is_absolute() else folder / path
        if not path.is_file():
            raise FileNotFoundError(
                f"image file not found: {path} (table row {row}, CSV line {row + 2}, "
                f"column {column!r})"
            )
        return path

    def _read(self, row: int) -> np.ndarray:
        """The crop of one row, ``(1, 3, S, S)`` in CropSet channel order."""
        images = [_read_image(p) for p in self._paths[row]]
        where = f"{self._paths[row][0]} (table row {row})"
        if len(images) == 1:
            image = images[0]
            if image.ndim == 2 and len(self._order) == 1:
                image = image[None]
            if image.ndim != 3:
                raise ValueError(
                    f"{where}: expected a {len(self._order)}-channel image, got shape {image.shape}"
                )
            _check_dtype(image.dtype, where)
            axis = _channel_axis(image.shape, len(self._order), self._layout, where)
            return _reorder(image[None], axis, self._order)
        shapes = {i.shape for i in images}
        if any(i.ndim != 2 for i in images) or len(shapes) != 1:
            raise ValueError(
                f"{where}: expected single-channel 2-D files of one shape, got shapes "
                f"{[i.shape for i in images]}"
            )
        stack = np.stack(images)
        _check_dtype(stack.dtype, where)
        _channel_axis(stack.shape, len(self._order), "nchw", where)  # square check
        return _reorder(stack[None], "first", self._order)

    def _raw_chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        n = self.shape[0]
        for start in range(0, n, size):
            out = np.empty((min(size, n - start), *self.shape[1:]), dtype=self.dtype)
            for k in range(len(out)):
                crop = self._read(start + k)
                if crop.shape[1:] != self.shape[1:] or crop.dtype != self.dtype:
                    raise ValueError(
                        f"{self._paths[start + k][0]} (table row {start + k}): crop "
                        f"{crop.dtype} {crop.shape[1:]} differs from the first file's "
                        f"{self.dtype} {self.shape[1:]}"
                    )
                out[k] = crop[0]
            yield start, out


def _read_image(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return np.asarray(tifffile.imread(path))
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read image ({err})") from None


def _open_source(
    source: Any,
    cells: pd.DataFrame,
    order: list[int | None],
    layout: str,
    key: str | None,
    file_columns: Sequence[str] | str,
) -> _Source:
    if isinstance(source, np.ndarray) or not Path(source).is_dir():
        return _ArraySource(source, order, layout, key)
    if key is not None:
        raise ValueError(f"key={key!r} applies to an .npz file, not the folder {source}")
    return _FileSource(Path(source), cells, order, layout, file_columns)


def _summary(
    reader: _Source,
    cells: pd.DataFrame,
    order: list[int | None],
    normalize: str,
    percentiles: tuple[float, float],
    plate_column: str,
    plates: np.ndarray,
    limits: np.ndarray | None,
    renamed: dict[str, str],
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "source": reader.label,
        "source_dtype": str(reader.dtype),
        "n_cells": int(reader.shape[0]),
        "size": int(reader.shape[2]),
        "source_channels": [CHANNELS[i] if i is not None else SKIP_CHANNEL for i in order],
        "normalize": normalize,
        "percentiles": list(percentiles),
        "renamed_columns": renamed,
        "split": (cells["split"].value_counts().to_dict() if "split" in cells.columns else None),
    }
    if limits is not None:
        names = (
            sorted(cells[plate_column].astype(str).unique())
            if plate_column in cells.columns
            else ["(all crops)"]
        )
        summary["plate_column"] = plate_column if plate_column in cells.columns else None
        summary["plate_limits"] = {
            name: {CHANNELS[c]: [float(limits[p, 0, c]), float(limits[p, 1, c])] for c in range(3)}
            for p, name in enumerate(names)
        }
    return summary
