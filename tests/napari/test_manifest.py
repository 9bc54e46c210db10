"""The npe2 manifest: valid, packaged, and its contributions reach napari's menus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import phenossl

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "napari-phenossl"


def test_manifest_is_valid_and_imports():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(REPO / "napari.yaml")
    manifest.validate_imports()
    contributions = manifest.contributions
    assert {w.display_name for w in contributions.widgets} >= {
        "Select fields",
        "Segment",
        "Embed and cluster",
        "Export",
    }
    assert contributions.readers[0].accepts_directories
    assert [s.key for s in contributions.sample_data] == ["synthetic_plate"]


def test_the_package_holds_the_manifest_as_a_file():
    # a real file in the package (a link there breaks Windows checkouts and some installers);
    # the repository's top-level napari.yaml points to it
    packaged = Path(phenossl.__file__).parent / "napari.yaml"
    assert packaged.is_file() and not packaged.is_symlink()
    top = REPO / "napari.yaml"
    assert top.is_symlink() and os.readlink(top) == "src/phenossl/napari.yaml"
    assert packaged.read_text() == top.read_text()


@pytest.mark.parametrize(
    ("menu", "command"),
    [
        ("napari/file/io_utilities", "napari-phenossl.select_fields"),
        ("napari/file/io_utilities", "napari-phenossl.export"),
        ("napari/layers/segment", "napari-phenossl.segment"),
        ("napari/layers/classify", "napari-phenossl.embed_cluster"),
    ],
)
def test_widgets_are_in_their_nap6_menus(make_napari_viewer, menu, command):
    from napari._app_model import get_app_model

    make_napari_viewer()
    items = get_app_model().menus.get_menu(menu)
    assert command in [getattr(item, "command", None) and item.command.id for item in items]


def test_sample_data_is_offered(make_napari_viewer):
    from napari.plugins import _npe2

    make_napari_viewer()
    data, _ = _npe2.get_sample_data(PLUGIN, "synthetic_plate")
    assert callable(data)
