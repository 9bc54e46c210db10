"""Keep Python's full garbage collections short while a run's worker allocates.

A napari session with torch loaded tracks about 800,000 objects. CPython collects its oldest
generation when enough objects have survived into it, and such a collection walks every tracked
object while holding the global lock: 0.3-0.4 s on a 2-core machine, during which the GUI
thread cannot run, whichever thread triggered it. A run's worker allocates enough (pandas
tables, tensors' Python wrappers) to trigger one or two per run; they were the longest stalls
of the window after the first run (up to 0.44 s, ``benchmarks/bench_gui.py``).

While a run is under way, :func:`freeze_heap` moves every object that existed when it started
into CPython's permanent generation (:func:`gc.freeze`), so that collections walk only what the
run has made. When the last run under way has ended, :func:`thaw_heap` gives them back
(:func:`gc.unfreeze`): nothing is kept from collection for longer than a run; cyclic garbage
among the frozen objects waits for the next collection after it. Both calls take microseconds.
"""

from __future__ import annotations

import gc
import threading

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
