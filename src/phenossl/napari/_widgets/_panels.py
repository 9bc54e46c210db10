"""Layout pieces of the dock widgets: collapsible sections, forms, hints, shared controls."""

from __future__ import annotations

from typing import Any

from magicgui.backends._qtpy.widgets import QBaseWidget
from magicgui.widgets import CheckBox, Container, Label, Widget


class _CollapsibleBackend(QBaseWidget):
    """magicgui backend of :class:`Collapsible`."""

    def __init__(self, parent: Any = None, **_: Any) -> None:
        from superqt import QCollapsible

        super().__init__(QCollapsible, parent=parent)


class Collapsible(Widget):
    """A folded section holding a magicgui container (e.g. the advanced parameters)."""

    def __init__(self, title: str, content: Container, *, expanded: bool = False) -> None:
        super().__init__(widget_type=_CollapsibleBackend, label="")
        self.content = content
        self.native.setText(title)
        content.margins = (0, 0, 0, 0)
        self.native.addWidget(content.native)
        self.native.setDuration(0)
        if expanded:
            self.native.expand(animate=False)

    @property
    def expanded(self) -> bool:
        return bool(self.native.isExpanded())

    def set_expanded(self, expanded: bool) -> None:
        if expanded:
            self.native.expand(animate=False)
        else:
            self.native.collapse(animate=False)


def collapsible(title: str, content: Container, *, expanded: bool = False) -> Collapsible:
    """A section titled ``title`` that shows ``content`` when opened (folded by default)."""
    return Collapsible(title, content, expanded=expanded)


def form(*widgets: Widget) -> Container:
    """Labelled rows (label on the left), without outer margins."""
    container = Container(widgets=list(widgets), labels=True)
    container.margins = (0, 0, 0, 0)
    return container


def wrapping(label: Label) -> Label:
    """Let a label wrap its words over the full width of the dock."""
    from qtpy.QtWidgets import QSizePolicy

    label.native.setWordWrap(True)
    # "Ignored" width: the label takes the width it is given instead of asking for the narrow
    # one Qt computes for wrapped text; its height then follows the wrapped lines
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
    return label


def hint(text: str = "", *, muted: bool = True) -> Label:
    """A word-wrapped line of explanation (grey when ``muted``)."""
    label = wrapping(Label(value=text))
    if muted:
        label.native.setStyleSheet("color: #a0a6b0;")
    return label


def heading(text: str = "") -> Label:
    """A bold, larger line (a result such as the AMI)."""
    label = wrapping(Label(value=text))
    label.native.setStyleSheet("font-size: 14px; font-weight: bold;")
    return label


def pack_top(container: Container) -> Container:
    """Keep a dock widget's rows at the top: extra height goes below them, not between.

    The widget also scrolls in its napari dock and shares one tabbed dock with the plugin's
    other docks (:mod:`phenossl.napari._widgets._dock`), so the plugin fits a small screen.
    """
    from phenossl.napari._widgets._dock import fit_in_dock

    container.native.layout().addStretch(1)
    fit_in_dock(container.native)
    return container


def cpu_precision_box(what: str, note: str = "") -> CheckBox:
    """The Advanced *<what> in bf16 on the CPU* box of a widget that runs a network.

    Hidden on CPUs without bf16 instructions, where bf16 is emulated and slower. ``note`` ends
    the tooltip (what bf16 costs there). Asks torch about the CPU: call it once torch is
    imported.
    """
    from phenossl._device import cpu_has_native_bf16

    box = CheckBox(
        value=False,
        label="CPU precision",
        text=f"{what.lower()} in bf16 on the CPU (faster)",
        tooltip=f"{what} in bf16 when running on the CPU: about 1.8x faster on this CPU, which "
        "has bf16 instructions, at bf16's precision" + (f". {note}" if note else ""),
    )
    if not cpu_has_native_bf16():
        box.visible = False
    return box
