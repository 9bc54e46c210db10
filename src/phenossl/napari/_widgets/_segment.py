"""Segment: nuclei and cells of the field on screen as labels layers, with a per-cell table.

The parameters are those of :func:`phenossl.cells.segment.segment`; "Embed and cluster" and
"Train" segment every field with the values set here.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, SpinBox, create_widget

from phenossl._progress import Progress
from phenossl.napari._layers import CHANNELS, segmentation_layers
from phenossl.napari._native import preload_in_background
from phenossl.napari._session import session_for
from phenossl.napari._widgets._common import (
    channel_layers,
    field_on_screen,
    field_pixels,
    show_layer,
)
from phenossl.napari._widgets._panels import collapsible, form, hint, pack_top
from phenossl.napari._widgets._runner import RunPanel

THRESHOLDS = ("otsu", "li", "triangle")


def _defaults() -> dict[str, Any]:
    from phenossl.cells.segment import segment

    return {
        name: p.default
        for name, p in inspect.signature(segment).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


class SegmentWidget(Container):
    """Segment the field on screen into nuclei and cells."""

    def __init__(self, napari_viewer: Any) -> None:
        import napari

        preload_in_background()  # torch, for Embed and Train later (see _native)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        d = _defaults()
        self.layer_pickers = {
            channel: create_widget(
                annotation=napari.layers.Image,
                label=f"{channel} layer",
                options={"nullable": True},
            )
            for channel in CHANNELS
        }
        self.smooth_sigma = FloatSpinBox(
            name="smooth_sigma",
            value=d["smooth_sigma"],
            min=0,
            max=20,
            step=0.5,
            label="Smoothing (px)",
            tooltip="Gaussian sigma before thresholding; evens out chromatin texture",
        )
        self.nucleus_threshold = ComboBox(
            name="nucleus_threshold",
            value=d["nucleus_threshold"],
            choices=THRESHOLDS,
            label="Nucleus threshold",
            tooltip="Automatic threshold of the smoothed DAPI channel",
        )
        self.min_nucleus_area = SpinBox(
            name="min_nucleus_area",
            value=d["min_nucleus_area"],
            min=0,
            max=100_000,
            step=10,
            label="Min. nucleus area (px)",
            tooltip="Smaller objects are debris",
        )
        self.split_ratio = FloatSpinBox(
            name="split_ratio",
            value=d["split_ratio"],
            min=0,
            max=0.99,
            step=0.05,
            label="Split touching nuclei",
            tooltip="Touching nuclei are split where their contact drops below this fraction of "
            "the smaller one's peak (0 never splits; higher splits more)",
        )
        self.cell_threshold = ComboBox(
            name="cell_threshold",
            value=d["cell_threshold"],
            choices=THRESHOLDS,
            label="Cell threshold",
            tooltip="Automatic threshold of the mean of Tubulin and Actin",
        )
        self.max_cell_distance = FloatSpinBox(
            name="max_cell_distance",
            value=d["max_cell_distance"],
            min=1,
            max=1000,
            step=5,
            label="Max. cell radius (px)",
            tooltip="A cell extends at most this far from its nucleus",
        )
        self.max_hole_area = SpinBox(
            name="max_hole_area",
            value=d["max_hole_area"],
            min=0,
            max=100_000,
            step=50,
            label="Fill holes up to (px)",
        )
        self.cell_edge_weight = FloatSpinBox(
            name="cell_edge_weight",
            value=d["cell_edge_weight"],
            min=0,
            max=100_000,
            step=100,
            label="Edge weight",
            tooltip="0: cells are Voronoi regions of the nuclei; larger values follow "
            "intensity edges",
        )
        self.downsample = SpinBox(
            name="downsample",
            value=d["downsample"],
            min=1,
            max=8,
            label="Nucleus step scale",
            tooltip="Working resolution factor of the nucleus step (1 = full resolution)",
        )
        self.cell_downsample = SpinBox(
            name="cell_downsample",
            value=d["cell_downsample"],
            min=1,
            max=16,
            label="Cell step scale",
            tooltip="Working resolution factor of the cell step (1 = full resolution)",
        )
        self.panel = RunPanel(
            "Segment",
            "Segment field on screen",
            "Label the nuclei and cells of the field on screen",
        )
        advanced = form(
            self.max_hole_area,
            self.cell_edge_weight,
            self.downsample,
            self.cell_downsample,
        )
        super().__init__(
            labels=False,
            widgets=[
                hint(
                    "Labels the nuclei (DAPI) and the cells (grown from them on Tubulin + "
                    "Actin) of the field on screen. Embed and cluster and Train segment every "
                    "field with these settings."
                ),
                form(
                    *self.layer_pickers.values(),
                    self.smooth_sigma,
                    self.nucleus_threshold,
                    self.min_nucleus_area,
                    self.split_ratio,
                    self.cell_threshold,
                    self.max_cell_distance,
                ),
                collapsible("Advanced", advanced),
                self.panel,
            ],
        )
        pack_top(self)
        self.panel.run_button.changed.connect(self.run)
        for widget in self._parameter_widgets():
            widget.changed.connect(self._store_params)
        self._store_params()
        self.viewer.layers.events.inserted.connect(self._pick_layers)
        self.viewer.layers.events.removed.connect(self._pick_layers)
        self.reset_choices()
        self._pick_layers()

    def _parameter_widgets(self) -> list[Any]:
        return [
            self.smooth_sigma,
            self.nucleus_threshold,
            self.min_nucleus_area,
            self.split_ratio,
            self.cell_threshold,
            self.max_cell_distance,
            self.max_hole_area,
            self.cell_edge_weight,
            self.downsample,
            self.cell_downsample,
        ]

    def params(self) -> dict[str, Any]:
        """The segmentation parameters set in the widget (keyword arguments of ``segment``)."""
        return {w.name or "": w.value for w in self._parameter_widgets()}

    def _store_params(self, *_: Any) -> None:
        self.session.segment_params = self.params()

    def _pick_layers(self, *_: Any) -> None:
        """Point each picker at its channel layer when it has none."""
        self.reset_choices()
        found = channel_layers(self.viewer)
        for channel, picker in self.layer_pickers.items():
            if (
                picker.value is None or picker.value not in self.viewer.layers
            ) and channel in found:
                picker.value = found[channel]

    def run(self, *_: Any) -> None:
        """Segment the field on screen in a worker; results replace the previous labels."""
        from napari.utils.notifications import show_error

        layers = {c: p.value for c, p in self.layer_pickers.items()}
        absent = [c for c, layer in layers.items() if layer is None]
        if absent:
            show_error(
                f"Segment: choose the {', '.join(absent)} layer(s); load fields (Select fields) "
                "or open a field's TIFFs first"
            )
            return
        try:
            field = field_on_screen(self.viewer, layers.values(), self.session.fields)
        except ValueError as err:
            show_error(f"Segment: {err}")
            return
        params = self.params()
        percentiles = self.session.percentiles

        def job():
            from phenossl.cells.segment import segment
            from phenossl.data.fields import normalize_percentiles

            yield Progress(0, 3, f"reading {field.describe()}")
            raw = field_pixels(layers, field.index)
            image = normalize_percentiles(np.stack([raw[c] for c in CHANNELS]), percentiles)
            yield Progress(1, 3, "segmenting nuclei and cells")
            seg = segment(image, **params)
            yield Progress(2, 3, f"{len(seg)} cells")
            return seg

        def done(seg: Any) -> None:
            nuclei, cells = segmentation_layers(
                seg, field_index=field.index, field_id=field.field_id, params=params
            )
            show_layer(self.viewer, nuclei)
            show_layer(self.viewer, cells).contour = 2  # cells as outlines over the image
            if len(seg) == 0:
                from napari.utils.notifications import show_warning

                message = (
                    f"Segment: no cell found in {field.describe()}. Check that the DAPI layer "
                    "holds the nuclei; try another nucleus threshold or a smaller minimum nucleus "
                    "area."
                )
                show_warning(message)  # first: showing it may deliver the job's last events
                self.panel.set_status(message, error=True)
                return
            self.panel.set_status(
                f"{len(seg):,} cells in {field.describe()}. The per-cell table is the "
                "'cells' layer's features (label, centroid, areas, mean intensities)."
            )

        self.panel.start(job, done)
