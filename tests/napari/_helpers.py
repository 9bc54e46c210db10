"""Helpers of the GUI tests."""

from __future__ import annotations

from _plates import TINY_CROP


def fast_embed(widget) -> None:
    """Settings that embed a tiny plate in seconds on a CPU."""
    widget.source.value = "backbone"
    widget.backbone.value = "resnet18"
    widget.weights.value = "random"
    widget.device.value = "cpu"
    widget.crop_size.value = TINY_CROP
    widget.input_size.value = 32
    widget.batch_size.value = 64


def run_embed(viewer, qtbot, **settings):
    """'Embed and cluster' with :func:`fast_embed`'s settings and ``settings``, run to its end."""
    from phenossl.napari._widgets._common import open_widget

    widget = open_widget(viewer, "Embed and cluster")
    fast_embed(widget)
    for name, value in settings.items():
        getattr(widget, name).value = value
    widget.panel.run_button.native.click()  # as a user does
    wait_for(qtbot, widget.panel)
    return widget


def wait_for(qtbot, panel, timeout: float = 120) -> None:
    """Wait until a widget's run (its RunPanel) has finished."""
    qtbot.waitUntil(lambda: not panel.running, timeout=int(timeout * 1000))


def open_fields(viewer, root, *, preset: str | None = None, load: bool = True):
    """The 'Select fields' widget (through the plugin's manifest) on ``root``, loaded."""
    from phenossl.napari._widgets._common import open_widget

    widget = open_widget(viewer, "Select fields")
    assert widget.open_root(root)
    if preset:
        widget.apply_preset(preset)
    if load:
        widget.load()
    return widget
