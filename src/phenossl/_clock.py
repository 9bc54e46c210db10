"""A stopwatch for the parts of a run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class Clock:
    """Wall time of named parts; ``library_s`` sums the parts marked as library calls.

    Examples
    --------
    >>> clock = Clock()
    >>> with clock("pipeline", library=True):
    ...     pass
    >>> sorted(clock.timings)
    ['library_s', 'pipeline_s']
    """

    def __init__(self) -> None:
        self.timings: dict[str, float] = {"library_s": 0.0}

    @contextlib.contextmanager
    def __call__(self, name: str, *, library: bool = False) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.timings[f"{name}_s"] = self.timings.get(f"{name}_s", 0.0) + elapsed
            if library:
                self.timings["library_s"] += elapsed
