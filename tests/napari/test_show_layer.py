"""Showing a result layer again: the old layer is refilled in place, or replaced at its position."""

from __future__ import annotations

import numpy as np
import pandas as pd

from phenossl.napari._layers import centres_layer, cluster_labels_layer
from phenossl.napari._widgets._common import make_layer, show_layer


def _cells(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": np.arange(1, n + 1),
            "field_id": ["f"] * n,
            "compound": ["DMSO", "taxol"] * (n // 2),
            "centroid_y": np.linspace(5, 50, n),
            "centroid_x": np.linspace(5, 60, n),
        }
    )


def test_a_second_result_refills_the_layers_in_place(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64)), name="DAPI")
    first = show_layer(viewer, centres_layer(_cells(4), clusters=np.array([0, 1, 0, 1]), k=2))
    first.visible = False
    second = make_layer(centres_layer(_cells(6), clusters=np.array([1, 1, 0, 0, 1, 0]), k=2))
    shown = show_layer(viewer, second)
    assert shown is first and list(viewer.layers) == [viewer.layers["DAPI"], first]
    assert not shown.visible  # the user's choice stays
    np.testing.assert_array_equal(shown.data, second.data)
    pd.testing.assert_frame_equal(shown.features, second.features)
    np.testing.assert_allclose(shown.face_color, second.face_color)

    cells = np.zeros((1, 16, 16), np.int32)
    cells[0, :4, :4], cells[0, 8:, 8:] = 1, 2
    labels = show_layer(viewer, cluster_labels_layer(cells[0], [1, 2], [0, 1], 2, field_index=0))
    again = cluster_labels_layer(cells[0], [1, 2], [1, 0], 2, field_index=3, field_id="g")
    assert show_layer(viewer, again) is labels
    assert tuple(labels.translate) == (3.0, 0.0, 0.0)
    assert labels.metadata["phenossl"]["field_id"] == "g"
    np.testing.assert_allclose(labels.colormap.map([1, 2]), make_layer(again).colormap.map([1, 2]))


def test_a_layer_of_another_kind_is_replaced_at_its_position(make_napari_viewer):
    viewer = make_napari_viewer()
    old = show_layer(viewer, centres_layer(_cells(4), field_index={"f": 0}))  # (field, y, x)
    viewer.add_image(np.zeros((64, 64)), name="top")
    new = show_layer(viewer, centres_layer(_cells(4)))  # (y, x): another number of dimensions
    assert new is not old and old not in viewer.layers
    assert viewer.layers.index(new) == 0
