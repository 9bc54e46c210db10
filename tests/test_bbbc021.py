"""Tests of phenossl.data.bbbc021: the field table, field selection and the paper subsets."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from phenossl.data.bbbc021 import (
    IMAGE_COLUMNS,
    IMAGE_CSV,
    MOA_CSV,
    TABLE_COLUMNS,
    load_image_table,
    paper_subset,
    select_fields,
    summarize_missing,
    top_concentrations,
)

# plate, well, site, compound, concentration: a tiny plate pair in the official layout
FIELDS = [
    ("Week1_11", "B02", 1, "DMSO", 0.0),
    ("Week1_11", "B02", 2, "DMSO", 0.0),
    ("Week1_11", "C03", 1, "taxol", 3.0),
    ("Week1_11", "C04", 1, "taxol", 0.003),
    ("Week2_22", "D05", 1, "nocodazole", 1.0),
    ("Week2_22", "D05", 3, "mystery", 10.0),
]
MOA_ROWS = [  # no DMSO row: DMSO must still get the MOA "DMSO"; taxol 0.003 and mystery are absent
    ("taxol", "3.000000", "Microtubule stabilizers"),
    ("nocodazole", "1.000000", "Microtubule destabilizers"),
]
TAGS = {"DAPI": "w1", "Tubulin": "w2", "Actin": "w4"}


def _file_name(plate: str, well: str, site: int, channel: str) -> str:
    return f"{plate.split('_')[0]}_010101_{well}_s{site}_{TAGS[channel]}{channel.upper()}-UUID.tif"


def _image_frame(fields=FIELDS) -> pd.DataFrame:
    rows = []
    for number, (plate, well, site, compound, concentration) in enumerate(fields, start=1):
        row = {"TableNumber": 7, "ImageNumber": number}
        for channel in TAGS:
            row[f"Image_FileName_{channel}"] = _file_name(plate, well, site, channel)
            row[f"Image_PathName_{channel}"] = f"{plate.split('_')[0]}/{plate}"
        row |= {
            "Image_Metadata_Plate_DAPI": plate,
            "Image_Metadata_Well_DAPI": well,
            "Replicate": 1 + number % 3,
            "Image_Metadata_Compound": compound,
            "Image_Metadata_Concentration": concentration,
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=list(IMAGE_COLUMNS))


def _write_root(root: Path, images: pd.DataFrame | None = None, moa_rows=MOA_ROWS) -> Path:
    """Write the two CSVs; create all files of field 0 and two of the three of field 1."""
    root.mkdir(parents=True, exist_ok=True)
    images = _image_frame() if images is None else images
    images.to_csv(root / IMAGE_CSV, index=False)
    lines = ['"compound",concentration,"moa"'] + [f'"{c}",{x},"{m}"' for c, x, m in moa_rows]
    (root / MOA_CSV).write_text("\n".join(lines) + "\n")
    folder = root / "Week1" / "Week1_11"
    folder.mkdir(parents=True)
    for channel in TAGS:
        (folder / _file_name(*FIELDS[0][:3], channel)).write_bytes(b"")
    for channel in ("DAPI", "Tubulin"):
        (folder / _file_name(*FIELDS[1][:3], channel)).write_bytes(b"")
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return _write_root(tmp_path / "bbbc021")


# --- the field table on a small plate ---------------------------------------------------------


def test_table_columns_and_values(root):
    table = load_image_table(root)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert list(table.field_id) == [f"{p}/{w}/s{s}" for p, w, s, _, _ in FIELDS]
    assert list(table.week) == ["Week1"] * 4 + ["Week2"] * 2
    assert list(table.site) == [1, 2, 1, 1, 1, 3]
    assert list(table.image_number) == [1, 2, 3, 4, 5, 6]
    assert list(table.treatment) == [
        "DMSO@0",
        "DMSO@0",
        "taxol@3",
        "taxol@0.003",
        "nocodazole@1",
        "mystery@10",
    ]
    assert table.moa.tolist()[:3] == ["DMSO", "DMSO", "Microtubule stabilizers"]
    assert table.moa.isna().tolist() == [False, False, False, True, False, True]
    assert table.exists.tolist() == [True, False, False, False, False, False]
    for column in ("table_number", "image_number", "site", "replicate"):
        assert table[column].dtype == np.int64
    assert table.concentration.dtype == np.float64
    assert table.exists.dtype == bool
    expected = root / "Week1" / "Week1_11" / _file_name("Week1_11", "B02", 1, "Actin")
    assert table.actin[0] == str(expected)


def test_relative_root_gives_absolute_paths(root, monkeypatch):
    monkeypatch.chdir(root.parent)
    table = load_image_table(root.name)
    assert all(os.path.isabs(p) for p in table.dapi)
    assert Path(table.dapi[0]).is_file()


def test_check_files_false_touches_nothing(root, tmp_path):
    table = load_image_table(
        tmp_path / "elsewhere", root / IMAGE_CSV, root / MOA_CSV, check_files=False
    )
    assert table.exists.isna().all()
    assert table.dapi[0].startswith(str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="check_files=True"):
        summarize_missing(table)


def test_missing_csv_says_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(IMAGE_CSV)) as info:
        load_image_table(tmp_path)
    assert str(tmp_path) in str(info.value)
    _write_root(tmp_path / "r")
    (tmp_path / "r" / MOA_CSV).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(MOA_CSV)):
        load_image_table(tmp_path / "r")


def test_missing_columns_are_named(tmp_path):
    images = _image_frame().drop(columns=["Replicate", "Image_PathName_Actin"])
    root = _write_root(tmp_path / "r", images)
    with pytest.raises(
        ValueError, match="missing column\\(s\\) Image_PathName_Actin, Replicate;"
    ) as info:
        load_image_table(root)
    assert IMAGE_CSV in str(info.value)
    (root / MOA_CSV).write_text("compound,concentration\nDMSO,0\n")
    _image_frame().to_csv(root / IMAGE_CSV, index=False)
    with pytest.raises(ValueError, match=rf"{re.escape(MOA_CSV)}: missing column\(s\) moa"):
        load_image_table(root)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("Image_Metadata_Concentration", "high", "line 3: column Image_Metadata_Concentration"),
        ("ImageNumber", "2.5", "line 3: column ImageNumber must be an integer"),
        ("Image_Metadata_Compound", "", "line 3: column Image_Metadata_Compound is empty"),
        ("Image_FileName_DAPI", "B02_w1.tif", "line 3: cannot read the site"),
        ("Image_Metadata_Well_DAPI", "B02", r"more than once: line 2 \(Week1_11/B02/s1\)"),
    ],
)
def test_bad_values_name_the_line(tmp_path, column, value, message):
    images = _image_frame().astype(str)
    images.loc[1, column] = value  # line 3 of the file
    if column == "Image_Metadata_Well_DAPI":
        images.loc[1, "Image_FileName_DAPI"] = images.loc[0, "Image_FileName_DAPI"]
    with pytest.raises(ValueError, match=message):
        load_image_table(_write_root(tmp_path / "r", images))


def test_conflicting_moa_rows_are_an_error(tmp_path):
    rows = [*MOA_ROWS, ("taxol", "3", "Something else")]
    with pytest.raises(ValueError, match="taxol@3"):
        load_image_table(_write_root(tmp_path / "r", moa_rows=rows))


def test_summarize_missing(root):
    summary = summarize_missing(load_image_table(root))
    assert (summary.n_fields, summary.n_existing, summary.n_missing) == (6, 1, 5)
    assert summary.missing[0] == "Week1_11/B02/s2"  # two of its three files exist: still missing
    assert "Week1_11/B02/s1" not in summary.missing
    assert summary.missing_by_plate == {"Week1_11": 3, "Week2_22": 2}
    assert str(summary).startswith("1 of 6 fields have all three files; 5 missing in 2 plate(s)")


# --- field selection --------------------------------------------------------------------------


def _field_table() -> pd.DataFrame:
    """A field table with compound A at 5 concentrations, B at 2, DMSO; two plates."""
    rows = []
    for plate in ("P1", "P2"):
        treatments = [("DMSO", 0.0)] * 2 + [("A", c) for c in (0.01, 0.1, 1, 3, 10)]
        treatments += [("B", 0.3), ("B", 1.0)]
        for i, (compound, concentration) in enumerate(treatments):
            rows.append(
                {
                    "plate": plate,
                    "well": f"W{i:02d}",
                    "compound": compound,
                    "concentration": concentration,
                }
            )
    table = pd.DataFrame(rows)
    table["field_id"] = table.plate + "/" + table.well + "/s1"
    table["treatment"] = [f"{c}@{x:g}" for c, x in zip(table.compound, table.concentration)]
    table["exists"] = np.arange(len(table)) % 3 == 0
    for column in set(TABLE_COLUMNS) - set(table.columns):
        table[column] = 0
    return table[list(TABLE_COLUMNS)]


def test_top_concentrations():
    table = _field_table()
    assert top_concentrations(table, "A") == [10.0, 3.0, 1.0, 0.1]
    assert top_concentrations(table, "A", n=2) == [10.0, 3.0]
    assert top_concentrations(table, "B") == [1.0, 0.3]  # fewer than n exist
    with pytest.raises(ValueError, match="unknown compound 'a'; did you mean 'A'"):
        top_concentrations(table, "a")


def test_select_paper_case_and_filters():
    table = _field_table()
    paper = select_fields(table, "A", n_top=4, include_dmso=True)
    assert sorted(set(paper.treatment)) == ["A@0.1", "A@1", "A@10", "A@3", "DMSO@0"]
    assert len(paper) == 2 * (4 + 2)
    assert paper.index.is_monotonic_increasing
    assert (paper.index.isin(table.index)).all()
    both = select_fields(table, ["A", "B"], n_top=1)  # per compound
    assert sorted(set(both.treatment)) == ["A@10", "B@1"]
    by_value = select_fields(table, concentrations=[1.0000000001, 0.3])
    assert sorted(set(by_value.treatment)) == ["A@1", "B@0.3", "B@1"]
    one_plate = select_fields(table, "B", plates="P2", include_dmso=True)
    assert set(one_plate.plate) == {"P2"}
    assert len(one_plate) == 4
    existing = select_fields(table, only_existing=True)
    assert existing.exists.all()
    assert len(existing) == table.exists.sum()


def test_select_errors_name_the_problem():
    table = _field_table()
    with pytest.raises(ValueError, match="unknown plate 'P-1'; did you mean 'P1'"):
        select_fields(table, plates=["P2", "P-1"])
    with pytest.raises(ValueError, match=r"unknown compound 'zzz'; known: 'A', 'B', 'DMSO'$"):
        select_fields(table, "zzz")
    with pytest.raises(ValueError, match=r"concentration\(s\) 30 not found .* available: 0.3, 1$"):
        select_fields(table, "B", concentrations=[1, 30])
    with pytest.raises(ValueError, match="n_top"):
        select_fields(table, "A", n_top=0)
    with pytest.raises(ValueError, match="lacks column"):
        select_fields(table.drop(columns="exists"))


# --- cell-level paper subset ------------------------------------------------------------------


def _cells(n_dmso: int = 1000) -> pd.DataFrame:
    """Cells of compound A at 5 concentrations (uneven counts), compound B, and DMSO."""
    parts = [("A", c, n) for c, n in ((0.1, 40), (0.3, 57), (1.0, 63), (3.0, 80), (0.03, 33))]
    parts += [("B", 1.0, 50), ("DMSO", 0.0, n_dmso)]
    rows = [
        {
            "compound": c,
            "concentration": x,
            "treatment": f"{c}@{x:g}",
            "field_id": f"{c}{x}/s{i % 4}",
        }
        for c, x, n in parts
        for i in range(n)
    ]
    cells = pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)
    cells["cell_id"] = np.arange(len(cells))
    return cells


def test_paper_subset_balance_and_content():
    cells = _cells()
    subset = paper_subset(cells, "A")
    counts = subset.treatment.value_counts()
    assert set(counts.index) == {"A@0.3", "A@1", "A@3", "A@0.1", "DMSO@0"}  # not A@0.03, not B
    assert counts["DMSO@0"] == 40 + 57 + 63 + 80
    assert subset.is_treated.sum() == 240
    assert (subset.is_treated == (subset.compound == "A")).all()
    # original rows, order and index: cell ids map back to crops
    pd.testing.assert_frame_equal(subset[cells.columns], cells.loc[subset.index])
    assert subset.index.is_monotonic_increasing


def test_paper_subset_split_is_stratified():
    subset = paper_subset(_cells(), "A", fractions=(0.7, 0.1, 0.2))
    for treatment, group in subset.groupby("treatment"):
        n = len(group)
        cuts = np.round(np.cumsum([0.7, 0.1, 0.2]) * n).astype(int)
        expected = dict(zip(("train", "val", "test"), np.diff([0, *cuts])))
        assert group.split.value_counts().to_dict() == expected, treatment


def test_paper_subset_is_deterministic_in_seed():
    cells = _cells()
    a = paper_subset(cells, "A", seed=3)
    b = paper_subset(cells, "A", seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = paper_subset(cells, "A", seed=4)
    assert not a.index.equals(c.index)  # another DMSO draw
    treated = a.is_treated
    assert not (a.split[treated].to_numpy() == c.split[c.is_treated].to_numpy()).all()


def test_paper_subset_errors():
    with pytest.raises(ValueError, match=r"240 treated cells .* only 100 DMSO cells"):
        paper_subset(_cells(n_dmso=100), "A")
    assert len(paper_subset(_cells(n_dmso=100), "A", n_concentrations=1)) == 160
    with pytest.raises(ValueError, match="fractions"):
        paper_subset(_cells(), "A", fractions=(0.7, 0.2, 0.2))
    with pytest.raises(ValueError, match="unknown compound 'AA'"):
        paper_subset(_cells(), "AA")
    with pytest.raises(ValueError, match="not the control"):
        paper_subset(_cells(), "DMSO")
    with pytest.raises(ValueError, match=r"lacks column\(s\) treatment"):
        paper_subset(_cells().drop(columns="treatment"), "A")


# --- the real BBBC021 tables ------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_table(bbbc021_root) -> pd.DataFrame:
    return load_image_table(bbbc021_root)


@pytest.mark.realdata
def test_real_table_has_every_field_and_one_on_disk(real_table, bbbc021_root):
    assert len(real_table) == 13_200
    assert list(real_table.columns) == list(TABLE_COLUMNS)
    assert real_table.field_id.is_unique
    found = real_table[real_table.exists]
    assert len(found) == 1
    row = found.iloc[0]
    assert row.field_id == "Week2_24381/B02/s1"
    assert (row.plate, row.week, row.well, row.site) == ("Week2_24381", "Week2", "B02", 1)
    assert (row.compound, row.concentration, row.treatment, row.moa) == (
        "DMSO",
        0.0,
        "DMSO@0",
        "DMSO",
    )
    assert row.image_number == 3121
    for key in ("dapi", "tubulin", "actin"):
        assert Path(row[key]).is_file()
        assert Path(row[key]).is_relative_to(bbbc021_root)


@pytest.mark.realdata
def test_real_table_matches_the_data_readme(real_table):
    assert real_table.plate.nunique() == 55
    assert real_table.week.nunique() == 10
    assert set(real_table.site) == {1, 2, 3, 4}
    counts = real_table.treatment.value_counts()
    assert counts["DMSO@0"] == 1320
    assert counts["taxol@0.3"] == 1332
    # The README's "each other compound-concentration has 12 fields" holds for 801 of the 904
    # others; 96 have 8 fields and 7 (monastrol's) have 24.
    assert counts.drop(["DMSO@0", "taxol@0.3"]).value_counts().to_dict() == {12: 801, 8: 96, 24: 7}
    for compound in ("nocodazole", "taxol", "cytochalasin B"):
        top = select_fields(real_table, compound, n_top=4)
        expected = {t: 1332 if t == "taxol@0.3" else 12 for t in top.treatment.unique()}
        assert top.treatment.value_counts().to_dict() == expected
    annotated = real_table.dropna(subset=["moa"]).drop_duplicates("treatment")
    assert len(annotated) == 104  # 103 treatments plus DMSO
    assert annotated.moa.nunique() == 13  # 12 MOAs plus DMSO
    assert top_concentrations(real_table, "nocodazole") == [3.0, 1.0, 0.3, 0.1]
    assert top_concentrations(real_table, "taxol") == [3.0, 1.0, 0.3, 0.1]
    assert top_concentrations(real_table, "cytochalasin B") == [30.0, 10.0, 3.0, 1.0]


@pytest.mark.realdata
def test_real_missing_summary_and_paper_selection(real_table):
    summary = summarize_missing(real_table)
    assert (summary.n_existing, summary.n_missing) == (1, 13_199)
    assert len(summary.missing_by_plate) == 55
    paper = select_fields(real_table, "nocodazole", n_top=4, include_dmso=True)
    assert len(paper) == 4 * 12 + 1320
    on_disk = select_fields(
        real_table, "nocodazole", n_top=4, include_dmso=True, only_existing=True
    )
    assert on_disk.field_id.tolist() == ["Week2_24381/B02/s1"]
