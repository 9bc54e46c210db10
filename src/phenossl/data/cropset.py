"""The on-disk CropSet (see the Crops contract in docs/architecture.md).

A *CropSet* keeps the crops of many fields on disk: ``CropSetWriter`` appends them shard by shard,
``CropSet`` reads them back lazily (memory-mapped shards), so a plate's crops never have to fit in
memory. It lives in ``data`` because the training datasets read it; ``cells.crops`` cuts the
crops that go into it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from phenossl._atomic import atomic_open

__all__ = ["CHANNELS", "FORMAT", "VERSION", "CropSet", "CropSetWriter"]

CHANNELS = ("DAPI", "Tubulin", "Actin")
FORMAT = "phenossl-cropset"
VERSION = 1
_RESERVED = ("cell_id", "shard", "index")
_OPEN_SHARDS = 64  # memory maps kept open by one CropSet (least recently used are closed)


def _shard_path(root: Path, shard: int) -> Path:
    return root / "shards" / f"{shard:05d}.npy"


class CropSetWriter:
    """Append crops to a new CropSet folder, one shard per :meth:`add`.

    Shards are written atomically as they come; ``cells.csv`` and ``cropset.json`` (the
    marker of a complete CropSet) only on :meth:`close`, so an interrupted run never leaves a
    folder that opens as a valid but incomplete CropSet. As a context manager it closes on
    success and leaves the folder unfinished when the block raises.

    Parameters
    ----------
    path
        Folder to create. An existing non-empty folder is an error unless ``overwrite``; then
        the CropSet files in it (``shards/``, ``cells.csv``, ``cropset.json``) are removed.
    size
        Crop side in pixels; every added batch must be ``uint8 (n, 3, size, size)``.
    """

    def __init__(self, path: str | os.PathLike, size: int, overwrite: bool = False) -> None:
        if int(size) != size or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        self.path = Path(path)
        self.size = int(size)
        if self.path.exists():
            if not self.path.is_dir():
                raise FileExistsError(f"{self.path} exists and is not a folder")
            if any(self.path.iterdir()):
                if not overwrite:
                    raise FileExistsError(
                        f"{self.path} is not empty; pass overwrite=True to replace a CropSet"
                    )
                shutil.rmtree(self.path / "shards", ignore_errors=True)
                for name in ("cells.csv", "cropset.json"):
                    (self.path / name).unlink(missing_ok=True)
        (self.path / "shards").mkdir(parents=True, exist_ok=True)
        self._tables: list[pd.DataFrame] = []
        self._columns: list[str] | None = None
        self._n_cells = 0
        self._closed = False

    def __len__(self) -> int:
        return self._n_cells

    def add(self, images: np.ndarray, table: pd.DataFrame) -> None:
        """Write ``images`` (``uint8 (n, 3, size, size)``) as a new shard; ``table`` has n rows.

        ``cells.csv`` gets ``cell_id``, the table's columns, ``shard``, ``index`` and, when the
        table has one, ``split`` last. Columns ``cell_id``, ``shard`` and ``index`` of ``table``
        are replaced by the writer's; every call must bring the same other columns.
        """
        if self._closed:
            raise ValueError(f"CropSetWriter for {self.path} is closed")
        images = np.asarray(images)
        expected = (3, self.size, self.size)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(
                f"images: expected uint8 (n, {', '.join(map(str, expected))}), "
                f"got {images.dtype} {images.shape}"
            )
        if len(table) != len(images):
            raise ValueError(f"table has {len(table)} rows for {len(images)} images")
        table = table.drop(columns=[c for c in _RESERVED if c in table.columns])
        columns = list(table.columns)
        if self._columns is None:
            self._columns = columns
        elif columns != self._columns:
            raise ValueError(
                f"table columns {columns} differ from the first batch's {self._columns}"
            )
        if len(images) == 0:
            return
        shard = len(self._tables)
        with atomic_open(_shard_path(self.path, shard), "wb") as handle:
            np.save(handle, images)
        table = table.reset_index(drop=True)
        table["shard"] = shard
        table["index"] = np.arange(len(table))
        self._tables.append(table)
        self._n_cells += len(table)

    @property
    def table(self) -> pd.DataFrame:
        """The rows added so far, with their ``shard`` and ``index`` (a copy)."""
        if self._tables:
            return pd.concat(self._tables, ignore_index=True)
        return pd.DataFrame(columns=[*(self._columns or []), "shard", "index"])

    def close(self, table: pd.DataFrame | None = None) -> None:
        """Write ``cells.csv`` and then ``cropset.json``; adding afterwards is an error.

        Parameters
        ----------
        table
            The rows to list instead of every added row: a selection of :attr:`table` (e.g. a
            balanced sample with a ``split`` column). Its ``shard``/``index`` must point at
            written crops; unlisted crops stay in their shards but are not part of the CropSet.
        """
        if self._closed:
            return
        cells = self.table if table is None else self._check_selection(table)
        self._closed = True
        cells.insert(0, "cell_id", np.arange(len(cells)))
        if "split" in cells.columns:  # the contract's optional last column
            cells = cells[[c for c in cells.columns if c != "split"] + ["split"]]
        with atomic_open(self.path / "cells.csv", "wb") as handle:
            handle.write(cells.to_csv(index=False).encode())
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "size": self.size,
            "channels": list(CHANNELS),
            "dtype": "uint8",
            "n_cells": len(cells),
        }
        with atomic_open(self.path / "cropset.json", "wb") as handle:
            handle.write(json.dumps(meta, indent=2).encode())

    def _check_selection(self, table: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in ("shard", "index") if c not in table.columns]
        if missing:
            raise ValueError(f"selected table lacks column(s) {missing}; select rows of .table")
        sizes = np.array([len(t) for t in self._tables], dtype=np.int64)
        shard = table["shard"].to_numpy(np.int64)
        index = table["index"].to_numpy(np.int64)
        bad = (shard < 0) | (shard >= len(sizes)) | (index < 0)
        bad[~bad] |= index[~bad] >= sizes[shard[~bad]]
        if bad.any():
            raise ValueError(f"{int(bad.sum())} selected row(s) point at no written crop")
        return table.drop(columns=["cell_id"], errors="ignore").reset_index(drop=True)

    def __enter__(self) -> CropSetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True  # leave the folder unfinished: no cells.csv, no cropset.json


class CropSet:
    """A CropSet folder opened lazily: shards are memory-mapped and read on demand.

    ``len(cs)``, ``cs[i]`` (``uint8 (3, S, S)``), ``cs.images(indices)``,
    ``cs.iter_batches(batch_size)``, ``cs.table`` (the ``cells.csv`` rows) and ``cs.size``.
    ``cs.subset(rows)`` is a view on some rows (e.g. one split) with the same interface.

    Examples
    --------
    >>> images = np.arange(2 * 3 * 8 * 8, dtype=np.uint8).reshape(2, 3, 8, 8)
    >>> with CropSetWriter("crops", size=8) as writer:
    ...     writer.add(images, pd.DataFrame({"treatment": ["DMSO@0", "taxol@1"]}))
    >>> cs = CropSet("crops")
    >>> len(cs), cs.size, cs.table["treatment"].tolist()
    (2, 8, ['DMSO@0', 'taxol@1'])
    >>> bool((cs[1] == images[1]).all())
    True
    """

    def __init__(self, path: str | os.PathLike) -> None:
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"CropSet folder not found: {root}")
        meta_path = root / "cropset.json"
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{root} is not a CropSet folder: no cropset.json (unfinished or not a CropSet)"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_path}: not valid JSON ({err})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format is not {FORMAT!r}")
        if meta.get("version") != VERSION:
            raise ValueError(
                f"{meta_path}: CropSet version {meta.get('version')!r} is not supported "
                f"(this phenossl reads version {VERSION})"
            )
        for key in ("size", "n_cells"):
            if not isinstance(meta.get(key), int):
                raise ValueError(f"{meta_path}: {key!r} must be an integer")
        table_path = root / "cells.csv"
        if not table_path.is_file():
            raise FileNotFoundError(f"{root}: cells.csv is missing")
        try:
            table = pd.read_csv(table_path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ValueError(f"{table_path}: not a readable cell table ({err})") from None
        missing = [c for c in _RESERVED if c not in table.columns]
        if missing:
            raise ValueError(f"{table_path}: missing column(s) {missing}")
        if len(table) != meta["n_cells"]:
            raise ValueError(
                f"{table_path}: {len(table)} rows but cropset.json says n_cells={meta['n_cells']}"
            )
        for column in ("shard", "index"):
            values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
            bad = ~(np.isfinite(values) & (values >= 0) & (values == np.round(values)))
            if bad.any():  # a negative index would silently read a crop from the shard's end
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{table_path}: row {row + 2}, column {column!r} is "
                    f"{table[column].iloc[row]}; expected an integer >= 0"
                )
        if table["cell_id"].duplicated().any():
            row = int(np.flatnonzero(table["cell_id"].duplicated().to_numpy())[0])
            raise ValueError(
                f"{table_path}: row {row + 2} repeats cell_id {table['cell_id'].iloc[row]!r}"
            )
        for shard in np.unique(table["shard"].to_numpy()):
            if not _shard_path(root, int(shard)).is_file():
                raise FileNotFoundError(
                    f"{root}: shard {_shard_path(root, int(shard)).name} listed in cells.csv "
                    "is missing"
                )
        self.path = root
        self.size: int = meta["size"]
        self.metadata: dict = meta
        self._table = table
        self._shard = table["shard"].to_numpy(np.int64)
        self._index = table["index"].to_numpy(np.int64)
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()

    @property
    def fingerprint(self) -> str:
        """A hash of the cell table (ids and where each crop lies) and the crop size.

        It identifies the crops an embeddings file was computed from, wherever the folder lies.

        Examples
        --------
        >>> CropSet("crops").fingerprint  # doctest: +SKIP
        'cropset-9c1d0b4e2f7a6d13'
        """
        import hashlib

        columns = self._table[["cell_id", "shard", "index"]].astype(str)
        digest = hashlib.sha256(f"size={self.size};n={len(columns)};".encode())
        digest.update(pd.util.hash_pandas_object(columns, index=False).to_numpy().tobytes())
        return f"cropset-{digest.hexdigest()[:16]}"

    # -- views ---------------------------------------------------------------------------

    @property
    def table(self) -> pd.DataFrame:
        """The ``cells.csv`` rows of this CropSet (or view), index 0..len-1."""
        return self._table

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"CropSet({str(self.path)!r}, n={len(self)}, size={self.size})"

    def subset(self, rows: np.ndarray | Sequence[int] | pd.Series) -> CropSet:
        """A view on some rows: a boolean mask of length ``len(self)`` or integer positions.

        The view shares the open shards; its table keeps ``cell_id`` and is re-indexed 0..n-1.
        """
        positions = self._positions(rows)
        view = object.__new__(CropSet)
        view.path, view.size, view.metadata = self.path, self.size, self.metadata
        view._table = self._table.iloc[positions].reset_index(drop=True)
        view._shard, view._index = self._shard[positions], self._index[positions]
        view._maps = self._maps
        return view

    def _positions(self, rows) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise ValueError(f"boolean mask has shape {rows.shape}, expected ({len(self)},)")
            return np.flatnonzero(rows)
        if rows.size and not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(
                f"rows: expected integer positions or a boolean mask, got {rows.dtype}"
            )
        rows = rows.astype(np.int64).reshape(-1)
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"row positions out of range for a CropSet of {len(self)} crops")
        return np.where(rows < 0, rows + len(self), rows)

    # -- pixels --------------------------------------------------------------------------

    def _shard_map(self, shard: int) -> np.ndarray:
        data = self._maps.get(shard)
        if data is not None:
            self._maps.move_to_end(shard)
            return data
        path = _shard_path(self.path, shard)
        try:
            data = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path}: shard {path.name} is missing") from None
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"{path}: not a readable crop shard (empty or truncated?)") from err
        if data.dtype != np.uint8 or data.ndim != 4 or data.shape[1:] != (3, self.size, self.size):
            raise ValueError(
                f"{path}: expected uint8 (n, 3, {self.size}, {self.size}), "
                f"got {data.dtype} {data.shape}"
            )
        self._maps[shard] = data
        if len(self._maps) > _OPEN_SHARDS:
            self._maps.popitem(last=False)
        return data

    def __getitem__(self, i: int) -> np.ndarray:
        if not isinstance(i, int | np.integer):
            raise TypeError(f"CropSet indices are integers, got {type(i).__name__}; use images()")
        return self.images([i])[0]

    def images(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """Crops at the given row positions (any order, repeats allowed), ``uint8 (n, 3, S, S)``.

        Rows are gathered shard by shard, each shard read once in ascending row order.
        """
        positions = self._positions(indices)
        out = np.empty((len(positions), 3, self.size, self.size), dtype=np.uint8)
        if len(positions) == 0:
            return out
        shards, rows = self._shard[positions], self._index[positions]
        order = np.lexsort((rows, shards))
        starts = np.flatnonzero(np.r_[True, shards[order][1:] != shards[order][:-1]])
        for begin, end in zip(starts, np.r_[starts[1:], len(order)]):
            chunk = order[begin:end]
            data = self._shard_map(int(shards[chunk[0]]))
            wanted = rows[chunk]
            if wanted[-1] >= len(data):
                raise ValueError(
                    f"{_shard_path(self.path, int(shards[chunk[0]]))}: has {len(data)} crops, "
                    f"cells.csv asks for index {wanted[-1]}"
                )
            out[chunk] = data[wanted]
        return out

    def iter_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Yield ``uint8 (b, 3, S, S)`` batches covering every row once, in row order."""
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        for start in range(0, len(self), int(batch_size)):
            yield self.images(np.arange(start, min(start + int(batch_size), len(self))))
