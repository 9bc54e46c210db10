"""A run keeps the heap frozen, so that full garbage collections walk only what it makes."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from _helpers import wait_for

from phenossl.napari._heap import freeze_heap, runs_holding_the_heap, thaw_heap
from phenossl.napari._widgets._runner import RunPanel


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_frozen_objects_wait_for_the_last_run_to_end():
    garbage = _Cycle()
    alive = weakref.ref(garbage)
    freeze_heap()  # two runs under way
    freeze_heap()
    del garbage
    gc.collect()
    assert alive() is not None  # frozen: the collection did not walk it
    thaw_heap()
    gc.collect()
    assert alive() is not None  # one run is still under way
    thaw_heap()
    assert gc.get_freeze_count() == 0 and runs_holding_the_heap() == 0
    gc.collect()
    assert alive() is None  # collected once no run holds it


@pytest.mark.parametrize("outcome", ["returns", "raises", "cancelled"])
def test_a_run_freezes_the_heap_until_it_has_ended(qtbot, outcome):
    panel = RunPanel("Job", "Run")
    seen: list[int] = []

    def job():
        seen.append(gc.get_freeze_count())
        if outcome == "raises":
            raise ValueError("broken")
        for _ in range(50):
            yield None
            if outcome == "cancelled":
                qtbot.wait(5)
        return 1

    def shown(_value):
        seen.append(gc.get_freeze_count())
        yield  # a result shown in steps, as Embed and cluster shows its layers

    assert gc.get_freeze_count() == 0
    panel.start(job, shown)
    if outcome == "cancelled":
        qtbot.waitUntil(lambda: bool(seen), timeout=10000)
        panel.cancel()
    wait_for(qtbot, panel, timeout=30)
    assert seen and seen[0] > 0  # the job ran with the heap frozen
    if outcome == "returns":
        assert len(seen) == 2 and seen[1] > 0  # still frozen while the result is shown
    assert gc.get_freeze_count() == 0
    assert runs_holding_the_heap() == 0


def test_a_layer_removed_during_a_run_is_freed(make_napari_viewer, qtbot):
    # napari collects garbage when it removes a layer (its OpenGL objects must go before the
    # next draw), and the layer itself goes at a later collection: a layer made before the run
    # is frozen, and must escape neither
    from phenossl.napari._session import session_for

    viewer = make_napari_viewer(show=True)
    session_for(viewer)  # what every phenossl widget of the viewer does
    layer = viewer.add_image(np.zeros((32, 32), np.float32), name="before the run")
    qtbot.wait(20)
    alive = weakref.ref(layer)
    freeze_heap()  # a run starts
    try:
        viewer.layers.remove(layer)
        del layer
        qtbot.wait(20)
        assert gc.get_freeze_count() == 0  # unfrozen for the rest of the run
        gc.collect()  # the next automatic collection
        assert alive() is None
    finally:
        thaw_heap()
    assert runs_holding_the_heap() == 0 and gc.get_freeze_count() == 0
