"""Make the plugin's docks fit a small screen: each one scrolls, and they share one tabbed dock.

napari stacks plugin docks one above the other, each at least as tall as its widget, and does
not scroll them: with all five docks the minimum height was 2,365 px. Two changes make the plugin
fit a 1366 x 768 laptop screen:

- each widget sits in a vertical :class:`QScrollArea`, so its dock can be any height;
- a phenossl dock opened beside another phenossl dock is tabified with it, so the steps (Select
  fields, Segment, Embed, Train, Export) are tabs of one dock with the full height each, instead
  of five slivers.

Both happen when napari puts the widget in its dock (the ``ParentChange`` event), whichever way
the dock was opened (the Plugins menu, the reader, :func:`open_widget`, a test).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QWidget

#: Smallest height a phenossl dock asks for (its title bar, a few rows and the scroll bar).
MIN_DOCK_HEIGHT = 120
_MARK = "_phenossl_dock"


class _DockWatcher(QObject):
    """Wraps its widget in a scroll area once napari puts it in a dock."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ParentChange and isinstance(obj.parent(), QDockWidget):
            QTimer.singleShot(0, lambda widget=obj: scroll_in_dock(widget))
        return False


def fit_in_dock(widget: QWidget) -> None:
    """Have ``widget`` (a magicgui container's native widget) scroll in its napari dock."""
    watcher = _DockWatcher(widget)
    widget.installEventFilter(watcher)
    setattr(widget, _MARK, True)


def scroll_in_dock(widget: QWidget) -> QScrollArea | None:
    """Put ``widget`` into a scroll area inside its dock, and tabify the dock with ours.

    Returns the scroll area, or None when ``widget`` is not (or no longer) directly in a dock.
    """
    try:
        dock = widget.parent()
    except RuntimeError:  # deleted meanwhile
        return None
    if not isinstance(dock, QDockWidget) or dock.widget() is not widget:
        return None
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    scroll.setMinimumHeight(MIN_DOCK_HEIGHT)
    # the scroll area must be as wide as the widget needs; only its height is free
    scroll.setMinimumWidth(widget.minimumSizeHint().width() + 16)
    # napari finds the magicgui widget of a dock (``inner_widget``) through this attribute
    magic = getattr(widget, "_magic_widget", None)
    if magic is not None:
        scroll._magic_widget = magic
    dock.setWidget(scroll)
    scroll.setWidget(widget)
    setattr(scroll, _MARK, True)
    dock.setMinimumHeight(MIN_DOCK_HEIGHT)
    _tabify_with_ours(dock)
    return scroll


def is_ours(dock: QDockWidget) -> bool:
    """Whether ``dock`` holds a phenossl widget (scrolled or not yet)."""
    inner = dock.widget()
    return inner is not None and bool(getattr(inner, _MARK, False))


def _tabify_with_ours(dock: QDockWidget) -> None:
    """Join the tab group of the first phenossl dock already scrolled in the same area."""
    window = dock.parent()
    if not isinstance(window, QMainWindow):
        return
    area = window.dockWidgetArea(dock)
    for other in window.findChildren(QDockWidget):
        if (
            other is not dock
            and isinstance(other.widget(), QScrollArea)
            and is_ours(other)
            and not other.isFloating()
            and window.dockWidgetArea(other) == area
            and other.toggleViewAction().isChecked()  # not closed by the user
        ):
            window.tabifyDockWidget(other, dock)
            dock.show()
            dock.raise_()
            return


def dock_of(widget: Any) -> QDockWidget | None:
    """The dock holding a phenossl magicgui widget (through its scroll area), or None."""
    native = getattr(widget, "native", widget)
    parent = native.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent
