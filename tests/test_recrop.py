from __future__ import annotations

import numpy as np
import pytest
from _plates import TINY_CROP, write_tiny_plate

from phenossl.cells.recrop import recrop
from phenossl.data.bbbc021 import load_image_table
from phenossl.data.cropset import CropSet
from phenossl.pipeline import PipelineOptions, run_pipeline


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("recrop")
    table = load_image_table(write_tiny_plate(root / "plate"))
    options = PipelineOptions(
        model="resnet18", crop_size=TINY_CROP, input_size=32, batch_size=64, k=None
    )
    result = run_pipeline(table, options, cropset=root / "crops")
    return table, result, CropSet(root / "crops")


def test_recrop_gives_back_the_pipeline_crops(run):
    table, result, crops = run
    rows = np.array([len(result.cells) - 1, 0, 3, 0, len(result.cells) // 2])
    events = []
    again = recrop(table, result.cells, rows, crop_size=TINY_CROP, progress=events.append)
    assert again.dtype == np.uint8 and again.shape == (5, 3, TINY_CROP, TINY_CROP)
    np.testing.assert_array_equal(again, crops.images(rows))
    n_fields = result.cells["field_id"].iloc[rows].nunique()
    assert events[-1].done == events[-1].total == n_fields


def test_recrop_leaves_padding_slots_black_and_reads_nothing_for_them(run):
    table, result, _ = run
    events = []
    out = recrop(
        table.iloc[:0], result.cells, [-1, -1], crop_size=TINY_CROP, progress=events.append
    )
    assert out.shape == (2, 3, TINY_CROP, TINY_CROP)
    assert not out.any()
    assert [(e.done, e.total) for e in events] == [(0, 0)]


def test_recrop_names_what_is_wrong(run):
    table, result, _ = run
    with pytest.raises(ValueError, match="rows must lie in"):
        recrop(table, result.cells, [len(result.cells)])
    with pytest.raises(ValueError, match="not in fields"):
        recrop(table.iloc[1:2], result.cells, [0])
    with pytest.raises(ValueError, match="centroid_y"):
        recrop(table, result.cells.drop(columns="centroid_y"), [0])
