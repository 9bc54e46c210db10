"""A biologist's own data: image layers on screen, and a plate folder in another layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import tifffile
from _helpers import run_embed, wait_for
from _plates_layout import write_phenix_plate

from phenossl.data.bbbc021 import load_image_table
from phenossl.napari._widgets._common import open_widget


def _own_layers(viewer, plate):
    """Four fields of the tiny plate as a user has them: 4 channel layers of their own names."""
    table = load_image_table(plate).iloc[[0, 1, 4, 5]]
    stacks = {
        key: np.stack([tifffile.imread(p) for p in table[key]])
        for key in ("dapi", "tubulin", "actin")
    }
    viewer.add_image(stacks["dapi"], name="Hoechst")
    viewer.add_image(stacks["tubulin"], name="anti-tubulin")
    viewer.add_image(stacks["actin"], name="phalloidin")
    viewer.add_image(np.zeros_like(stacks["dapi"]), name="GFP reporter")  # a 4th channel, unused
    return table


def test_own_layers_segment_embed_train_embed(make_napari_viewer, qtbot, tiny_plate, tmp_path):
    viewer = make_napari_viewer(show=True)
    original = _own_layers(viewer, tiny_plate)
    fields = open_widget(viewer, "Select fields")
    panel = fields.layers_panel
    panel.combos["DAPI"].value = "Hoechst"
    panel.combos["Tubulin"].value = "anti-tubulin"
    panel.combos["Actin"].value = "phalloidin"
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"field": [1, 2, 3, 4], "compound": original["compound"].tolist()}).to_csv(
        labels, index=False
    )
    panel.label_table.value = labels
    panel.panel.run_button.native.click()
    wait_for(qtbot, panel.panel)
    loaded = fields.session.fields
    assert len(loaded) == 4 and loaded["compound"].tolist() == original["compound"].tolist()
    assert "GFP reporter" in viewer.layers and len(viewer.layers) == 4  # nothing removed

    viewer.dims.set_point(0, 2)
    segment = open_widget(viewer, "Segment")
    assert segment.layer_pickers["DAPI"].value.name == "Hoechst"
    segment.run()
    wait_for(qtbot, segment.panel)
    assert tuple(viewer.layers["cells"].translate) == (2.0, 0.0, 0.0)

    embed = run_embed(viewer, qtbot)
    run = embed.session.run
    assert run is not None, embed.panel.status.value
    assert set(run.result.cells["field_id"]) <= set(loaded["field_id"])
    assert "clusters" in viewer.layers and "gallery" in viewer.layers

    from test_train_widget import _fast_train

    train = open_widget(viewer, "Train")
    _fast_train(train, tmp_path / "runs")
    train.batch_size.value = 16
    train.panel.run_button.native.click()
    wait_for(qtbot, train.panel, timeout=300)
    assert train.session.checkpoints, train.panel.status.value
    embed = open_widget(viewer, "Embed and cluster")
    assert embed.source.value == "checkpoint"
    embed.device.value = "cpu"
    embed.panel.run_button.native.click()
    wait_for(qtbot, embed.panel)
    assert embed.session.run.model_label.startswith("checkpoint")


def test_labels_are_optional(make_napari_viewer, qtbot, tiny_plate):
    viewer = make_napari_viewer()
    _own_layers(viewer, tiny_plate)
    fields = open_widget(viewer, "Select fields")
    panel = fields.layers_panel
    panel.combos["DAPI"].value = "Hoechst"  # Tubulin and Actin left black
    panel.panel.run_button.native.click()
    wait_for(qtbot, panel.panel)
    assert set(fields.session.fields["treatment"]) == {"unknown"}
    assert viewer.layers["Hoechst"].metadata["phenossl"]["channel"] == "DAPI"


def test_a_phenix_plate_in_select_fields(make_napari_viewer, tiny_plate, tmp_path):
    root, meta = write_phenix_plate(tiny_plate, tmp_path / "Screen1")
    viewer = make_napari_viewer()
    widget = open_widget(viewer, "Select fields")
    widget.plate_panel.metadata.value = meta
    assert widget.open_root(root)  # layout detected: Harmony names
    assert widget.summary.value.startswith("8 fields, 1 plate, 2 compounds")
    widget.apply_preset("nocodazole")
    widget.load()
    loaded = widget.session.fields
    assert len(loaded) == 8 and loaded["plate"].unique().tolist() == ["Screen1"]
    assert viewer.layers["DAPI"].data.shape[0] == 8
    # and dropping the folder on napari opens it there too
    viewer.open(str(root), plugin="napari-phenossl")


def test_a_segmentation_without_cells_is_a_warning(make_napari_viewer, qtbot, notifications):
    viewer = make_napari_viewer()
    for name in ("DAPI", "Tubulin", "Actin"):
        viewer.add_image(np.zeros((64, 64), np.uint16), name=name)
    segment = open_widget(viewer, "Segment")
    segment.run()
    wait_for(qtbot, segment.panel)
    assert "no cell found" in segment.panel.status.value
    assert any(sev == "warning" and "no cell found" in text for sev, text in notifications)
