from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from _plates import TINY_CROP, write_tiny_plate

from phenossl._progress import run
from phenossl.data.bbbc021 import load_image_table
from phenossl.data.cropset import CropSet
from phenossl.pipeline import (
    FieldFailure,
    PipelineOptions,
    PipelineResult,
    iter_make_cropset,
    iter_pipeline,
    run_pipeline,
)

FAST = PipelineOptions(
    model="resnet18", crop_size=TINY_CROP, input_size=32, batch_size=32, label_column="compound"
)


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    return write_tiny_plate(tmp_path_factory.mktemp("plate") / "plate")


@pytest.fixture(scope="module")
def table(plate):
    return load_image_table(plate)


def test_pipeline_embeds_every_cell_and_scores_clusters(table):
    events = []
    result = run_pipeline(table, FAST, progress=events.append)
    assert len(result.cells) > 50
    assert result.embeddings.shape == (len(result.cells), 512)
    assert np.isfinite(result.embeddings).all()
    assert set(result.cells["compound"]) == {"DMSO", "nocodazole"}
    assert result.cells["cluster"].between(0, 1).all()
    assert 0.0 <= result.clustering.ami <= 1.0
    assert result.clustering.ami_control_mean is not None
    assert result.failures == [] and result.missing == []
    assert events[0].done == 0 and events[-1].done == events[-1].total == len(table)
    summary = result.summary()
    assert summary["fields_processed"] == len(table)
    assert summary["cells"] == len(result.cells)


def test_pipeline_normalises_embeddings_as_asked(table):
    raw = run_pipeline(table.head(2), PipelineOptions(**{**FAST.__dict__, "k": None}))
    unit = run_pipeline(
        table.head(2), PipelineOptions(**{**FAST.__dict__, "k": None, "normalize": "l2"})
    )
    expected = raw.embeddings / np.linalg.norm(raw.embeddings, axis=1, keepdims=True)
    np.testing.assert_allclose(unit.embeddings, expected, rtol=1e-4, atol=1e-6)


def test_pipeline_goes_on_past_broken_and_missing_fields(table, tmp_path):
    broken = table.copy()
    # a truncated TIFF in the first field, a missing file in the second
    bad = tmp_path / "truncated.tif"
    data = Path(broken.loc[0, "dapi"]).read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    broken.loc[0, "dapi"] = str(bad)
    broken.loc[1, "exists"] = False
    result = run_pipeline(broken, FAST)
    assert [f.field_id for f in result.failures] == [broken.loc[0, "field_id"]]
    assert "truncated.tif" in result.failures[0].error
    assert result.missing == [broken.loc[1, "field_id"]]
    assert result.summary()["fields_processed"] == len(table) - 2
    assert len(result.cells) > 0
    first = broken.loc[0, "field_id"]
    assert result.describe() == (
        f"{len(result.cells):,} cells from {len(table) - 2} field(s); 1 failed ({first}); "
        "1 with missing files"
    )


def test_a_run_without_cells_says_why():
    failed = PipelineResult(
        pd.DataFrame(),
        np.zeros((0, 8), np.float32),
        failures=[FieldFailure("p1_A01_1", "truncated.tif: not a TIFF")],
        missing=["p1_A02_1"],
        n_fields=3,
        n_processed=1,
    )
    assert failed.why_no_cells() == (
        "no cells were found in the 3 field(s); 1 failed (first: p1_A01_1: truncated.tif: not "
        "a TIFF); 1 have missing files. Check the segmentation parameters on one of them."
    )
    blank = PipelineResult(pd.DataFrame(), np.zeros((0, 8), np.float32), n_fields=2)
    assert blank.why_no_cells() == "no cells were found in the 2 field(s)."


def test_channels_of_different_shapes_fail_that_field_only(table, tmp_path):
    odd = tmp_path / "odd.tif"
    tifffile.imwrite(odd, np.zeros((10, 12), np.uint16))
    broken = table.copy()
    broken.loc[2, "actin"] = str(odd)
    result = run_pipeline(broken, FAST)
    assert len(result.failures) == 1
    assert "shape" in result.failures[0].error


def test_field_without_cells_yields_no_crops_and_a_warning(table, tmp_path):
    blank = tmp_path / "blank.tif"
    tifffile.imwrite(blank, np.full((320, 400), 700, np.uint16))
    empty = table.head(3).copy()
    for channel in ("dapi", "tubulin", "actin"):
        empty.loc[0, channel] = str(blank)
    with pytest.warns(UserWarning, match="no cells"):
        result = run_pipeline(empty, FAST)
    assert result.empty_fields == [empty.loc[0, "field_id"]]
    assert not (result.cells["field_id"] == empty.loc[0, "field_id"]).any()


def test_worker_processes_give_the_same_cells(table):
    inline = run_pipeline(table.head(3), PipelineOptions(**{**FAST.__dict__, "k": None}))
    pooled = run_pipeline(
        table.head(3), PipelineOptions(**{**FAST.__dict__, "k": None, "workers": 2})
    )
    assert inline.cells.equals(pooled.cells)
    np.testing.assert_allclose(inline.embeddings, pooled.embeddings, rtol=1e-5, atol=1e-6)


def test_the_fields_asked_for_keep_their_cell_labels(table):
    from phenossl.cells.segment import segment
    from phenossl.data.fields import read_field

    wanted = str(table["field_id"].iloc[1])
    options = PipelineOptions(**{**FAST.__dict__, "k": None})
    for workers in (0, 2):  # the labels come back from worker processes too
        opts = PipelineOptions(**{**options.__dict__, "workers": workers})
        result = run_pipeline(table.head(3), opts, keep_labels=[wanted])
        assert list(result.labels) == [wanted]
        expected = segment(read_field(table.iloc[1].to_dict())).cells
        np.testing.assert_array_equal(result.labels[wanted], expected)
        mine = result.cells.loc[result.cells["field_id"] == wanted, "label"]
        assert set(mine) <= set(np.unique(expected)) - {0}
    assert run_pipeline(table.head(2), options).labels == {}  # none unless asked


def test_unknown_label_column_is_named(table):
    with pytest.raises(ValueError, match="'nope'"):
        run_pipeline(table.head(2), PipelineOptions(**{**FAST.__dict__, "label_column": "nope"}))


def test_paper_subset_cropset_is_balanced_split_and_stops_sampling_dmso(tmp_path):
    plate = write_tiny_plate(tmp_path / "plate", sites=2, n_control_wells=12)
    table = load_image_table(plate)
    n_dmso_fields = int((table["compound"] == "DMSO").sum())
    summary = run(
        iter_make_cropset(
            table,
            tmp_path / "crops",
            crop_size=TINY_CROP,
            paper_subset="nocodazole",
            seed=3,
        )
    )
    crops = CropSet(tmp_path / "crops")
    counts = crops.table["compound"].value_counts()
    assert counts["DMSO"] == counts["nocodazole"]
    assert set(crops.table["split"]) == {"train", "val", "test"}
    assert abs((crops.table["split"] == "train").mean() - 0.7) < 0.05
    assert summary["cells"] == len(crops)
    dmso_fields_read = summary["fields_processed"] - int((table["compound"] != "DMSO").sum())
    assert 0 < dmso_fields_read < n_dmso_fields
    # the crops on disk are the listed ones
    assert crops.images([0]).shape == (1, 3, TINY_CROP, TINY_CROP)


def test_iter_pipeline_is_cancellable_between_fields(table):
    gen = iter_pipeline(table, FAST)
    next(gen)
    next(gen)
    gen.close()  # what napari's worker.quit() amounts to: no exception, nothing left running
