"""Treatment similarity: the run on screen as DMSO-normalised treatment profiles and a heatmap."""

from __future__ import annotations

from _helpers import open_fields, run_embed, wait_for

from phenossl.napari._widgets._common import open_widget


def test_profiles_follow_the_run_on_screen(make_napari_viewer, qtbot, tiny_plate, tmp_path):
    viewer = make_napari_viewer()
    open_fields(viewer, tiny_plate, preset="nocodazole")
    profiles = open_widget(viewer, "Treatment similarity")
    assert profiles.canvas is None and "Embed and cluster" in profiles.info.value
    embed = run_embed(viewer, qtbot)

    run = embed.session.run
    scores = profiles.scores
    assert scores is not None and profiles.canvas is not None
    treatments = set(run.result.cells["treatment"])
    assert set(scores.treatment_meta["treatment"]) == treatments and "DMSO@0" in treatments
    assert (
        f"{len(treatments)} treatments from {len(run.result.cells):,} cells" in profiles.info.value
    )

    export = open_widget(viewer, "Export")
    export.folder.value = tmp_path / "out"
    export.name_edit.value = "run"
    export.panel.run_button.native.click()
    wait_for(qtbot, export.panel)
    assert (tmp_path / "out" / "run_profiles.csv").stat().st_size > 0

    embed.session.set_run(None)
    assert profiles.canvas is None and profiles.scores is None
