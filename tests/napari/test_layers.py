"""The pure layer builders: what each layer looks like, without a viewer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phenossl.cells.segment import Segmentation
from phenossl.napari._layers import (
    META,
    UNCLUSTERED_COLOR,
    centres_layer,
    channel_layer,
    cluster_color_dict,
    cluster_colors,
    cluster_labels_layer,
    display_limits,
    gallery_layer,
    principal_components,
    segmentation_layers,
    stack_layers,
)


def test_channel_layers_are_additive_in_their_bbbc021_colours():
    for channel, colour in (("DAPI", "blue"), ("Tubulin", "green"), ("Actin", "red")):
        _data, kwargs, kind = channel_layer(np.zeros((4, 5)), channel, contrast_limits=(1, 9))
        assert kind == "image" and kwargs["colormap"] == colour
        assert kwargs["blending"] == "additive" and kwargs["contrast_limits"] == [1, 9]
        assert kwargs["metadata"][META] == {"role": "channel", "channel": channel}
    with pytest.raises(ValueError, match="expected one of DAPI"):
        channel_layer(np.zeros((4, 5)), "GFP", contrast_limits=(0, 1))


def test_display_limits_are_robust_percentiles():
    image = np.arange(1000, dtype=np.uint16).reshape(20, 50)
    image[0, 0] = 60000  # one hot pixel does not set the range
    low, high = display_limits(image)
    assert low == pytest.approx(np.percentile(image, 1.0))
    assert high == pytest.approx(np.percentile(image, 99.8))
    assert high < 1000
    assert display_limits(np.full((3, 3), 7, np.uint16)) == (7.0, 8.0)  # never an empty range


def test_stack_layers_read_each_field_lazily(tiny_plate):
    from phenossl.data.bbbc021 import load_image_table
    from phenossl.data.fields import read_channel

    fields = load_image_table(tiny_plate).iloc[:3]
    layers = stack_layers(fields, selection=7)
    assert [kw["name"] for _, kw, _ in layers] == ["DAPI", "Tubulin", "Actin"]
    data, kwargs, _ = layers[1]
    assert data.shape[0] == 3 and kwargs["axis_labels"] == ("field", "y", "x")
    assert kwargs["metadata"][META]["selection"] == 7
    np.testing.assert_array_equal(np.asarray(data[2]), read_channel(fields.iloc[2]["tubulin"]))
    broken = fields.assign(tubulin=[fields.iloc[0]["tubulin"], "/no/such.tif", "/no/such.tif"])
    data = stack_layers(broken)[1][0]
    assert not np.asarray(data[1]).any()  # an unreadable field shows black
    with pytest.raises(ValueError, match="selection is empty"):
        stack_layers(fields.iloc[:0])


def _segmentation():
    nuclei = np.zeros((6, 8), np.int32)
    nuclei[1, 1], nuclei[4, 6] = 1, 2
    cells = nuclei.copy()
    cells[1, 2] = 1
    table = pd.DataFrame({"label": [1, 2], "centroid_y": [1.0, 4.0], "centroid_x": [1.0, 6.0]})
    return Segmentation(nuclei, cells, table)


def test_segmentation_layers_sit_on_their_field_with_the_cell_table():
    nuclei, cells = segmentation_layers(_segmentation(), field_index=3, field_id="P/B02/s1")
    for (data, kwargs, kind), role in zip((nuclei, cells), ("nuclei", "cells")):
        assert kind == "labels" and data.shape == (1, 6, 8)
        assert kwargs["translate"] == (3.0, 0.0, 0.0)
        assert kwargs["metadata"][META]["role"] == role
        assert kwargs["metadata"][META]["field_id"] == "P/B02/s1"
        assert kwargs["features"]["index"].tolist() == [1, 2]  # napari's label lookup
    flat = segmentation_layers(_segmentation())
    assert flat[1][0].shape == (6, 8) and "translate" not in flat[1][1]


def test_cluster_colours_are_distinct_and_stable():
    colors = cluster_colors(4)
    assert colors.shape == (4, 4) and len({tuple(c) for c in colors}) == 4
    np.testing.assert_array_equal(cluster_colors(2), colors[:2])
    assert len({tuple(c) for c in cluster_colors(30)}) == 30
    with pytest.raises(ValueError):
        cluster_colors(0)


def test_labels_take_their_cluster_colour_and_others_stay_grey():
    mapping = cluster_color_dict([5, 7, 9], [1, 0, 1], 2)
    colors = cluster_colors(2)
    assert mapping[5] == tuple(colors[1]) and mapping[7] == tuple(colors[0])
    assert mapping[0][3] == 0 and mapping[None] == UNCLUSTERED_COLOR
    data, kwargs, kind = cluster_labels_layer(
        np.array([[0, 5], [7, 8]]), [5, 7], [1, 0], 2, field_index=2, field_id="f"
    )
    rgba = kwargs["colormap"].map(np.array([0, 5, 7, 8]))
    np.testing.assert_allclose(rgba[1], colors[1])
    np.testing.assert_allclose(rgba[2], colors[0])
    np.testing.assert_allclose(rgba[3], UNCLUSTERED_COLOR)  # segmented, not clustered
    assert rgba[0][3] == 0 and data.shape == (1, 2, 2) and kind == "labels"
    with pytest.raises(ValueError, match=r"0\.\.1"):
        cluster_color_dict([1], [2], 2)


def test_centres_layer_features_suit_the_clusters_plotter():
    cells = pd.DataFrame(
        {
            "field_id": ["a", "b", "b"],
            "label": [3, 1, 2],
            "centroid_y": [10.0, 20.0, 30.0],
            "centroid_x": [1.0, 2.0, 3.0],
            "compound": ["DMSO", "taxol", "taxol"],
            "treatment": ["DMSO@0", "taxol@3", "taxol@3"],
        }
    )
    emb = np.random.default_rng(0).normal(size=(3, 5))
    data, kwargs, kind = centres_layer(
        cells, field_index={"a": 0, "b": 4}, clusters=np.array([1, 0, 1]), k=2, embeddings=emb
    )
    assert kind == "points"
    np.testing.assert_array_equal(data, [[0, 10, 1], [4, 20, 2], [4, 30, 3]])
    features = kwargs["features"]
    assert list(features.columns) == [
        "label",
        "field_id",
        "compound",
        "treatment",
        "compound_code",
        "treatment_code",
        "cluster",
        "pc1",
        "pc2",
    ]
    assert isinstance(features["cluster"].dtype, pd.CategoricalDtype)
    assert isinstance(features["compound"].dtype, pd.CategoricalDtype)
    assert features["treatment_code"].tolist() == [0, 1, 1]
    assert list(features["cluster"].cat.categories) == [0, 1]
    np.testing.assert_allclose(kwargs["face_color"], cluster_colors(2)[[1, 0, 1]])
    assert kwargs["out_of_slice_display"] is False
    with pytest.raises(ValueError, match="not loaded"):
        centres_layer(cells, field_index={"a": 0})


def test_principal_components_capture_the_main_direction():
    rng = np.random.default_rng(1)
    t = rng.normal(size=200)
    x = np.outer(t, [3.0, 4.0, 0.0]) + 0.01 * rng.normal(size=(200, 3))
    pcs = principal_components(x)
    assert abs(np.corrcoef(pcs[:, 0], t)[0, 1]) > 0.999
    assert pcs[:, 0].var() > 100 * pcs[:, 1].var()
    sampled = principal_components(x, max_fit=50, seed=3)  # axes fitted on 50 rows
    assert np.corrcoef(sampled[:, 0], pcs[:, 0])[0, 1] > 0.999  # same sign: largest loading > 0


def test_gallery_layer_sits_beside_the_field():
    image = np.zeros((134, 300, 3), np.uint8)
    _data, kwargs, kind = gallery_layer(image, origin=(0, 420), k=2)
    assert kwargs["rgb"] and kwargs["translate"] == (0.0, 420.0) and kind == "image"


def test_stack_contrast_limits_cover_the_stack_not_one_field(tmp_path):
    import tifffile

    from phenossl.napari._layers import display_limits, stack_layers

    rng = np.random.default_rng(0)
    rows = []
    for i, level in enumerate((100, 100, 3000, 3000)):  # the first field is dim
        row = {"field_id": f"P/A0{i + 1}/s1"}
        for key in ("dapi", "tubulin", "actin"):
            path = tmp_path / f"{i}_{key}.tif"
            tifffile.imwrite(path, rng.integers(0, level, size=(16, 16), dtype=np.uint16))
            row[key] = str(path)
        rows.append(row)
    layers = stack_layers(pd.DataFrame(rows))
    low, high = layers[0][1]["contrast_limits"]
    first = tifffile.imread(rows[0]["dapi"])
    assert high > 2 * display_limits(first)[1]  # not the dim first field's range
    assert high <= 3000 and low >= 0
