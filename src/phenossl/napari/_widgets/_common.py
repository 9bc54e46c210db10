"""Helpers the widgets share: finding the channel layers, the field on screen, showing layers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from phenossl.napari._layers import CHANNELS, META, LayerData

PLUGIN = "napari-phenossl"


def role_of(layer: Any) -> str | None:
    """The phenossl role of a layer (``channel``, ``cells``, ...), None for other layers."""
    meta = layer.metadata.get(META) if isinstance(layer.metadata, dict) else None
    return meta.get("role") if isinstance(meta, dict) else None


def layers_with_role(viewer: Any, role: str) -> list[Any]:
    return [layer for layer in viewer.layers if role_of(layer) == role]


def channel_layers(viewer: Any) -> dict[str, Any]:
    """The image layer of each channel: phenossl's channel layers first, else by name."""
    from napari.layers import Image

    found: dict[str, Any] = {}
    for layer in reversed(list(viewer.layers)):  # the top-most layer wins
        if not isinstance(layer, Image) or layer.rgb:
            continue
        meta = layer.metadata.get(META, {}) if isinstance(layer.metadata, dict) else {}
        channel = meta.get("channel") if isinstance(meta, dict) else None
        if channel in CHANNELS and channel not in found:
            found[channel] = layer
    for layer in reversed(list(viewer.layers)):
        name = str(layer.name).split(" [")[0].strip().lower()
        for channel in CHANNELS:
            if channel not in found and name == channel.lower() and isinstance(layer, Image):
                found[channel] = layer
    return found


@dataclass(frozen=True)
class FieldOnScreen:
    """The field shown in the viewer: its stack position (None for a 2-D field) and its row."""

    index: int | None
    row: dict[str, Any] | None

    @property
    def field_id(self) -> str | None:
        return None if self.row is None else str(self.row.get("field_id"))

    def describe(self) -> str:
        if self.row is None:
            return "the field on screen"
        row = self.row
        text = f"{row['field_id']} · {row.get('compound', '?')}"
        if row.get("compound") != "DMSO":
            text += f" {row.get('concentration', 0):g} µM"
        return text


def field_on_screen(
    viewer: Any, layers: Iterable[Any], fields: pd.DataFrame | None
) -> FieldOnScreen:
    """Which field of the channel ``layers`` is displayed.

    Stacks (3-D channel layers) are browsed along axis 0; ``fields`` (the loaded selection, in
    stack order) names the field. A 2-D channel layer is one field; its row comes from its
    metadata when a reader opened it.
    """
    layers = list(layers)
    if not layers:
        raise ValueError("no DAPI / Tubulin / Actin layers: load fields or open a field first")
    ndims = {layer.ndim for layer in layers}
    if ndims == {2}:
        meta = layers[0].metadata.get(META, {})
        row = meta.get("field") if isinstance(meta, dict) else None
        return FieldOnScreen(None, dict(row) if isinstance(row, dict) else None)
    if ndims != {3}:
        raise ValueError(
            "the channel layers must all be 2-D (one field) or all 3-D (a stack of fields)"
        )
    n = int(layers[0].data.shape[0])
    world = viewer.dims.point[viewer.dims.ndim - 3] if viewer.dims.ndim >= 3 else 0.0
    index = int(np.clip(round(float(world) - float(layers[0].translate[0])), 0, n - 1))
    row = None
    if fields is not None and len(fields) == n:
        row = fields.iloc[index].to_dict()
    return FieldOnScreen(index, row)


def fields_on_screen(viewer: Any, session: Any) -> pd.DataFrame | None:
    """The fields a run covers now: the loaded selection, or the one field opened from its files.

    None when neither is there.
    """
    if session.fields is not None and not session.fields.empty:
        return session.fields
    layers = channel_layers(viewer)
    if len(layers) == len(CHANNELS):
        try:
            field = field_on_screen(viewer, layers.values(), None)
        except ValueError:
            return None
        if field.row is not None:
            return pd.DataFrame([field.row])
    return None


