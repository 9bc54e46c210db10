"""The plugin fits a 1366 x 768 laptop screen: its docks scroll and share one tabbed dock."""

from __future__ import annotations

from qtpy.QtWidgets import QScrollArea

from phenossl.napari._widgets._common import open_widget
from phenossl.napari._widgets._dock import MIN_DOCK_HEIGHT, dock_of

WIDGETS = ("Select fields", "Segment", "Embed and cluster", "Train", "Export")
LAPTOP = (1366, 768)


def test_all_five_docks_fit_a_laptop_screen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*LAPTOP)
    widgets = {name: open_widget(viewer, name) for name in WIDGETS}
    qtbot.waitUntil(
        lambda: all(isinstance(dock_of(w).widget(), QScrollArea) for w in widgets.values())
    )
    # the window's minimum height (the docks included) fits the screen, title bar aside
    assert window.minimumSizeHint().height() <= LAPTOP[1] - 60
    docks = [dock_of(w) for w in widgets.values()]
    for dock in docks:
        assert dock.minimumSizeHint().height() <= MIN_DOCK_HEIGHT + 40
    # one tabbed dock: each step is a tab of the others
    assert {d.windowTitle() for d in window.tabifiedDockWidgets(docks[0])} == {
        d.windowTitle() for d in docks[1:]
    }
    # napari still finds the widget behind the scroll area
    assert open_widget(viewer, "Embed and cluster") is widgets["Embed and cluster"]


def test_embed_button_reachable_on_a_laptop_screen(make_napari_viewer, qtbot):
    """The tallest widget (Embed, its results shown) scrolls to its run button."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(*LAPTOP)
    widget = open_widget(viewer, "Embed and cluster")
    qtbot.waitUntil(lambda: isinstance(dock_of(widget).widget(), QScrollArea))
    scroll = dock_of(widget).widget()
    widget.composition.visible = True
    widget.native.setMinimumHeight(2 * LAPTOP[1])  # as if the results were long
    qtbot.wait(50)
    assert scroll.height() < widget.native.height()
    scroll.ensureWidgetVisible(widget.panel.run_button.native)
    qtbot.wait(50)
    button = widget.panel.run_button.native
    top = button.mapTo(scroll.viewport(), button.rect().topLeft()).y()
    assert 0 <= top <= scroll.viewport().height() - button.height()
