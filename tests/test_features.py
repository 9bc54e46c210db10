"""Hand-crafted per-cell features and their use as an embedding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk, ellipse
from skimage.feature import graycomatrix, graycoprops
from skimage.measure import regionprops

from phenossl._progress import run
from phenossl.cells.features import (
    FEATURE_NAMES,
    _haralick,
    _shape,
    cell_features,
    iter_feature_embedding,
    standardize,
)
from phenossl.cli import main
from phenossl.data.cropset import CropSetWriter

SIZE = 48


def _cell(nucleus_radius: float = 7, cell_radius: float = 16, dapi: int = 200, actin: int = 120):
    """A uint8 (3, S, S) crop: a round nucleus inside a round cell, with a little noise."""
    rng = np.random.default_rng(int(nucleus_radius * 10 + cell_radius + dapi + actin))
    crop = rng.integers(0, 12, (3, SIZE, SIZE)).astype(np.int64)
    centre = (SIZE // 2, SIZE // 2)
    cyto = disk(centre, cell_radius, shape=(SIZE, SIZE))
    crop[1][cyto] += 100
    crop[2][cyto] += actin
    nucleus = disk(centre, nucleus_radius, shape=(SIZE, SIZE))
    crop[0][nucleus] += dapi
    return np.clip(crop, 0, 255).astype(np.uint8)


def _value(features: np.ndarray, row: int, name: str) -> float:
    return float(features[row, FEATURE_NAMES.index(name)])


def test_names_are_unique_and_match_the_columns():
    features, names = cell_features(np.stack([_cell(), _cell(9)]))
    assert features.shape == (2, len(names)) and features.dtype == np.float32
    assert names == list(FEATURE_NAMES) and len(set(names)) == len(names)
    assert 50 <= len(names) <= 150
    assert np.isfinite(features).all()


def test_bigger_nucleus_gives_bigger_nucleus_area_and_same_cell():
    features, _ = cell_features(np.stack([_cell(5), _cell(9)]))
    small, big = _value(features, 0, "nucleus_area"), _value(features, 1, "nucleus_area")
    assert abs(small - np.pi * 25) < 0.3 * np.pi * 25
    assert abs(big - np.pi * 81) < 0.2 * np.pi * 81
    assert _value(features, 1, "nucleus_perimeter") > _value(features, 0, "nucleus_perimeter")
    cell_areas = [_value(features, r, "cell_area") for r in range(2)]
    assert abs(cell_areas[0] - cell_areas[1]) < 0.1 * cell_areas[0]
    assert abs(cell_areas[0] - np.pi * 16**2) < 0.2 * np.pi * 16**2
    assert _value(features, 0, "nucleus_cell_area_ratio") < _value(
        features, 1, "nucleus_cell_area_ratio"
    )
    assert _value(features, 0, "nucleus_offset") < 1.5
    assert _value(features, 0, "cell_border_fraction") == 0


def test_brighter_channel_gives_bigger_mean_only_there():
    features, _ = cell_features(np.stack([_cell(actin=60), _cell(actin=150)]))
    for name in ("actin_mean", "actin_integrated", "actin_cytoplasm_mean", "actin_q90"):
        assert _value(features, 1, name) > _value(features, 0, name), name
    assert _value(features, 0, "tubulin_mean") == pytest.approx(
        _value(features, 1, "tubulin_mean"), abs=0.01
    )
    assert _value(features, 0, "actin_mean") == pytest.approx(
        (np.asarray(_cell(actin=60))[2] / 255).mean(), rel=1e-5
    )


def test_elongated_nucleus_has_high_eccentricity():
    crop = _cell(7)
    crop[0] = np.random.default_rng(0).integers(0, 12, (SIZE, SIZE))
    rr, cc = ellipse(SIZE // 2, SIZE // 2, 4, 12, shape=(SIZE, SIZE))
    crop[0][rr, cc] = 220
    features, _ = cell_features(np.stack([_cell(7), crop]))
    assert _value(features, 1, "nucleus_eccentricity") > 0.85
    assert _value(features, 0, "nucleus_eccentricity") < 0.4
    assert _value(features, 1, "nucleus_major_axis") > 2 * _value(features, 1, "nucleus_minor_axis")


def test_shape_and_texture_agree_with_skimage():
    rng = np.random.default_rng(3)
    mask = np.zeros((40, 40), bool)
    mask[ellipse(20, 18, 9, 14, shape=mask.shape, rotation=0.4)] = True
    mask[5:9, 5:30] = False
    ours = _shape(mask)
    ref = regionprops(mask.astype(np.uint8))[0]
    expected = [
        ref.area,
        ref.perimeter,
        ref.eccentricity,
        ref.extent,
        ref.axis_major_length,
        ref.axis_minor_length,
        ref.equivalent_diameter_area,
    ]
    got = [ours[i] for i in (0, 1, 2, 4, 5, 6, 7)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert 0.9 * ref.solidity < ours[3] <= 1.0  # hull of the pixel squares, not of pixel centres
    channel = rng.random((40, 40)).astype(np.float32)
    levels = np.where(mask, np.minimum((channel * 16).astype(int), 15) + 1, 0).astype(np.uint8)
    glcm = graycomatrix(
        levels, (1, 3), (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4), levels=17, symmetric=True
    )
    props = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "entropy")
    expected = np.stack([graycoprops(glcm[1:, 1:], p).mean(axis=1) for p in props]).reshape(-1)
    np.testing.assert_allclose(_haralick(channel, mask), expected, rtol=1e-9, atol=1e-12)


def test_blank_and_float_crops():
    blank = np.zeros((1, 3, SIZE, SIZE), np.uint8)
    features, _ = cell_features(blank)
    assert np.isfinite(features).all() and _value(features, 0, "nucleus_area") == 0
    as_float = np.stack([_cell()]).astype(np.float32) / 255
    np.testing.assert_allclose(
        cell_features(as_float)[0], cell_features(np.stack([_cell()]))[0], rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match=r"expected \(N, 3, S, S\)"):
        cell_features(np.zeros((2, 4, SIZE, SIZE), np.uint8))
    bad = as_float.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cell_features(bad)


def test_parallel_equals_serial():
    crops = np.stack([_cell(r, 12 + r) for r in range(3, 9)] * 12)  # 72 crops: two tasks
    serial, _ = cell_features(crops, n_jobs=1)
    parallel, _ = cell_features(crops, n_jobs=2)
    np.testing.assert_array_equal(serial, parallel)


def test_standardize():
    x = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 2.0], [5.0, 5.0, 4.0]])
    z, mean, std = standardize(x)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(z.std(axis=0), [1, 0, 1], atol=1e-6)
    np.testing.assert_allclose(mean, [3, 5, 2])
    z2, _, _ = standardize(x[:1], mean, std)  # new cells on the statistics of a reference set
    np.testing.assert_allclose(z2, z[:1])
    with pytest.raises(ValueError, match="do not match"):
        standardize(x, mean[:2], std[:2])


def test_feature_embedding_streams_batches():
    crops = np.stack([_cell(r) for r in (4, 6, 8, 10)])
    events = []
    gen = iter_feature_embedding([crops[:3], crops[3:]], 4, n_jobs=1)
    result = run(gen, events.append)
    assert events[-1].done == 4
    raw, _ = cell_features(crops)
    z, _, _ = standardize(raw)
    np.testing.assert_allclose(result.features, z, atol=1e-5)
    meta = result.metadata()
    assert meta["feature_names"] == list(FEATURE_NAMES) and len(meta["feature_std"]) == len(
        FEATURE_NAMES
    )


def _cropset(path, n=8):
    crops = np.stack([_cell(3 + (i % 4) * 2, actin=60 + 20 * i) for i in range(n)])
    table = pd.DataFrame({"compound": ["DMSO", "taxol"] * (n // 2), "concentration": 0.0})
    table["treatment"] = table["compound"] + "@0"
    with CropSetWriter(path, SIZE) as writer:
        writer.add(crops, table)
    return crops


def test_embed_api_and_cli(tmp_path):
    import phenossl
    from phenossl.data.cropset import CropSet
    from phenossl.embedding import load_embeddings

    crops = _cropset(tmp_path / "cs")
    api = phenossl.embed(CropSet(tmp_path / "cs"), model="features")
    assert api.shape == (8, len(FEATURE_NAMES)) and api.dtype == np.float32
    np.testing.assert_allclose(api.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(api, phenossl.embed(crops, model="features"), atol=1e-6)
    with pytest.raises(ValueError, match="weights applies"):
        phenossl.embed(crops, model="features", weights="imagenet")

    out = tmp_path / "f.npz"
    assert (
        main(["-q", "embed", str(tmp_path / "cs"), "--model", "features", "--out", str(out)]) == 0
    )
    features, cell_ids, meta = load_embeddings(out)
    np.testing.assert_allclose(features, api, atol=1e-5)
    assert cell_ids.tolist() == list(range(8))
    assert meta["model"] == "features" and meta["feature_names"] == list(FEATURE_NAMES)
    report = tmp_path / "report"
    assert main(["-q", "cluster", str(out), "--out", str(report), "--label", "compound"]) == 0
    assert (report / "report.json").is_file()
