"""A plate folder in any layout: fields from file names, treatments from a metadata CSV.

Like CellProfiler's NamesAndTypes metadata extraction, a :class:`PlateLayout` describes how the
image files of a plate are named: a *pattern* with the fields ``plate``, ``well`` (or ``row`` and
``col``), ``site`` and ``channel``, matched against each file's path relative to the plate
folder. Files that share plate, well and site are one field; the layout's ``channels`` map the
channel tokens in the names to the model's channels (DAPI, Tubulin, Actin). An optional metadata
CSV joined on ``well`` (or ``plate`` + ``well``) gives compound, concentration, treatment and MOA.
The result is the same field table as :func:`phenossl.data.bbbc021.load_image_table`, so
everything downstream (segmentation, crops, embedding, training, the napari widgets) works on it.

A pattern is either a template such as ``{plate}/{*}_{well}_s{site}_w{channel}{*}.tif``
(``{*}`` matches any text within a folder or file name) or a regular expression with named
groups (``(?P<well>[A-P]\\d\\d)``). Presets cover common high-content layouts
(:data:`PRESETS`); BBBC021 is one of them.

Examples
--------
>>> layout = PRESETS["phenix"]
>>> layout.match("r02c03f01p01-ch1sk1fk1fl1.tiff")
{'plate': '', 'well': 'B03', 'site': 1, 'channel': '1'}
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phenossl.data.bbbc021 import TABLE_COLUMNS, treatment_name
from phenossl.data.fields import CHANNEL_KEYS, CHANNEL_NAMES

#: Regular expressions of the template placeholders.
_PLACEHOLDERS = {
    "plate": r"[^/]+?",
    "well": r"[A-Za-z]{1,2}\d{1,3}",
    "row": r"\d{1,3}",
    "col": r"\d{1,3}",
    "site": r"\d+",
    "channel": r"[A-Za-z0-9]+?",
    "*": r"[^/]*?",
}
_TEMPLATE_FIELD = re.compile(r"\{(plate|well|row|col|site|channel|\*)\}")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
UNKNOWN = "unknown"
#: Columns a metadata CSV may bring in (others are kept as they are).
METADATA_COLUMNS = ("compound", "concentration", "treatment", "moa")


@dataclass(frozen=True)
class PlateLayout:
    """How a plate's image files are named.

    Parameters
    ----------
    pattern
        A template (``{plate}/{well}_s{site}_w{channel}.tif``) or a regular expression with named
        groups, matched against the whole path relative to the plate folder (``/`` separated).
        It needs ``well`` (or ``row`` and ``col``, numbers counted from 1) and ``channel``;
        ``plate`` defaults to the plate folder's name and ``site`` to 1.
    channels
        Channel token in the file names -> model channel (``DAPI``, ``Tubulin``, ``Actin``).
        A model channel without a token is left out of the table (the row is then incomplete).
    name, description
        How the layout is shown in menus and help.
    """

    pattern: str
    channels: Mapping[str, str] = field(
        default_factory=lambda: {"1": "DAPI", "2": "Tubulin", "3": "Actin"}
    )
    name: str = "custom"
    description: str = ""

    def __post_init__(self) -> None:
        regex = self.regex  # validates the pattern
        groups = set(regex.groupindex)
        if "channel" not in groups or not ({"well"} <= groups or {"row", "col"} <= groups):
            raise ValueError(
                f"plate layout pattern {self.pattern!r}: expected the fields 'channel' and "
                "'well' (or 'row' and 'col'); 'plate' and 'site' are optional"
            )
        unknown = sorted(set(self.channels.values()) - set(CHANNEL_NAMES))
        if unknown:
            raise ValueError(
                f"plate layout channels: {', '.join(unknown)} is not a model channel; "
                f"expected {', '.join(CHANNEL_NAMES)}"
            )

    @property
    def regex(self) -> re.Pattern[str]:
        """The pattern as a compiled regular expression (templates are translated)."""
        text = self.pattern if "(?P<" in self.pattern else _template_regex(self.pattern)
        try:
            return re.compile(text, re.IGNORECASE)
        except re.error as err:
            raise ValueError(f"plate layout pattern {self.pattern!r}: {err}") from err

    def match(self, relative: str) -> dict[str, Any] | None:
        """The plate, well, site and channel of one file (a path relative to the plate folder).

        None when the name does not follow the layout.
        """
        found = self.regex.fullmatch(relative.replace(os.sep, "/"))
        if found is None:
            return None
        parts = found.groupdict()
        if parts.get("well"):
            well = normalise_well(parts["well"])
        else:
            well = well_name(int(parts["row"]), int(parts["col"]))
        site = int(parts["site"]) if parts.get("site") else 1
        return {
            "plate": parts.get("plate") or "",
            "well": well,
            "site": site,
            "channel": parts["channel"],
        }

    def with_channels(self, channels: Mapping[str, str]) -> PlateLayout:
        """This layout with another channel mapping."""
        return replace(self, channels=dict(channels))


def _template_regex(template: str) -> str:
    out, end = [], 0
    for found in _TEMPLATE_FIELD.finditer(template):
        out.append(re.escape(template[end : found.start()]))
        key = found.group(1)
        expression = _PLACEHOLDERS[key]
        out.append(f"(?:{expression})" if key == "*" else f"(?P<{key}>{expression})")
        end = found.end()
    out.append(re.escape(template[end:]))
    return "".join(out)


def normalise_well(well: str) -> str:
    """``b3``, ``B3``, ``B003`` -> ``B03`` (letter(s) upper case, at least two digits).

    Examples
    --------
    >>> normalise_well("b3")
    'B03'
    """
    found = re.fullmatch(r"([A-Za-z]{1,2})0*(\d+)", well.strip())
    if found is None:
        raise ValueError(f"well {well!r}: expected a row letter and a column number, e.g. B03")
    return f"{found.group(1).upper()}{int(found.group(2)):02d}"


def well_name(row: int, col: int) -> str:
    """Row and column numbers (from 1) -> a well name: ``(2, 3)`` -> ``B03``.

    Examples
    --------
    >>> well_name(2, 3)
    'B03'
    """
    if row < 1 or col < 1:
        raise ValueError(f"well row {row}, column {col}: expected numbers from 1")
    letters = ""
    while row:
        row, rest = divmod(row - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{col:02d}"


#: Common high-content layouts. Channel tokens map to the model's channels; change them with
#: :meth:`PlateLayout.with_channels` (``--channels`` in the CLI).
PRESETS: dict[str, PlateLayout] = {
    "bbbc021": PlateLayout(
        name="bbbc021",
        pattern="{*}/{plate}/{*}_{well}_s{site}_w{channel}{*}.tif",
        channels={"1": "DAPI", "2": "Tubulin", "4": "Actin"},
        description="BBBC021 (ImageXpress names in Week/plate folders: "
        "Week1/Week1_22123/Week1_150607_B02_s1_w1<UUID>.tif; w1 DAPI, w2 Tubulin, w4 Actin)",
    ),
    "imagexpress": PlateLayout(
        name="imagexpress",
        pattern="{plate}/{*}_{well}_s{site}_w{channel}{*}.tif",
        channels={"1": "DAPI", "2": "Tubulin", "3": "Actin"},
        description="MetaXpress / ImageXpress export, one folder per plate: "
        "Plate1/Plate1_B02_s1_w1<GUID>.tif (w1, w2, w3 ...)",
    ),
    "phenix": PlateLayout(
        name="phenix",
        pattern=r"(?:[^/]+/)*r(?P<row>\d{2})c(?P<col>\d{2})f(?P<site>\d{2})p\d{2}"
        r"-ch(?P<channel>\d+)sk\d+fk\d+fl\d+\.tiff?",
        channels={"1": "DAPI", "2": "Tubulin", "3": "Actin"},
        description="Opera Phenix / Operetta CLS (Harmony export): "
        "Images/r02c03f01p01-ch1sk1fk1fl1.tiff in the plate's folder (row, column, field, "
        "plane, channel; the plate is the folder's name)",
    ),
    "cellinsight": PlateLayout(
        name="cellinsight",
        pattern="{plate}/{*}_{well}f{site}d{channel}.tif",
        channels={"0": "DAPI", "1": "Tubulin", "2": "Actin"},
        description="CellInsight / ArrayScan: Plate1/MFGTMP_B02f00d0.TIF (field f, channel d)",
    ),
}


def parse_channels(text: str) -> dict[str, str]:
    """``"1=DAPI,2=Tubulin,4=Actin"`` -> ``{"1": "DAPI", "2": "Tubulin", "4": "Actin"}``.

    Examples
    --------
    >>> parse_channels("ch1=DAPI, ch2=Actin")
    {'ch1': 'DAPI', 'ch2': 'Actin'}
    """
    names = {n.lower(): n for n in CHANNEL_NAMES}
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        token, sep, channel = item.partition("=")
        if not sep or channel.strip().lower() not in names:
            raise ValueError(
                f"channels {text!r}: expected TOKEN=CHANNEL pairs with CHANNEL one of "
                f"{', '.join(CHANNEL_NAMES)}, got {item!r}"
            )
        out[token.strip()] = names[channel.strip().lower()]
    return out


def layout_from(pattern_or_preset: str | PlateLayout, channels: str | None = None) -> PlateLayout:
    """A layout from a preset name or a pattern, with an optional ``channels`` mapping text."""
    if isinstance(pattern_or_preset, PlateLayout):
        layout = pattern_or_preset
    elif pattern_or_preset in PRESETS:
        layout = PRESETS[pattern_or_preset]
    else:
        layout = PlateLayout(pattern=pattern_or_preset)
    return layout.with_channels(parse_channels(channels)) if channels else layout


def scan_plate(
    root: str | os.PathLike[str],
    layout: str | PlateLayout,
    metadata: str | os.PathLike[str] | pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The field table of a plate folder whose files follow ``layout``.

    Parameters
    ----------
    root
        The plate folder (searched recursively for ``.tif``, ``.tiff`` and ``.png`` files).
    layout
        A :class:`PlateLayout`, a preset name (:data:`PRESETS`) or a pattern.
    metadata
        Optional CSV (or DataFrame) with a ``well`` column (and ``plate`` to join on both) and
        any of ``compound``, ``concentration``, ``treatment``, ``moa``. Fields of wells it does
        not list get ``unknown``.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`phenossl.data.bbbc021.TABLE_COLUMNS` (plus the metadata CSV's
        other columns), one row per field sorted by plate, well and site. ``exists`` says
        whether the field has a file for each of the three model channels.

    Raises
    ------
    FileNotFoundError
        ``root`` or the metadata CSV does not exist.
    ValueError
        No file follows the layout (a few names are quoted), two files give one field the same
        channel, or the metadata CSV lacks ``well`` / repeats a well.

    Examples
    --------
    >>> table = scan_plate("my_plate", "phenix", metadata="my_plate/treatments.csv")  # doctest: +SKIP
    """
    root = Path(os.path.abspath(os.path.expanduser(root)))
    if not root.is_dir():
        raise FileNotFoundError(f"plate folder not found: {root}")
    layout = layout_from(layout)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    unmatched: list[str] = []
    for path in files:
        relative = path.relative_to(root).as_posix()
        found = layout.match(relative)
        if found is None:
            unmatched.append(relative)
            continue
        channel = layout.channels.get(found["channel"])
        if channel is None:  # a channel the model does not use
            continue
        plate = found["plate"] or root.name
        key = (plate, found["well"], found["site"])
        row = rows.setdefault(key, {"plate": plate, "well": key[1], "site": key[2]})
        column = CHANNEL_KEYS[CHANNEL_NAMES.index(channel)]
        if column in row:
            raise ValueError(
                f"plate {root}: {relative} and {Path(row[column]).relative_to(root).as_posix()} "
                f"are both the {channel} image of {plate}/{key[1]}/s{key[2]}; "
                "the layout's pattern must tell fields apart"
            )
        row[column] = str(path)
    if not rows:
        examples = ", ".join(unmatched[:3]) or "no image files"
        raise ValueError(
            f"plate {root}: no file follows the layout {layout.pattern!r} with channels "
            f"{dict(layout.channels)} (found: {examples})"
        )
    table = pd.DataFrame(sorted(rows.values(), key=lambda r: (r["plate"], r["well"], r["site"])))
    for column in CHANNEL_KEYS:
        if column not in table:
            table[column] = None
    table["exists"] = table[list(CHANNEL_KEYS)].notna().all(axis=1).astype(bool)
    table["field_id"] = table["plate"] + "/" + table["well"] + "/s" + table["site"].astype(str)
    if metadata is not None:
        table = join_metadata(table, metadata)
    return complete_table(table)


