"""Segment: nuclei and cells of the field on screen as labels layers, with a per-cell table.

The parameters are those of :func:`phenossl.cells.segment.segment`; "Embed and cluster" and
"Train" segment every field with the values set here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, SpinBox, create_widget

from phenossl._progress import Progress
from phenossl.napari._layers import CHANNELS, segmentation_layers
from phenossl.napari._preload import preload_in_background
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


@dataclass(frozen=True)
class _Param:
    """How one keyword of ``segment()`` shows in the form (its default and type come from there)."""

    label: str
    tooltip: str = ""
    low: float = 0
    high: float = 100_000
    step: float | None = None
    advanced: bool = False


# the order of the form; numbers are bounds and steps of the spin boxes
PARAMS: dict[str, _Param] = {
    "smooth_sigma": _Param(
        "Smoothing (px)", "Gaussian sigma before thresholding; evens out chromatin texture",
        high=20, step=0.5,
    ),
    "nucleus_threshold": _Param(
        "Nucleus threshold", "Automatic threshold of the smoothed DAPI channel"
    ),
    "min_nucleus_area": _Param("Min. nucleus area (px)", "Smaller objects are debris", step=10),
    "split_ratio": _Param(
        "Split touching nuclei",
        "Touching nuclei are split where their contact drops below this fraction of the "
        "smaller one's peak (0 never splits; higher splits more)",
        high=0.99, step=0.05,
    ),
    "cell_threshold": _Param("Cell threshold", "Automatic threshold of the mean of Tubulin and Actin"),
    "max_cell_distance": _Param(
        "Max. cell radius (px)", "A cell extends at most this far from its nucleus",
        low=1, high=1000, step=5,
    ),
    "max_hole_area": _Param("Fill holes up to (px)", step=50, advanced=True),
    "cell_edge_weight": _Param(
        "Edge weight",
        "0: cells are Voronoi regions of the nuclei; larger values follow intensity edges",
        step=100, advanced=True,
    ),
    "downsample": _Param(
        "Nucleus step scale",
        "Working resolution factor of the nucleus step (1 = full resolution)",
        low=1, high=8, advanced=True,
    ),
    "cell_downsample": _Param(
        "Cell step scale",
        "Working resolution factor of the cell step (1 = full resolution)",
        low=1, high=16, advanced=True,
    ),
}  # fmt: skip


def parameter_widgets() -> dict[str, Any]:
    """One widget per :data:`PARAMS` entry, typed and set by ``segment()``'s defaults.

    A string default is a threshold method (a choice of :data:`THRESHOLDS`), an int a
    SpinBox, a float a FloatSpinBox.
    """
    from phenossl.cells.segment import segment

    signature = inspect.signature(segment).parameters
    widgets = {}
    for name, spec in PARAMS.items():
        default = signature[name].default
        common = {"name": name, "value": default, "label": spec.label, "tooltip": spec.tooltip}
        if isinstance(default, str):
            widgets[name] = ComboBox(choices=THRESHOLDS, **common)
            continue
        kind = SpinBox if isinstance(default, int) else FloatSpinBox
        steps = {} if spec.step is None else {"step": spec.step}
        widgets[name] = kind(min=spec.low, max=spec.high, **steps, **common)
    return widgets


class SegmentWidget(Container):
    """Segment the field on screen into nuclei and cells."""

    def __init__(self, napari_viewer: Any) -> None:
        import napari

        preload_in_background()  # torch, for Embed and Train later (see _preload)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.layer_pickers = {
            channel: create_widget(
                annotation=napari.layers.Image,
                label=f"{channel} layer",
                options={"nullable": True},
            )
            for channel in CHANNELS
        }
        self.parameters = parameter_widgets()
        for name, widget in self.parameters.items():  # self.smooth_sigma, ...
            setattr(self, name, widget)
        self.panel = RunPanel(
            "Segment",
            "Segment field on screen",
            "Label the nuclei and cells of the field on screen",
        )
        basic = [w for n, w in self.parameters.items() if not PARAMS[n].advanced]
        advanced = form(*(w for n, w in self.parameters.items() if PARAMS[n].advanced))
        super().__init__(
            labels=False,
            widgets=[
                hint(
                    "Labels the nuclei (DAPI) and the cells (grown from them on Tubulin + "
                    "Actin) of the field on screen. Embed and cluster and Train segment every "
                    "field with these settings."
                ),
                form(*self.layer_pickers.values(), *basic),
                collapsible("Advanced", advanced),
                self.panel,
            ],
        )
        pack_top(self)
        self.panel.run_button.changed.connect(self.run)
        for widget in self.parameters.values():
            widget.changed.connect(self._store_params)
        self._store_params()
        self.viewer.layers.events.inserted.connect(self._pick_layers)
        self.viewer.layers.events.removed.connect(self._pick_layers)
        self.reset_choices()
        self._pick_layers()

    def params(self) -> dict[str, Any]:
        """The segmentation parameters set in the widget (keyword arguments of ``segment``)."""
        return {name: widget.value for name, widget in self.parameters.items()}

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
