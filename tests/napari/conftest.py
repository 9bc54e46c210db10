"""GUI tests: a napari viewer under Xvfb (pytest-xvfb), small synthetic plates, fast settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from _plates import TINY_SHAPE, write_tiny_plate

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.gui)


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
