"""Load torch's native pieces safely inside napari, and early, off the GUI thread.

torchvision imports ``torch._dynamo``, which imports triton when it is installed (it is with
PyPI's CUDA builds of torch). triton's ``libtriton`` carries its own LLVM; when the process has
loaded Mesa's ``libLLVM`` (napari's OpenGL canvas on llvmpipe, radeonsi, Xvfb...), loading it
segfaults. The GUI never needs triton (phenossl runs eager PyTorch, no ``torch.compile``), so the
plugin hides it from torch, which then runs without it. Hiding it whatever the driver lets the
import happen before the canvas has loaded its LLVM, in a background thread.

Importing torch and torchvision takes 2-5 s. The first widgets a user opens (*Select fields*,
*Segment*) start that import in a background thread (:func:`preload_in_background`), so that
opening *Embed and cluster* or *Train* later does not freeze the window; those widgets still call
:func:`preload_torch` (at once when the import is done; waiting for it otherwise). The same
thread compiles napari's labels colouring that the *clusters* layer needs (numba, 1-2 s) and
builds vispy's dash patterns that every labels layer's outline overlays use (~0.1 s).
:func:`warm_canvas_text` renders, on the GUI thread but one glyph per event-loop turn, the glyphs
that napari's first text drawing would otherwise render in one go (0.1-0.3 s).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

_started = threading.Lock()
_thread: threading.Thread | None = None


def hide_triton() -> None:
    """Make ``import triton`` raise ImportError in this process, unless it is imported already."""
    if "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]  # None blocks the import


def preload_torch() -> None:
    """Import torchvision's models and the embedding code, without triton."""
    hide_triton()
    import torchvision.models  # noqa: F401

    import phenossl.embedding
    import phenossl.pipeline  # noqa: F401


def preload_training() -> None:
    """:func:`preload_torch`, plus the trainer and its augmentations (kornia)."""
    preload_torch()
    import phenossl.augment
    import phenossl.training.train.trainer  # noqa: F401


def compile_label_colours() -> None:
    """Compile napari's colouring of labels by a direct colormap (the *clusters* layer).

    numba compiles it on first use, once per argument type (1-2 s of CPU that holds the GIL);
    done here, in the background, the first *Embed and cluster* run does not pay it while it
    shows its results. The types are those napari passes when it draws the layer: the
    displayed slice (2-D int32 labels, as :mod:`phenossl.cells.segment` makes them) and every
    value of the texture type (1-D uint8) for the colour table.
    """
    import numpy as np
    from napari.utils.colormaps import DirectLabelColormap

    colormap = DirectLabelColormap(
        color_dict={None: (0, 0, 0, 1), 0: (0, 0, 0, 0), 1: (1, 0, 0, 1)}
    )
    colormap.map(np.zeros((2, 2), np.int32))
    colormap.map(np.arange(2, dtype=np.uint8))


def build_line_patterns() -> None:
    """Build vispy's dash patterns, which it caches for the whole process.

    Every napari labels layer draws its polygon and brush outlines with vispy lines, each of
    which makes a dash atlas: the first one computes its 13 patterns in Python loops (~0.1 s,
    then cached by vispy). Done here, the first *clusters* layer does not pay it on the GUI
    thread.
    """
    from vispy.visuals.line.dash_atlas import DashAtlas

    DashAtlas()


# vispy's text visual loads these on every draw to find the font's ascender and descender,
# plus the space that napari's empty layer texts draw
FIRST_GLYPHS = "ÅÉÑŐjgpqy "


def canvas_font(viewer: Any) -> Any:
    """The glyph cache of ``viewer``'s canvas font (None where napari's private API differs)."""
    try:
        info = viewer.window._qt_viewer.canvas.font_info()
        return info.font_manager.get_font(info.face, False, False)
    except Exception:  # napari's private canvas API moved: nothing to warm
        return None


def warm_canvas_text(viewer: Any, chars: str = FIRST_GLYPHS) -> None:
    """Render the glyphs of napari's first text drawing ahead, one per event-loop turn.

    napari's canvas keeps one glyph cache for all its text (points, shapes and overlays);
    each glyph is rendered on the GUI thread (Qt) into a signed-distance texture (NumPy),
    10-40 ms each on a small CPU. The first layer with text (a points layer, even without
    labels) draws ten of them in one paint. Spread over idle turns, the window stays
    responsive; a viewer whose internals differ (another napari) is left alone.
    """
    from qtpy.QtCore import QTimer

    font = canvas_font(viewer)
    if font is None:
        return
    pending = list(chars)

    def render_next() -> None:
        if not pending:
            return
        with contextlib.suppress(Exception):
            font[pending.pop(0)]
        QTimer.singleShot(0, render_next)

    QTimer.singleShot(0, render_next)


def preload_in_background() -> threading.Thread:
    """Start the preloads above in a daemon thread, once per process; return that thread.

    A failure there is left for the widget that needs torch to report (its own import raises
    again, on the GUI thread, with the real message).
    """
    global _thread
    with _started:
        if _thread is None:
            hide_triton()  # before the thread: the GUI thread may import torch meanwhile
            _thread = threading.Thread(target=_quietly, name="phenossl-preload", daemon=True)
            _thread.start()
        return _thread


def _quietly() -> None:
    # a failure is reported where torch is needed (see preload_in_background)
    with contextlib.suppress(Exception):
        preload_training()
    with contextlib.suppress(Exception):
        compile_label_colours()
    with contextlib.suppress(Exception):
        build_line_patterns()
