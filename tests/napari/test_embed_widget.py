"""Embed and cluster, end to end on a small plate: layers, scores, screenshot, errors, cancel."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _helpers import fast_embed, open_fields, run_embed, wait_for

from phenossl.napari._layers import cluster_colors
from phenossl.napari._widgets._common import open_widget


def test_embed_and_cluster_every_loaded_field(make_napari_viewer, qtbot, tiny_plate, monkeypatch):
    from phenossl.napari._widgets import _embed

    segmented_again = []  # the run keeps the on-screen field's labels: no second segmentation
    original = _embed.segment_again
    monkeypatch.setattr(
        _embed, "segment_again", lambda *a, **k: segmented_again.append(a) or original(*a, **k)
    )
    viewer = make_napari_viewer(show=True)
    fields = open_fields(viewer, tiny_plate, preset="nocodazole").session.fields
    viewer.dims.set_point(0, 2)
    widget = run_embed(viewer, qtbot)
    run = widget.session.run
    assert segmented_again == []
    assert run is not None and run.result.clustering is not None
    cells = run.result.cells
    assert set(cells["field_id"]) == set(fields["field_id"])  # not only the field on screen

    points = viewer.layers["cell centres"]
    features = points.features
    assert len(points.data) == len(cells)
    assert {"label", "field_id", "compound", "concentration", "treatment", "pc1"} <= set(features)
    assert isinstance(features["cluster"].dtype, pd.CategoricalDtype)
    np.testing.assert_array_equal(features["cluster"].to_numpy(), run.result.clustering.assignments)
    index = {f: i for i, f in enumerate(fields["field_id"])}
    np.testing.assert_array_equal(points.data[:, 0], cells["field_id"].map(index))

    clusters = viewer.layers["clusters"]
    assert clusters.metadata["phenossl"]["field_id"] == fields.loc[2, "field_id"]
    assert tuple(clusters.translate) == (2.0, 0.0, 0.0)
    np.testing.assert_array_equal(clusters.data[0], run.result.labels[fields.loc[2, "field_id"]])
    mine = cells["field_id"] == fields.loc[2, "field_id"]
    colors = cluster_colors(2)
    labels = cells.loc[mine, "label"].to_numpy()
    rgba = clusters.colormap.map(labels)
    np.testing.assert_allclose(rgba, colors[run.result.clustering.assignments[mine.to_numpy()]])

    gallery = viewer.layers["gallery"]
    assert gallery.rgb and gallery.data.shape[0] == 2 * 64 + 3 * 4  # two rows of 64 px crops
    assert gallery.translate[-1] > viewer.layers["DAPI"].data.shape[-1]  # beside the field

    clustering = run.result.clustering
    assert widget.ami.value == f"AMI vs compound: {clustering.ami:.3f}"
    assert widget.control.value.startswith(
        f"randomised compound labels: {clustering.ami_control_mean:.3f}"
    )
    shown = widget.composition.to_dataframe()
    assert shown.shape == (2, 3) and list(shown.columns) == ["DMSO", "nocodazole", "total"]
    assert shown["total"].sum() == len(cells)
    assert widget.summary.value.startswith(f"{len(cells)} cells from 8 field(s)")
    assert run.params["seed"] == 0 and run.params["options"]["k"] == 2

    _screenshot_shows_the_cluster_colours(viewer, run)

    viewer.dims.set_point(0, 6)  # the cluster colours follow the field on screen
    qtbot.waitUntil(
        lambda: (
            viewer.layers["clusters"].metadata["phenossl"]["field_id"] == fields.loc[6, "field_id"]
        ),
        timeout=30000,
    )
    assert tuple(viewer.layers["clusters"].translate) == (6.0, 0.0, 0.0)


def _screenshot_shows_the_cluster_colours(viewer, run) -> None:
    layer = viewer.layers["clusters"]
    cells = run.result.cells
    on_field = cells["field_id"] == layer.metadata["phenossl"]["field_id"]
    present = set(run.result.clustering.assignments[on_field.to_numpy()])
    assert present
    visible = {other.name: other.visible for other in viewer.layers}
    for other in viewer.layers:  # only the cells coloured by cluster, opaque
        other.visible = other is layer
    opacity, layer.opacity = layer.opacity, 1.0
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    pixels = shot.reshape(-1, 3)
    for cluster, color in enumerate((cluster_colors(2)[:, :3] * 255).round().astype(int)):
        n = int((np.abs(pixels - color).max(axis=1) <= 3).sum())
        if cluster in present:
            assert n > 100, f"cluster {cluster}'s colour {color} is not on the canvas"
        else:
            assert n == 0
    layer.opacity = opacity
    for other in viewer.layers:
        other.visible = visible[other.name]


def test_k_larger_than_the_cells_keeps_the_points(
    make_napari_viewer, qtbot, tiny_plate, notifications
):
    viewer = make_napari_viewer()
    fields = open_fields(viewer, tiny_plate, preset="nocodazole")
    fields.compound.value = "nocodazole"
    fields.concentration.value = 3.0
    fields.include_dmso.value = False
    fields.load()  # one field
    widget = run_embed(viewer, qtbot, k=100)
    errors = [text for severity, text in notifications if severity == "error"]
    assert "K=100 is larger than the number of cells" in errors[-1]
    assert "cell centres" in viewer.layers  # the cells are kept, without clusters
    assert "cluster" not in viewer.layers["cell centres"].features
    assert widget.session.run is None and "failed" in widget.panel.status.value


def test_a_checkpoint_of_another_architecture(
    make_napari_viewer, qtbot, tiny_plate, tmp_path, notifications
):
    import torch

    from phenossl.models.backbones import build_backbone
    from phenossl.models.checkpoint import save_checkpoint

    resnet = build_backbone("resnet18")
    path = save_checkpoint(
        tmp_path / "other.pt",
        backbone=resnet.body,  # resnet18 weights ...
        metadata={"backbone": "vgg11_bn", "in_channels": 3, "cifar_stem": False},  # ... said VGG
    )
    assert torch.load(path, weights_only=True)["metadata"]["backbone"] == "vgg11_bn"
    viewer = make_napari_viewer()
    open_fields(viewer, tiny_plate, preset="nocodazole")
    widget = open_widget(viewer, "Embed and cluster")
    fast_embed(widget)
    widget.use_checkpoint(path)
    assert widget.source.value == "checkpoint" and widget.backbone.native.isHidden()
    assert not widget.checkpoint.native.isHidden()
    widget.run()
    wait_for(qtbot, widget.panel)
    errors = [text for severity, text in notifications if severity == "error"]
    assert "do not match the architecture 'vgg11_bn'" in errors[-1]
    assert "cell centres" not in viewer.layers and len(viewer.layers) == 3
    viewer.dims.set_point(0, 3)  # still usable


def test_fields_whose_files_vanished_are_reported(
    make_napari_viewer, qtbot, tmp_path, notifications
):
    from _plates import write_tiny_plate

    root = write_tiny_plate(tmp_path / "plate", compounds=("DMSO",))
    viewer = make_napari_viewer()
    fields = open_fields(viewer, root).session.fields
    for path in fields["dapi"]:
        (tmp_path / path).unlink()  # removed after loading
    run_embed(viewer, qtbot)
    errors = [text for severity, text in notifications if severity == "error"]
    assert "no cells were found in the 1 field(s); 1 failed" in errors[-1]
    assert "image file not found" in errors[-1]


def test_cancel_mid_run_leaves_the_viewer_usable(
    make_napari_viewer, qtbot, tiny_plate, notifications
):
    viewer = make_napari_viewer()
    open_fields(viewer, tiny_plate, preset="nocodazole")
    segment = open_widget(viewer, "Segment")
    segment.panel.run_button.native.click()
    wait_for(qtbot, segment.panel)
    widget = open_widget(viewer, "Embed and cluster")
    fast_embed(widget)
    widget.panel.run_button.native.click()
    seen = []
    widget.panel.worker.yielded.connect(seen.append)
    qtbot.waitUntil(lambda: len(seen) >= 2, timeout=60000)  # started on the fields
    assert widget.panel.cancel_button.enabled and not widget.panel.run_button.enabled
    widget.panel.cancel_button.native.click()
    wait_for(qtbot, widget.panel)
    infos = [text for severity, text in notifications if severity == "info"]
    assert "Embed and cluster cancelled; the layers made so far are kept." in infos
    assert widget.session.run is None and "cell centres" not in viewer.layers
    assert {"nuclei", "cells"} <= {layer.name for layer in viewer.layers}  # kept
    assert widget.panel.run_button.enabled and not widget.panel.cancel_button.enabled
    segment.panel.run_button.native.click()  # the viewer still works
    wait_for(qtbot, segment.panel)
    assert segment.panel.status.value.endswith("mean intensities).")


def test_another_label_column_and_k(make_napari_viewer, qtbot, tiny_plate):
    viewer = make_napari_viewer()
    open_fields(viewer, tiny_plate, preset="nocodazole")
    widget = run_embed(viewer, qtbot, label_column="concentration", k=3)
    assert widget.ami.value.startswith("AMI vs concentration:")
    shown = widget.composition.to_dataframe()
    assert list(shown.columns) == ["0 µM", "0.1 µM", "0.3 µM", "1 µM", "3 µM", "total"]
    assert list(shown.index) == ["cluster 0", "cluster 1", "cluster 2"]
    assert len(viewer.layers["gallery"].data) == 3 * 64 + 4 * 4


def test_a_label_with_one_value_gives_no_ami_number(make_napari_viewer, qtbot, tiny_plate):
    viewer = make_napari_viewer()
    open_fields(viewer, tiny_plate, preset="nocodazole")
    widget = run_embed(viewer, qtbot, label_column="plate")  # the tiny plate is one plate
    (plate,) = widget.session.run.result.cells["plate"].unique()
    assert widget.ami.value == f"AMI vs plate: undefined (every cell has plate {plate})"
    assert "needs at least two plate values" in widget.control.value


def test_a_field_opened_from_its_tiffs_is_embedded(make_napari_viewer, qtbot, tiny_plate):
    from phenossl.data.bbbc021 import load_image_table

    row = load_image_table(tiny_plate).iloc[0]
    viewer = make_napari_viewer()
    viewer.open([row["dapi"], row["tubulin"], row["actin"]], plugin="napari-phenossl")
    widget = run_embed(viewer, qtbot)
    run = widget.session.run
    assert list(run.fields["field_id"]) == [row["field_id"]]
    assert set(run.result.cells["field_id"]) == {row["field_id"]}
    points = viewer.layers["cell centres"]
    assert points.data.shape == (len(run.result.cells), 2)  # a 2-D field: (y, x)
    assert viewer.layers["clusters"].data.shape == viewer.layers["DAPI [B02/s1]"].data.shape


def test_imagenet_weights_come_from_the_local_cache_only(
    make_napari_viewer, qtbot, tiny_plate, tmp_path, monkeypatch, notifications
):
    from phenossl.models.backbones import imagenet_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    viewer = make_napari_viewer()
    open_fields(viewer, tiny_plate, preset="nocodazole")
    widget = open_widget(viewer, "Embed and cluster")
    fast_embed(widget)
    widget.weights.value = "imagenet"
    path, url = imagenet_weights_path("resnet18")
    assert str(path) in widget.model_note.value and not widget.model_note.native.isHidden()
    widget.panel.run_button.native.click()
    wait_for(qtbot, widget.panel)
    errors = [text for severity, text in notifications if severity == "error"]
    assert "ImageNet weights for 'resnet18' not found" in errors[-1] and url in errors[-1]
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # the note only looks for the file
    widget.backbone.value = "vgg13_bn"
    widget.backbone.value = "resnet18"
    assert widget.model_note.value == "" and widget.model_note.native.isHidden()


def test_the_shipped_model_is_the_default_and_has_no_weights_choice(make_napari_viewer):
    from phenossl.models.pretrained import DEFAULT_MODEL

    viewer = make_napari_viewer()
    widget = open_widget(viewer, "Embed and cluster")
    assert widget.backbone.value == DEFAULT_MODEL
    # its own trained weights: no 'random init' / 'ImageNet' choice shown, none applied
    assert widget.weights.native.isHidden()
    widget.weights.value = "imagenet"  # left over from a torchvision backbone
    assert widget.options().weights is None
    assert widget.model_label() == f"{DEFAULT_MODEL} (shipped model)"
    widget.backbone.value = "resnet18"
    assert not widget.weights.native.isHidden()
    assert widget.options().weights == "imagenet"
    assert widget.model_label() == "resnet18 (ImageNet)"


def test_the_embedding_normalisation_is_the_models_unless_chosen(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = open_widget(viewer, "Embed and cluster")
    assert widget.options().normalize == "auto"  # phenossl-cells: its recorded l2
    widget.normalize.value = "l2"
    assert widget.options().normalize == "l2"
    widget.normalize.value = "none"
    assert widget.options().normalize == "none"
