"""What a clustering run shows: palette, gallery, one field's clusters, composition."""

from __future__ import annotations

import numpy as np
import pandas as pd

from phenossl.cluster_view import (
    cluster_colors,
    composition_columns,
    field_clusters,
    iter_cluster_gallery,
    labelled_gallery,
    mark_tile_centres,
)


def test_gallery_rows_carry_their_cluster_colour():
    tiles = np.zeros((2 * 64 + 6, 3 * 64 + 8, 3), np.uint8)
    image = labelled_gallery(tiles, 2, [120, 7])
    assert image.shape[0] == tiles.shape[0] and image.shape[1] > tiles.shape[1]
    np.testing.assert_array_equal(image[:, -tiles.shape[1] :], tiles)
    colors = (cluster_colors(2)[:, :3] * 255).round()
    bar_row0, bar_row1 = image[30, 1], image[100, 1]
    np.testing.assert_array_equal(bar_row0, colors[0])
    np.testing.assert_array_equal(bar_row1, colors[1])


def test_gallery_tiles_get_a_crosshair_on_their_cell():
    pad, size = 4, 40
    tiles = np.zeros((2 * size + 3 * pad, 3 * size + 4 * pad, 3), np.uint8)
    marked = mark_tile_centres(tiles, (2, 3), pad=pad)
    for r in range(2):
        for c in range(3):
            cy, cx = pad + r * (size + pad) + size // 2, pad + c * (size + pad) + size // 2
            assert marked[cy, cx].sum() == 0  # the nucleus itself stays visible
            assert marked[cy - 5, cx].sum() > 0 and marked[cy, cx + 5].sum() > 0
    assert marked[:pad].sum() == 0  # the padding is untouched


def test_composition_columns_add_a_total_and_name_concentrations():
    table = pd.DataFrame({0.1: [3, 1], 1.0: [0, 4]})
    assert composition_columns(table, "concentration") == {
        "0.1 µM": [3, 1],
        "1 µM": [0, 4],
        "total": [3, 5],
    }
    named = composition_columns(pd.DataFrame({"DMSO": [2.0], "taxol": [1.0]}), "compound")
    assert named == {"DMSO": [2], "taxol": [1], "total": [3]}


def test_field_clusters_keep_one_fields_cells_in_table_order():
    cells = pd.DataFrame(
        {"field_id": ["a", "b", "a", "a"], "label": [4, 1, 2, 9], "well": ["A1", "B1", "A1", "A1"]}
    )
    labels, clusters, table = field_clusters(
        cells, np.array([1, 0, 0, 2]), "a", ["label", "well", "absent"]
    )
    assert labels.tolist() == [4, 2, 9] and clusters.tolist() == [1, 0, 2]
    assert list(table.columns) == ["label", "well"] and table.index.tolist() == [0, 1, 2]


def test_cluster_gallery_is_the_pipeline_crops_with_a_labelled_panel(tmp_path):
    from _plates import TINY_CROP, write_tiny_plate

    from phenossl.cluster_view import GALLERY_PAD, GALLERY_PAD_VALUE, segment_again
    from phenossl.data.bbbc021 import load_image_table
    from phenossl.data.cropset import CropSet
    from phenossl.montage import centroid_gallery
    from phenossl.pipeline import PipelineOptions, run_pipeline

    table = load_image_table(write_tiny_plate(tmp_path / "plate"))
    options = PipelineOptions(
        model="resnet18", crop_size=TINY_CROP, input_size=32, batch_size=64, k=2, n_nearest=3
    )
    result = run_pipeline(table, options, cropset=tmp_path / "crops")
    clustering = result.clustering
    events = []
    gen = iter_cluster_gallery(
        table, result.cells, clustering.assignments, clustering.nearest, crop_size=TINY_CROP
    )
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        gallery = stop.value
    assert events[-1].done == events[-1].total >= 1
    tiles = mark_tile_centres(
        centroid_gallery(
            CropSet(tmp_path / "crops"),
            clustering.nearest,
            pad=GALLERY_PAD,
            pad_value=GALLERY_PAD_VALUE,
        ),
        clustering.nearest.shape,
        pad=GALLERY_PAD,
    )
    assert gallery.shape[0] == tiles.shape[0] and gallery.shape[1] > tiles.shape[1]
    np.testing.assert_array_equal(gallery[:, -tiles.shape[1] :], tiles)

    # the field segmented again holds every cell of the run's table, same label, same centre
    field_id = result.cells["field_id"].iloc[0]
    row = table.set_index("field_id").loc[field_id].to_dict()
    seg = segment_again(row, options.segment_params)
    labels, _, cells = field_clusters(
        result.cells, clustering.assignments, field_id, ["centroid_y", "centroid_x"]
    )
    again = seg.table.set_index("label").loc[labels, ["centroid_y", "centroid_x"]]
    np.testing.assert_allclose(again.to_numpy(), cells.to_numpy())
