"""Sample data: one click gives a plate with known treatments, loaded and ready."""

from __future__ import annotations

import json

from phenossl.data.synthetic import MANIFEST
from phenossl.napari._sample_data import SAMPLE_COMPOUND, ensure_sample_plate
from phenossl.napari._session import session_for


def test_the_sample_opens_the_nocodazole_subset(make_napari_viewer, sample_plate_env):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-phenossl", "synthetic_plate")
    assert [layer.name for layer in layers] == ["DAPI", "Tubulin", "Actin"]
    assert [layer.colormap.name for layer in layers] == ["blue", "green", "red"]
    session = session_for(viewer)
    fields = session.fields
    assert session.root == sample_plate_env and len(fields) == 8
    assert sorted(fields["compound"].unique()) == ["DMSO", SAMPLE_COMPOUND]
    assert layers[0].data.shape[0] == len(fields)
    manifest = json.loads((sample_plate_env / MANIFEST).read_text())
    assert {t["compound"] for t in manifest["treatments"]} == {
        "DMSO",
        "nocodazole",
        "taxol",
        "cytochalasin B",
    }


def test_the_sample_plate_is_written_once(sample_plate_env):
    root = ensure_sample_plate()
    stamp = (root / MANIFEST).stat().st_mtime_ns
    assert ensure_sample_plate() == root
    assert (root / MANIFEST).stat().st_mtime_ns == stamp


def test_the_whole_flow_on_the_sample_plate(make_napari_viewer, qtbot, sample_plate_env, tmp_path):
    from _helpers import run_embed, wait_for

    from phenossl.napari._widgets._common import open_widget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-phenossl", "synthetic_plate")
    segment = open_widget(viewer, "Segment")
    segment.panel.run_button.native.click()
    wait_for(qtbot, segment.panel)
    embed = run_embed(viewer, qtbot)
    export = open_widget(viewer, "Export")
    export.folder.value = tmp_path
    export.panel.run_button.native.click()
    wait_for(qtbot, export.panel)
    names = {layer.name for layer in viewer.layers}
    assert {"nuclei", "cells", "cell centres", "clusters", "gallery"} <= names
    assert embed.ami.value.startswith("AMI vs compound:")
    assert (tmp_path / "phenossl_cells.csv").is_file()
    assert (tmp_path / "phenossl_cells.json").is_file()
