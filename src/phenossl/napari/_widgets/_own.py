"""A biologist's own data in *Select fields*: a plate in any layout, or the images on screen.

- :class:`PlatePanel`: how a plate folder's files are named (auto: BBBC021's CSV or a detected
  preset; a preset; or a pattern) and an optional metadata CSV joined on well.
- :class:`LayersPanel`: any image layers on screen (2-D fields or 3-D stacks of fields, any number
  of channels) mapped by the user to the model's channels, with an optional label table. The
  mapped planes are written as TIFFs (:mod:`phenossl.data.array_fields`) and become the loaded
  fields, so *Segment*, *Embed and cluster*, *Train* and *Export* work on them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from magicgui.widgets import ComboBox, Container, FileEdit, LineEdit
from napari.utils.notifications import show_info

from phenossl.napari._layers import CHANNELS, META
from phenossl.napari._widgets._panels import form, hint
from phenossl.napari._widgets._runner import RunPanel

AUTO, CUSTOM, NONE = "auto", "custom", ""
#: result layers of a loaded selection (they go when other fields are loaded)
RESULT_ROLES = ("nuclei", "cells", "clusters", "centres", "gallery")


def optional_path(value: Any) -> Path | None:
    """A FileEdit's value, None when left empty."""
    text = str(value).strip() if value is not None else ""
    return None if text in ("", ".") else Path(text)


class PlatePanel(Container):
    """The layout of a plate folder's file names and an optional metadata CSV."""

    def __init__(self) -> None:
        from phenossl.data.plate_layout import PRESETS

        self.layout_choice = ComboBox(
            label="Layout",
            choices=[("auto (BBBC021 CSV or a known layout)", AUTO)]
            + [(f"{name}: {p.description.split(':')[0]}", name) for name, p in PRESETS.items()]
            + [("custom file-name pattern", CUSTOM)],
            value=AUTO,
            tooltip="\n".join(f"{name}: {p.description}" for name, p in PRESETS.items()),
        )
        self.pattern = LineEdit(
            label="Pattern",
            value="{plate}/{*}_{well}_s{site}_w{channel}{*}.tif",
            tooltip="Path of each image relative to the folder: {plate}, {well} (or {row} and "
            "{col}), {site}, {channel}; {*} any text. Or a regular expression with these named "
            "groups (?P<well>...).",
        )
        self.channels = LineEdit(
            label="Channels",
            value="",
            tooltip="Channel token in the names -> model channel, e.g. 1=DAPI,2=Tubulin,3=Actin "
            "(empty: the preset's)",
        )
        self.metadata = FileEdit(
            mode="r",
            filter="*.csv",
            label="Metadata CSV",
            tooltip="Optional: a 'well' column (and 'plate' to join on both) with compound, "
            "concentration, treatment, moa",
        )
        super().__init__(
            labels=False,
            widgets=[
                hint(
                    "For a plate that is not in BBBC021's CSV layout: how its image files are "
                    "named (like CellProfiler's NamesAndTypes) and, optionally, a CSV of the "
                    "treatment of each well."
                ),
                form(self.layout_choice, self.pattern, self.channels, self.metadata),
            ],
        )
        self.margins = (0, 0, 0, 0)
        self.layout_choice.changed.connect(self._show_pattern)
        self._show_pattern()

    def _show_pattern(self, *_: Any) -> None:
        self.pattern.visible = self.layout_choice.value == CUSTOM

    def plate_layout(self) -> Any:
        """The chosen :class:`PlateLayout`, or None for automatic."""
        from phenossl.data.plate_layout import layout_from

        choice = self.layout_choice.value
        channels = self.channels.value.strip() or None
        if choice == AUTO:
            return None if channels is None else _Pending(channels)
        return layout_from(self.pattern.value if choice == CUSTOM else choice, channels)

    def read_table(self, root: Path, image_csv: Path | None = None) -> pd.DataFrame:
        """The field table of ``root`` with this panel's layout and metadata."""
        from phenossl.data.bbbc021 import load_image_table
        from phenossl.data.plate_layout import complete_table, join_metadata, load_plate

        metadata = optional_path(self.metadata.value)
        if image_csv is not None:
            table = load_image_table(root, image_csv)
            return table if metadata is None else complete_table(join_metadata(table, metadata))
        layout = self.plate_layout()
        if isinstance(layout, _Pending):
            layout = layout.resolve(root)
        return load_plate(root, layout, metadata)


class _Pending:
    """Automatic layout with the user's channel mapping: detected once the folder is known."""

    def __init__(self, channels: str) -> None:
        self.channels = channels

    def resolve(self, root: Path) -> Any:
        from phenossl.data.plate_layout import detect_layout, layout_from

        found = detect_layout(root)
        if found is None:
            raise ValueError(f"{root}: no known layout found; choose a layout or a pattern")
        return layout_from(found, self.channels)


