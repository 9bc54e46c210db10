"""BBBC021: the official CSVs -> a field table; field selection; the paper's cell-level subsets.

The field table (one row per field, columns :data:`TABLE_COLUMNS`) is the contract described in
``docs/architecture.md``. Missing image files are recorded in its ``exists`` column and reported by
:func:`summarize_missing`, never fatal: a partial download (or the single real field shipped for
development) still gives the full 13,200-row table.
"""

from __future__ import annotations

import difflib
import numbers
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

IMAGE_CSV = "BBBC021_v1_image.csv"
MOA_CSV = "BBBC021_v1_moa.csv"

#: Columns of the official image table ``BBBC021_v1_image.csv``.
IMAGE_COLUMNS: tuple[str, ...] = (
    "TableNumber",
    "ImageNumber",
    "Image_FileName_DAPI",
    "Image_PathName_DAPI",
    "Image_FileName_Tubulin",
    "Image_PathName_Tubulin",
    "Image_FileName_Actin",
    "Image_PathName_Actin",
    "Image_Metadata_Plate_DAPI",
    "Image_Metadata_Well_DAPI",
    "Replicate",
    "Image_Metadata_Compound",
    "Image_Metadata_Concentration",
)

#: Columns of the official mechanism-of-action table ``BBBC021_v1_moa.csv``.
MOA_COLUMNS: tuple[str, ...] = ("compound", "concentration", "moa")

#: Channel names in the official CSV, in the order of the field table's path columns.
CHANNELS: tuple[str, ...] = ("DAPI", "Tubulin", "Actin")

#: Columns of the field table returned by :func:`load_image_table`, in order.
TABLE_COLUMNS: tuple[str, ...] = (
    "field_id",
    "table_number",
    "image_number",
    "plate",
    "week",
    "well",
    "site",
    "replicate",
    "compound",
    "concentration",
    "moa",
    "treatment",
    "dapi",
    "tubulin",
    "actin",
    "exists",
)

#: The negative control's compound name (concentration 0) and its MOA label.
DMSO = "DMSO"

#: Default train/val/test fractions of :func:`paper_subset` (the paper's 70/10/20 split).
SPLITS: tuple[str, ...] = ("train", "val", "test")

_SITE = re.compile(r"_s(\d+)_w\d")
_INT_COLUMNS = ("TableNumber", "ImageNumber", "Replicate")


def treatment_name(compound: str, concentration: float) -> str:
    """The treatment label ``compound@concentration`` (``%g``), e.g. ``"nocodazole@0.3"``."""
    return f"{compound}@{concentration:g}"


