"""napari-clusters-plotter compatibility: categorical text columns, features on every layer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phenossl.napari._layers import (
    CATEGORICAL_COLUMNS,
    centres_layer,
    cluster_colors,
    cluster_labels_layer,
)


def _cells(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    compounds = np.array(["DMSO", "taxol", "nocodazole"])[rng.integers(0, 3, n)]
    return pd.DataFrame(
        {
            "label": np.arange(1, n + 1),
            "field_id": [f"P1/B0{i % 3 + 2}/s1" for i in range(n)],
            "plate": "P1",
            "well": [f"B0{i % 3 + 2}" for i in range(n)],
            "site": 1,
            "compound": compounds,
            "concentration": np.where(compounds == "DMSO", 0.0, 1.0),
            "moa": pd.array([None] * n, dtype="string"),
            "treatment": [f"{c}@1" for c in compounds],
            "centroid_y": rng.uniform(0, 100, n),
            "centroid_x": rng.uniform(0, 100, n),
            "nucleus_area": rng.uniform(50, 100, n),
        }
    )


def _points(n: int = 30, k: int = 3):
    cells = _cells(n)
    clusters = np.arange(n) % k
    embeddings = np.random.default_rng(1).normal(size=(n, 8))
    return cells, clusters, centres_layer(cells, clusters=clusters, k=k, embeddings=embeddings)


def test_text_columns_are_categorical_and_numbers_numeric():
    _, clusters, (_, kwargs, _) = _points()
    features = kwargs["features"]
    for column in CATEGORICAL_COLUMNS:
        assert isinstance(features[column].dtype, pd.CategoricalDtype), column
    assert features["moa"].isna().all()  # missing stays missing, not the text "nan"
    codes = features["compound_code"].to_numpy()
    assert (features["compound"].cat.categories[codes] == features["compound"]).all()
    assert features["moa_code"].tolist() == [0] * len(features)  # all missing: one code
    for column in ("label", "site", "concentration", "nucleus_area", "pc1", "pc2"):
        assert pd.api.types.is_numeric_dtype(features[column]), column
    assert isinstance(features["cluster"].dtype, pd.CategoricalDtype)
    np.testing.assert_allclose(kwargs["face_color"], cluster_colors(3)[clusters])


def test_the_clusters_labels_layer_has_features_and_the_same_palette():
    cells = _cells(4)
    image = np.zeros((10, 10), np.int32)
    image[1:3, 1:3], image[5:7, 5:7] = 1, 3
    _, kwargs, kind = cluster_labels_layer(
        image, [1, 3], [2, 0], 3, field_id="P1/B02/s1", table=cells.iloc[[0, 2]]
    )
    features = kwargs["features"]
    assert kind == "labels" and features["index"].tolist() == [1, 3]
    assert features["cluster"].tolist() == [2, 0]
    assert isinstance(features["compound"].dtype, pd.CategoricalDtype)
    colors = kwargs["colormap"].map(np.array([1, 3]))
    np.testing.assert_allclose(colors, cluster_colors(3)[[2, 0]])


def test_the_plotter_colours_by_compound(make_napari_viewer, qtbot):
    """Round trip with napari-clusters-plotter (an optional extra): hue = compound plots."""
    plotter = pytest.importorskip("napari_clusters_plotter")
    from napari.layers import Layer

    viewer = make_napari_viewer()
    _, _, layer_data = _points()
    layer = viewer.add_layer(Layer.create(*layer_data))
    widget = plotter.PlotterWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    viewer.layers.selection.active = layer
    assert {"compound_code", "treatment_code", "cluster"} <= set(widget.categorical_columns)
    widget.x_axis, widget.y_axis = "pc1", "pc2"
    # the plotter colours by categories of numbers only: compound_code is compound, coded
    widget.hue_axis = "compound_code"
    widget._replot()
    colours = np.asarray(widget.plotting_widget.active_artist.color_indices)
    names = layer.features["compound"].cat.categories[colours]
    assert names.tolist() == layer.features["compound"].astype(str).tolist()
    widget.hue_axis = "cluster"
    widget._replot()
    np.testing.assert_array_equal(
        widget.plotting_widget.active_artist.color_indices, layer.features["cluster"]
    )
    # the plotter's own columns join ours without changing them
    assert "MANUAL_CLUSTER_ID" in layer.features
    assert isinstance(layer.features["compound"].dtype, pd.CategoricalDtype)
