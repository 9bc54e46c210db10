"""Select fields: filters, the paper's subsets, loading a stack, browsing it; bad folders."""

from __future__ import annotations

import numpy as np
from _helpers import open_fields

from phenossl.data.bbbc021 import load_image_table
from phenossl.data.fields import read_channel


def test_filters_and_paper_subset_select_the_right_fields(make_napari_viewer, tiny_plate):
    viewer = make_napari_viewer()
    widget = open_fields(viewer, tiny_plate, load=False)
    assert len(widget.selection()) == 8
    widget.compound.value = "nocodazole"
    assert set(widget.selection()["compound"]) == {"nocodazole"}
    widget.concentration.value = 0.3
    assert widget.selection()["concentration"].tolist() == [0.3]
    widget.include_dmso.value = True
    assert sorted(widget.selection()["compound"].unique()) == ["DMSO", "nocodazole"]
    widget.apply_preset("nocodazole")
    picked = widget.selection()
    assert widget.compound.value == "nocodazole" and widget.include_dmso.value
    assert sorted(picked.loc[picked.compound == "nocodazole", "concentration"]) == [0.1, 0.3, 1, 3]
    assert (picked.compound == "DMSO").sum() == 4
    assert widget.count.value == "8 fields selected: 5 treatments on 1 plate; 8 with files."
    assert widget.table.shape[0] == 8
    widget.concentration.value = 1.0  # a manual change leaves the preset
    assert widget.preset.value == ""


def test_choices_survive_layer_changes(make_napari_viewer, tiny_plate):
    viewer = make_napari_viewer()
    widget = open_fields(viewer, tiny_plate, preset="nocodazole")
    viewer.add_image(np.zeros((5, 5)))  # napari resets the choices of every dock widget
    assert widget.preset.value == "nocodazole" and widget.compound.value == "nocodazole"
    assert widget.concentration.value == "top"


def test_loading_shows_a_lazy_stack_and_the_browser_follows_it(make_napari_viewer, tiny_plate):
    viewer = make_napari_viewer()
    widget = open_fields(viewer, tiny_plate, preset="nocodazole")
    names = [layer.name for layer in viewer.layers]
    assert names == ["DAPI", "Tubulin", "Actin"]
    table = load_image_table(tiny_plate)
    dapi = viewer.layers["DAPI"]
    assert dapi.data.shape[0] == 8 and viewer.dims.axis_labels[0] == "field"
    fields = widget.session.fields
    np.testing.assert_array_equal(np.asarray(dapi.data[5]), read_channel(fields.loc[5, "dapi"]))
    assert set(fields["field_id"]) <= set(table["field_id"])
    widget._on_row_clicked(6, 0)  # clicking a row of the table shows that field
    assert viewer.dims.point[0] == 6
    assert widget.on_screen.value.startswith(
        f"On screen: field 7 of 8: {fields.loc[6, 'field_id']}"
    )
    widget.apply_preset("nocodazole")
    widget.compound.value = "DMSO"
    widget.load()  # a new selection replaces the stack
    assert viewer.layers["DAPI"].data.shape[0] == 4 and len(viewer.layers) == 3


def test_a_wrong_folder_is_a_notification(make_napari_viewer, tmp_path, notifications):
    from phenossl.napari._widgets._common import open_widget

    viewer = make_napari_viewer()
    widget = open_widget(viewer, "Select fields")
    assert not widget.open_root(tmp_path)
    errors = [text for severity, text in notifications if severity == "error"]
    assert "BBBC021 image table not found: expected BBBC021_v1_image.csv" in errors[-1]
    assert "Could not open the field table" in widget.summary.value
    assert not widget.load_button.enabled


def test_fields_with_missing_files_are_not_loaded(make_napari_viewer, tmp_path, notifications):
    import shutil

    from _plates import write_tiny_plate

    root = write_tiny_plate(tmp_path / "plate")
    table = load_image_table(root)
    for path in table["actin"]:
        (root / path).unlink() if (root / path).exists() else None
    shutil.rmtree(root / "ground_truth", ignore_errors=True)
    viewer = make_napari_viewer()
    widget = open_fields(viewer, root, load=False)
    assert widget.count.value == "No field matches the selection."
    widget.only_existing.value = False
    assert widget.count.value.endswith("0 with files.")
    assert not widget.load_button.enabled
    widget.load()
    errors = [text for severity, text in notifications if severity == "error"]
    assert "none of the 8 selected fields has its three files on disk" in errors[-1]
    assert len(viewer.layers) == 0


def test_a_typed_folder_opens_when_the_typing_pauses(
    make_napari_viewer, qtbot, tiny_plate, notifications
):
    from phenossl.napari._widgets._common import open_widget

    viewer = make_napari_viewer()
    widget = open_widget(viewer, "Select fields")
    text = str(tiny_plate)
    for end in range(1, len(text) + 1):  # letter by letter, as typed
        widget.root.line_edit.value = text[:end]
    assert widget.session.table is None  # nothing opened while typing
    qtbot.waitUntil(lambda: widget.session.table is not None, timeout=5000)
    assert widget.session.root == tiny_plate
    assert not [text for severity, text in notifications if severity == "error"]


def test_reloading_fields_in_a_shown_viewer_repeatedly(make_napari_viewer, qtbot, tiny_plate):
    # removing the selected channel layers of a drawn viewer used to repaint mid-removal and
    # crash Mesa's software OpenGL (segfault); the layers are now unselected first
    viewer = make_napari_viewer(show=True)
    fields = open_fields(viewer, tiny_plate, preset="nocodazole")
    for _ in range(3):
        qtbot.wait(100)  # drawn
        fields.compound.value = "DMSO"
        fields.load()
        qtbot.wait(100)
        fields.apply_preset("nocodazole")
        fields.load()
    channels = [layer.name for layer in viewer.layers]
    assert channels == ["DAPI", "Tubulin", "Actin"]


def test_select_fields_starts_importing_torch_off_the_gui_thread(make_napari_viewer, tiny_plate):
    import sys

    from phenossl.napari import _preload

    viewer = make_napari_viewer()
    open_fields(viewer, tiny_plate, load=False)
    thread = _preload.preload_in_background()  # the one the widget started: once per process
    assert thread.name == "phenossl-preload" and thread.daemon
    assert _preload.preload_in_background() is thread
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert {"torchvision.models", "phenossl.embedding", "phenossl.training.train.trainer"} <= set(
        sys.modules
    )
