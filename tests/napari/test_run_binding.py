"""Results stay bound to the fields they were computed on (the selection race)."""

from __future__ import annotations

from _helpers import fast_embed, open_fields, run_embed, wait_for

from phenossl.napari._widgets._common import open_widget


def test_loading_other_fields_during_a_run_cancels_it(
    make_napari_viewer, qtbot, tiny_plate, notifications
):
    viewer = make_napari_viewer(show=True)
    fields = open_fields(viewer, tiny_plate, preset="nocodazole")
    embed = open_widget(viewer, "Embed and cluster")
    fast_embed(embed)
    embed.panel.run_button.native.click()
    assert embed.panel.running
    # while it runs, the user loads another selection (the DMSO fields only)
    fields.compound.value = "DMSO"
    fields.load()
    dmso = fields.session.fields
    assert set(dmso["compound"]) == {"DMSO"}
    wait_for(qtbot, embed.panel)
    qtbot.wait(100)
    # nothing of the nocodazole run lands on the DMSO stack
    assert embed.session.run is None
    assert not {"cell centres", "clusters", "gallery"} & {layer.name for layer in viewer.layers}
    assert "other fields were loaded" in embed.panel.status.value
    assert any("other fields were loaded" in text for _, text in notifications)
    export = open_widget(viewer, "Export")
    assert not export.panel.run_button.enabled

    # a run on the new fields works and is exportable
    embed.panel.run_button.native.click()
    wait_for(qtbot, embed.panel)
    run = embed.session.run
    assert run is not None and set(run.result.cells["field_id"]) <= set(dmso["field_id"])
    assert run.selection == embed.session.selection
    assert export.panel.run_button.enabled


def test_export_refuses_a_run_of_other_fields(make_napari_viewer, qtbot, tiny_plate, tmp_path):
    viewer = make_napari_viewer(show=True)
    fields = open_fields(viewer, tiny_plate, preset="nocodazole")
    run_embed(viewer, qtbot)
    export = open_widget(viewer, "Export")
    export.folder.value = tmp_path
    assert export.panel.run_button.enabled
    # other fields arrive by a path that does not clear the run (the session's own API)
    session = fields.session
    session.set_fields(session.fields.iloc[:3])
    assert not export.panel.run_button.enabled
    assert export.run() is None
    assert "other fields" in export.info.value
    assert not list(tmp_path.iterdir())
