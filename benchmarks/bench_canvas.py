"""What napari itself costs on the GUI thread under this display: canvas paints and a points layer.

``bench_gui.py`` measures the plugin's longest GUI-thread stall during an *Embed and cluster* run.
This script measures, without the plugin, the floor under that figure on the same display:
a bare repaint of three 8 x 768 x 1024 image layers (the sample plate's size), the first
``add_points`` of 520 points in a process (napari builds its points visual, controls and shaders
the first time) and a second one (whether that cost recurs for every new layer), a repaint with
the points shown, and a refill of the points' data (what the widget does on a second run). Then,
for each kind of layer *Embed and cluster* shows (points, the *clusters* labels, the RGB
gallery), the GUI-thread cost of adding one, twice: the ``append`` alone (napari's visual,
overlays, layer controls, layer-list row) and with the paint after it. Under Xvfb these paints
run in Mesa's software OpenGL.

    xvfb-run -a python benchmarks/bench_canvas.py

Writes ``benchmarks/results/canvas.json`` (``--out``) and prints the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import write_json

RESULTS = Path(__file__).parent / "results" / "canvas.json"


def _ms(step: Callable[[], object], app) -> float:
    start = time.perf_counter()
    step()
    app.processEvents()
    return round((time.perf_counter() - start) * 1e3, 1)


def _add_layers(viewer, app, rng, shape: tuple, n_points: int) -> dict:
    """Append each result-layer kind twice: ms of the append alone and with the paint after it."""
    import pandas as pd
    from napari.layers import Image, Labels, Points

    def make(kind: str):
        if kind == "points":
            features = pd.DataFrame({"cluster": pd.Categorical(rng.integers(0, 4, n_points))})
            where = rng.random((n_points, 3)) * np.array(shape)
            return Points(where, features=features, face_color="cluster", size=12)
        if kind == "labels":
            cells = rng.integers(0, 60, shape[1:]).astype(np.int32)
            return Labels(cells, features=pd.DataFrame({"index": np.arange(60)}))
        return Image(rng.integers(0, 255, (500, 700, 3), dtype=np.uint8), rgb=True)

    native = viewer.window._qt_viewer.canvas.native
    out: dict[str, list[dict[str, float]]] = {}
    for kind in ("points", "labels", "gallery"):
        for _ in range(2):
            layer = make(kind)
            for _ in range(10):
                app.processEvents()
            start = time.perf_counter()
            viewer.layers.append(layer)
            appended = time.perf_counter()
            app.processEvents()
            native.repaint()
            painted = time.perf_counter()
            out.setdefault(kind, []).append(
                {
                    "append": round((appended - start) * 1e3, 1),
                    "with_paint": round((painted - start) * 1e3, 1),
                }
            )
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=520)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    rng = np.random.default_rng(0)
    shape = (8, 768, 1024)
    for name in ("DAPI", "Tubulin", "Actin"):
        viewer.add_image(rng.random(shape, dtype=np.float32), name=name, blending="additive")
    for _ in range(20):
        app.processEvents()
    native = viewer.window._qt_viewer.canvas.native  # the Qt widget vispy paints into

    def points() -> np.ndarray:
        return rng.random((args.points, 3)) * np.array(shape)

    bare = [_ms(native.repaint, app) for _ in range(args.repeats)]
    first_add = _ms(lambda: viewer.add_points(points(), size=12, face_color="red"), app)
    layer = viewer.layers[-1]
    # a second new layer: is the first one's cost a one-off warm-up (shaders, controls) or paid
    # by every new points layer?
    second_add = _ms(lambda: viewer.add_points(points(), size=12, face_color="blue"), app)
    viewer.layers.selection.clear()
    viewer.layers.remove(viewer.layers[-1])
    app.processEvents()
    with_points = [_ms(native.repaint, app) for _ in range(args.repeats)]
    refill = [_ms(lambda: setattr(layer, "data", points()), app) for _ in range(args.repeats)]
    add_layer = _add_layers(viewer, app, rng, shape, args.points)
    viewer.close()

    report = {
        "benchmark": "napari canvas on this display: repaints, first points layer, refills",
        "images": [3, *shape],
        "points": args.points,
        "repaint_ms": bare,
        "first_add_points_ms": first_add,
        "second_add_points_ms": second_add,
        "repaint_with_points_ms": with_points,
        "refill_points_ms": refill,
        "add_layer_ms": add_layer,
        "machine": {
            "platform": platform.platform(),
            "display": os.environ.get("DISPLAY"),
            "load_average": list(os.getloadavg()),
        },
        "versions": {"napari": napari.__version__},
    }
    print(f"repaint (3 images)      {bare} ms")
    print(f"first add_points        {first_add} ms")
    print(f"second add_points       {second_add} ms")
    print(f"repaint with points     {with_points} ms")
    print(f"refill points data      {refill} ms")
    for kind, times in add_layer.items():
        print(f"add {kind:8s} (append, with paint): {times}")
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
