"""Run long library work off the GUI thread: a run button, a progress bar, cancel, status.

A *job* is a generator function built on the library's progress generators. It yields
:class:`phenossl.Progress` events (they move the bar) or zero-argument callables (run on the GUI
thread as they come, e.g. to add the layers that are ready), and returns its result. It runs in a
napari ``thread_worker``; every yield is a point where Cancel takes effect. A job that fails or
is cancelled leaves the layers it already added, and says so in a notification.

The result callback may be a generator function: its steps (the code between its yields) then run
one per turn of the Qt event loop, so that showing several layers never freezes the window for
the sum of their costs. The panel counts as running until the last step has run.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar, PushButton
from napari.utils.notifications import show_error, show_info

from phenossl._progress import Progress
from phenossl.napari._heap import freeze_heap, thaw_heap
from phenossl.napari._widgets._panels import wrapping

logger = logging.getLogger(__name__)

Job = Callable[[], Generator[Any, None, Any]]


@dataclass(frozen=True)
class _Failed:
    error: BaseException
    trace: str


def describe_error(error: BaseException) -> str:
    """A one-paragraph message for a notification: the library's message, or the type."""
    text = _shorten(str(error).strip())
    if isinstance(error, FileNotFoundError | ValueError | TypeError | RuntimeError) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


MAX_MESSAGE = 400
ACTIVITY_INTERVAL = 0.25  # seconds between updates of napari's activity dock


def _shorten(text: str) -> str:
    """A notification-sized message: long ones (e.g. torch's list of every mismatched weight
    when a checkpoint does not fit the backbone, ~6 KB) are cut; the log keeps the whole."""
    if len(text) <= MAX_MESSAGE:
        return text
    head = text[:MAX_MESSAGE].rsplit(" ", 1)[0].rstrip(" ,:;")
    return f"{head} … ({len(text) - len(head):,} more characters in the log)"


