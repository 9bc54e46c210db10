"""Synthetic plate: official BBBC021 layout, determinism, realism and treatment morphologies."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.measure import label as label_pieces
from skimage.measure import regionprops

from phenossl._progress import Progress, run
from phenossl.data.synthetic import (
    CONTROL,
    IMAGE_CSV_COLUMNS,
    MOA_CSV_COLUMNS,
    PHENOTYPES,
    Phenotype,
    Treatment,
    default_treatments,
    dose_response,
    ground_truth_paths,
    iter_write_synthetic_plate,
    render_field,
    write_synthetic_plate,
)

SMALL = (128, 160)
UUID = r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"
# per-week style of the real Week1-3, 5, 6, 9 and 10 names: WeekN_DDMMYY_<well>_s<site>_w<c><UUID>
FILE_NAME = re.compile(rf"^Week\d+_\d{{6}}_(?P<well>[B-G](0[2-9]|1[01]))_s(?P<site>\d)_w(?P<c>[124]){UUID}\.tif$")  # fmt: skip
TREATMENTS = {t.name: t for t in default_treatments()}


@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default treatments, one well each (DMSO: four), two sites, small fields."""
    root = tmp_path_factory.mktemp("synthetic") / "plate"
    return write_synthetic_plate(root, seed=3, sites=2, shape=SMALL, ground_truth=True)


@pytest.fixture(scope="module")
def image_table(plate: Path) -> pd.DataFrame:
    return pd.read_csv(plate / "BBBC021_v1_image.csv")


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- layout ---------------------------------------------------------------------------------


