"""What the plugin prepares off the GUI thread before a run needs it."""

from __future__ import annotations

import numpy as np
import pytest

from phenossl.napari._layers import cluster_labels_layer
from phenossl.napari._preload import compile_label_colours
from phenossl.napari._widgets._common import show_layer


def _compiled(dispatcher) -> set[str]:
    return {str(signature[0]) for signature in dispatcher.signatures}


def test_the_label_colours_are_compiled_for_what_napari_draws(make_napari_viewer, qtbot):
    # napari compiles its labels colouring with numba on first use, once per array type: 1-2 s
    # with the window frozen when it happens on the GUI thread while a run shows its results
    accelerated = pytest.importorskip("napari.utils.colormaps._accelerated_cmap")
    if accelerated.numba is None:
        pytest.skip("numba is not installed: napari colours labels with numpy, nothing to compile")
    loop = accelerated._labels_raw_to_texture_direct_inner_loop
    compile_label_colours()
    warmed = _compiled(loop)
    assert {"array(int32, 2d, C)", "array(uint8, 1d, C)"} <= warmed

    # a clusters layer as a run makes it (int32 cell labels on a field of the stack), drawn
    viewer = make_napari_viewer(show=True)
    cells = np.zeros((1, 32, 48), np.int32)
    cells[0, 4:9, 4:9], cells[0, 20:30, 30:40] = 1, 2
    show_layer(viewer, cluster_labels_layer(cells[0], [1, 2], [0, 1], 2, field_index=0))
    viewer.window._qt_viewer.canvas.native.repaint()
    qtbot.wait(50)
    assert _compiled(loop) == warmed  # drawing it compiled nothing new