def load_image_table(
    root: str | os.PathLike[str],
    image_csv: str | os.PathLike[str] | None = None,
    moa_csv: str | os.PathLike[str] | None = None,
    *,
    check_files: bool = True,
) -> pd.DataFrame:
    """Read the official BBBC021 CSVs into the field table (one row per field).

    Parameters
    ----------
    root
        The BBBC021 root folder: image paths in the CSV (``Week2/Week2_24381``) are relative to it.
    image_csv, moa_csv
        The official image and MOA tables; default ``root/BBBC021_v1_image.csv`` and
        ``root/BBBC021_v1_moa.csv``.
    check_files
        Look up whether the three channel files of each field exist (one directory listing per
        plate folder). With ``False`` nothing is touched on disk and ``exists`` is ``<NA>``
        (nullable ``boolean`` dtype) instead of ``bool``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TABLE_COLUMNS`, in CSV row order, index ``0..n-1``. ``site`` is parsed from
        the DAPI file name (``_s1_``), ``week`` is the first component of the DAPI path name,
        ``moa`` comes from the MOA table joined on (compound, concentration): ``"DMSO"`` for DMSO,
        ``<NA>`` for treatments the MOA table does not list. Paths are absolute.

    Raises
    ------
    FileNotFoundError
        A CSV is missing (the message says what was expected in which folder).
    ValueError
        A CSV lacks columns (named), holds empty or non-numeric values (line named), a file name
        has no site tag, or two rows describe the same field.

    Examples
    --------
    >>> from phenossl.data.synthetic import write_synthetic_plate
    >>> table = load_image_table(write_synthetic_plate("plate", shape=(96, 128), sites=1))
    >>> table.groupby("compound").size()
    compound
    DMSO              4
    cytochalasin B    4
    nocodazole        4
    taxol             4
    dtype: int64
    """
    root = Path(os.path.abspath(os.path.expanduser(root)))
    image_path = Path(image_csv) if image_csv is not None else root / IMAGE_CSV
    moa_path = Path(moa_csv) if moa_csv is not None else root / MOA_CSV
    images = _read_csv(image_path, IMAGE_COLUMNS, "BBBC021 image table")
    moas = _read_csv(moa_path, MOA_COLUMNS, "BBBC021 MOA table")

    number = {c: _to_numeric(images[c], image_path, c, integer=True) for c in _INT_COLUMNS}
    concentration = _to_numeric(
        images["Image_Metadata_Concentration"], image_path, "Image_Metadata_Concentration"
    )
    compound = images["Image_Metadata_Compound"]
    plate = images["Image_Metadata_Plate_DAPI"]
    well = images["Image_Metadata_Well_DAPI"]
    site = _parse_sites(images["Image_FileName_DAPI"], image_path)
    field_id = plate + "/" + well + "/s" + site.astype(str)
    _check_unique(field_id, image_path)
    treatment = _treatments(compound, concentration)

    table = pd.DataFrame(
        {
            "field_id": field_id,
            "table_number": number["TableNumber"],
            "image_number": number["ImageNumber"],
            "plate": plate,
            "week": _weeks(images["Image_PathName_DAPI"]),
            "well": well,
            "site": site,
            "replicate": number["Replicate"],
            "compound": compound,
            "concentration": concentration,
            "moa": _join_moa(compound, treatment, moas, moa_path),
            "treatment": treatment,
        }
    )
    folder_columns = [f"Image_PathName_{channel}" for channel in CHANNELS]
    folders = {
        name: _local_path(root, name) for name in pd.unique(images[folder_columns].values.ravel())
    }
    for channel in CHANNELS:
        base = images[f"Image_PathName_{channel}"].map(folders)
        table[channel.lower()] = base + os.sep + images[f"Image_FileName_{channel}"]
    if check_files:
        table["exists"] = _files_exist(images, folders)
    else:
        table["exists"] = pd.array([pd.NA] * len(table), dtype="boolean")
    return table


def _read_csv(path: Path, columns: Sequence[str], what: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: expected {path.name} in {path.parent}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV ({str(err).strip()[:120]})") from None
    if frame.empty:
        raise ValueError(f"{path}: no rows (only a header); expected the {what}, one row per entry")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)}; expected the {what} columns "
            f"{', '.join(columns)}"
        )
    frame = frame[list(columns)]
    empty = frame.isna()
    if empty.to_numpy().any():
        row, col = np.argwhere(empty.to_numpy())[0]
        raise ValueError(f"{path}, line {row + 2}: column {columns[col]} is empty")
    return frame


def _to_numeric(values: pd.Series, path: Path, column: str, *, integer: bool = False) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() | ~np.isfinite(numbers)
    if integer:
        bad |= numbers != np.round(numbers)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        kind = "an integer" if integer else "a number"
        raise ValueError(
            f"{path}, line {row + 2}: column {column} must be {kind}, got {values.iloc[row]!r}"
        )
    return numbers.astype(np.int64) if integer else numbers.astype(np.float64)


def _parse_sites(file_names: pd.Series, path: Path) -> pd.Series:
    site = file_names.str.extract(_SITE, expand=False)
    if site.isna().any():
        row = int(np.flatnonzero(site.isna().to_numpy())[0])
        raise ValueError(
            f"{path}, line {row + 2}: cannot read the site from Image_FileName_DAPI "
            f"{file_names.iloc[row]!r}: expected a tag like '_s1_w1'"
        )
    return site.astype(np.int64)


def _check_unique(field_id: pd.Series, path: Path) -> None:
    duplicated = field_id.duplicated(keep=False)
    if duplicated.any():
        rows = np.flatnonzero(duplicated.to_numpy())[:6]
        shown = ", ".join(f"line {r + 2} ({field_id.iloc[r]})" for r in rows)
        raise ValueError(f"{path}: the same plate/well/site appears more than once: {shown}")