def detect_layout(root: str | os.PathLike[str], max_files: int = 300) -> PlateLayout | None:
    """The preset whose names the plate's first ``max_files`` images follow (None: none does).

    A preset counts when it finds at least one field with all three model channels; among
    those, the one that places the most files wins.

    Examples
    --------
    >>> detect_layout("my_phenix_plate").name  # doctest: +SKIP
    'phenix'
    """
    root = Path(root)
    files = _first_images(root, max_files)
    best, best_count = None, 0
    for layout in PRESETS.values():
        fields: dict[tuple[str, str, int], set[str]] = {}
        count = 0
        for relative in files:
            found = layout.match(relative)
            if found is None:
                continue
            channel = layout.channels.get(found["channel"])
            if channel is None:
                continue
            count += 1
            fields.setdefault((found["plate"], found["well"], found["site"]), set()).add(channel)
        complete = any(len(channels) == len(CHANNEL_NAMES) for channels in fields.values())
        if complete and count > best_count:
            best, best_count = layout, count
    return best


def _first_images(root: Path, limit: int) -> list[str]:
    found: list[str] = []
    for folder, subfolders, names in os.walk(root):
        subfolders.sort()
        depth = len(Path(folder).relative_to(root).parts)
        if depth >= 3:
            subfolders.clear()
        for name in sorted(names):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((Path(folder) / name).relative_to(root).as_posix())
                if len(found) >= limit:
                    return found
    return found


