"""Tests of phenossl.data.fields: reading a 3-channel field and percentile normalisation."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from phenossl.data.fields import (
    FieldReadError,
    channel_percentiles,
    normalize_percentiles,
    read_channel,
    read_field,
)

KEYS = ("dapi", "tubulin", "actin")


def _write_field(folder: Path, shapes=((20, 30),) * 3, dtype=np.uint16, seed=0) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    paths = {}
    for key, shape in zip(KEYS, shapes):
        paths[key] = folder / f"{key}.tif"
        tifffile.imwrite(paths[key], rng.integers(100, 4000, size=shape).astype(dtype))
    return paths


# --- the real field ---------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_field_reads_normalised(real_field_paths):
    image = read_field(*(real_field_paths[k] for k in KEYS))
    assert image.shape == (3, 1024, 1280)
    assert image.dtype == np.float32
    assert image.min() == 0.0
    assert image.max() == 1.0
    for channel in image:  # an affine map commutes with linear-interpolated percentiles
        np.testing.assert_allclose(np.percentile(channel, [1.0, 99.8]), [0.0, 1.0], atol=1e-5)


@pytest.mark.realdata
def test_real_field_raw_matches_file_and_readme_intensities(real_field_paths):
    raw = read_field(dict(real_field_paths), normalize=False)
    assert raw.dtype == np.float32
    for channel, key in zip(raw, KEYS):
        np.testing.assert_array_equal(channel, tifffile.imread(real_field_paths[key]))
    background, bright = np.percentile(raw[0], [1.0, 99.8])
    assert 500 <= background <= 800  # the data README: DAPI background 500-800 counts
    assert 3000 <= bright <= 10000  # nuclei reach 3,000-10,000


@pytest.mark.realdata
def test_real_field_normalisation_matches_numpy_percentiles(real_field_paths):
    raw = read_field(pd.Series({k: str(v) for k, v in real_field_paths.items()}), normalize=False)
    image = read_field(real_field_paths, percentiles=(2.0, 99.0))
    for got, channel in zip(image, raw):
        lo, hi = np.percentile(channel, [2.0, 99.0])
        np.testing.assert_allclose(got, np.clip((channel - lo) / (hi - lo), 0, 1), atol=1e-6)


# --- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.uint64]
)
@pytest.mark.parametrize("q", [(0.0, 100.0), (1.0, 99.8), (50.0, 50.5), (0.1, 33.3)])
def test_channel_percentiles_equal_numpy(dtype, q):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    channel = rng.integers(max(info.min, -3000), min(info.max, 50_000), size=(31, 47)).astype(dtype)
    np.testing.assert_allclose(
        channel_percentiles(channel, q), np.percentile(channel, q), rtol=1e-12
    )


def test_channel_percentiles_high_narrow_unsigned_range():
    channel = np.array([4_000_000_000, 4_000_000_007, 4_000_000_003], dtype=np.uint32)
    np.testing.assert_allclose(channel_percentiles(channel, (0, 50, 100)), [4e9, 4e9 + 3, 4e9 + 7])


def test_channel_percentiles_wide_integer_range_and_float():
    rng = np.random.default_rng(2)
    wide = rng.integers(-(2**40), 2**40, size=1000)  # too wide for a histogram: numpy's path
    np.testing.assert_allclose(channel_percentiles(wide, (5, 95)), np.percentile(wide, (5, 95)))
    floats = rng.normal(size=(20, 20)).astype(np.float32)
    np.testing.assert_allclose(channel_percentiles(floats, (1, 99)), np.percentile(floats, (1, 99)))


def test_normalize_maps_percentiles_to_unit_range():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 1000, size=(2, 40, 50)).astype(np.uint16)
    out = normalize_percentiles(image, (1.0, 99.0))
    assert out.dtype == np.float32
    assert out.shape == image.shape
    for got, channel in zip(out, image):
        lo, hi = np.percentile(channel, [1.0, 99.0])
        np.testing.assert_allclose(got, np.clip((channel - lo) / (hi - lo), 0, 1), atol=1e-6)


def test_normalize_constant_and_sparse_channels_have_no_nan():
    constant = np.full((2, 8, 8), 7, dtype=np.uint16)
    out = normalize_percentiles(constant)
    assert np.isfinite(out).all()
    assert (out == 0).all()
    sparse = np.zeros((10, 10), dtype=np.float32)
    sparse[0, 0] = 5.0  # both percentiles are 0: the one bright pixel is "above" them
    out = normalize_percentiles(sparse)
    assert out[0, 0] == 1.0
    assert out.sum() == 1.0


def test_normalize_rejects_bad_input():
    with pytest.raises(ValueError, match="percentiles"):
        normalize_percentiles(np.zeros((4, 4)), (99.0, 1.0))
    with pytest.raises(ValueError, match="percentiles"):
        normalize_percentiles(np.zeros((4, 4)), (1.0,))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(C, H, W\)"):
        normalize_percentiles(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        normalize_percentiles(np.array([[1.0, np.nan], [2.0, 3.0]]))


# --- reading ----------------------------------------------------------------------------------


def test_read_field_from_paths_row_and_series_agree(tmp_path):
    paths = _write_field(tmp_path)
    by_paths = read_field(paths["dapi"], paths["tubulin"], paths["actin"], normalize=False)
    assert by_paths.shape == (3, 20, 30)
    for channel, key in zip(by_paths, KEYS):  # order DAPI, Tubulin, Actin
        np.testing.assert_array_equal(channel, tifffile.imread(paths[key]))
    np.testing.assert_array_equal(read_field(paths, normalize=False), by_paths)
    series = pd.Series({**{k: str(v) for k, v in paths.items()}, "field_id": "p/A01/s1"})
    np.testing.assert_array_equal(read_field(series), normalize_percentiles(by_paths))


def test_read_channel_keeps_dtype_and_drops_singleton_axes(tmp_path):
    path = tmp_path / "one.tiff"
    tifffile.imwrite(path, np.arange(12, dtype=np.uint8).reshape(1, 3, 4))
    channel = read_channel(path)
    assert channel.dtype == np.uint8
    assert channel.shape == (3, 4)


def test_missing_file_is_named(tmp_path):
    paths = _write_field(tmp_path)
    paths["tubulin"].unlink()
    with pytest.raises(FileNotFoundError, match=re.escape("tubulin.tif")):
        read_field(paths)


def test_truncated_tiff_raises_field_read_error_naming_it(tmp_path):
    paths = _write_field(tmp_path, shapes=((64, 80),) * 3)
    data = paths["actin"].read_bytes()
    paths["actin"].write_bytes(data[: len(data) // 2])
    with pytest.raises(FieldReadError, match=re.escape("actin.tif")) as info:
        read_field(paths)
    assert isinstance(info.value, ValueError)
    assert info.value.path == paths["actin"]


def test_not_an_image_raises_field_read_error(tmp_path):
    for name in ("garbage.tif", "garbage.png"):  # the TIFF path and the bioio path
        path = tmp_path / name
        path.write_bytes(b"this is not an image" * 10)
        with pytest.raises(FieldReadError, match=re.escape(name)) as info:
            read_channel(path)
        assert info.value.path == path


def test_nan_in_a_float_channel_names_the_file(tmp_path):
    paths = _write_field(tmp_path, dtype=np.float32)
    data = tifffile.imread(paths["dapi"])
    data[3, 4] = np.nan
    tifffile.imwrite(paths["dapi"], data)
    assert np.isnan(read_field(paths, normalize=False)[0, 3, 4])
    with pytest.raises(FieldReadError, match="NaN") as info:
        read_field(paths)
    assert info.value.path == paths["dapi"]


def test_mismatched_shapes_name_all_three(tmp_path):
    paths = _write_field(tmp_path, shapes=((20, 30), (20, 31), (20, 30)))
    with pytest.raises(ValueError, match="same shape") as info:
        read_field(paths)
    message = str(info.value)
    assert "(20, 30)" in message
    assert "(20, 31)" in message
    assert "Tubulin" in message


def test_non_2d_channel_is_an_error(tmp_path):
    paths = _write_field(tmp_path, shapes=((20, 30), (2, 20, 30), (20, 30)))
    with pytest.raises(FieldReadError, match=r"single 2D plane.*\(2, 20, 30\)") as info:
        read_field(paths)
    assert info.value.path == paths["tubulin"]


def test_bad_arguments(tmp_path):
    paths = _write_field(tmp_path)
    with pytest.raises(ValueError, match="actin"):
        read_field({"dapi": paths["dapi"], "tubulin": paths["tubulin"]})
    with pytest.raises(TypeError, match="either one field-table row or three paths"):
        read_field(paths, paths["tubulin"])
    with pytest.raises(ValueError, match="tubulin and actin"):
        read_field(paths["dapi"])
    with pytest.raises(ValueError, match="percentiles"):
        read_field(paths, percentiles=(50, 50))
