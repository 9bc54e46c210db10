"""The reader: BBBC021 folders and tables open the field browser; channel TIFFs open as layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from phenossl.data.bbbc021 import IMAGE_CSV, load_image_table
from phenossl.napari._reader import get_reader, open_table, read_tiffs

PLUGIN = "napari-phenossl"


def _field_files(root: Path) -> list[str]:
    row = load_image_table(root).iloc[0]
    return [row["dapi"], row["tubulin"], row["actin"]]


def test_get_reader_claims_only_what_it_reads(tiny_plate, tmp_path):
    other_csv = tmp_path / "measurements.csv"
    other_csv.write_text("a,b\n1,2\n")
    (tmp_path / "picture.png").write_bytes(b"")
    files = _field_files(tiny_plate)
    assert get_reader(str(tiny_plate)) is open_table
    assert get_reader(str(tiny_plate / IMAGE_CSV)) is open_table
    assert get_reader(str(tmp_path)) is None  # a folder without the BBBC021 table
    assert get_reader(str(other_csv)) is None
    assert get_reader(str(tmp_path / "picture.png")) is None
    assert get_reader(files[0]) is read_tiffs
    assert get_reader(files) is read_tiffs


def test_a_bbbc021_folder_opens_the_field_browser(make_napari_viewer, tiny_plate):
    from phenossl.napari._widgets._common import open_widget

    viewer = make_napari_viewer()
    layers = viewer.open(str(tiny_plate), plugin=PLUGIN)
    assert layers == [] and len(viewer.layers) == 0  # no image is loaded
    widget = open_widget(viewer, "Select fields")  # the one the reader opened
    assert widget.session.root == tiny_plate
    assert widget.summary.value.startswith("8 fields, 1 plate, 2 compounds")
    assert widget.count.value.startswith("8 fields selected")


def test_the_image_csv_opens_the_field_browser(make_napari_viewer, tiny_plate):
    from phenossl.napari._session import session_for

    viewer = make_napari_viewer()
    viewer.open(str(tiny_plate / IMAGE_CSV), plugin=PLUGIN)
    assert len(session_for(viewer).table) == 8


def test_a_fields_tiffs_open_as_three_additive_channels(make_napari_viewer, tiny_plate):
    viewer = make_napari_viewer()
    files = _field_files(tiny_plate)
    layers = viewer.open(files, plugin=PLUGIN)
    assert [layer.colormap.name for layer in layers] == ["blue", "green", "red"]
    assert [layer.name for layer in layers] == [
        "DAPI [B02/s1]",
        "Tubulin [B02/s1]",
        "Actin [B02/s1]",
    ]
    for layer, path in zip(layers, files):
        raw = tifffile.imread(path)
        assert layer.blending == "additive"
        low, high = layer.contrast_limits
        assert low == pytest.approx(np.percentile(raw, 1.0))
        assert high == pytest.approx(np.percentile(raw, 99.8))
        field = layer.metadata["phenossl"]["field"]
        assert field["field_id"] == "Week1_90001/B02/s1" and field["compound"] == "DMSO"


def test_unrelated_files_open_with_napari_without_a_dialog(make_napari_viewer, tmp_path):
    """A TIFF z-stack and napari's own points CSV: only napari's reader is offered."""
    from napari.plugins import _npe2

    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 20, 30), dtype=np.uint16), photometric="minisblack")
    single = tmp_path / "cells_w1.tiff"  # a channel-like name, but not BBBC021's
    tifffile.imwrite(single, np.zeros((20, 30), dtype=np.uint16))
    viewer = make_napari_viewer()
    points = viewer.add_points([[1.0, 2.0], [3.0, 4.0]], name="my points")
    csv = tmp_path / "points.csv"
    viewer.layers.save(str(csv), selected=False, plugin="napari")
    viewer.layers.clear()
    for path in (stack, single, csv):
        assert get_reader(str(path)) is None
        assert list(_npe2.get_readers(str(path))) == ["napari"], path
    # no plugin named: napari would raise MultipleReaderError (the dialog) if two claimed them
    (image,) = viewer.open(str(stack))
    assert image.data.shape == (3, 20, 30) and "phenossl" not in image.metadata
    (opened,) = viewer.open(str(csv))
    np.testing.assert_allclose(opened.data, points.data)


def test_bbbc021_files_are_ours_alone(tiny_plate):
    from napari.plugins import _npe2

    for path in [*_field_files(tiny_plate), str(tiny_plate / IMAGE_CSV)]:
        assert PLUGIN in _npe2.get_readers(path), path


def test_a_csv_missing_columns_is_a_notification(make_napari_viewer, tmp_path, notifications):
    (tmp_path / IMAGE_CSV).write_text("TableNumber,ImageNumber\n1,2\n")
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / IMAGE_CSV), plugin=PLUGIN)
    errors = [text for severity, text in notifications if severity == "error"]
    assert errors and "missing column(s) Image_FileName_DAPI" in errors[-1]
    viewer.add_image(np.zeros((4, 4)))  # still usable


@pytest.mark.realdata
def test_the_real_bbbc021_folder_and_field(make_napari_viewer, bbbc021_root, real_field_paths):
    from phenossl.napari._session import session_for

    viewer = make_napari_viewer()
    assert viewer.open(str(bbbc021_root), plugin=PLUGIN) == []
    session = session_for(viewer)
    assert len(session.table) == 13200
    layers = viewer.open(
        [str(real_field_paths[k]) for k in ("dapi", "tubulin", "actin")], plugin=PLUGIN
    )
    assert [layer.colormap.name for layer in layers] == ["blue", "green", "red"]
    assert layers[0].data.shape == (1024, 1280)
    field = layers[0].metadata["phenossl"]["field"]
    assert field["field_id"] == "Week2_24381/B02/s1" and field["compound"] == "DMSO"