class RunPanel(Container):
    """Run and Cancel buttons, a determinate progress bar and a status line for one task.

    Parameters
    ----------
    title
        The task's name in notifications ("Embed and cluster").
    run_text, tooltip
        The run button's text and tooltip.
    """

    def __init__(
        self, title: str, run_text: str, tooltip: str = "", *, cancelled: str | None = None
    ) -> None:
        self.title = title
        # what a cancelled run leaves behind, said when it stops
        self.cancelled_message = cancelled or f"{title} cancelled; the layers made so far are kept."
        self.run_button = PushButton(text=run_text, tooltip=tooltip)
        self.cancel_button = PushButton(
            text="Cancel", enabled=False, tooltip="Stop after the current step"
        )
        buttons = Container(
            widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False
        )
        buttons.margins = (0, 0, 0, 0)
        self.bar = ProgressBar(value=0, min=0, max=1, visible=False)
        self.status = wrapping(Label(value=""))
        super().__init__(widgets=[buttons, self.bar, self.status], labels=False)
        self.margins = (0, 4, 0, 0)
        self.worker: Any = None
        self._steps: Iterator[Any] | None = None  # the result's steps still to run
        self._ended: Callable[[], None] | None = None  # the end, once the steps have run
        self._activity: Any = None
        self._activity_shown = 0.0
        self._progress: Progress | None = None  # the newest step not shown yet
        self._cancelled = False
        self._holds_heap = False  # this panel's run keeps the heap frozen (see _heap)
        self.cancel_button.changed.connect(self.cancel)

    @property
    def running(self) -> bool:
        """A job runs, or its result is still being shown."""
        return self.worker is not None or self._steps is not None

    def start(
        self,
        job: Job,
        on_result: Callable[[Any], Any],
        *,
        on_end: Callable[[], None] | None = None,
    ) -> Any:
        """Run ``job`` in a thread worker; ``on_result`` gets its return value on the GUI thread.

        A generator function as ``on_result`` runs one step per event-loop turn.

        Returns the worker (already started), or None when a run is under way.
        """
        from napari.qt.threading import create_worker

        if self.running:
            show_info(f"{self.title} is already running; cancel it first.")
            return None
        self._cancelled = False
        self._progress = None
        self.worker = create_worker(_drive, job, _start_thread=False)
        self.worker.yielded.connect(self._on_yield)
        self.worker.returned.connect(lambda value: self._on_returned(value, on_result))
        self.worker.aborted.connect(self._on_aborted)
        self.worker.finished.connect(lambda: self._on_finished(on_end))
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.bar.visible = True
        self.bar.max, self.bar.value = 1, 0
        self.set_status(f"{self.title}: starting…")
        self._activity = _activity(self.title)
        freeze_heap()  # short garbage collections while the worker allocates (see _heap)
        self._holds_heap = True
        self.worker.start()
        return self.worker

    def cancel(self, reason: Any = None) -> None:
        """Ask the running job to stop at its next step.

        ``reason`` (a string) replaces the usual message once the job has stopped.
        """
        if self.worker is None:
            return
        self._cancel_reason = reason if isinstance(reason, str) else None
        self._cancelled = True
        self.cancel_button.enabled = False
        self.set_status(f"{self.title}: cancelling after the current step…")
        self.worker.quit()

    def set_status(self, text: str, *, error: bool = False) -> None:
        self.status.value = text
        self.status.native.setStyleSheet("color: #ff6b6b;" if error else "")

    # -- worker signals (GUI thread) -------------------------------------------------------

    def _on_yield(self, value: Any) -> None:
        if isinstance(value, Progress):
            total = max(int(value.total), 1)
            self.bar.max = total
            self.bar.value = min(int(value.done), total)
            # the status line and the activity dock on a later turn, only the newest step:
            # steps queued while the GUI thread was busy (a burst at the end of a stage) then
            # cost one update, not one each
            if self._progress is None:
                from qtpy.QtCore import QTimer

                QTimer.singleShot(0, self._show_progress)
            self._progress = value
        elif callable(value):
            try:
                value()
            except Exception as err:  # a layer that cannot be shown must not kill the run
                self._report(err, traceback.format_exc())

    def _show_progress(self) -> None:
        value, self._progress = self._progress, None
        if value is None or self.worker is None:  # the run has ended meanwhile
            return
        total = max(int(value.total), 1)
        if value.message and not self._cancelled:
            self.set_status(f"{self.title}: {value.message}")
        # last: refreshing napari's activity dock may process pending events, the job's
        # result among them, whose status must not be overwritten by this older step
        activity = self._activity
        now = time.monotonic()
        due = now - self._activity_shown >= ACTIVITY_INTERVAL or value.done >= value.total
        if activity is not None and due:
            # at most every ACTIVITY_INTERVAL: each refresh runs a nested processEvents in
            # napari's dock, which then ran every queued step and result inside this one
            self._activity_shown = now
            activity.total = total
            activity.n = self.bar.value
            if value.message:
                activity.set_description(f"{self.title}: {value.message}")
            activity.refresh()

    def _on_returned(self, value: Any, on_result: Callable[[Any], None]) -> None:
        self._progress = None
        if isinstance(value, _Failed):
            self._report(value.error, value.trace)
            return
        self.set_status(f"{self.title}: done.")
        try:
            steps = on_result(value)
        except Exception as err:
            self._report(err, traceback.format_exc())
            return
        if isinstance(steps, Generator):
            self._steps = steps
            self._next_step()
        else:
            self.bar.value = self.bar.max

    def _next_step(self) -> None:
        """Run the result's next step; schedule the one after it for the next turn."""
        from qtpy.QtCore import QTimer

        if self._steps is None:
            return
        try:
            next(self._steps)
        except StopIteration:
            self._steps = None
            self.bar.value = self.bar.max
        except Exception as err:
            self._steps = None
            self._report(err, traceback.format_exc())
        if self._steps is not None:
            QTimer.singleShot(0, self._next_step)
        elif self.worker is None and self._ended is not None:
            self._ended()

    def _on_aborted(self) -> None:
        self._progress = None
        message = getattr(self, "_cancel_reason", None) or self.cancelled_message
        self.set_status(message)
        show_info(message)

    def _on_finished(self, on_end: Callable[[], None] | None) -> None:
        if self._cancelled:
            # close the abandoned generator now, so that its cleanup (open files, feeder
            # threads, unfinished CropSets) runs at once rather than whenever it is collected
            generator = getattr(self.worker, "_gen", None)
            if generator is not None:
                generator.close()
        self.worker = None
        activity, self._activity = self._activity, None
        if activity is not None:
            activity.close()
        self.cancel_button.enabled = False
        self._ended = lambda: self._end(on_end)
        if self._steps is None:  # else the last step ends the run
            self._ended()

    def _end(self, on_end: Callable[[], None] | None) -> None:
        self._ended = None
        if self._holds_heap:
            self._holds_heap = False
            thaw_heap()
        self.run_button.enabled = True
        if on_end is not None:
            on_end()

    def _report(self, error: BaseException, trace: str) -> None:
        logger.warning("%s failed:\n%s", self.title, trace)
        message = f"{self.title} failed: {describe_error(error)}"
        self.set_status(message, error=True)
        show_error(message)


def _activity(title: str) -> Any:
    """A task in napari's activity dock (bottom right), or None where it cannot be made."""
    try:
        from napari.utils import progress

        return progress(total=1, desc=title)
    except Exception:  # an old napari: the widget's own bar still shows the work
        return None


def _drive(job: Job) -> Generator[Any, None, Any]:
    """Run ``job``; an exception becomes the return value, reported by the panel.

    napari's worker would otherwise also relay the exception to its own handler (a second,
    traceback-only notification).
    """
    try:
        return (yield from job())
    except Exception as err:
        return _Failed(err, traceback.format_exc())
