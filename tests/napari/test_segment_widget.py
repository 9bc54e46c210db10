"""Segment: labels layers on the field on screen, parameters, per-cell features."""

from __future__ import annotations

import numpy as np
from _helpers import open_fields, wait_for

from phenossl.cells.segment import segment
from phenossl.data.fields import read_field
from phenossl.napari._widgets._common import open_widget


def test_segment_the_field_on_screen(make_napari_viewer, qtbot, tiny_plate):
    viewer = make_napari_viewer()
    fields = open_fields(viewer, tiny_plate, preset="nocodazole").session.fields
    viewer.dims.set_point(0, 5)
    widget = open_widget(viewer, "Segment")
    assert {c: p.value.name for c, p in widget.layer_pickers.items()} == {
        "DAPI": "DAPI",
        "Tubulin": "Tubulin",
        "Actin": "Actin",
    }
    widget.run()
    wait_for(qtbot, widget.panel)
    nuclei, cells = viewer.layers["nuclei"], viewer.layers["cells"]
    expected = segment(read_field(fields.iloc[5]))  # what the pipeline computes for it
    assert cells.data.shape == (1, *expected.cells.shape)
    np.testing.assert_array_equal(cells.data[0], expected.cells)
    np.testing.assert_array_equal(nuclei.data[0], expected.nuclei)
    assert tuple(cells.translate) == (5.0, 0.0, 0.0)  # shown on its field only
    features = cells.features
    assert len(features) == len(expected.table) > 5
    assert {"label", "centroid_y", "nucleus_area", "cell_area", "actin_mean"} <= set(features)
    assert widget.panel.status.value.startswith(f"{len(expected.table)} cells in")
    assert widget.panel.bar.value == widget.panel.bar.max == 3


def test_parameters_change_the_result_and_reach_the_session(make_napari_viewer, qtbot, tiny_plate):
    viewer = make_napari_viewer()
    open_fields(viewer, tiny_plate, preset="nocodazole")
    widget = open_widget(viewer, "Segment")
    widget.run()
    wait_for(qtbot, widget.panel)
    before = len(viewer.layers["cells"].features)
    widget.min_nucleus_area.value = 600  # drop the small nuclei
    assert widget.session.segment_params["min_nucleus_area"] == 600
    widget.run()
    wait_for(qtbot, widget.panel)
    assert 0 < len(viewer.layers["cells"].features) < before
    assert [layer.name for layer in viewer.layers].count("cells") == 1  # replaced, not added


def test_segment_without_images_is_a_notification(make_napari_viewer, notifications):
    viewer = make_napari_viewer()
    widget = open_widget(viewer, "Segment")
    widget.run()
    errors = [text for severity, text in notifications if severity == "error"]
    assert errors and "choose the DAPI, Tubulin, Actin layer(s)" in errors[-1]
    assert not widget.panel.running
