"""What the plugin prepares off the GUI thread before a run needs it."""

from __future__ import annotations

import numpy as np
import pytest

from phenossl.napari._layers import cluster_labels_layer
from phenossl.napari._preload import (
    FIRST_GLYPHS,
    build_line_patterns,
    canvas_font,
    compile_label_colours,
    warm_canvas_text,
)
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


def test_the_line_patterns_are_built_before_a_labels_layer(make_napari_viewer, qtbot):
    # every labels layer's outline overlays make a vispy dash atlas; the first one computes
    # its patterns in Python loops (~0.1 s on the GUI thread) unless they were built ahead
    dash_atlas = pytest.importorskip("vispy.visuals.line.dash_atlas")
    dash_atlas._make_pattern.cache_clear()
    build_line_patterns()
    built = dash_atlas._make_pattern.cache_info().misses
    assert built > 0

    viewer = make_napari_viewer(show=True)
    cells = np.zeros((32, 48), np.int32)
    cells[4:9, 4:9] = 1
    show_layer(viewer, cluster_labels_layer(cells, [1], [0], 2))
    viewer.window._qt_viewer.canvas.native.repaint()
    qtbot.wait(50)
    assert dash_atlas._make_pattern.cache_info().misses == built  # none computed anew


def test_the_canvas_text_is_warmed_one_glyph_per_turn(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    font = canvas_font(viewer)
    assert font is not None
    fresh = [c for c in "@#%&" if c not in font._glyphs]
    if not fresh:
        pytest.skip("every test glyph is cached already")
    warm_canvas_text(viewer, "".join(fresh))
    assert not set(fresh) & set(font._glyphs)  # nothing on the caller's turn
    qtbot.waitUntil(lambda: set(fresh) <= set(font._glyphs), timeout=5000)


def test_a_points_layer_draws_no_glyph_beyond_the_warmed_ones(make_napari_viewer, qtbot):
    # the result layers' first text drawing renders exactly FIRST_GLYPHS: warmed, it renders none
    viewer = make_napari_viewer(show=True)
    font = canvas_font(viewer)
    assert font is not None
    warm_canvas_text(viewer)
    qtbot.waitUntil(lambda: set(FIRST_GLYPHS) <= set(font._glyphs), timeout=5000)
    before = set(font._glyphs)
    centres = np.array([[0.0, 5.0, 5.0], [0.0, 20.0, 30.0]])
    viewer.add_points(centres, size=6, name="cell centres")
    viewer.window._qt_viewer.canvas.native.repaint()
    qtbot.wait(50)
    assert set(font._glyphs) == before