def _image_layer_choices(viewer: Any) -> list[tuple[str, Any]]:
    from napari.layers import Image

    names = [layer.name for layer in viewer.layers if isinstance(layer, Image) and not layer.rgb]
    return [("(none: black)", NONE)] + [(name, name) for name in names]


class LayersPanel(Container):
    """Use image layers already on screen as the fields (any channels, mapped by the user)."""

    def __init__(self, viewer: Any, session: Any) -> None:
        self.viewer = viewer
        self.session = session
        self.combos = {
            channel: ComboBox(
                label=f"{channel} ←",
                choices=lambda _=None: _image_layer_choices(self.viewer),
                tooltip=f"The image layer that plays the model's {channel} channel",
            )
            for channel in CHANNELS
        }
        self.label_table = FileEdit(
            mode="r",
            filter="*.csv",
            label="Labels CSV",
            tooltip="Optional: a 'field' column (plane number from 1; 1 for a 2-D image) with "
            "compound, concentration, treatment, moa. Without it the treatments are 'unknown'.",
        )
        self.panel = RunPanel(
            "Use images on screen",
            "Use these images as fields",
            "Each plane of the mapped layers becomes a field; Segment, Embed and Train use them",
        )
        super().__init__(
            labels=False,
            widgets=[
                hint(
                    "Your own images, already in napari: choose which layer plays each of the "
                    "model's channels (a stack's planes are fields). Labels are optional."
                ),
                form(*self.combos.values(), self.label_table),
                self.panel,
            ],
        )
        self.margins = (0, 0, 0, 0)
        self.panel.run_button.changed.connect(self.run)
        self.viewer.layers.events.inserted.connect(self._refresh)
        self.viewer.layers.events.removed.connect(self._refresh)
        self._refresh()

    def _refresh(self, *_: Any) -> None:
        for channel, combo in self.combos.items():
            combo.reset_choices()
            if combo.value == NONE:  # a layer named like the channel is the obvious choice
                for _, name in _image_layer_choices(self.viewer)[1:]:
                    if str(name).split(" [")[0].strip().lower() == channel.lower():
                        combo.value = name

    def mapping(self) -> dict[str, Any]:
        """Model channel -> the chosen image layer (channels left black are absent)."""
        return {
            c: self.viewer.layers[combo.value] for c, combo in self.combos.items() if combo.value
        }

    def run(self, *_: Any) -> Any:
        """Write the mapped planes as fields in a worker; returns the worker (None if not)."""
        from napari.utils.notifications import show_error

        from phenossl.data.array_fields import iter_write_array_fields

        layers = self.mapping()
        if not layers:
            show_error("Use images on screen: map at least one image layer to a channel")
            return None
        labels = optional_path(self.label_table.value)
        if labels is not None and not labels.is_file():
            show_error(f"Use images on screen: label table not found: {labels}")
            return None
        out = Path(tempfile.mkdtemp(prefix="phenossl-layers-"))
        plate = f"layers-{time.strftime('%H%M%S')}"

        def job():
            arrays = {c: layer.data for c, layer in layers.items()}
            return (yield from iter_write_array_fields(arrays, out, plate=plate, labels=labels))

        def done(table: pd.DataFrame) -> None:
            use_layers_as_fields(self.viewer, self.session, layers, table)
            self.panel.set_status(
                f"{len(table):,} field(s) from {', '.join(lay.name for lay in layers.values())} "
                f"are the loaded fields ({table['treatment'].nunique()} treatment(s))."
            )
            show_info(f"Loaded {len(table):,} field(s) from the layers on screen.")

        return self.panel.start(job, done)


def release_own_layers(viewer: Any, keep: Any = ()) -> None:
    """Untag the user's layers that played a channel (they stay, as plain images)."""
    for layer in viewer.layers:
        meta = layer.metadata.get(META) if isinstance(layer.metadata, dict) else None
        if isinstance(meta, dict) and meta.get("own") and layer not in keep:
            layer.metadata = {k: v for k, v in layer.metadata.items() if k != META}


def use_layers_as_fields(
    viewer: Any, session: Any, layers: dict[str, Any], table: pd.DataFrame
) -> None:
    """Make ``table`` the loaded fields and tag ``layers`` as their channel layers."""
    from phenossl.napari._widgets._common import layers_with_role, remove_layers

    for role in RESULT_ROLES:
        remove_layers(viewer, layers_with_role(viewer, role))
    release_own_layers(viewer, keep=list(layers.values()))
    mine = list(layers.values())
    # a loaded stack of other fields
    remove_layers(viewer, [x for x in layers_with_role(viewer, "channel") if x not in mine])
    for channel, layer in layers.items():
        meta: dict[str, Any] = {"role": "channel", "channel": channel, "own": True}
        if layer.ndim == 2:
            meta["field"] = table.iloc[0].to_dict()
        layer.metadata = {**layer.metadata, META: meta}
    session.set_run(None)
    session.set_fields(table)
