"""Time from clicking "Embed and cluster" to its layers on screen, on the sample plate (CPU).

Opens napari and the plugin's sample plate (its nocodazole subset: 8 fields of 768 x 1024 px,
the four concentrations and four DMSO wells), sets the "Embed and cluster" widget, clicks the
button and waits until the result layers have been drawn. The widget times the library calls it
makes: ``phenossl.pipeline.iter_pipeline`` (segment, crop, embed, cluster every field),
``phenossl.cells.recrop`` + ``phenossl.montage.centroid_gallery`` (the gallery's crops); the
field on screen keeps its cell labels from the pipeline (``keep_labels``). Everything else
between the click and the drawn layers (building the layers, the principal components of the
points' features, the gallery's labels, Qt signalling, drawing) is the GUI's share; the target
is at most 10 %.

It also reports the longest GUI-thread stall during the run: the longest gap between two beats
of a 10 ms ``QTimer`` on the GUI thread, from the click to the end of the run (its last layer
shown). While a handler runs on the GUI thread (adding a layer, a result callback), no timer
fires and the window does not respond; the target is below 100 ms. The longest single pass of
``processEvents`` is reported beside it; it overstates stalls where a handler runs a nested
``processEvents`` (napari's activity dock does, on every update), during which the window does
respond. Also counted: Python's full garbage collections during the run and the longest
collection (any thread's; a collection holds the GIL, so the GUI thread waits for it).

Configurations: ``paper`` is the widget's defaults (VGG13-BN, random init, 196 px crops and
input); ``fast`` is ResNet18 on 96 px inputs, what a quick first look would use.

    xvfb-run -a python benchmarks/bench_gui.py                     # both, ~6 min on 2 cores
    xvfb-run -a python benchmarks/bench_gui.py --configs fast --repeats 3
    xvfb-run -a python benchmarks/bench_gui.py --configs fast --repeats 3 --settle 3

``--settle`` lets the window idle before each click, after the plugin's background preload has
finished, as a user setting the widget would; without it the first run shares the machine with
that preload (importing torch, compiling napari's labels colouring).

napari needs a display: on a machine without one, run it under ``xvfb-run``. Writes
``benchmarks/results/gui.json`` (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import tempfile
import time
from itertools import pairwise
from pathlib import Path

from _common import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "gui.json"
HEARTBEAT_MS = 10
CONFIGS = {
    "paper": {"backbone": "vgg13_bn", "crop_size": 196, "input_size": 196},
    "fast": {"backbone": "resnet18", "crop_size": 196, "input_size": 96},
}


def measure(viewer, config: dict, app, settle: float = 0.0) -> dict:
    """Click "Embed and cluster" once; seconds to drawn layers and the library's part.

    ``settle``: seconds of idle event loop between setting the widget and the click, after the
    plugin's background preload has finished (0: click at once, as a script would).
    """
    from qtpy.QtCore import QTimer

    from phenossl.napari._preload import preload_in_background
    from phenossl.napari._widgets._common import open_widget

    widget = open_widget(viewer, "Embed and cluster")
    widget.source.value = "backbone"
    widget.weights.value = "random"
    widget.device.value = "cpu"
    widget.backbone.value = config["backbone"]
    widget.crop_size.value = config["crop_size"]
    widget.input_size.value = config["input_size"]
    widget.session.set_run(None)
    app.processEvents()
    if settle:
        preload = preload_in_background()
        until = time.perf_counter() + settle
        while preload.is_alive() or time.perf_counter() < until:
            app.processEvents()
            time.sleep(0.01)

    passes: list[tuple[float, float]] = []  # (start, seconds) of each event-loop pass
    beats: list[float] = []
    heartbeat = QTimer()
    heartbeat.setInterval(HEARTBEAT_MS)
    heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()))

    def process() -> None:
        began = time.perf_counter()
        app.processEvents()
        passes.append((began, time.perf_counter() - began))

    collections: list[tuple[int, float]] = []  # (generation, seconds) of each collection
    began: list[float] = []

    def collected(phase: str, info: dict) -> None:
        if phase == "start":
            began[:] = [time.perf_counter()]
        elif began:
            collections.append((info["generation"], time.perf_counter() - began[0]))

    gc.callbacks.append(collected)
    heartbeat.start()
    start = time.perf_counter()
    widget.panel.run_button.native.click()
    clicked = time.perf_counter() - start  # the click's own handler, on the GUI thread
    while widget.session.run is None:
        if not widget.panel.running and widget.session.run is None:
            raise RuntimeError(f"the run failed: {widget.panel.status.value}")
        process()
        time.sleep(0.002)
    process()  # napari draws the new layers on this pass
    viewer.window._qt_viewer.canvas.native.repaint()
    end = time.perf_counter()
    while widget.panel.running:  # the worker's last signals
        process()
        time.sleep(0.002)
    process()
    heartbeat.stop()
    gc.callbacks.remove(collected)
    stopped = time.perf_counter()
    longest = max([(start, clicked), *passes], key=lambda p: p[1])
    times = [start, *beats, stopped]
    gaps = [(a, b - a) for a, b in pairwise(times)]
    stall = max(gaps, key=lambda g: g[1])

    run = widget.session.run
    total = end - start
    library = run.timings["library_s"]
    return {
        "seconds": round(total, 3),
        "library_seconds": round(library, 3),
        "outside_library_seconds": round(total - library, 3),
        "outside_library_share": round((total - library) / total, 4),
        "cells": len(run.result.cells),
        "fields": len(run.fields),
        "ami": run.result.clustering.ami,
        "parts_seconds": {k: round(v, 4) for k, v in run.timings.items()},
        "longest_gui_stall_ms": round(1000 * stall[1], 1),
        "longest_gui_stall_at_s": round(stall[0] - start, 3),
        "gui_stalls_over_100ms": sum(seconds > 0.1 for _, seconds in gaps),
        "full_collections": sum(generation == 2 for generation, _ in collections),
        "longest_collection_ms": round(1000 * max([s for _, s in collections], default=0), 1),
        "longest_event_loop_pass_ms": round(1000 * longest[1], 1),
        "longest_event_loop_pass_at_s": round(longest[0] - start, 3),
        "event_loop_passes_over_100ms": sum(
            seconds > 0.1 for _, seconds in [(0, clicked), *passes]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds to let the window idle before each click, after the plugin's background "
        "preload (torch, napari's labels colouring) has finished: a user's pace, where 0 clicks "
        "at once and the first run shares the CPU and the GIL with the preload",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    import phenossl

    os.environ.setdefault(
        "PHENOSSL_SAMPLE_DIR", str(Path(tempfile.gettempdir()) / "phenossl-bench-plate")
    )
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    app = QApplication.instance()
    viewer.open_sample("napari-phenossl", "synthetic_plate")
    app.processEvents()

    results = []
    for name in args.configs:
        for repeat in range(args.repeats):
            row = {
                "config": name,
                **CONFIGS[name],
                "repeat": repeat,
                "settle_s": args.settle,
                **measure(viewer, CONFIGS[name], app, args.settle),
            }
            results.append(row)
            print(
                f"{name:6s} #{repeat}: {row['seconds']:7.2f} s click -> layers, library "
                f"{row['library_seconds']:7.2f} s, outside {row['outside_library_seconds']:5.2f} s "
                f"({100 * row['outside_library_share']:.1f} %), {row['cells']} cells, longest "
                f"GUI stall {row['longest_gui_stall_ms']:.0f} ms at {row['longest_gui_stall_at_s']} s"
                f" (longest event-loop pass {row['longest_event_loop_pass_ms']:.0f} ms), "
                f"{row['full_collections']} full garbage collection(s), longest collection "
                f"{row['longest_collection_ms']:.0f} ms, load "
                f"{os.getloadavg()[0]:.1f}",
                flush=True,
            )
    viewer.close()

    payload = {
        "benchmark": "GUI: click 'Embed and cluster' -> result layers drawn, sample plate, CPU",
        "sample": "napari-phenossl synthetic_plate: nocodazole (4 concentrations) + 4 DMSO "
        "fields, 768 x 1024 px",
        "target_outside_library_share": 0.10,
        "target_longest_gui_stall_ms": 100,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()),
        },
        "versions": {"phenossl": phenossl.__version__, "napari": napari.__version__},
        "results": results,
    }
    write_json(args.out, payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