def _treatments(compound: pd.Series, concentration: pd.Series) -> pd.Series:
    # Formatting the few hundred distinct concentrations is much cheaper than 13,200 rows.
    label = {c: f"{c:g}" for c in pd.unique(concentration)}
    return compound + "@" + concentration.map(label)


def _join_moa(
    compound: pd.Series, treatment: pd.Series, moas: pd.DataFrame, path: Path
) -> pd.Series:
    concentration = _to_numeric(moas["concentration"], path, "concentration")
    keys = _treatments(moas["compound"], concentration)
    conflicts = moas.assign(key=keys).groupby("key")["moa"].nunique()
    conflicts = conflicts[conflicts > 1]
    if len(conflicts):
        raise ValueError(
            f"{path}: treatment(s) listed with different MOAs: {', '.join(conflicts.index[:6])}"
        )
    lookup = dict(zip(keys, moas["moa"]))
    moa = pd.array(treatment.map(lookup), dtype="string")
    moa[(compound == DMSO).to_numpy()] = DMSO
    return pd.Series(moa, index=treatment.index)


def _path_parts(relative: str) -> list[str]:
    # The CSV writes Week2/Week2_24381; accept either separator whatever the OS.
    return [p for p in re.split(r"[\\/]", relative) if p]


def _weeks(path_names: pd.Series) -> pd.Series:
    # The week is the first folder of the path name (Week2/Week2_24381 -> Week2).
    first = {p: (_path_parts(p) or [""])[0] for p in pd.unique(path_names)}
    return path_names.map(first).astype(str)


def _local_path(root: Path, relative: str) -> str:
    return os.path.join(root, *_path_parts(relative))


def _files_exist(images: pd.DataFrame, folders: dict[str, str]) -> np.ndarray:
    listing: dict[str, frozenset[str]] = {}
    for folder in set(folders.values()):
        try:
            listing[folder] = frozenset(os.listdir(folder))
        except OSError:  # missing or unreadable folder: none of its files are available
            listing[folder] = frozenset()
    exists = np.ones(len(images), dtype=bool)
    for channel in CHANNELS:
        names = images[f"Image_FileName_{channel}"].to_numpy()
        dirs = images[f"Image_PathName_{channel}"].map(folders).to_numpy()
        exists &= np.fromiter(
            (name in listing[d] for d, name in zip(dirs, names)), dtype=bool, count=len(names)
        )
    return exists


@dataclass(frozen=True)
class MissingSummary:
    """How many fields of a field table have all three files, and which do not.

    Attributes
    ----------
    n_fields, n_existing, n_missing
        Counts of fields in the table, with all three files present, and with any file missing.
    missing
        ``field_id`` of every missing field, in table order.
    missing_by_plate
        Number of missing fields per plate (plates with none missing are left out).
    """

    n_fields: int
    n_existing: int
    n_missing: int
    missing: tuple[str, ...]
    missing_by_plate: dict[str, int]

    def __str__(self) -> str:
        text = f"{self.n_existing:,} of {self.n_fields:,} fields have all three files"
        if not self.n_missing:
            return text
        shown = ", ".join(self.missing[:5])
        more = f", ... ({self.n_missing - 5:,} more)" if self.n_missing > 5 else ""
        return (
            f"{text}; {self.n_missing:,} missing in {len(self.missing_by_plate)} plate(s): "
            f"{shown}{more}"
        )


def summarize_missing(table: pd.DataFrame) -> MissingSummary:
    """Count the fields whose files are missing, for reports and the CLI.

    Raises
    ------
    ValueError
        The table was loaded with ``check_files=False`` (``exists`` is ``<NA>``).
    """
    _require_columns(table, ("field_id", "plate", "exists"), "the field table")
    if table["exists"].isna().any():
        raise ValueError(
            "summarize_missing: column 'exists' holds <NA>; load the table with check_files=True"
        )
    exists = table["exists"].to_numpy(dtype=bool)
    missing = table.loc[~exists]
    return MissingSummary(
        n_fields=len(table),
        n_existing=int(exists.sum()),
        n_missing=len(missing),
        missing=tuple(missing["field_id"]),
        missing_by_plate={
            str(k): int(v) for k, v in missing["plate"].value_counts(sort=False).items()
        },
    )


