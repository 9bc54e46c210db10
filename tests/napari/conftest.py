"""GUI tests: a napari viewer under Xvfb (pytest-xvfb), small synthetic plates, fast settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _plates import TINY_SHAPE, write_tiny_plate

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

# As in napari with the plugin: once a canvas has loaded Mesa's LLVM, loading triton's segfaults
# the process, and later tests in the same session (the docstring examples, the trainer) import
# torch modules that pull triton in. The plugin hides triton from torch; so do the GUI tests.
from phenossl.napari._preload import hide_triton

hide_triton()

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    gui = [item for item in items if Path(str(item.fspath)).is_relative_to(HERE)]
    problem = _display_problem() if gui else None
    for item in gui:
        item.add_marker(pytest.mark.gui)
        if problem:
            item.add_marker(pytest.mark.skip(reason=problem))


def _display_problem() -> str | None:
    """Why Qt cannot open a display here, or None. Probed in a child process: Qt aborts the
    whole process ("Fatal Python error: Aborted") when it cannot, which would end the run."""
    probe = "from qtpy.QtWidgets import QApplication; QApplication([])"
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        return "GUI tests skipped: Qt did not open a display within 120 s"
    if done.returncode == 0:
        return None
    return (
        "GUI tests skipped: no display (Xvfb not installed?). Install Xvfb and the Qt/OpenGL "
        "libraries listed in README.md (Debian: apt-get install xvfb ...), and pytest-xvfb runs "
        "them on a virtual display; or run pytest under xvfb-run"
    )


@pytest.fixture(scope="session")
def tiny_plate(tmp_path_factory) -> Path:
    """DMSO and nocodazole (4 concentrations), one small field per well: 8 fields."""
    return write_tiny_plate(tmp_path_factory.mktemp("gui") / "plate")


@pytest.fixture
def sample_plate_env(tmp_path_factory, monkeypatch) -> Path:
    """The sample plate written small, into a folder of the test session."""
    import phenossl.napari._sample_data as sample

    folder = tmp_path_factory.getbasetemp() / "sample-plate"
    monkeypatch.setenv("PHENOSSL_SAMPLE_DIR", str(folder))
    monkeypatch.setattr(sample, "SAMPLE_SHAPE", TINY_SHAPE)
    return folder


@pytest.fixture
def notifications():
    """Messages of the napari notifications shown during the test, as (severity, text)."""
    from napari.utils.notifications import notification_manager

    seen: list[tuple[str, str]] = []

    def record(event):
        notification = event if hasattr(event, "message") else event.value
        seen.append((str(notification.severity), str(notification.message)))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)
