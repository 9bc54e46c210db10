"""Reading ahead: load the next items in a thread pool while the caller works on this one."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["read_ahead"]

T = TypeVar("T")
R = TypeVar("R")


def read_ahead(
    load: Callable[[T], R], items: Iterable[T], pool: ThreadPoolExecutor, depth: int = 2
) -> Iterator[tuple[R, T]]:
    """``(load(item), item)`` for each item in order, ``load`` running in ``pool`` while the
    consumer works on earlier items (up to ``depth`` loads submitted at once).

    An exception of ``load`` is raised where its item is reached; closing the iterator early
    cancels the loads not yet started.

    Examples
    --------
    >>> with ThreadPoolExecutor(max_workers=1) as pool:
    ...     list(read_ahead(lambda x: x * x, [1, 2, 3], pool))
    [(1, 1), (4, 2), (9, 3)]
    """
    pending: deque[tuple[Future, T]] = deque()
    try:
        for item in items:
            pending.append((pool.submit(load, item), item))
            if len(pending) >= depth:
                future, done = pending.popleft()
                yield future.result(), done
        while pending:
            future, done = pending.popleft()
            yield future.result(), done
    finally:
        for future, _ in pending:
            future.cancel()