def top_concentrations(table: pd.DataFrame, compound: str, n: int = 4) -> list[float]:
    """The ``n`` highest concentrations of ``compound`` in a field or cell table, highest first.

    Fewer are returned when the compound has fewer than ``n``. Unknown compound names raise a
    ``ValueError`` listing close matches.
    """
    _require_columns(table, ("compound", "concentration"), "the table")
    if n < 1:
        raise ValueError(f"n must be a positive number of concentrations, got {n}")
    _check_names(table["compound"], [compound], "compound")
    values = table.loc[table["compound"] == compound, "concentration"].unique()
    return [float(c) for c in np.sort(values)[::-1][:n]]


def select_fields(
    table: pd.DataFrame,
    compounds: str | Iterable[str] | None = None,
    concentrations: float | Iterable[float] | None = None,
    plates: str | Iterable[str] | None = None,
    n_top: int | None = None,
    include_dmso: bool = False,
    only_existing: bool = False,
) -> pd.DataFrame:
    """Select fields of the field table by compound, concentration and plate.

    The paper's case, a compound's four highest concentrations plus the DMSO controls, is
    ``select_fields(table, "nocodazole", n_top=4, include_dmso=True)``.

    Parameters
    ----------
    table
        The field table of :func:`load_image_table`.
    compounds
        Compound name(s) to keep; ``None`` keeps every compound.
    concentrations
        Concentration(s) in µM to keep among the selected compounds (compared with a relative
        tolerance of 1e-6); each must exist for at least one of them.
    plates
        Plate name(s) to keep (applies to the DMSO fields too).
    n_top
        Keep only each selected compound's ``n_top`` highest concentrations.
    include_dmso
        Add the DMSO fields (of the selected plates) whatever the other filters.
    only_existing
        Keep only fields whose three files exist.

    Returns
    -------
    pandas.DataFrame
        The selected rows, in table order, with the table's index.

    Raises
    ------
    ValueError
        An unknown compound or plate (close matches are listed), or a concentration that none of
        the selected compounds has.
    """
    _require_columns(table, TABLE_COLUMNS, "the field table")
    compound = table["compound"]
    keep = np.ones(len(table), dtype=bool)
    if compounds is not None:
        names = _as_list(compounds)
        _check_names(compound, names, "compound")
        keep &= compound.isin(names).to_numpy()
    if concentrations is not None:
        wanted = np.asarray(_as_list(concentrations), dtype=np.float64)
        values = table["concentration"].to_numpy()
        close = np.isclose(values[:, None], wanted[None, :], rtol=1e-6, atol=0.0)
        found = close[keep].any(axis=0)
        if not found.all():
            available = ", ".join(f"{c:g}" for c in np.sort(np.unique(values[keep])))
            absent = ", ".join(f"{c:g}" for c in wanted[~found])
            raise ValueError(
                f"concentration(s) {absent} not found for the selected compounds; "
                f"available: {available}"
            )
        keep &= close.any(axis=1)
    if n_top is not None:
        if n_top < 1:
            raise ValueError(f"n_top must be a positive number of concentrations, got {n_top}")
        rank = (
            table.loc[keep]
            .groupby("compound")["concentration"]
            .rank(method="dense", ascending=False)
        )
        keep &= (rank.reindex(table.index) <= n_top).to_numpy()
    if include_dmso:
        keep |= (compound == DMSO).to_numpy()
    if plates is not None:
        names = _as_list(plates)
        _check_names(table["plate"], names, "plate")
        keep &= table["plate"].isin(names).to_numpy()
    if only_existing:
        keep &= table["exists"].fillna(False).to_numpy(dtype=bool)
    return table.loc[keep].copy()


