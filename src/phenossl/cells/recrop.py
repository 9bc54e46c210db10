"""Cut the crops of a few cells again from their fields.

The pipeline keeps only the per-cell table and the embeddings of a run, not its crops. Showing the
cells nearest each centroid (a few dozen out of thousands) does not justify writing every crop to
disk: :func:`iter_recrop` reads only the fields those cells come from, once each, and cuts the same
crops the pipeline embedded (same normalisation, same centre rounding, same size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from phenossl._progress import Progress, ProgressCallback, ProgressGenerator, drives

_CELL_COLUMNS = ("field_id", "centroid_y", "centroid_x")


def iter_recrop(
    fields: pd.DataFrame,
    cells: pd.DataFrame,
    rows: Sequence[int] | np.ndarray,
    *,
    crop_size: int = 196,
    percentiles: Sequence[float] = (1.0, 99.8),
) -> ProgressGenerator[np.ndarray]:
    """Crops of ``cells`` rows ``rows``, re-cut from their fields; yields progress per field.

    Parameters
    ----------
    fields
        Field table rows (``field_id`` and the three channel paths) covering the cells' fields.
    cells
        A pipeline cell table (``field_id``, ``centroid_y``, ``centroid_x``).
    rows
        Positions in ``cells`` (repeats allowed); -1 entries are skipped (left black).
    crop_size
        Side of the crops, as in the run that produced ``cells``.
    percentiles
        Normalisation percentiles of :func:`phenossl.data.fields.read_field`, as in that run.

    Returns
    -------
    numpy.ndarray
        ``uint8 (len(rows), 3, crop_size, crop_size)``, DAPI/Tubulin/Actin, in ``rows`` order.
        A crop that reaches past the field's border is zero-padded there (the pipeline's
        default ``border="drop"`` never keeps such cells, so their crops are identical).

    Raises
    ------
    ValueError
        Missing columns, a row out of range, or a cell whose field is not in ``fields``.
    """
    from phenossl.cells.crops import crop_cells
    from phenossl.cells.segment import Segmentation
    from phenossl.data.fields import read_field

    missing = [c for c in _CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(f"cells lacks column(s) {', '.join(missing)}; expected a pipeline table")
    if "field_id" not in fields.columns:
        raise ValueError("fields lacks the column field_id; expected a field table")
    positions = np.asarray(rows, dtype=np.int64).reshape(-1)
    if positions.size and (positions.min() < -1 or positions.max() >= len(cells)):
        raise ValueError(f"rows must lie in -1..{len(cells) - 1} (positions in cells)")
    out = np.zeros((len(positions), 3, crop_size, crop_size), dtype=np.uint8)
    wanted = np.flatnonzero(positions >= 0)
    by_field: dict[str, list[int]] = {}
    for slot in wanted:
        by_field.setdefault(str(cells["field_id"].iat[positions[slot]]), []).append(int(slot))
    lookup = fields.drop_duplicates("field_id").set_index("field_id")
    unknown = [f for f in by_field if f not in lookup.index]
    if unknown:
        raise ValueError(f"field(s) {', '.join(unknown[:5])} of the cells are not in fields")

    total = len(by_field)
    yield Progress(0, total, "reading fields")
    for done, (field_id, slots) in enumerate(by_field.items(), start=1):
        image = read_field(_row(lookup, field_id), percentiles=percentiles)
        table = cells.iloc[positions[slots]][["centroid_y", "centroid_x"]].reset_index(drop=True)
        # crop_cells reads only the shape of the labels and the centroids of the table
        blank = np.broadcast_to(np.int32(0), image.shape[1:])
        crops = crop_cells(image, Segmentation(blank, blank, table), size=crop_size, border="pad")
        out[slots] = crops.images
        yield Progress(done, total, f"{field_id}: {len(slots)} cell(s)")
    return out


@drives(iter_recrop)
def recrop(*, progress: ProgressCallback | None = None) -> np.ndarray:
    """Blocking form of :func:`iter_recrop`."""


def _row(lookup: pd.DataFrame, field_id: str) -> Mapping[str, Any]:
    return lookup.loc[field_id].to_dict()
