"""Keep Python's full garbage collections short while a run's worker allocates.

A napari session with torch loaded tracks about 800,000 objects. CPython collects its oldest
generation when enough objects have survived into it, and such a collection walks every tracked
object while holding the global lock: 0.25-0.48 s on a 2-core machine, during which the GUI
thread cannot run, whichever thread triggered it. A run's worker allocates enough (pandas
tables, tensors' Python wrappers) to trigger one now and then; when it came, it was the longest
stall of the window after the first run (481 ms, ``benchmarks/results/gui_heap_ab.json``).

While a run is under way, :func:`freeze_heap` moves every object that existed when it started
into CPython's permanent generation (:func:`gc.freeze`), so that collections walk only what the
run has made. When the last run under way has ended, :func:`thaw_heap` gives them back
(:func:`gc.unfreeze`): nothing is kept from collection for longer than a run; cyclic garbage
among the frozen objects waits for the next collection after it. Both calls take microseconds.

A layer removed during a run must still be freed: napari collects garbage when it removes one
(to release its OpenGL objects before the scene is drawn again; some Windows drivers crash
otherwise), and the layer itself goes at a later collection. A viewer under
:func:`release_for_removals` unfreezes the heap before a removal and leaves it unfrozen until
the runs under way have ended, so both collections see everything, as without a run.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

_lock = threading.Lock()
_runs = 0  # runs under way that froze the heap


def freeze_heap() -> None:
    """A run starts: freeze the objects alive now (the runs under way hold them frozen).

    Examples
    --------
    >>> freeze_heap()
    >>> gc.get_freeze_count() > 0
    True
    >>> thaw_heap()
    >>> gc.get_freeze_count()
    0
    """
    global _runs
    with _lock:
        _runs += 1
        gc.freeze()


def thaw_heap() -> None:
    """A run has ended: unfreeze the heap once no other run is under way."""
    global _runs
    with _lock:
        _runs = max(_runs - 1, 0)
        if _runs == 0:
            gc.unfreeze()


def runs_holding_the_heap() -> int:
    """How many runs under way hold the heap frozen."""
    return _runs


def release_for_removals(viewer: Any) -> None:
    """Unfreeze the heap when a layer of ``viewer`` is removed during a run, until the run ends.

    Examples
    --------
    >>> from phenossl.napari._session import session_for
    >>> session = session_for(viewer)  # doctest: +SKIP  (calls it once per viewer)
    """
    events = getattr(getattr(viewer, "layers", None), "events", None)
    if events is not None:  # a viewer (not another owner of a session)
        events.removing.connect(_thaw_for_removal)


def _thaw_for_removal(_event: Any = None) -> None:
    with _lock:
        if _runs:
            gc.unfreeze()  # for the rest of the runs under way (see the module docstring)