def paper_subset(
    cells: pd.DataFrame,
    compound: str,
    *,
    n_concentrations: int = 4,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    dmso: str = DMSO,
) -> pd.DataFrame:
    """The paper's cell-level subset: one compound's highest concentrations vs as many DMSO cells.

    Keeps every cell of ``compound`` at its ``n_concentrations`` highest concentrations (as found in
    ``cells``), draws the same number of cells from the DMSO fields without replacement, and splits
    each treatment's cells into train/val/test with ``fractions`` (so every split holds every
    treatment in the same proportions). Everything random comes from ``seed``.

    Parameters
    ----------
    cells
        A per-cell table with columns ``compound``, ``concentration`` and ``treatment`` (e.g. a
        CropSet's ``cells.csv``); other columns are kept.
    compound
        The treated compound (``"nocodazole"``, ``"taxol"``, ``"cytochalasin B"`` in the paper).
    n_concentrations
        How many of its highest concentrations to keep (fewer if it has fewer).
    seed
        Seed of the DMSO draw and of the split.
    fractions
        Train, val and test fractions (non-negative, summing to 1). Each treatment's cells are
        shuffled and cut at ``round(n * cumsum(fractions))``.
    dmso
        The control's compound name.

    Returns
    -------
    pandas.DataFrame
        The selected rows of ``cells`` in their original order and with their original index,
        plus ``is_treated`` (bool: ``compound`` vs DMSO, the K=2 label for AMI) and ``split``
        (``"train"``, ``"val"``, ``"test"``; replaced if ``cells`` already has one). For AMI
        over concentrations use ``treatment``.

    Raises
    ------
    ValueError
        Missing columns, an unknown compound (close matches are listed), bad ``fractions``, or
        fewer DMSO cells than treated cells (both counts are given: choose fewer concentrations or
        segment more DMSO fields).
    """
    _require_columns(cells, ("compound", "concentration", "treatment"), "cells")
    split_at = _split_fractions(fractions)
    if compound == dmso:
        raise ValueError(f"compound must be a treatment, not the control {dmso!r}")
    concentrations = top_concentrations(cells, compound, n_concentrations)
    treated = (cells["compound"] == compound) & cells["concentration"].isin(concentrations)
    control = np.flatnonzero((cells["compound"] == dmso).to_numpy())
    n_treated = int(treated.sum())
    if len(control) < n_treated:
        raise ValueError(
            f"paper_subset({compound!r}): {n_treated:,} treated cells at concentrations "
            f"{', '.join(f'{c:g}' for c in concentrations)} but only {len(control):,} {dmso} cells; "
            "use fewer concentrations or segment more DMSO fields"
        )
    rng = np.random.default_rng(seed)
    keep = treated.to_numpy().copy()
    keep[np.sort(rng.choice(control, size=n_treated, replace=False))] = True
    subset = cells.loc[keep].copy()
    subset["is_treated"] = (subset["compound"] == compound).to_numpy()
    subset["split"] = _stratified_split(subset["treatment"].to_numpy(), split_at, rng)
    return subset


def _split_fractions(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray(fractions, dtype=np.float64)
    if values.shape != (len(SPLITS),) or (values < 0).any() or not np.isclose(values.sum(), 1.0):
        raise ValueError(
            f"fractions must be three non-negative numbers (train, val, test) summing to 1, "
            f"got {tuple(fractions)}"
        )
    return np.cumsum(values)


def _stratified_split(
    groups: np.ndarray, split_at: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    split = np.empty(len(groups), dtype=object)
    for group in sorted(set(groups)):  # sorted: the draw order must not depend on row order
        rows = rng.permutation(np.flatnonzero(groups == group))
        cuts = np.round(split_at * len(rows)).astype(int)
        for name, part in zip(SPLITS, np.split(rows, cuts[:-1])):
            split[part] = name
    return split


def _as_list(values: str | float | Iterable) -> list:
    if isinstance(values, str | float | numbers.Number):
        return [values]
    return list(values)


def _check_names(column: pd.Series, names: Iterable[str], what: str) -> None:
    known = [str(v) for v in pd.unique(column)]
    known_set = set(known)
    for name in names:
        if name in known_set:
            continue
        lower = {k.lower(): k for k in known}
        close = difflib.get_close_matches(str(name).lower(), list(lower), n=5, cutoff=0.6)
        hint = (
            f"did you mean {', '.join(repr(lower[c]) for c in close)}?"
            if close
            else f"known: {', '.join(map(repr, sorted(known)[:10]))}{', ...' if len(known) > 10 else ''}"
        )
        raise ValueError(f"unknown {what} {name!r}; {hint}")


def _require_columns(table: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}")
