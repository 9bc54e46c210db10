"""Plates in any layout: fields from file names, treatments from a metadata CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _plates import TINY_CROP, write_tiny_plate
from _plates_layout import write_phenix_plate

from phenossl.data.bbbc021 import TABLE_COLUMNS, load_image_table, select_fields
from phenossl.data.plate_layout import (
    PRESETS,
    PlateLayout,
    layout_from,
    normalise_well,
    parse_channels,
    scan_plate,
    well_name,
)


@pytest.fixture(scope="module")
def bbbc021_plate(tmp_path_factory) -> Path:
    return write_tiny_plate(tmp_path_factory.mktemp("layout") / "plate")


@pytest.fixture(scope="module")
def phenix(bbbc021_plate, tmp_path_factory) -> tuple[Path, Path]:
    return write_phenix_plate(bbbc021_plate, tmp_path_factory.mktemp("phenix") / "MyPlate")


def test_a_phenix_plate_gives_the_same_fields_as_its_bbbc021_original(bbbc021_plate, phenix):
    root, meta = phenix
    original = load_image_table(bbbc021_plate).sort_values("well").reset_index(drop=True)
    table = scan_plate(root, "phenix", metadata=meta)
    assert list(table.columns[: len(TABLE_COLUMNS)]) == list(TABLE_COLUMNS)
    assert table["plate"].unique().tolist() == ["MyPlate"]  # the folder's name
    assert table["well"].tolist() == original["well"].tolist()
    assert table["field_id"].tolist() == [f"MyPlate/{w}/s1" for w in original["well"]]
    assert table["compound"].tolist() == original["compound"].tolist()
    assert table["treatment"].tolist() == original["treatment"].tolist()
    assert table["exists"].all()
    for key in ("dapi", "tubulin", "actin"):
        for mine, theirs in zip(table[key], original[key]):
            assert Path(mine).read_bytes() == Path(theirs).read_bytes()
    # the field table works with the rest of the library
    chosen = select_fields(table, compounds="nocodazole", n_top=4, include_dmso=True)
    assert set(chosen["compound"]) == {"DMSO", "nocodazole"}


def test_without_metadata_the_treatments_are_unknown(phenix):
    table = scan_plate(phenix[0], "phenix")
    assert set(table["compound"]) == {"unknown"} and set(table["treatment"]) == {"unknown"}


def test_the_bbbc021_preset_reads_bbbc021_names(bbbc021_plate):
    original = load_image_table(bbbc021_plate)
    table = scan_plate(bbbc021_plate, "bbbc021")
    assert sorted(table["field_id"]) == sorted(original["field_id"])
    merged = table.merge(original, on="field_id", suffixes=("", "_csv"))
    for key in ("dapi", "tubulin", "actin"):
        assert (
            merged[key].map(lambda p: Path(p).resolve())
            == merged[f"{key}_csv"].map(lambda p: Path(p).resolve())
        ).all()


def test_templates_regexes_and_channel_maps():
    layout = PlateLayout("{plate}/{well}_s{site}_w{channel}.tif", {"1": "DAPI"})
    assert layout.match("P1/b3_s2_w1.tif") == {
        "plate": "P1",
        "well": "B03",
        "site": 2,
        "channel": "1",
    }
    assert layout.match("P1/b3_s2_w1.png") is None
    assert PRESETS["cellinsight"].match("Plate7/MFGTMP_B02f00d0.TIF")["channel"] == "0"
    assert well_name(16, 24) == "P24" and well_name(27, 1) == "AA01"
    assert normalise_well("p024") == "P24"
    assert parse_channels("ch1=dapi, 3 = Actin") == {"ch1": "DAPI", "3": "Actin"}
    assert layout_from("phenix", "5=DAPI").channels == {"5": "DAPI"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PlateLayout("{plate}/{site}.tif"), "expected the fields 'channel' and 'well'"),
        (lambda: PlateLayout("{well}{channel}.tif", {"1": "GFP"}), "GFP is not a model channel"),
        (lambda: parse_channels("1:DAPI"), "expected TOKEN=CHANNEL"),
        (lambda: normalise_well("12"), "expected a row letter"),
    ],
)
def test_bad_layouts_are_named_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_plate_errors_name_the_file(phenix, tmp_path):
    root = phenix[0]
    with pytest.raises(ValueError, match=r"no file follows the layout .* \(found: Images/r02"):
        scan_plate(root, "imagexpress")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"Well": ["B02", "b2"], "compound": ["a", "b"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="B02 is listed more than once"):
        scan_plate(root, "phenix", metadata=bad)
    pd.DataFrame({"position": ["B02"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"bad.csv: no 'well' column"):
        scan_plate(root, "phenix", metadata=bad)
    with pytest.raises(FileNotFoundError, match="plate folder not found"):
        scan_plate(tmp_path / "nowhere", "phenix")


def test_cli_crops_on_a_phenix_plate(phenix, tmp_path, capsys):
    from phenossl.cli import main

    root, meta = phenix
    out = tmp_path / "crops"
    args = ["-q", "crops", str(root), "--out", str(out), "--size", str(TINY_CROP)]
    code = main([*args, "--layout", "phenix", "--metadata", str(meta), "--compound", "DMSO"])
    assert code == 0, capsys.readouterr().err
    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) > 0 and set(cells["compound"]) == {"DMSO"}
    assert cells["field_id"].str.startswith("MyPlate/").all()
    # a folder without the BBBC021 CSV and without --layout says what to pass
    assert main(["-q", "crops", str(root), "--out", str(tmp_path / "c2")]) != 0
    assert "--layout" in capsys.readouterr().err
    assert np.isfinite(cells["label"]).all()


def test_the_layout_is_detected(bbbc021_plate, phenix, tmp_path):
    from phenossl.data.plate_layout import detect_layout, load_plate

    assert detect_layout(phenix[0]).name == "phenix"
    assert detect_layout(bbbc021_plate).name in {"bbbc021", "imagexpress"}
    assert detect_layout(tmp_path) is None
    assert len(load_plate(phenix[0], metadata=phenix[1])) == len(load_plate(bbbc021_plate))
    with pytest.raises(FileNotFoundError, match="describe the file names with a pattern"):
        load_plate(tmp_path)


def test_array_fields_become_a_field_table(tmp_path):
    from phenossl.data.array_fields import write_array_fields
    from phenossl.data.fields import read_field

    rng = np.random.default_rng(0)
    dapi = rng.integers(0, 4000, size=(3, 40, 50), dtype=np.uint16)
    actin = rng.random((3, 40, 50))
    labels = pd.DataFrame({"Field": [1, 3], "compound": ["DMSO", "taxol"], "concentration": [0, 1]})
    table = write_array_fields(
        {"DAPI": dapi, "Actin": actin, "Tubulin": None}, tmp_path, labels=labels
    )
    assert table["field_id"].tolist() == ["layers/F001/s1", "layers/F002/s1", "layers/F003/s1"]
    assert table["treatment"].tolist() == ["DMSO@0", "unknown", "taxol@1"]
    raw = read_field(table.iloc[2], normalize=False)
    np.testing.assert_array_equal(raw[0], dapi[2])
    np.testing.assert_array_equal(raw[1], 0)  # no Tubulin: black
    np.testing.assert_allclose(raw[2], actin[2].astype(np.float32))
    with pytest.raises(
        ValueError, match=r"line 2: field .9. is not a plane number between 1 and 3"
    ):
        write_array_fields({"DAPI": dapi}, tmp_path, labels=pd.DataFrame({"field": [9]}))
    with pytest.raises(ValueError, match="all of one shape"):
        write_array_fields({"DAPI": dapi, "Actin": dapi[:, :10]}, tmp_path)