def run_matches_screen(viewer: Any, session: Any, run: Any) -> bool:
    """Whether ``run`` (an EmbedRun) was computed on the fields on screen now."""
    return run is not None and run.matches(session.selection, fields_on_screen(viewer, session))


def field_pixels(layers: dict[str, Any], index: int | None) -> dict[str, np.ndarray]:
    """The raw 2-D image of each channel layer at stack position ``index``."""
    out = {}
    for channel, layer in layers.items():
        data = layer.data[index] if index is not None else layer.data
        out[channel] = np.asarray(data)
    shapes = {a.shape for a in out.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(
            "the DAPI, Tubulin and Actin layers must be 2-D images of the same size, got "
            + ", ".join(f"{c} {a.shape}" for c, a in out.items())
        )
    return out


def make_layer(layer_data: LayerData) -> Any:
    """The napari layer of a layer data tuple, not yet in a viewer.

    A layer is a model without Qt objects: building it in a worker thread keeps its costs off
    the GUI thread (the features table's checks, the first slice, and for labels the colormap's
    just-in-time compilation, ~1-2 s the first time in a process).
    """
    from napari.layers import Layer

    data, kwargs, layer_type = layer_data
    return Layer.create(data, kwargs, layer_type)


def show_layer(viewer: Any, layer_data: LayerData | Any, *, replace: bool = True) -> Any:
    """Add a layer (data tuple or :func:`make_layer`'s layer), replacing the layer of the same
    phenossl role in place (same position).

    Replacing keeps the old layer's visibility and the user's place in the layer list, so a
    second run updates the picture instead of piling up layers. Where it can, it gives the old
    layer the new content rather than swapping layers: napari 0.9 runs a full garbage
    collection for every layer removed (0.2-1 s with torch loaded) and builds a new visual and
    new controls for every layer added, all on the GUI thread.
    """
    layer = make_layer(layer_data) if isinstance(layer_data, tuple) else layer_data
    role = role_of(layer)
    old = layers_with_role(viewer, role) if replace and role else []
    if len(old) == 1 and refill(old[0], layer):
        return old[0]
    if old:
        index = viewer.layers.index(old[0])
        layer.visible = old[0].visible
        remove_layers(viewer, old)
        viewer.layers.insert(index, layer)
    else:
        viewer.layers.append(layer)
    return layer


def refill(old: Any, new: Any) -> bool:
    """Give layer ``old`` the data, features, colours, placement and metadata of ``new``.

    Returns False (and changes nothing) where the two differ in kind: another layer type or
    name, another number of dimensions; for images, only RGB ones of one dtype are refilled.
    """
    from napari.layers import Image, Labels, Points

    same = type(old) is type(new) and old.ndim == new.ndim and old.name == new.name
    if not same or not isinstance(new, Points | Labels | Image):
        return False
    if isinstance(new, Image) and not (new.rgb and old.rgb and new.dtype == old.dtype):
        return False
    # one redraw for all the changes, not one per property (napari's own context manager)
    block = getattr(old, "_block_refresh", contextlib.nullcontext)
    with block():
        old.translate = new.translate
        old.data = new.data  # a points layer resizes its features and colours to the new count
        if isinstance(new, Points):
            old.features = new.features
            old.face_color = new.face_color
        elif isinstance(new, Labels):
            old.colormap = new.colormap
            old.features = new.features
        old.metadata = new.metadata
    old.refresh()
    return True


def remove_layers(viewer: Any, layers: Any) -> None:
    """Remove ``layers`` from the viewer, unselecting them first.

    Removing a *selected* layer from a shown viewer repaints the canvas while the layer list
    is half updated (napari re-populates the layer controls from the removal's selection
    change); under Mesa's software OpenGL that paint crashed the process (segfault in
    ``glDrawArrays``). Unselected layers go without that repaint.
    """
    doomed = [layer for layer in layers if layer in viewer.layers]
    if not doomed:
        return
    viewer.layers.selection.difference_update(doomed)
    for layer in doomed:
        viewer.layers.remove(layer)


def open_widget(viewer: Any, name: str) -> Any:
    """Open (or show) one of this plugin's dock widgets, bring its tab forward, return it."""
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    dock.show()
    dock.raise_()
    return widget
