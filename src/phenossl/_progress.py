"""Progress reporting shared by the library, the CLI (tqdm) and the GUI (napari progress).

Long work in phenossl is written as a generator that yields :class:`Progress` events and
*returns* its result. That one form serves every shell:

- the CLI drives it with :func:`run` and a tqdm callback;
- the GUI hands the generator to napari's ``thread_worker``: each yield updates the progress bar
  and is a point where the run can be cancelled; the return value arrives on ``returned``;
- library users call the plain function, which drives the generator with :func:`run`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event: ``done`` of ``total`` units, with a short human message."""

    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        """Completed fraction in [0, 1] (1 when ``total`` is 0)."""
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)


ProgressCallback = Callable[[Progress], None]
ProgressGenerator = Generator[Progress, None, T]


def run(gen: Generator[Progress, None, T], progress: ProgressCallback | None = None) -> T:
    """Drive a progress generator to completion and return its result.

    Parameters
    ----------
    gen
        A generator that yields :class:`Progress` and returns a result.
    progress
        Called with every event; ``None`` ignores them.
    """
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event)


def tqdm_callback(desc: str | None = None, unit: str = "it", disable: bool = False):
    """Return ``(callback, close)`` that renders progress events with a tqdm bar."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, unit=unit, disable=disable, dynamic_ncols=True)

    def callback(event: Progress) -> None:
        if event.total and bar.total != event.total:
            bar.total = event.total
        bar.n = event.done
        if event.message:
            bar.set_postfix_str(event.message, refresh=False)
        bar.refresh()

    return callback, bar.close


def stage(
    gen: Generator[Progress, None, T], index: int, n_stages: int, label: str, scale: int = 1000
) -> Generator[Progress, None, T]:
    """Re-express a sub-task's progress as part of a multi-stage task.

    Stage ``index`` of ``n_stages`` covers ``[index * scale, (index + 1) * scale)`` of a total of
    ``n_stages * scale`` units; messages are prefixed with ``label``. Use with ``yield from``::

        features = yield from stage(iter_embed(crops), 2, 4, "embed")
    """
    total = n_stages * scale
    yield Progress(index * scale, total, label)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            yield Progress((index + 1) * scale, total, label)
            return stop.value
        done = index * scale + int(event.fraction * scale) if event.total else index * scale
        yield Progress(done, total, f"{label}: {event.message}" if event.message else label)
