"""Export a run's per-cell table (clusters, embeddings) and its parameters.

Files written into a folder, all atomically (a crash never leaves a half-written file under the
final name):

``<name>.csv``
    one row per cell: the cell table (field metadata, label, centroid, measurements, ``cluster``)
    followed by the embedding columns ``emb_000``, ``emb_001``, ...
``<name>.parquet``
    the same table, when pyarrow is installed (embeddings as float32).
``<name>.json``
    the parameters and seed of the run, its scores and whatever the caller adds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phenossl._atomic import atomic_open
from phenossl._json import to_json, write_json  # noqa: F401 (to_json: public here too)
from phenossl._progress import Progress, ProgressCallback, ProgressGenerator, drives

EMBEDDING_PREFIX = "emb_"
_CSV_CHUNK_ROWS = 5000


def has_parquet() -> bool:
    """Whether pandas can write Parquet here (pyarrow is installed)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def embedding_columns(n: int, prefix: str = EMBEDDING_PREFIX) -> list[str]:
    """Names of ``n`` embedding columns, zero-padded so they sort in order."""
    width = max(3, len(str(max(n - 1, 0))))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def cells_with_embeddings(
    cells: pd.DataFrame, embeddings: np.ndarray | None = None, *, prefix: str = EMBEDDING_PREFIX
) -> pd.DataFrame:
    """The cell table with one column per embedding dimension appended (a new frame).

    Raises
    ------
    ValueError
        ``embeddings`` is not ``(len(cells), D)``, or a cell column already has an embedding
        column's name.
    """
    table = cells.reset_index(drop=True)
    if embeddings is None:
        return table.copy()
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or len(embeddings) != len(table):
        raise ValueError(
            f"embeddings has shape {embeddings.shape}; expected ({len(table)}, D), one row per cell"
        )
    names = embedding_columns(embeddings.shape[1], prefix)
    clash = sorted(set(names) & set(table.columns))
    if clash:
        raise ValueError(f"the cell table already has column(s) {', '.join(clash[:5])}")
    features = pd.DataFrame(embeddings.astype(np.float32, copy=False), columns=names)
    return pd.concat([table, features], axis=1)


def run_parameters(
    result: Any,
    options: Any,
    *,
    model: str,
    fields: Iterable[str],
    timings: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The parameters, seed and scores of a pipeline run: the ``<name>.json`` of its export.

    Parameters
    ----------
    result, options
        The run's :class:`~phenossl.pipeline.PipelineResult` and
        :class:`~phenossl.pipeline.PipelineOptions`.
    model
        How the model is named to a reader ("phenossl-cells (shipped model)").
    fields
        The ids of the fields the run covered.
    timings
        Seconds per step, if measured.

    Examples
    --------
    >>> import pandas as pd
    >>> from phenossl.pipeline import PipelineOptions, PipelineResult
    >>> result = PipelineResult(pd.DataFrame({"field_id": ["f1"]}), None, n_fields=1)
    >>> params = run_parameters(result, PipelineOptions(k=3), model="vgg13_bn", fields=["f1"])
    >>> params["options"]["k"], params["n_fields"], params["clustering"]
    (3, 1, None)
    """
    from dataclasses import asdict

    import phenossl

    fields = [str(f) for f in fields]
    clustering = result.clustering
    return {
        "phenossl_version": phenossl.__version__,
        "model": model,
        "options": asdict(options),
        "seed": options.seed,
        "n_fields": len(fields),
        "fields": fields,
        "summary": result.summary(),
        "clustering": None if clustering is None else clustering.to_dict(arrays=False),
        "timings_s": dict(timings or {}),
    }


def iter_export_cells(
    out: str | os.PathLike,
    cells: pd.DataFrame,
    embeddings: np.ndarray | None,
    params: Mapping[str, Any],
    *,
    name: str = "cells",
    parquet: bool | None = None,
) -> ProgressGenerator[dict[str, Path]]:
    """Write ``<name>.csv`` (+ ``.parquet``) and ``<name>.json`` into ``out``; yields progress.

    Parameters
    ----------
    out
        Folder (created when missing).
    cells, embeddings
        The per-cell table and its aligned ``(N, D)`` embeddings (None: table only).
    params
        JSON-compatible description of the run (numpy scalars, paths and dataclasses of plain
        values are converted).
    name
        Base name of the files.
    parquet
        Also write Parquet: True (an error without pyarrow), False, or None (when pyarrow is
        installed).

    Returns
    -------
    dict
        ``{"csv": path, "json": path[, "parquet": path]}``.
    """
    if not name or any(sep in name for sep in ("/", "\\")) or name in (".", ".."):
        raise ValueError(f"name={name!r}; expected a plain file name without folders")
    if parquet and not has_parquet():
        raise ValueError("Parquet export needs pyarrow; install it or export CSV only")
    write_parquet = has_parquet() if parquet is None else bool(parquet)
    table = cells_with_embeddings(cells, embeddings)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    n_chunks = max(1, math.ceil(len(table) / _CSV_CHUNK_ROWS))
    total = n_chunks + int(write_parquet) + 1
    paths: dict[str, Path] = {}

    yield Progress(0, total, f"writing {name}.csv")
    with atomic_open(folder / f"{name}.csv", "w") as handle:
        for i in range(n_chunks):
            chunk = table.iloc[i * _CSV_CHUNK_ROWS : (i + 1) * _CSV_CHUNK_ROWS]
            chunk.to_csv(handle, index=False, header=i == 0, lineterminator="\n")
            yield Progress(
                i + 1, total, f"{name}.csv: {min(len(table), (i + 1) * _CSV_CHUNK_ROWS)} rows"
            )
    paths["csv"] = folder / f"{name}.csv"
    if write_parquet:
        with atomic_open(folder / f"{name}.parquet", "wb") as handle:
            table.to_parquet(handle, index=False)
        paths["parquet"] = folder / f"{name}.parquet"
        yield Progress(n_chunks + 1, total, f"{name}.parquet written")
    write_json(folder / f"{name}.json", dict(params))
    paths["json"] = folder / f"{name}.json"
    yield Progress(total, total, f"{len(table)} cells exported")
    return paths


@drives(iter_export_cells)
def export_cells(*, progress: ProgressCallback | None = None) -> dict[str, Path]:
    """Blocking form of :func:`iter_export_cells`."""