def load_plate(
    root: str | os.PathLike[str],
    layout: str | PlateLayout | None = None,
    metadata: str | os.PathLike[str] | pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The field table of a plate folder: BBBC021's CSV, or the files named per ``layout``.

    With ``layout`` None, a folder holding ``BBBC021_v1_image.csv`` is read with
    :func:`phenossl.data.bbbc021.load_image_table`; any other folder with the preset that
    :func:`detect_layout` finds.

    Examples
    --------
    >>> table = load_plate("my_plate", metadata="my_plate/treatments.csv")  # doctest: +SKIP
    """
    from phenossl.data.bbbc021 import IMAGE_CSV, load_image_table

    root = Path(root)
    if layout is None and (root / IMAGE_CSV).is_file():
        table = load_image_table(root)
        return table if metadata is None else complete_table(join_metadata(table, metadata))
    if layout is None:
        if not root.is_dir():
            raise FileNotFoundError(f"plate folder not found: {root}")
        layout = detect_layout(root)
        if layout is None:
            raise FileNotFoundError(
                f"BBBC021 image table not found: expected {IMAGE_CSV} in {root}, and its image "
                f"names follow none of the known layouts ({', '.join(PRESETS)}); choose a "
                "layout or describe the file names with a pattern"
            )
    return scan_plate(root, layout, metadata)


def read_metadata(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A metadata CSV: one row per well (or plate + well); ``well`` names normalised."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metadata CSV not found: {path}")
    try:
        table = pd.read_csv(path, dtype={"plate": str, "well": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"metadata CSV {path}: cannot be read as CSV ({err})") from err
    table.attrs["path"] = str(path)
    return table


def join_metadata(
    table: pd.DataFrame, metadata: str | os.PathLike[str] | pd.DataFrame
) -> pd.DataFrame:
    """Join a metadata table on ``well`` (or ``plate`` + ``well`` when it has ``plate``)."""
    meta = metadata if isinstance(metadata, pd.DataFrame) else read_metadata(metadata)
    where = meta.attrs.get("path", "the metadata table")
    meta = meta.rename(columns={c: c.strip().lower() for c in meta.columns})
    if "well" not in meta:
        raise ValueError(
            f"{where}: no 'well' column; expected well (and optionally plate) plus any of "
            f"{', '.join(METADATA_COLUMNS)}; found {', '.join(meta.columns)}"
        )
    meta = meta.copy()
    for i, well in enumerate(meta["well"].astype(str)):
        try:
            meta.loc[meta.index[i], "well"] = normalise_well(well)
        except ValueError as err:
            raise ValueError(f"{where}, row {i + 2}: {err}") from err
    keys = ["plate", "well"] if "plate" in meta else ["well"]
    repeated = meta[meta.duplicated(keys, keep=False)]
    if not repeated.empty:
        first = " / ".join(str(v) for v in repeated.iloc[0][keys])
        raise ValueError(f"{where}: {first} is listed more than once; list each {keys[-1]} once")
    clash = [c for c in meta.columns if c in table.columns and c not in keys]
    base = table.drop(columns=clash)
    return base.merge(meta, on=keys, how="left", validate="many_to_one")


def complete_table(table: pd.DataFrame) -> pd.DataFrame:
    """Fill the field-table columns a layout or a metadata CSV did not give."""
    n = len(table)
    compound = table["compound"] if "compound" in table else pd.Series([None] * n)
    compound = compound.astype("object").where(compound.notna(), UNKNOWN).astype(str)
    concentration = (
        pd.to_numeric(table["concentration"], errors="coerce")
        if "concentration" in table
        else pd.Series(np.zeros(n))
    ).fillna(0.0)
    table = table.assign(compound=compound.to_numpy(), concentration=concentration.to_numpy())
    if "treatment" in table:
        treatment = table["treatment"].astype("object")
        treatment = treatment.where(treatment.notna(), None)
    else:
        treatment = pd.Series([None] * n, index=table.index)
    derived = [
        UNKNOWN if c == UNKNOWN else treatment_name(c, float(x))
        for c, x in zip(table["compound"], table["concentration"])
    ]
    table["treatment"] = [t if t is not None else d for t, d in zip(treatment, derived)]
    if "moa" not in table:
        table["moa"] = pd.array([pd.NA] * n, dtype="string")
    defaults = {"table_number": 0, "image_number": 0, "week": "", "replicate": 1}
    for column, value in defaults.items():
        if column not in table:
            table[column] = value
    table["image_number"] = np.arange(1, n + 1)
    extra = [c for c in table.columns if c not in TABLE_COLUMNS]
    return table[list(TABLE_COLUMNS) + extra].reset_index(drop=True)


def presets_help(presets: Iterable[str] = PRESETS) -> str:
    """One line per preset: its name and description (for the CLI's help)."""
    return "; ".join(f"{name}: {PRESETS[name].description}" for name in presets)
