"""Crops of one field and the on-disk CropSet."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from phenossl.cells.crops import crop_cells, to_uint8
from phenossl.cells.segment import TABLE_COLUMNS, Segmentation, segment
from phenossl.data.cropset import CropSet, CropSetWriter
from phenossl.data.fields import read_field


def _segmentation(shape, centroids) -> Segmentation:
    """A Segmentation whose table holds the given nucleus centroids (labels are not used)."""
    n = len(centroids)
    table = pd.DataFrame(
        {
            "label": np.arange(1, n + 1, dtype=np.int32),
            "centroid_y": [c[0] for c in centroids],
            "centroid_x": [c[1] for c in centroids],
            "nucleus_area": np.full(n, 500),
            "cell_area": np.full(n, 2000),
            "dapi_mean": np.zeros(n, np.float32),
            "tubulin_mean": np.zeros(n, np.float32),
            "actin_mean": np.zeros(n, np.float32),
        },
        columns=list(TABLE_COLUMNS),
    )
    labels = np.zeros(shape, np.int32)
    return Segmentation(nuclei=labels, cells=labels.copy(), table=table)


# --- crop_cells ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 33])
def test_bright_dot_at_the_centroid_lands_at_the_crop_centre(size):
    image = np.zeros((3, 100, 120), np.float32)
    centroids = [(40.3, 50.6), (60.5, 70.2)]  # rounded: (40, 51) and (61, 70)
    for (y, x), channel in zip([(40, 51), (61, 70)], [0, 2]):
        image[channel, y, x] = 1.0
    crops = crop_cells(image, _segmentation(image.shape[1:], centroids), size=size)
    assert crops.images.shape == (2, 3, size, size)
    assert crops.images.dtype == np.uint8
    for k, channel in enumerate([0, 2]):
        bright = np.argwhere(crops.images[k] == 255)
        assert bright.tolist() == [[channel, size // 2, size // 2]]


def test_crop_values_are_rounded_255_scaled_pixels():
    rng = np.random.default_rng(0)
    image = rng.random((3, 64, 64), dtype=np.float32)
    image[0, 0, 0], image[1, 0, 0] = -0.2, 1.3  # out of range values are clipped
    crops = crop_cells(image, _segmentation((64, 64), [(32, 32)]), size=64)
    expected = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(crops.images[0], expected)
    np.testing.assert_array_equal(to_uint8(image), expected)
    as_uint8 = crop_cells(expected, _segmentation((64, 64), [(32, 32)]), size=64)
    np.testing.assert_array_equal(as_uint8.images[0], expected)


def test_drop_policy_counts_cells_near_the_border():
    image = np.ones((3, 100, 100), np.float32)
    centroids = [(50, 50), (5, 50), (50, 95), (20, 20), (80, 80), (19, 50)]
    seg = _segmentation((100, 100), centroids)
    crops = crop_cells(image, seg, size=40)  # needs 20 <= centre <= 80
    assert crops.n_dropped == 3
    assert crops.table["label"].tolist() == [1, 4, 5]
    assert crops.table.index.tolist() == [0, 1, 2]
    assert len(crops) == 3


def test_pad_policy_keeps_every_cell_and_zero_fills_outside():
    image = np.full((3, 50, 60), 0.5, np.float32)
    crops = crop_cells(image, _segmentation((50, 60), [(3, 58), (25, 30)]), size=20, border="pad")
    assert crops.n_dropped == 0
    assert len(crops) == 2
    corner = crops.images[0]  # rows 3-10..3+10, cols 58-10..58+10 of the field
    np.testing.assert_array_equal(corner[:, :7, :], 0)  # above the field
    np.testing.assert_array_equal(corner[:, :, 12:], 0)  # right of the field
    np.testing.assert_array_equal(corner[:, 7:, :12], 128)
    np.testing.assert_array_equal(crops.images[1], 128)


def test_zero_cells_give_zero_crops_and_a_warning_naming_the_field():
    image = np.zeros((3, 64, 64), np.float32)
    seg = segment(image)
    with pytest.warns(UserWarning, match="Week2_24381/B02/s1"):
        crops = crop_cells(image, seg, size=32, field_id="Week2_24381/B02/s1")
    assert crops.images.shape == (0, 3, 32, 32)
    assert crops.images.dtype == np.uint8
    assert crops.n_dropped == 0
    assert list(crops.table.columns) == list(TABLE_COLUMNS)


def test_crop_cells_rejects_bad_arguments():
    image = np.zeros((3, 64, 64), np.float32)
    seg = _segmentation((64, 64), [(32, 32)])
    with pytest.raises(ValueError, match="border"):
        crop_cells(image, seg, border="reflect")
    with pytest.raises(ValueError, match="size"):
        crop_cells(image, seg, size=0)
    with pytest.raises(ValueError, match="does not match"):
        crop_cells(np.zeros((3, 32, 64), np.float32), seg)
    with pytest.raises(ValueError, match="float"):
        crop_cells(np.zeros((3, 64, 64), np.uint16), seg)
    broken = _segmentation((64, 64), [(32, 32), (np.nan, 10)])
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        crop_cells(image, broken)


@pytest.mark.realdata
def test_real_field_crops(real_field_paths):
    image = read_field(real_field_paths)
    seg = segment(image)
    crops = crop_cells(image, seg)
    assert crops.images.shape[1:] == (3, 196, 196)
    assert len(crops) + crops.n_dropped == len(seg)
    assert len(crops) > 100
    # the centre of every crop is on (or right next to) a bright nucleus
    centre = crops.images[:, 0, 96:101, 96:101].astype(float).mean(axis=(1, 2))
    assert np.median(centre) > 2 * crops.images[:, 0].mean()


# --- CropSet ------------------------------------------------------------------------------


def _batch(rng, n, size, first_id):
    images = rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)
    table = pd.DataFrame(
        {
            "field_id": [f"P/W/s{first_id + i}" for i in range(n)],
            "label": np.arange(1, n + 1),
            "centroid_y": rng.random(n) * 100,
            "treatment": ["DMSO@0"] * n,
        }
    )
    return images, table


@pytest.fixture
def written(tmp_path):
    """A CropSet of 3 shards (5, 1, 4 crops) and the arrays that went in."""
    rng = np.random.default_rng(0)
    batches = [_batch(rng, n, 8, first) for n, first in [(5, 0), (1, 5), (4, 6)]]
    path = tmp_path / "crops"
    with CropSetWriter(path, size=8) as writer:
        for images, table in batches:
            writer.add(images, table)
        writer.add(np.zeros((0, 3, 8, 8), np.uint8), batches[0][1].iloc[:0])  # no shard
    images = np.concatenate([b[0] for b in batches])
    table = pd.concat([b[1] for b in batches], ignore_index=True)
    return path, images, table


def test_round_trip_over_several_shards(written):
    path, images, table = written
    cs = CropSet(path)
    assert len(cs) == 10
    assert cs.size == 8
    assert sorted(p.name for p in (path / "shards").iterdir()) == [
        "00000.npy",
        "00001.npy",
        "00002.npy",
    ]
    assert list(cs.table.columns) == [
        "cell_id",
        "field_id",
        "label",
        "centroid_y",
        "treatment",
        "shard",
        "index",
    ]
    assert cs.table["cell_id"].tolist() == list(range(10))
    assert cs.table["shard"].tolist() == [0] * 5 + [1] + [2] * 4
    assert cs.table["index"].tolist() == [0, 1, 2, 3, 4, 0, 0, 1, 2, 3]
    assert cs.table["field_id"].tolist() == table["field_id"].tolist()
    np.testing.assert_allclose(cs.table["centroid_y"], table["centroid_y"])
    for i in range(10):
        np.testing.assert_array_equal(cs[i], images[i])
    np.testing.assert_array_equal(cs[-1], images[-1])
    meta = json.loads((path / "cropset.json").read_text())
    assert meta == {
        "format": "phenossl-cropset",
        "version": 1,
        "size": 8,
        "channels": ["DAPI", "Tubulin", "Actin"],
        "dtype": "uint8",
        "n_cells": 10,
    }


def test_images_in_arbitrary_order_equal_the_written_data(written):
    path, images, _ = written
    cs = CropSet(path)
    order = [9, 0, 5, 3, 3, 7, 1]
    got = cs.images(order)
    assert got.dtype == np.uint8
    assert not isinstance(got, np.memmap)
    np.testing.assert_array_equal(got, images[order])
    assert cs.images([]).shape == (0, 3, 8, 8)


@pytest.mark.parametrize("batch_size", [1, 3, 10, 64])
def test_iter_batches_covers_everything_once_in_order(written, batch_size):
    path, images, _ = written
    batches = list(CropSet(path).iter_batches(batch_size))
    assert all(b.dtype == np.uint8 for b in batches)
    assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    np.testing.assert_array_equal(np.concatenate(batches), images)


def test_subset_is_a_view_with_the_same_interface(written):
    path, images, _ = written
    cs = CropSet(path)
    mask = np.zeros(len(cs), bool)
    mask[[1, 5, 8]] = True
    train = cs.subset(mask)
    assert len(train) == 3
    assert train.table["cell_id"].tolist() == [1, 5, 8]
    assert train.table.index.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(train[2], images[8])
    np.testing.assert_array_equal(np.concatenate(list(train.iter_batches(2))), images[[1, 5, 8]])
    picked = cs.subset(pd.Series([8, 1]))
    np.testing.assert_array_equal(picked.images([0, 1]), images[[8, 1]])
    with pytest.raises(ValueError, match="mask"):
        cs.subset(np.ones(3, bool))
    with pytest.raises(IndexError):
        cs.images([10])


def test_shards_are_read_lazily(written):
    path, images, _ = written
    cs = CropSet(path)  # opens fine; shard 2 goes missing before it is read
    (path / "shards" / "00002.npy").unlink()
    np.testing.assert_array_equal(cs.images([0, 5]), images[[0, 5]])
    with pytest.raises(FileNotFoundError, match=r"00002\.npy"):
        cs.images([7])


def test_writer_is_atomic_until_close(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "cs"
    writer = CropSetWriter(path, size=4)
    writer.add(*_batch(rng, 3, 4, 0))
    assert (path / "shards" / "00000.npy").is_file()
    assert not (path / "cells.csv").exists()
    assert not (path / "cropset.json").exists()
    assert [p.name for p in path.rglob("*.tmp")] == []
    with pytest.raises(FileNotFoundError, match="not a CropSet"):
        CropSet(path)
    writer.close()
    assert len(CropSet(path)) == 3
    with pytest.raises(ValueError, match="closed"):
        writer.add(*_batch(rng, 1, 4, 3))


def test_writer_leaves_no_cropset_when_the_block_fails(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "cs"

    def interrupted_run():
        with CropSetWriter(path, size=4) as writer:
            writer.add(*_batch(rng, 2, 4, 0))
            raise RuntimeError("field 3 failed")

    with pytest.raises(RuntimeError, match="field 3"):
        interrupted_run()
    assert (path / "shards" / "00000.npy").is_file()
    assert not (path / "cells.csv").exists()
    assert not (path / "cropset.json").exists()


def test_writer_refuses_an_existing_folder_unless_overwrite(written):
    path, _, _ = written
    with pytest.raises(FileExistsError, match="overwrite"):
        CropSetWriter(path, size=8)
    rng = np.random.default_rng(3)
    with CropSetWriter(path, size=4, overwrite=True) as writer:
        writer.add(*_batch(rng, 2, 4, 0))
    cs = CropSet(path)
    assert len(cs) == 2
    assert cs.size == 4
    assert sorted(p.name for p in (path / "shards").iterdir()) == ["00000.npy"]


def test_writer_validates_batches(tmp_path):
    rng = np.random.default_rng(4)
    writer = CropSetWriter(tmp_path / "cs", size=4)
    images, table = _batch(rng, 2, 4, 0)
    with pytest.raises(ValueError, match="uint8"):
        writer.add(images.astype(np.float32), table)
    with pytest.raises(ValueError, match=r"\(n, 3, 4, 4\)"):
        writer.add(images[:, :, :3], table)
    with pytest.raises(ValueError, match="rows"):
        writer.add(images, table.iloc[:1])
    writer.add(images, table)
    with pytest.raises(ValueError, match="columns"):
        writer.add(images, table.drop(columns="treatment"))


def test_split_column_comes_last(tmp_path):
    rng = np.random.default_rng(5)
    images, table = _batch(rng, 3, 4, 0)
    table.insert(1, "split", ["train", "val", "test"])
    with CropSetWriter(tmp_path / "cs", size=4) as writer:
        writer.add(images, table)
    cs = CropSet(tmp_path / "cs")
    assert list(cs.table.columns)[-3:] == ["shard", "index", "split"]
    test = cs.subset(cs.table["split"] == "test")
    np.testing.assert_array_equal(test[0], images[2])


def test_empty_cropset_round_trips(tmp_path):
    CropSetWriter(tmp_path / "cs", size=4).close()
    cs = CropSet(tmp_path / "cs")
    assert len(cs) == 0
    assert list(cs.iter_batches(8)) == []


def test_clear_errors_for_broken_folders(written, tmp_path):
    path, _, _ = written
    with pytest.raises(FileNotFoundError, match="not found"):
        CropSet(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="not a CropSet"):
        CropSet(tmp_path)

    meta_path = path / "cropset.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "version": 2}))
    with pytest.raises(ValueError, match="version 2"):
        CropSet(path)
    meta_path.write_text(json.dumps({**meta, "format": "something-else"}))
    with pytest.raises(ValueError, match="format"):
        CropSet(path)
    meta_path.write_text(json.dumps({**meta, "n_cells": 11}))
    with pytest.raises(ValueError, match="n_cells=11"):
        CropSet(path)
    meta_path.write_text(json.dumps(meta))

    (path / "shards" / "00001.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"00001\.npy"):
        CropSet(path)


def test_writer_can_list_a_selection_of_its_rows(tmp_path):
    images = np.arange(4 * 3 * 8 * 8, dtype=np.uint8).reshape(4, 3, 8, 8)
    writer = CropSetWriter(tmp_path / "cs", size=8)
    writer.add(images[:2], pd.DataFrame({"label": [1, 2]}))
    writer.add(images[2:], pd.DataFrame({"label": [3, 4]}))
    chosen = writer.table.iloc[[3, 0]].assign(split=["train", "test"])
    writer.close(chosen)
    cs = CropSet(tmp_path / "cs")
    assert cs.table["label"].tolist() == [4, 1]
    assert cs.table["split"].tolist() == ["train", "test"]
    assert cs.table["cell_id"].tolist() == [0, 1]
    np.testing.assert_array_equal(cs.images([0, 1]), images[[3, 0]])


def test_writer_rejects_a_selection_pointing_nowhere(tmp_path):
    writer = CropSetWriter(tmp_path / "cs", size=8)
    writer.add(np.zeros((2, 3, 8, 8), np.uint8), pd.DataFrame({"label": [1, 2]}))
    bad = writer.table.assign(index=[0, 5])
    with pytest.raises(ValueError, match="point at no written crop"):
        writer.close(bad)