def test_image_csv_header_is_the_official_one(plate: Path) -> None:
    with open(plate / "BBBC021_v1_image.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == IMAGE_CSV_COLUMNS
    assert IMAGE_CSV_COLUMNS[:2] == ("TableNumber", "ImageNumber")
    assert IMAGE_CSV_COLUMNS[-1] == "Image_Metadata_Concentration"
    assert len(IMAGE_CSV_COLUMNS) == 13


@pytest.mark.realdata
def test_headers_match_the_real_csvs(bbbc021_root: Path) -> None:
    with open(bbbc021_root / "BBBC021_v1_image.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == IMAGE_CSV_COLUMNS
    with open(bbbc021_root / "BBBC021_v1_moa.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == MOA_CSV_COLUMNS


@pytest.mark.realdata
def test_pandas_reads_synthetic_and_real_tables_alike(bbbc021_root: Path, plate: Path) -> None:
    real = pd.read_csv(bbbc021_root / "BBBC021_v1_image.csv", nrows=500)
    ours = pd.read_csv(plate / "BBBC021_v1_image.csv")
    assert list(ours.columns) == list(real.columns)
    assert ours.dtypes.astype(str).to_dict() == real.dtypes.astype(str).to_dict()
    real_moa = pd.read_csv(bbbc021_root / "BBBC021_v1_moa.csv")
    ours_moa = pd.read_csv(plate / "BBBC021_v1_moa.csv")
    assert ours_moa.dtypes.astype(str).to_dict() == real_moa.dtypes.astype(str).to_dict()
    # our MOA names are the official ones
    merged = ours_moa.merge(real_moa.drop_duplicates(), on=["compound", "concentration"])
    assert len(merged) >= 8  # DMSO, nocodazole 1 and 3, taxol 0.3-3, cytochalasin B 10 and 30
    assert (merged["moa_x"] == merged["moa_y"]).all()


@pytest.mark.realdata
def test_file_name_pattern_describes_the_real_per_week_names(bbbc021_root: Path) -> None:
    real = pd.read_csv(bbbc021_root / "BBBC021_v1_image.csv")
    week1 = real[real["Image_PathName_DAPI"].str.startswith("Week1/")]
    for column, tag in (("DAPI", "1"), ("Tubulin", "2"), ("Actin", "4")):
        names = week1[f"Image_FileName_{column}"]
        matches = names.str.extract(FILE_NAME)
        assert matches["well"].notna().all()
        assert (matches["c"] == tag).all()


def test_rows_describe_every_field(plate: Path, image_table: pd.DataFrame) -> None:
    t = image_table
    n_fields = (4 + 12) * 2  # DMSO gets four wells: as many as one compound's concentrations
    assert len(t) == n_fields
    assert t["ImageNumber"].tolist() == list(range(1, n_fields + 1))
    assert (t["TableNumber"] == 1).all()
    assert (t["Replicate"] == 1).all()
    assert t["Image_Metadata_Plate_DAPI"].nunique() == 1
    plate_name = t["Image_Metadata_Plate_DAPI"].iloc[0]
    assert re.fullmatch(r"Week1_\d{5}", plate_name)
    for channel in ("DAPI", "Tubulin", "Actin"):
        assert (t[f"Image_PathName_{channel}"] == f"Week1/{plate_name}").all()
    assert t["Image_Metadata_Well_DAPI"].is_unique is False  # two sites per well
    assert t.groupby("Image_Metadata_Well_DAPI").size().eq(2).all()
    counts = t.groupby("Image_Metadata_Compound")["Image_Metadata_Well_DAPI"].nunique()
    assert counts.to_dict() == {"DMSO": 4, "cytochalasin B": 4, "nocodazole": 4, "taxol": 4}
    pairs = set(zip(t["Image_Metadata_Compound"], t["Image_Metadata_Concentration"]))
    assert pairs == {(tr.compound, tr.concentration) for tr in TREATMENTS.values()}


def test_concentrations_are_written_like_the_real_table(plate: Path) -> None:
    with open(plate / "BBBC021_v1_image.csv", newline="") as f:
        values = {row["Image_Metadata_Concentration"] for row in csv.DictReader(f)}
    assert values == {"0", "0.1", "0.3", "1", "3", "10", "30"}


def test_moa_csv_is_quoted_like_the_real_one(plate: Path) -> None:
    lines = (plate / "BBBC021_v1_moa.csv").read_text().splitlines()
    assert lines[0] == '"compound",concentration,"moa"'
    assert '"DMSO",0.000000,"DMSO"' in lines
    assert '"nocodazole",3.000000,"Microtubule destabilizers"' in lines
    assert '"taxol",0.300000,"Microtubule stabilizers"' in lines
    assert '"cytochalasin B",30.000000,"Actin disruptors"' in lines
    assert len(lines) == 1 + len(TREATMENTS)


def test_moa_none_leaves_a_treatment_out_of_the_moa_table(tmp_path: Path) -> None:
    treatments = [
        Treatment("DMSO", 0.0, "DMSO", CONTROL, 0.0),
        Treatment("mystery", 1.0, None, PHENOTYPES["taxol"], 0.5),
    ]
    root = write_synthetic_plate(tmp_path / "p", treatments=treatments, sites=1, shape=SMALL)
    moa = pd.read_csv(root / "BBBC021_v1_moa.csv")
    assert moa["compound"].tolist() == ["DMSO"]
    assert "mystery" in set(pd.read_csv(root / "BBBC021_v1_image.csv")["Image_Metadata_Compound"])


def test_files_follow_the_per_week_names_and_exist(plate: Path, image_table: pd.DataFrame) -> None:
    for _, row in image_table.iterrows():
        for channel, tag in (("DAPI", "1"), ("Tubulin", "2"), ("Actin", "4")):
            name = row[f"Image_FileName_{channel}"]
            match = FILE_NAME.match(name)
            assert match, name
            assert match["well"] == row["Image_Metadata_Well_DAPI"]
            assert match["c"] == tag
            assert (plate / row[f"Image_PathName_{channel}"] / name).is_file()
    sites = image_table["Image_FileName_DAPI"].str.extract(FILE_NAME)["site"].astype(int)
    assert sorted(set(sites)) == [1, 2]


def test_tiffs_are_single_channel_uint16(plate: Path, image_table: pd.DataFrame) -> None:
    row = image_table.iloc[-1]
    for channel in ("DAPI", "Tubulin", "Actin"):
        path = plate / row[f"Image_PathName_{channel}"] / row[f"Image_FileName_{channel}"]
        with tifffile.TiffFile(path) as tif:
            assert len(tif.pages) == 1
            data = tif.asarray()
        assert data.dtype == np.uint16
        assert data.shape == SMALL
        assert np.all(data % 16 == 0)  # the real 12-bit camera's values, stored in 16 bits
        assert data.min() > 0


def test_ground_truth_labels_match_the_fields(plate: Path, image_table: pd.DataFrame) -> None:
    for _, row in image_table.iloc[::7].iterrows():
        site = FILE_NAME.match(row["Image_FileName_DAPI"])["site"]
        field_id = f"{row['Image_Metadata_Plate_DAPI']}/{row['Image_Metadata_Well_DAPI']}/s{site}"
        paths = ground_truth_paths(plate, field_id)
        nuclei, cells = tifffile.imread(paths["nuclei"]), tifffile.imread(paths["cells"])
        assert nuclei.shape == cells.shape == SMALL
        assert cells.max() > 0
        inside = nuclei > 0
        assert np.array_equal(cells[inside], nuclei[inside])  # nucleus i lies in cell i
        assert set(np.unique(nuclei)) == set(np.unique(cells))  # every cell has a nucleus


def test_ground_truth_paths_reject_a_bad_field_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="field_id"):
        ground_truth_paths(tmp_path, "Week1_90001/B02")


def test_manifest_records_how_the_plate_was_made(plate: Path) -> None:
    import json

    manifest = json.loads((plate / "synthetic_plate.json").read_text())
    assert manifest["format"] == "phenossl-synthetic-plate"
    assert manifest["seed"] == 3
    assert manifest["shape"] == list(SMALL)
    assert len(manifest["treatments"]) == len(TREATMENTS)
    assert manifest["wells"]["B02"] == "DMSO@0"


# --- determinism, progress, overwrite ------------------------------------------------------


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    treatments = [TREATMENTS["DMSO@0"], TREATMENTS["taxol@3"]]
    kw = {"treatments": treatments, "n_control_wells": 1, "sites": 1, "shape": SMALL}
    a = tree_digest(write_synthetic_plate(tmp_path / "a", seed=7, **kw))
    b = tree_digest(write_synthetic_plate(tmp_path / "b", seed=7, **kw))
    c = tree_digest(write_synthetic_plate(tmp_path / "c", seed=8, **kw))
    assert a == b
    assert len(a) == 2 * 3 + 3  # six TIFFs, two CSVs, the manifest
    tiffs = [k for k in a if k.endswith(".tif")]
    assert not set(tiffs) & set(c)  # other UUIDs
    assert sorted(a[k] for k in tiffs) != sorted(c[k] for k in c if k.endswith(".tif"))


def test_render_field_is_deterministic_and_typed() -> None:
    t = TREATMENTS["nocodazole@1"]
    a = render_field(t, np.random.default_rng(0), SMALL)
    b = render_field(t, np.random.default_rng(0), SMALL)
    c = render_field(t, np.random.default_rng(1), SMALL)
    assert a.image.shape == (3, *SMALL)
    assert a.image.dtype == np.uint16
    assert a.nuclei.dtype == a.cells.dtype == np.int32
    assert a.nuclei.shape == a.cells.shape == SMALL
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.image, c.image)


def test_a_field_without_cells_is_background_only() -> None:
    empty = dataclasses.replace(CONTROL, density=0.0)
    treatment = Treatment("DMSO", 0.0, "DMSO", empty, 0.0)
    field = render_field(treatment, np.random.default_rng(0), (64, 96), baseline=empty)
    assert field.cells.max() == 0
    assert field.nuclei.max() == 0
    assert field.image.shape == (3, 64, 96)
    assert 400 < field.image[0].mean() < 1000  # offset + autofluorescence + noise


def test_progress_events_count_fields(tmp_path: Path) -> None:
    treatments = [TREATMENTS["DMSO@0"], TREATMENTS["cytochalasin B@10"]]
    gen = iter_write_synthetic_plate(
        tmp_path / "p", treatments=treatments, n_control_wells=2, sites=2, shape=SMALL
    )
    events = []
    result = run(gen, events.append)
    assert result == tmp_path / "p"
    assert all(isinstance(e, Progress) for e in events)
    assert [e.done for e in events] == list(range(7))
    assert {e.total for e in events} == {6}
    assert events[-1].message == "Week1_90001/B04/s2"
    seen: list[Progress] = []
    write_synthetic_plate(
        tmp_path / "q", treatments=treatments[:1], n_control_wells=1, sites=1, shape=SMALL,
        progress=seen.append,
    )  # fmt: skip
    assert [e.done for e in seen] == [0, 1]


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    kw = {"treatments": [TREATMENTS["DMSO@0"]], "n_control_wells": 1, "sites": 1, "shape": SMALL}
    root = write_synthetic_plate(tmp_path / "p", seed=0, **kw)
    before = tree_digest(root)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_synthetic_plate(root, seed=1, **kw)
    assert tree_digest(root) == before
    write_synthetic_plate(root, seed=1, overwrite=True, **kw)
    after = tree_digest(root)
    assert not {k for k in before if k.endswith(".tif")} & set(after)  # old files are gone
    assert len(after) == len(before)


def test_never_overwrites_a_folder_it_did_not_write(tmp_path: Path) -> None:
    precious = tmp_path / "data"
    precious.mkdir()
    (precious / "BBBC021_v1_image.csv").write_text("real data\n")
    with pytest.raises(FileExistsError, match="not a synthetic plate"):
        write_synthetic_plate(precious, overwrite=True, shape=SMALL)
    assert (precious / "BBBC021_v1_image.csv").read_text() == "real data\n"


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (16, 16)}, "shape"),
        ({"shape": (100,)}, "shape"),
        ({"sites": 0}, "sites"),
        ({"replicates": 0}, "replicates"),
        ({"seed": -1}, "seed"),
        ({"n_wells_per_treatment": 0}, "n_wells_per_treatment"),
        ({"n_wells_per_treatment": 5}, "60 wells"),
        ({"treatments": []}, "treatments"),
        ({"treatments": [TREATMENTS["taxol@1"], TREATMENTS["taxol@1"]]}, "unique"),
    ],
)
def test_bad_plate_parameters_are_named(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_synthetic_plate(tmp_path / "p", **kwargs)
    assert not (tmp_path / "p").exists()


def test_bad_treatment_and_phenotype_values_are_named() -> None:
    with pytest.raises(ValueError, match="strength"):
        Treatment("taxol", 1.0, "Microtubule stabilizers", PHENOTYPES["taxol"], strength=1.5)
    with pytest.raises(ValueError, match="concentration"):
        Treatment("taxol", -1.0, "Microtubule stabilizers", PHENOTYPES["taxol"])
    with pytest.raises(ValueError, match=r"Phenotype\.cortex"):
        Phenotype(**{**vars(CONTROL), "cortex": -1.0})
    with pytest.raises(ValueError, match="binucleate"):
        Phenotype(**{**vars(CONTROL), "binucleate": 0.7, "fragmented": 0.5})
    with pytest.raises(ValueError, match="cell_radius"):
        Phenotype(**{**vars(CONTROL), "cell_radius": 10.0})


def test_default_treatments_follow_the_paper() -> None:
    names = [t.name for t in default_treatments()]
    assert names == [
        "DMSO@0",
        "nocodazole@0.1", "nocodazole@0.3", "nocodazole@1", "nocodazole@3",
        "taxol@0.1", "taxol@0.3", "taxol@1", "taxol@3",
        "cytochalasin B@1", "cytochalasin B@3", "cytochalasin B@10", "cytochalasin B@30",
    ]  # fmt: skip
    for compound in ("nocodazole", "taxol", "cytochalasin B"):
        strengths = [t.strength for t in default_treatments() if t.compound == compound]
        assert strengths == sorted(strengths)
        assert strengths[0] < 0.5 < strengths[-1]
    assert dose_response(0.0, 1.0) == 0.0
    assert dose_response(1.0, 1.0) == pytest.approx(0.5)


# --- realism --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_dmso():
    """One realistic full-size DMSO field."""
    return render_field(TREATMENTS["DMSO@0"], np.random.default_rng(0))


def test_full_field_has_bbbc021_counts_sizes_and_intensities(full_dmso) -> None:
    image, nuclei, cells = full_dmso
    assert image.shape == (3, 1024, 1280)
    assert 150 <= cells.max() <= 300
    diameters = [p.equivalent_diameter_area for p in regionprops(ndi.label(nuclei > 0)[0])]
    assert 25 <= np.median(diameters) <= 40
    background = ~ndi.binary_dilation(cells > 0, iterations=15)
    assert background.mean() > 0.1
    assert 500 <= np.median(image[0][background]) <= 800
    peaks = ndi.maximum(image[0], nuclei, index=np.unique(nuclei[nuclei > 0]))
    assert 3000 <= np.median(peaks) <= 10000
    assert np.max(peaks) <= 16000
    # cells touch: some pixels of a cell border on another cell
    right = (cells[:, 1:] > 0) & (cells[:, :-1] > 0) & (cells[:, 1:] != cells[:, :-1])
    assert right.sum() > 500


def test_camera_noise_and_illumination(full_dmso) -> None:
    image, _, cells = full_dmso
    background = ~ndi.binary_dilation(cells > 0, iterations=15)
    dapi = image[0].astype(float)
    # pixel-to-pixel noise in the background, as in the real field (about 25-40 counts)
    diff = (dapi[:, 1:] - dapi[:, :-1])[background[:, 1:] & background[:, :-1]]
    assert 15 <= diff.std() / np.sqrt(2) <= 45
    # smooth illumination: the background is brighter near the centre than at the corners
    h, w = dapi.shape
    centre = background[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    corner = np.zeros_like(background)
    for sy in (slice(0, h // 5), slice(-h // 5, None)):
        for sx in (slice(0, w // 5), slice(-w // 5, None)):
            corner[sy, sx] = True
    assert np.median(dapi[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4][centre]) > np.median(
        dapi[corner & background]
    )


def test_smaller_fields_hold_fewer_cells_of_the_same_size(full_dmso) -> None:
    counts, diameters = [], []
    for seed in range(3):
        f = render_field(TREATMENTS["DMSO@0"], np.random.default_rng(seed), (512, 640))
        counts.append(f.cells.max())
        diameters += [p.equivalent_diameter_area for p in regionprops(ndi.label(f.nuclei > 0)[0])]
    assert 0.15 < np.mean(counts) / full_dmso.cells.max() < 0.4
    full = [p.equivalent_diameter_area for p in regionprops(ndi.label(full_dmso.nuclei > 0)[0])]
    assert abs(np.median(diameters) - np.median(full)) < 3


# --- morphology -----------------------------------------------------------------------------


def _morphology(name: str, n_fields: int = 2) -> dict[str, float]:
    """Per-cell statistics measured on the ground truth (and pixels) of a few fields: medians,
    and the fractions of cells with two / several nuclear pieces."""
    stats: dict[str, list[float]] = {
        k: []
        for k in ("area", "roundness", "n_nuclei", "nucleus_area", "nucleus_dapi",
                  "actin_spots", "tubulin_texture")
    }  # fmt: skip
    for k in range(n_fields):
        f = render_field(TREATMENTS[name], np.random.default_rng([11, k]), (512, 640))
        signal = f.image.astype(np.float32)
        signal -= np.median(signal[:, f.cells == 0], axis=1)[:, None, None]
        ids = np.arange(1, f.cells.max() + 1)
        props = regionprops(f.cells)
        stats["area"] += [p.area for p in props]
        stats["roundness"] += [4 * np.pi * p.area / p.perimeter**2 for p in props]
        # connected pieces of each cell's nuclear label
        pieces = label_pieces(f.nuclei, background=0)
        owner = ndi.maximum(f.nuclei, pieces, np.arange(1, pieces.max() + 1)).astype(int)
        stats["n_nuclei"] += list(np.bincount(owner, minlength=len(ids) + 1)[1:])
        stats["nucleus_area"] += list(np.bincount(f.nuclei.ravel(), minlength=len(ids) + 1)[1:])
        stats["nucleus_dapi"] += list(ndi.mean(signal[0], f.nuclei, ids))
        # bright actin puncta: the strongest small-scale detail relative to the cell's actin
        cytoplasm = np.where(f.nuclei > 0, 0, f.cells)
        spots = ndi.gaussian_filter(signal[2], 1) - ndi.gaussian_filter(signal[2], 4)
        actin_mean = np.maximum(ndi.mean(signal[2], cytoplasm, ids), 1)
        stats["actin_spots"] += list(ndi.maximum(spots, cytoplasm, ids) / actin_mean)
        # filament texture of tubulin, away from cell borders and nuclei
        interior = (f.cells > 0) & (
            ndi.maximum_filter(f.cells, 3) == ndi.minimum_filter(f.cells, 3)
        )
        far = (ndi.distance_transform_edt(interior) > 5) & (
            ndi.distance_transform_edt(f.nuclei == 0) > 3
        )
        core = np.where(far, f.cells, 0)
        detail = ndi.gaussian_filter(signal[1], 1) - ndi.gaussian_filter(signal[1], 4)
        texture = ndi.standard_deviation(detail, core, ids) / np.maximum(
            ndi.mean(signal[1], core, ids), 1
        )
        enough = np.bincount(core.ravel(), minlength=len(ids) + 1)[1:] > 20
        stats["tubulin_texture"] += list(texture[enough])
    n_nuclei = np.array(stats.pop("n_nuclei"))
    out = {k: float(np.median(v)) for k, v in stats.items()}
    out["binucleate"] = float(np.mean(n_nuclei == 2))
    out["fragmented"] = float(np.mean(n_nuclei >= 2))
    return out


@pytest.fixture(scope="module")
def morphology() -> dict[str, dict[str, float]]:
    names = ["DMSO@0", "nocodazole@0.1", "nocodazole@3", "taxol@3", "cytochalasin B@1",
             "cytochalasin B@30"]  # fmt: skip
    return {name: _morphology(name) for name in names}


def test_nocodazole_cells_are_smaller_rounder_with_bright_condensed_nuclei(morphology) -> None:
    dmso, noc = morphology["DMSO@0"], morphology["nocodazole@3"]
    assert noc["area"] < 0.7 * dmso["area"]
    assert noc["roundness"] > dmso["roundness"] + 0.1
    assert noc["nucleus_area"] < 0.8 * dmso["nucleus_area"]
    assert noc["nucleus_dapi"] > 1.4 * dmso["nucleus_dapi"]
    assert noc["tubulin_texture"] < 0.75 * dmso["tubulin_texture"]  # diffuse, no network


def test_taxol_has_bundles_and_large_or_fragmented_nuclei(morphology) -> None:
    dmso, taxol = morphology["DMSO@0"], morphology["taxol@3"]
    assert taxol["fragmented"] > dmso["fragmented"] + 0.2
    assert taxol["nucleus_area"] > dmso["nucleus_area"]
    assert taxol["tubulin_texture"] > 1.5 * dmso["tubulin_texture"]


def test_cytochalasin_b_cells_are_binucleate_with_actin_aggregates(morphology) -> None:
    dmso, cytb = morphology["DMSO@0"], morphology["cytochalasin B@30"]
    assert cytb["binucleate"] > 0.35
    assert dmso["binucleate"] < 0.1
    assert cytb["actin_spots"] > 1.5 * dmso["actin_spots"]


def test_lowest_concentration_is_visibly_weaker(morphology) -> None:
    dmso = morphology["DMSO@0"]
    low, high = morphology["nocodazole@0.1"], morphology["nocodazole@3"]
    assert high["area"] < low["area"] < dmso["area"]
    low, high = morphology["cytochalasin B@1"], morphology["cytochalasin B@30"]
    assert dmso["binucleate"] < low["binucleate"] < high["binucleate"]


# --- the official-format reader (another module) ------------------------------------------


def test_the_field_table_reader_loads_the_plate(plate: Path) -> None:
    bbbc021 = pytest.importorskip("phenossl.data.bbbc021")
    table = bbbc021.load_image_table(plate)
    assert len(table) == 32
    assert table["exists"].all()
    assert set(table["treatment"]) == set(TREATMENTS)
    assert table.loc[table["compound"] == "taxol", "moa"].eq("Microtubule stabilizers").all()
    assert table["field_id"].str.fullmatch(r"Week1_\d{5}/[B-G]\d{2}/s[12]").all()
