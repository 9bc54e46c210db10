"""The reader: BBBC021 folders and image tables open a field browser; channel TIFFs open as layers.

- A BBBC021 root folder (it holds ``BBBC021_v1_image.csv``), a plate folder in one of the known
  layouts (:data:`phenossl.data.plate_layout.PRESETS`) or the image CSV itself opens the
  "Select fields" widget on its 13,200-row field table instead of loading 13,200 images.
- A field's channel TIFFs (BBBC021 names: ``..._B02_s1_w1<UUID>.tif``; w1 DAPI, w2 Tubulin,
  w4 Actin) open as additive channel layers (DAPI blue, Tubulin green, Actin red) with contrast
  limits from robust percentiles. When the BBBC021 CSV lies above them, the layers know their
  field (compound, concentration, MOA), so the widgets can use them as a field.
- Other TIFFs and CSVs are not claimed (the manifest's patterns and :func:`get_reader` agree):
  napari's own reader opens them without asking which plugin to use. A BBBC021-named file that is
  not a 2-D image still opens as a plain image layer.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from phenossl._json import to_json
from phenossl.data.bbbc021 import IMAGE_CSV
from phenossl.napari._layers import CHANNEL_KEYS, LayerData, channel_layer, display_limits

TIFF_SUFFIXES = (".tif", ".tiff")
_CHANNEL_FILE = re.compile(r"_(?P<well>[A-Za-z]\d{2})_s(?P<site>\d+)_w(?P<tag>[124])")
_TAG_CHANNEL = {"1": "DAPI", "2": "Tubulin", "4": "Actin"}
_IMAGE_CSV_MARKER = "Image_FileName_DAPI"

PathOrPaths = str | os.PathLike | list[str | os.PathLike] | tuple[str | os.PathLike, ...]


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], Sequence[tuple]] | None:
    """npe2 reader hook: a reader function for ``path``, or None when it is not ours."""
    if isinstance(path, list | tuple):
        paths = [Path(p) for p in path]
        return read_tiffs if paths and all(_is_channel_tiff(p) for p in paths) else None
    p = Path(path)
    if p.is_dir():
        return open_table if (p / IMAGE_CSV).is_file() or _is_plate(p) else None
    if p.suffix.lower() == ".csv":
        return open_table if _is_image_csv(p) else None
    if _is_channel_tiff(p):
        return read_tiffs
    return None


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES and path.is_file()


def _is_plate(path: Path) -> bool:
    """A folder whose image names follow one of the known plate layouts."""
    from phenossl.data.plate_layout import detect_layout

    try:
        return detect_layout(path, max_files=100) is not None
    except OSError:
        return False


def _is_channel_tiff(path: Path) -> bool:
    """A TIFF named like a BBBC021 channel file (``..._B02_s1_w1<UUID>.tif``)."""
    return _is_tiff(path) and _CHANNEL_FILE.search(path.name) is not None


def _is_image_csv(path: Path) -> bool:
    if path.name == IMAGE_CSV:
        return True
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return _IMAGE_CSV_MARKER in handle.readline()
    except OSError:
        return False


# --- BBBC021 folders and tables --------------------------------------------------------------


def open_table(path: PathOrPaths) -> list[tuple[None]]:
    """Open the "Select fields" widget on a BBBC021 root folder or image CSV.

    Returns ``[(None,)]``: the reader handled the path without adding a layer. A table that
    cannot be read is reported in a notification (and in the widget).
    """
    import napari

    from phenossl.napari._widgets._common import open_widget

    p = Path(path[0] if isinstance(path, list | tuple) else path)
    root, image_csv = (p.parent, p) if p.suffix.lower() == ".csv" else (p, None)
    viewer = napari.current_viewer()
    if viewer is None:
        raise RuntimeError("opening a BBBC021 folder needs a napari viewer")
    widget = open_widget(viewer, "Select fields")
    widget.open_root(root, image_csv=image_csv)
    return [(None,)]


# --- TIFFs -------------------------------------------------------------------------------------


def read_tiffs(path: PathOrPaths) -> list[LayerData]:
    """Channel TIFFs as BBBC021 channel layers; other TIFFs as plain image layers."""
    paths = [Path(p) for p in (path if isinstance(path, list | tuple) else [path])]
    return [_read_tiff(p) for p in paths]


def _read_tiff(path: Path) -> LayerData:
    import tifffile

    match = _CHANNEL_FILE.search(path.name)
    data = tifffile.imread(path)
    if match is None or data.ndim != 2:
        return _plain_layer(path, data)
    channel = _TAG_CHANNEL[match["tag"]]
    well, site = match["well"].upper(), int(match["site"])
    row = field_row(path, channel)
    meta = {"path": str(path), "field": row} if row is not None else {"path": str(path)}
    return channel_layer(
        data,
        channel,
        contrast_limits=display_limits(data),
        meta=meta,
        name=f"{channel} [{well}/s{site}]",
    )


def _plain_layer(path: Path, data: Any) -> LayerData:
    kwargs: dict[str, Any] = {"name": path.stem}
    rgb = data.ndim >= 3 and data.shape[-1] in (3, 4) and data.dtype.kind == "u"
    if data.size and not rgb and data.dtype.kind in "uif":
        kwargs["contrast_limits"] = list(display_limits(data.reshape(-1, data.shape[-1])))
    return data, kwargs, "image"


def field_row(path: Path, channel: str) -> dict[str, Any] | None:
    """The field-table row of a channel file: from the BBBC021 CSV above it, else its siblings.

    None when the field's three channel files cannot all be found.
    """
    key = CHANNEL_KEYS[channel]
    resolved = str(path.resolve())
    for root in list(path.resolve().parents)[:4]:
        if (root / IMAGE_CSV).is_file():
            table = _table(str(root), (root / IMAGE_CSV).stat().st_mtime_ns)
            if table is None:
                break
            # file names hold a UUID: compare names first, then the resolved paths
            same_name = table[table[key].str.endswith(path.name)]
            for _, row in same_name.iterrows():
                if str(Path(row[key]).resolve()) == resolved:
                    found = to_json(row.to_dict())
                    found["exists"] = all(Path(found[k]).is_file() for k in CHANNEL_KEYS.values())
                    return found
            break
    return _row_from_siblings(path)


@functools.lru_cache(maxsize=4)
def _table(root: str, mtime: int) -> Any:
    from phenossl.data.bbbc021 import load_image_table

    try:
        return load_image_table(root, check_files=False)
    except (OSError, ValueError):
        return None


def _row_from_siblings(path: Path) -> dict[str, Any] | None:
    match = _CHANNEL_FILE.search(path.name)
    if match is None:
        return None
    prefix = path.name[: match.start("tag")]
    files = {}
    for tag, channel in _TAG_CHANNEL.items():
        found = sorted(path.parent.glob(f"{glob_escape(prefix)}{tag}*"))
        found = [f for f in found if f.suffix.lower() in TIFF_SUFFIXES]
        if len(found) != 1:
            return None
        files[CHANNEL_KEYS[channel]] = str(found[0])
    well, site = match["well"].upper(), int(match["site"])
    return {
        "field_id": f"{path.parent.name}/{well}/s{site}",
        "plate": path.parent.name,
        "well": well,
        "site": site,
        "compound": "unknown",
        "concentration": 0.0,
        "moa": None,
        "treatment": "unknown",
        **files,
        "exists": True,
    }


def glob_escape(text: str) -> str:
    """``text`` with glob wildcards escaped."""
    return re.sub(r"([\[\]*?])", r"[\1]", text)
