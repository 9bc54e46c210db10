"""Export: the table on screen, its embeddings and the run's parameters, as files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from _helpers import open_fields, run_embed, wait_for

from phenossl.export import embedding_columns, has_parquet
from phenossl.napari._widgets._common import open_widget


def test_export_matches_what_is_on_screen(make_napari_viewer, qtbot, tiny_plate, tmp_path):
    viewer = make_napari_viewer()
    open_fields(viewer, tiny_plate, preset="nocodazole")
    export = open_widget(viewer, "Export")
    assert not export.panel.run_button.enabled  # nothing to export yet
    embed = run_embed(viewer, qtbot, seed=5)
    assert export.panel.run_button.enabled

    export.folder.value = tmp_path / "out"
    export.name_edit.value = "nocodazole_k2"
    export.panel.run_button.native.click()
    wait_for(qtbot, export.panel)

    run = embed.session.run
    points = viewer.layers["cell centres"].features
    table = pd.read_csv(tmp_path / "out" / "nocodazole_k2.csv")
    assert len(table) == len(points) == len(run.result.cells)
    np.testing.assert_array_equal(table["cluster"], points["cluster"].astype(int))
    np.testing.assert_array_equal(table["label"], points["label"])
    assert (table["field_id"] == points["field_id"]).all()
    emb = table[embedding_columns(run.result.embeddings.shape[1])].to_numpy()
    np.testing.assert_allclose(emb, run.result.embeddings, rtol=1e-6, atol=1e-6)
    params = json.loads((tmp_path / "out" / "nocodazole_k2.json").read_text())
    assert params["seed"] == 5 and params["options"]["k"] == 2
    assert params["options"]["model"] == "resnet18" and params["options"]["crop_size"] == 64
    assert params["clustering"]["ami"] == run.result.clustering.ami
    assert sorted(params["fields"]) == sorted(run.fields["field_id"])
    composition = pd.read_csv(tmp_path / "out" / "nocodazole_k2_composition.csv", index_col=0)
    assert composition.to_numpy().sum() == len(table)
    assert (tmp_path / "out" / "nocodazole_k2_gallery.png").stat().st_size > 0
    assert (tmp_path / "out" / "nocodazole_k2.parquet").is_file() == has_parquet()
    assert export.panel.status.value.startswith("Wrote nocodazole_k2.csv")


def test_export_without_a_run_is_a_notification(make_napari_viewer, notifications):
    viewer = make_napari_viewer()
    export = open_widget(viewer, "Export")
    export.run()
    errors = [text for severity, text in notifications if severity == "error"]
    assert errors[-1] == "Export: nothing to export yet; run 'Embed and cluster' first"
