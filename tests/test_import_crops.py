"""Importing crops made elsewhere (arrays, image folders) into a CropSet."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from phenossl.cells.crops import to_uint8
from phenossl.cells.import_crops import channel_order, import_crops
from phenossl.cli import main
from phenossl.data.cropset import CropSet
from phenossl.data.fields import channel_percentiles, normalize_percentiles

SIZE = 20


def _crops(n: int = 6, seed: int = 0) -> np.ndarray:
    """uint16 (n, 3, S, S) crops whose channel c sits around (c + 1) * 1000 counts."""
    rng = np.random.default_rng(seed)
    base = np.array([1000, 2000, 3000], dtype=np.int64)[None, :, None, None]
    return (base + rng.integers(0, 500, (n, 3, SIZE, SIZE))).astype(np.uint16)


def _table(n: int = 6) -> pd.DataFrame:
    half = n // 2
    return pd.DataFrame(
        {
            "index": np.arange(100, 100 + n),  # the user's own index: must not collide
            "compound": ["DMSO"] * half + ["taxol"] * (n - half),
            "concentration": [0.0] * half + [0.3] * (n - half),
            "plate": ["P1"] * half + ["P2"] * (n - half),
            "well": "B02",
            "site": 1,
            "replicate": [1] * half + [2] * (n - half),
            "note": [f"cell {i}" for i in range(n)],
        }
    )


def test_npy_nchw_keeps_every_column_and_adds_the_cropset_ones(tmp_path):
    crops, table = _crops(), _table()
    np.save(tmp_path / "crops.npy", crops)
    table.to_csv(tmp_path / "cells.csv", index=False)
    cs = import_crops(tmp_path / "crops.npy", tmp_path / "cells.csv", tmp_path / "cs")
    assert isinstance(cs, CropSet) and len(cs) == 6 and cs.size == SIZE
    cells = cs.table
    for column in ("compound", "concentration", "plate", "well", "site", "replicate", "note"):
        assert cells[column].tolist() == table[column].tolist()
    assert cells["source_index"].tolist() == table["index"].tolist()
    assert cells["index"].tolist() == list(range(6))  # the CropSet's own shard row
    assert cells["treatment"].tolist() == ["DMSO@0"] * 3 + ["taxol@0.3"] * 3
    assert cells["field_id"].iloc[0] == "P1/B02/s1"
    assert cells["cell_id"].tolist() == list(range(6))
    summary = json.loads((tmp_path / "cs" / "import.json").read_text())
    assert summary["renamed_columns"] == {"index": "source_index"}


def test_nhwc_and_nchw_give_the_same_cropset(tmp_path):
    crops, table = _crops(), _table()
    a = import_crops(crops, table, tmp_path / "a")
    b = import_crops(crops.transpose(0, 2, 3, 1).copy(), table, tmp_path / "b")
    np.testing.assert_array_equal(a.images(np.arange(6)), b.images(np.arange(6)))
    c = import_crops(crops.transpose(0, 2, 3, 1).copy(), table, tmp_path / "c", layout="nhwc")
    np.testing.assert_array_equal(a.images(np.arange(6)), c.images(np.arange(6)))


def test_npz_streams_the_named_or_single_array(tmp_path):
    crops, table = _crops(), _table()
    np.savez_compressed(tmp_path / "one.npz", crops=crops)
    np.savez(tmp_path / "two.npz", crops=crops, other=crops[:2])
    ref = import_crops(crops, table, tmp_path / "ref", shard_size=4)
    one = import_crops(tmp_path / "one.npz", table, tmp_path / "one", shard_size=4)
    np.testing.assert_array_equal(one.images(np.arange(6)), ref.images(np.arange(6)))
    with pytest.raises(ValueError, match="holds 2 arrays"):
        import_crops(tmp_path / "two.npz", table, tmp_path / "two")
    two = import_crops(tmp_path / "two.npz", table, tmp_path / "two", key="crops")
    np.testing.assert_array_equal(two.images(np.arange(6)), ref.images(np.arange(6)))
    with pytest.raises(ValueError, match="no array 'nope'"):
        import_crops(tmp_path / "two.npz", table, tmp_path / "x", key="nope")


def test_channel_order_reorders_to_dapi_tubulin_actin(tmp_path):
    crops, table = _crops(), _table()
    ref = import_crops(crops, table, tmp_path / "ref", normalize="crop")
    flipped = crops[:, ::-1].copy()  # stored Actin, Tubulin, DAPI
    got = import_crops(
        flipped, table, tmp_path / "got", normalize="crop", channels="Actin,Tubulin,DAPI"
    )
    np.testing.assert_array_equal(got.images(np.arange(6)), ref.images(np.arange(6)))
    four = np.concatenate([crops[:, :1], crops[:, 2:] * 0, crops[:, 1:]], axis=1)
    dropped = import_crops(
        four, table, tmp_path / "four", normalize="crop", channels=["dapi", "-", "tubulin", "actin"]
    )
    np.testing.assert_array_equal(dropped.images(np.arange(6)), ref.images(np.arange(6)))


def test_channel_names_are_checked():
    assert channel_order("Actin, tubulin ,DAPI") == [2, 1, 0]
    with pytest.raises(
        ValueError, match=r"unknown channel name\(s\) \['GFP'\].*DAPI, Tubulin, Actin"
    ):
        channel_order("DAPI,GFP,Actin")
    with pytest.raises(ValueError, match="repeated"):
        channel_order("DAPI,DAPI,Actin")
    with pytest.raises(ValueError, match="missing"):
        channel_order("DAPI,Actin")


def test_plate_normalisation_uses_the_plates_percentiles(tmp_path):
    crops, table = _crops(), _table()
    crops[3:] *= 2  # plate P2 is twice as bright: per plate, it looks like P1 again
    cs = import_crops(crops, table, tmp_path / "cs", percentiles=(1, 99))
    images = cs.images(np.arange(6))
    for rows in (slice(0, 3), slice(3, 6)):  # plates P1, P2
        for c in range(3):
            lo, hi = channel_percentiles(crops[rows, c], (1, 99))
            want = to_uint8(np.clip((crops[rows, c].astype(np.float32) - lo) / (hi - lo), 0, 1))
            np.testing.assert_allclose(images[rows, c], want, atol=1)
    # within a plate, a brighter cell stays brighter (per crop it would not)
    crops[1] = crops[0] // 2
    cs = import_crops(crops, table, tmp_path / "dim", overwrite=False)
    per_crop = import_crops(crops, table, tmp_path / "dim_crop", normalize="crop")
    plate_means = cs.images([0, 1]).mean(axis=(1, 2, 3))
    crop_means = per_crop.images([0, 1]).mean(axis=(1, 2, 3))
    assert plate_means[1] < plate_means[0] / 2
    assert abs(crop_means[1] - crop_means[0]) < 10


def test_plate_percentiles_from_a_sample_are_close_to_exact(tmp_path):
    crops, table = _crops(n=40, seed=1), _table(n=40)
    exact = import_crops(crops, table, tmp_path / "exact")
    sampled = import_crops(crops, table, tmp_path / "sampled", sample_pixels=4000)
    limits = json.loads((tmp_path / "sampled" / "import.json").read_text())["plate_limits"]
    assert set(limits) == {"P1", "P2"}
    diff = exact.images(np.arange(40)).astype(int) - sampled.images(np.arange(40)).astype(int)
    assert np.abs(diff).mean() < 3


def test_crop_normalisation_matches_read_fields_percentiles(tmp_path):
    crops, table = _crops(), _table()
    cs = import_crops(crops, table, tmp_path / "cs", normalize="crop")
    want = to_uint8(normalize_percentiles(crops[2], (1.0, 99.8)))
    np.testing.assert_array_equal(cs[2], want)


def test_float_input_and_none_for_uint8(tmp_path):
    crops, table = _crops(), _table()
    as_float = import_crops(crops.astype(np.float32) / 65535, table, tmp_path / "f")
    as_int = import_crops(crops, table, tmp_path / "i")
    diff = as_float.images(np.arange(6)).astype(int) - as_int.images(np.arange(6)).astype(int)
    assert np.abs(diff).max() <= 1
    small = (crops // 20).astype(np.uint8)
    kept = import_crops(small, table, tmp_path / "u8", normalize="none")
    np.testing.assert_array_equal(kept.images(np.arange(6)), small)
    with pytest.raises(ValueError, match="normalize='none' keeps uint8"):
        import_crops(crops, table, tmp_path / "bad", normalize="none")


def test_constant_channel_does_not_give_nan(tmp_path):
    crops, table = _crops(), _table()
    crops[:, 1] = 7
    cs = import_crops(crops, table, tmp_path / "cs")
    assert (cs.images(np.arange(6))[:, 1] == 0).all()


def _write_folder(tmp_path, crops, per_channel=False, ext="tif"):
    folder = tmp_path / "images"
    folder.mkdir()
    rows = []
    for i, crop in enumerate(crops):
        if per_channel:
            names = {}
            for c, name in enumerate(("dna", "tub", "act")):
                names[f"{name}_file"] = f"cell{i}_{name}.{ext}"
                tifffile.imwrite(folder / names[f"{name}_file"], crop[c], photometric="minisblack")
            rows.append(names)
        elif ext == "png":
            import imageio.v3 as iio

            iio.imwrite(folder / f"cell{i}.png", crop.transpose(1, 2, 0))
            rows.append({"file": f"cell{i}.png"})
        else:
            tifffile.imwrite(folder / f"cell{i}.tif", crop, photometric="minisblack")
            rows.append({"file": f"cell{i}.tif"})
    return folder, pd.concat([_table(len(crops)), pd.DataFrame(rows)], axis=1)


def test_folder_of_multichannel_tiffs_equals_the_array(tmp_path):
    crops, table = _crops(), _table()
    ref = import_crops(crops, table, tmp_path / "ref")
    folder, files = _write_folder(tmp_path, crops)
    files.to_csv(tmp_path / "files.csv", index=False)
    cs = import_crops(folder, tmp_path / "files.csv", tmp_path / "cs", shard_size=4)
    np.testing.assert_array_equal(cs.images(np.arange(6)), ref.images(np.arange(6)))
    assert cs.table["file"].tolist() == files["file"].tolist()


def test_folder_of_png_rgb_files(tmp_path):
    crops = (_crops() // 20).astype(np.uint8)
    folder, files = _write_folder(tmp_path, crops, ext="png")
    cs = import_crops(folder, files, tmp_path / "cs", normalize="none")  # (S, S, 3) files
    np.testing.assert_array_equal(cs.images(np.arange(6)), crops)


def test_folder_of_one_file_per_channel(tmp_path):
    crops, table = _crops(), _table()
    ref = import_crops(crops, table, tmp_path / "ref")
    folder, files = _write_folder(tmp_path, crops, per_channel=True)
    cs = import_crops(
        folder,
        files,
        tmp_path / "cs",
        file_columns=["act_file", "tub_file", "dna_file"],
        channels="Actin,Tubulin,DAPI",
    )
    np.testing.assert_array_equal(cs.images(np.arange(6)), ref.images(np.arange(6)))


def test_missing_file_is_named_with_its_row(tmp_path):
    folder, files = _write_folder(tmp_path, _crops())
    (folder / "cell4.tif").unlink()
    with pytest.raises(FileNotFoundError, match=r"cell4\.tif.*table row 4, CSV line 6"):
        import_crops(folder, files, tmp_path / "cs")
    with pytest.raises(ValueError, match=r"no file column\(s\) \['path'\]"):
        import_crops(folder, files, tmp_path / "cs", file_columns="path")
    assert not (tmp_path / "cs").exists()


def test_bad_arrays_are_named(tmp_path):
    crops, table = _crops(), _table()
    with pytest.raises(ValueError, match="table has 5 rows but array holds 6 crops"):
        import_crops(crops, table.iloc[:5], tmp_path / "cs")
    with pytest.raises(ValueError, match="expected a 4-D array"):
        import_crops(crops[0], table, tmp_path / "cs")
    with pytest.raises(ValueError, match=r"do not match \(C, S, S\) or \(S, S, C\)"):
        import_crops(crops[:, :2], table, tmp_path / "cs")
    with pytest.raises(ValueError, match="ambiguous"):
        import_crops(np.zeros((6, 3, 3, 3), np.uint16), table, tmp_path / "cs")
    bad = crops.astype(np.float32)
    bad[4, 1, 2, 3] = np.nan
    for normalize in ("plate", "crop"):
        with pytest.raises(ValueError, match=r"row\(s\) \[4\] hold NaN"):
            import_crops(bad, table, tmp_path / "cs", normalize=normalize)
    bad[4, 1, 2, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        import_crops(bad, table, tmp_path / "cs")
    assert not (tmp_path / "cs").exists()  # a failed import leaves nothing behind
    with pytest.raises(FileNotFoundError, match="crops file not found"):
        import_crops(tmp_path / "nope.npy", table, tmp_path / "cs")


def test_existing_output_needs_overwrite(tmp_path):
    crops, table = _crops(), _table()
    import_crops(crops, table, tmp_path / "cs")
    with pytest.raises(FileExistsError, match="overwrite"):
        import_crops(crops, table, tmp_path / "cs")
    assert len(import_crops(crops[:4], table.iloc[:4], tmp_path / "cs", overwrite=True)) == 4


def test_holdout_splits_whole_plates(tmp_path):
    crops, table = _crops(), _table()
    table["split"] = "mine"
    cs = import_crops(crops, table, tmp_path / "cs", holdout="replicate != 1")
    assert cs.table["split"].tolist() == ["train"] * 3 + ["test"] * 3
    assert cs.table["source_split"].tolist() == ["mine"] * 6
    assert cs.table.columns[-1] == "split"
    with pytest.raises(ValueError, match=r"plate\(s\) \['P1'\] partly in train"):
        import_crops(crops, table, tmp_path / "x", holdout="note == 'cell 0'")
    with pytest.raises(ValueError, match="not a valid query"):
        import_crops(crops, table, tmp_path / "x", holdout="nope > 1")
    with pytest.raises(ValueError, match="selects every row"):
        import_crops(crops, table, tmp_path / "x", holdout="replicate > 0")


def test_holdout_feeds_the_trainers_cropset_dataset(tmp_path):
    from phenossl.data.datasets import build_dataset

    import_crops(_crops(), _table(), tmp_path / "cs", holdout="replicate != 1")
    train = build_dataset("cropset", tmp_path / "cs", split="train", label_column="treatment")
    test = build_dataset("cropset", tmp_path / "cs", split="test")
    assert len(train) == 3 and len(test) == 3


def test_cli_imports_and_reports_bad_input_in_one_line(tmp_path, capsys):
    crops, table = _crops(), _table()
    np.save(tmp_path / "crops.npy", crops.transpose(0, 2, 3, 1)[..., ::-1])
    table.to_csv(tmp_path / "cells.csv", index=False)
    args = [
        "-q",
        "import-crops",
        str(tmp_path / "crops.npy"),
        "--table",
        str(tmp_path / "cells.csv"),
    ]
    out = ["--out", str(tmp_path / "cs")]
    assert (
        main([*args, *out, "--channels", "Actin,Tubulin,DAPI", "--holdout", "replicate != 1"]) == 0
    )
    printed = capsys.readouterr().out
    assert "6 crops of 20 px" in printed and "3 train, 3 test" in printed
    ref = import_crops(crops, table, tmp_path / "ref")
    np.testing.assert_array_equal(
        CropSet(tmp_path / "cs").images(np.arange(6)), ref.images(np.arange(6))
    )
    assert main([*args, *out, "--channels", "Actin,Tubulin,DAPI"]) == 2
    assert main([*args, "--out", str(tmp_path / "x"), "--channels", "GFP,Tubulin,DAPI"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("phenossl import-crops: error: unknown channel name")
    assert "not empty" in err[-2]


def test_real_shared_crops(shared_data, tmp_path):
    source = shared_data / "bbbc021_crops"
    if not (source / "crops.npz").is_file():
        pytest.skip(f"real crops not found under {source}")
    cs = import_crops(
        source / "crops.npz", source / "cells.csv", tmp_path / "cs", holdout="replicate != 1"
    )
    original = pd.read_csv(source / "cells.csv")
    assert len(cs) == 5759 and cs.size == 68
    for column in original.columns:
        kept = "source_index" if column == "index" else column
        assert cs.table[kept].astype(str).tolist() == original[column].astype(str).tolist()
    split = cs.table.groupby("split").agg(cells=("cell_id", "size"), plates=("plate", "nunique"))
    assert split.loc["train"].tolist() == [3058, 10]
    assert split.loc["test"].tolist() == [2701, 17]
    assert cs.table.groupby("plate")["split"].nunique().max() == 1
    images = cs.images(np.arange(0, 5759, 97))
    assert images.dtype == np.uint8 and 10 < images.mean() < 120
