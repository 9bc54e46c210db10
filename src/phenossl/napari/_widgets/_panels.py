"""A collapsible section (superqt's ``QCollapsible``) as a magicgui widget."""

from __future__ import annotations

from typing import Any

from magicgui.backends._qtpy.widgets import QBaseWidget
from magicgui.widgets import Container, Widget


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
