"""Progress reporting shared by the library, the CLI (tqdm) and the GUI (napari progress).

Long work in phenossl is written as a generator that yields :class:`Progress` events and
*returns* its result. That one form serves every shell:

- the CLI drives it with :func:`run` and a tqdm callback;
- the GUI hands the generator to napari's ``thread_worker``: each yield updates the progress bar
  and is a point where the run can be cancelled; the return value arrives on ``returned``;
- library users call the plain function, which drives the generator with :func:`run`; the
  plain function is derived from the generator function by :func:`drives`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

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


def drives(
    iter_fn: Callable[..., Generator[Progress, None, Any]],
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Make the decorated stub the plain, blocking form of the generator function ``iter_fn``.

    The stub declares only what it adds: a keyword-only ``progress`` callback, its return type
    and its docstring. The result takes ``iter_fn``'s parameters plus ``progress``, runs
    ``iter_fn`` to the end with :func:`run` and returns its result. ``help()`` and
    :func:`inspect.signature` show the full signature, so the parameters are written (and
    documented) once, on ``iter_fn``.

    Examples
    --------
    >>> def iter_square(x: int) -> ProgressGenerator[int]:
    ...     yield Progress(0, 1)
    ...     return x * x
    >>> @drives(iter_square)
    ... def square(*, progress: ProgressCallback | None = None) -> int:
    ...     "The square of ``x``; see ``iter_square``."
    >>> square(3, progress=print)
    Progress(done=0, total=1, message='')
    9
    >>> inspect.signature(square)
    <Signature (x: 'int', *, progress: 'ProgressCallback | None' = None) -> 'int'>
    """

    def decorate(stub: Callable[..., T]) -> Callable[..., T]:
        own = list(inspect.signature(stub).parameters.values())
        if [(p.name, p.kind) for p in own] != [("progress", inspect.Parameter.KEYWORD_ONLY)]:
            raise TypeError(f"{stub.__name__}: the stub takes exactly `*, progress=None`")

        @functools.wraps(stub)
        def plain(*args: Any, progress: ProgressCallback | None = None, **kwargs: Any) -> T:
            return run(iter_fn(*args, **kwargs), progress)

        params = list(inspect.signature(iter_fn).parameters.values())
        at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))
        returns = inspect.signature(stub).return_annotation
        # __signature__ stops inspect.signature at `plain`; __wrapped__ (the stub) still gives
        # typing.get_type_hints the stub's module to resolve the annotations in
        plain.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [*params[:at], *own, *params[at:]], return_annotation=returns
        )
        plain.__annotations__ = {
            **{k: v for k, v in iter_fn.__annotations__.items() if k != "return"},
            **stub.__annotations__,
        }
        return plain

    return decorate


def tqdm_callback(
    desc: str | None = None, unit: str = "it", disable: bool = False, percent: bool = False
):
    """Return ``(callback, close)`` that renders progress events with a tqdm bar.

    ``percent=True`` shows a percentage instead of counts (for staged progress, whose units are
    arbitrary).
    """
    from tqdm.auto import tqdm

    fmt = "{l_bar}{bar}| {elapsed}<{remaining}{postfix}" if percent else None
    bar = tqdm(desc=desc, unit=unit, disable=disable, dynamic_ncols=True, bar_format=fmt)

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


class Stages:
    """Numbered stages of one task, counted as :func:`stage` counts them.

    Examples
    --------
    >>> stages = Stages(2)
    >>> def work():
    ...     yield Progress(1, 2)
    ...     return "done"
    >>> run(stages.run(work(), "first"))
    'done'
    >>> stages.done("second")
    Progress(done=2000, total=2000, message='second')
    """

    def __init__(self, total: int, scale: int = 1000) -> None:
        self.total, self.scale, self.index = total, scale, 0

    def run(self, gen: Generator[Progress, None, T], label: str) -> Generator[Progress, None, T]:
        """Run a sub-generator as the next stage; returns its result."""
        result = yield from stage(gen, self.index, self.total, label, self.scale)
        self.index += 1
        return result

    def done(self, label: str) -> Progress:
        """The progress event of a stage done without sub-progress."""
        self.index += 1
        return Progress(self.index * self.scale, self.total * self.scale, label)
