"""Fields from images already in memory (napari layers): written as TIFFs, given a field table.

Segmentation, crops, embedding and training read fields from their files (so worker processes
can read them too), through the field table. Images a user already has in napari become such
fields here: each plane of the channel stacks is one field, its three model channels (DAPI,
Tubulin, Actin; one of them may be missing and is then black) written as ``uint16``/``float32``
TIFFs. Treatments are optional: a label table keyed by ``field`` (the plane number, from 1) gives
compound, concentration, treatment and MOA; without one they are ``unknown``.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phenossl._progress import Progress, ProgressCallback, drives
from phenossl.data.fields import CHANNEL_KEYS, CHANNEL_NAMES
from phenossl.data.plate_layout import METADATA_COLUMNS, complete_table


def iter_write_array_fields(
    channels: Mapping[str, np.ndarray | None],
    out: str | os.PathLike[str],
    *,
    plate: str = "layers",
    labels: str | os.PathLike[str] | pd.DataFrame | None = None,
) -> Generator[Progress, None, pd.DataFrame]:
    """Write each plane of the channel stacks as one field; returns the field table.

    Parameters
    ----------
    channels
        Model channel (``DAPI``, ``Tubulin``, ``Actin``) -> a 2-D image (one field) or a 3-D
        stack (one field per plane), all of one shape; a channel that is None or absent is
        written black. At least one channel is needed.
    out
        Folder for the TIFFs (created).
    plate
        The ``plate`` of the fields; field ids are ``plate/F001/s1``, ``plate/F002/s1`` ...
    labels
        Optional CSV (or DataFrame) with a ``field`` column (plane number from 1) and any of
        ``compound``, ``concentration``, ``treatment``, ``moa``.

    Yields
    ------
    Progress
        One event per field written.

    Returns
    -------
    pandas.DataFrame
        The field table (columns of :func:`phenossl.data.bbbc021.load_image_table`).

    Examples
    --------
    >>> import numpy as np
    >>> table = write_array_fields({"DAPI": np.zeros((2, 64, 64))}, "out")  # doctest: +SKIP
    >>> table["field_id"].tolist()  # doctest: +SKIP
    ['layers/F001/s1', 'layers/F002/s1']
    """
    import tifffile

    given = {name: np.asarray(a) for name, a in channels.items() if a is not None}
    unknown = sorted(set(given) - set(CHANNEL_NAMES))
    if unknown:
        raise ValueError(
            f"channels: {', '.join(unknown)} is not a model channel; expected "
            f"{', '.join(CHANNEL_NAMES)}"
        )
    if not given:
        raise ValueError("channels: map at least one image to DAPI, Tubulin or Actin")
    stacks = {n: a[None] if a.ndim == 2 else a for n, a in given.items()}
    shapes = {n: a.shape for n, a in stacks.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 3:
        described = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(
            "channels: expected 2-D images or 3-D stacks of fields, all of one shape; got "
            + described
        )
    n = next(iter(stacks.values())).shape[0]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    black = np.zeros(next(iter(stacks.values())).shape[1:], dtype=np.uint16)
    rows = []
    for i in range(n):
        well = f"F{i + 1:03d}"
        row: dict[str, Any] = {"plate": plate, "well": well, "site": 1, "field": i + 1}
        for name, key in zip(CHANNEL_NAMES, CHANNEL_KEYS):
            plane = stacks[name][i] if name in stacks else black
            if plane.dtype.kind not in "uif" or (
                plane.dtype.kind == "f" and plane.dtype != np.float32
            ):
                plane = plane.astype(np.float32)
            path = out / f"{plate}_{well}_{key}.tif"
            tifffile.imwrite(path, np.ascontiguousarray(plane))
            row[key] = str(path)
        rows.append(row)
        yield Progress(i + 1, n, f"field {i + 1}/{n}")
    table = pd.DataFrame(rows)
    table["field_id"] = table["plate"] + "/" + table["well"] + "/s1"
    table["exists"] = True
    if labels is not None:
        table = _join_labels(table, labels)
    return complete_table(table)


@drives(iter_write_array_fields)
def write_array_fields(*, progress: ProgressCallback | None = None) -> pd.DataFrame:
    """:func:`iter_write_array_fields` run to the end: the field table."""


def _join_labels(
    table: pd.DataFrame, labels: str | os.PathLike[str] | pd.DataFrame
) -> pd.DataFrame:
    where = "the label table"
    if not isinstance(labels, pd.DataFrame):
        where = str(labels)
        if not Path(labels).is_file():
            raise FileNotFoundError(f"label table not found: {labels}")
        try:
            labels = pd.read_csv(labels)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ValueError(f"label table {where}: cannot be read as CSV ({err})") from err
    labels = labels.rename(columns={c: str(c).strip().lower() for c in labels.columns})
    if "field" not in labels:
        raise ValueError(
            f"{where}: no 'field' column (the field's plane number, from 1); found "
            f"{', '.join(map(str, labels.columns))}"
        )
    numbers = pd.to_numeric(labels["field"], errors="coerce")
    bad = labels.index[numbers.isna() | ~numbers.between(1, len(table))]
    if len(bad):
        line = int(bad[0]) + 2
        raise ValueError(
            f"{where}, line {line}: field {str(labels.loc[bad[0], 'field'])!r} is not a plane number "
            f"between 1 and {len(table)}"
        )
    labels = labels.assign(field=numbers.astype(int))
    if labels["field"].duplicated().any():
        first = int(labels.loc[labels["field"].duplicated(), "field"].iloc[0])
        raise ValueError(f"{where}: field {first} is listed more than once")
    keep = ["field"] + [c for c in labels.columns if c in METADATA_COLUMNS]
    return table.merge(labels[keep], on="field", how="left")
