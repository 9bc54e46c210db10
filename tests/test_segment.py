"""Segmentation: the real BBBC021 field and small synthetic fields built here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from skimage.measure import label as label_components
from skimage.measure import regionprops_table

from phenossl.cells.segment import (
    TABLE_COLUMNS,
    Segmentation,
    _upsample_linear,
    cell_table,
    segment,
)
from phenossl.data.fields import normalize_percentiles, read_field
from phenossl.data.synthetic import default_treatments, render_field


def _disc(shape, centre, radius):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _field(shape, nuclei, rng, *, cell_radius=None):
    """A float32 (3, H, W) field: bright DAPI discs/ellipses, dimmer cytoplasm around them."""
    image = rng.normal(0.02, 0.01, size=(3, *shape)).astype(np.float32)
    for mask in nuclei:
        image[0][mask] = 0.8
        if cell_radius:
            cy, cx = np.argwhere(mask).mean(axis=0)
            cyto = _disc(shape, (cy, cx), cell_radius)
            image[1][cyto] = np.maximum(image[1][cyto], 0.4)
            image[2][cyto] = np.maximum(image[2][cyto], 0.5)
    return np.clip(image, 0, 1)


# --- the real field ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_image(real_field_paths) -> np.ndarray:
    return read_field(real_field_paths)


@pytest.fixture(scope="module")
def real_segmentation(real_image) -> Segmentation:
    return segment(real_image)


@pytest.mark.realdata
def test_real_field_cell_count_and_nucleus_sizes(real_segmentation):
    seg = real_segmentation
    assert 150 <= len(seg) <= 300
    areas = seg.table["nucleus_area"].to_numpy()
    # Nuclei of MCF-7 at 20x are ~25-40 px across: 490-1260 px discs.
    assert 450 <= np.median(areas) <= 1300
    assert areas.min() >= 150  # debris removed
    assert np.percentile(areas, 95) < 2500  # clumps split


@pytest.mark.realdata
def test_real_field_labels_match_and_cells_contain_nuclei(real_segmentation):
    seg = real_segmentation
    n = len(seg)
    assert seg.nuclei.dtype == np.int32
    assert seg.cells.dtype == np.int32
    assert seg.nuclei.shape == seg.cells.shape == (1024, 1280)
    assert list(seg.table.columns) == list(TABLE_COLUMNS)
    assert seg.table["label"].tolist() == list(range(1, n + 1))
    assert set(np.unique(seg.nuclei)) == set(range(n + 1))
    assert set(np.unique(seg.cells)) == set(range(n + 1))
    inside = seg.nuclei > 0
    np.testing.assert_array_equal(seg.cells[inside], seg.nuclei[inside])
    table = seg.table
    assert (table["cell_area"] > table["nucleus_area"]).mean() > 0.95
    assert table["cell_area"].median() > 2 * table["nucleus_area"].median()


@pytest.mark.realdata
def test_real_field_centroids_lie_on_their_nucleus(real_segmentation):
    seg = real_segmentation
    ys = np.rint(seg.table["centroid_y"]).astype(int)
    xs = np.rint(seg.table["centroid_x"]).astype(int)
    on_own = seg.nuclei[ys, xs] == seg.table["label"].to_numpy()
    assert on_own.mean() > 0.95  # only crescent-shaped nuclei may have it outside


# --- synthetic BBBC021-like fields (phenossl.data.synthetic, with ground truth) ----------------


def _matched_fraction(truth: np.ndarray, found: np.ndarray) -> float:
    """F1 of objects matched one-to-one at IoU > 0.5."""
    n_truth, n_found = int(truth.max()), int(found.max())
    both = (truth > 0) & (found > 0)
    pairs = truth[both].astype(np.int64) * (n_found + 1) + found[both]
    overlap = np.bincount(pairs, minlength=(n_truth + 1) * (n_found + 1))
    overlap = overlap.reshape(n_truth + 1, n_found + 1)[1:, 1:]
    area_t = np.bincount(truth.ravel(), minlength=n_truth + 1)[1:, None]
    area_f = np.bincount(found.ravel(), minlength=n_found + 1)[None, 1:]
    matched = (overlap / (area_t + area_f - overlap) > 0.5).sum()
    return 2 * matched / (n_truth + n_found)


@pytest.mark.parametrize("compound", ["DMSO", "nocodazole", "taxol", "cytochalasin B"])
def test_synthetic_fields_match_their_ground_truth(compound):
    treatment = max(
        (t for t in default_treatments() if t.compound == compound),
        key=lambda t: t.concentration,
    )
    field = render_field(treatment, np.random.default_rng(11), shape=(512, 640))
    seg = segment(normalize_percentiles(field.image))
    # The ground truth labels every nucleus fragment of a cell with the cell's label; compare
    # with its connected pieces (binucleate cells and micronuclei are separate nuclei here).
    nuclei = label_components(field.nuclei)
    assert _matched_fraction(nuclei, seg.nuclei) > 0.85
    if compound in ("DMSO", "nocodazole"):  # one nucleus per cell: cells are comparable
        assert _matched_fraction(field.cells, seg.cells) > 0.85


# --- small synthetic fields -------------------------------------------------------------------


def test_two_touching_discs_are_split():
    rng = np.random.default_rng(0)
    shape = (96, 128)
    pair = _disc(shape, (48, 50), 15) | _disc(shape, (48, 77), 15)
    image = _field(shape, [pair], rng, cell_radius=30)
    seg = segment(image, downsample=1, cell_downsample=1)
    assert len(seg) == 2
    xs = sorted(seg.table["centroid_x"])
    assert xs[0] == pytest.approx(49, abs=2)
    assert xs[1] == pytest.approx(78, abs=2)
    assert (seg.nuclei > 0).sum() == pytest.approx(pair.sum(), rel=0.03)


def test_elongated_or_waisted_nucleus_is_not_split():
    rng = np.random.default_rng(1)
    shape = (96, 128)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    ellipse = ((yy - 48) / 11) ** 2 + ((xx - 64) / 24) ** 2 <= 1
    assert len(segment(_field(shape, [ellipse], rng, cell_radius=35))) == 1
    # A slight waist (neck half-width 0.85 x radius) is one nucleus by default...
    peanut = _disc(shape, (48, 56), 15) | _disc(shape, (48, 72), 15)
    image = _field(shape, [peanut], rng, cell_radius=35)
    assert len(segment(image)) == 1
    # ...and two when the split criterion is made lenient enough.
    assert len(segment(image, split_ratio=0.95)) == 2


def test_debris_is_removed_and_holes_filled():
    rng = np.random.default_rng(2)
    shape = (128, 128)
    ring = _disc(shape, (40, 40), 16) & ~_disc(shape, (40, 40), 4)  # nucleus with a dark hole
    debris = _disc(shape, (100, 100), 3)
    seg = segment(_field(shape, [ring, debris], rng), min_nucleus_area=150, downsample=1)
    assert len(seg) == 1
    assert seg.nuclei[40, 40] == 1  # hole filled
    assert seg.nuclei[100, 100] == 0  # debris gone
    assert seg.table["nucleus_area"].iloc[0] == pytest.approx(np.pi * 16**2, rel=0.1)


def test_empty_field_gives_zero_cells():
    image = np.zeros((3, 64, 80), dtype=np.float32)
    seg = segment(image)
    assert len(seg) == 0
    assert list(seg.table.columns) == list(TABLE_COLUMNS)
    assert not seg.nuclei.any()
    assert not seg.cells.any()
    assert seg.nuclei.shape == seg.cells.shape == (64, 80)


@pytest.mark.parametrize("shape", [(150, 203), (97, 131)])
def test_every_nucleus_gets_a_cell_of_the_same_label_on_odd_shapes(shape):
    rng = np.random.default_rng(3)
    centres = [(30, 30), (30, 90), (75, 60), (shape[0] - 20, shape[1] - 25)]
    nuclei = [_disc(shape, c, 11) for c in centres]
    seg = segment(_field(shape, nuclei, rng, cell_radius=22))
    assert len(seg) == 4
    assert seg.cells.shape == seg.nuclei.shape == shape
    inside = seg.nuclei > 0
    np.testing.assert_array_equal(seg.cells[inside], seg.nuclei[inside])
    for label in range(1, 5):  # each cell is one piece around its nucleus, larger than it
        assert (seg.cells == label).sum() > 2 * (seg.nuclei == label).sum()


def test_cell_extent_is_limited_by_max_cell_distance():
    rng = np.random.default_rng(4)
    shape = (160, 160)
    image = _field(shape, [_disc(shape, (80, 80), 10)], rng, cell_radius=70)
    seg = segment(image, max_cell_distance=20, cell_downsample=1)
    ys, xs = np.nonzero(seg.cells == 1)
    assert np.hypot(ys - 80, xs - 80).max() <= 10 + 20 + 1.5


def test_cell_border_follows_a_cytoplasm_edge_or_the_midline():
    rng = np.random.default_rng(7)
    shape = (80, 160)
    image = _field(shape, [_disc(shape, (40, 40), 8), _disc(shape, (40, 120), 8)], rng)
    image[1:, 10:70, :100] = 0.8  # the left cell is bright up to column 100...
    image[1:, 10:70, 100:] = 0.3  # ...the right one dim: an edge off the midline (80)

    def border(**kwargs) -> int:
        seg = segment(image, cell_threshold=0.1, **kwargs)
        row = seg.cells[40]
        return int(np.flatnonzero(row == 2)[0])

    assert border() == pytest.approx(100, abs=6)  # working resolution: 4-px steps
    assert border(cell_edge_weight=0) == pytest.approx(80, abs=6)


def test_cell_table_matches_regionprops():
    rng = np.random.default_rng(5)
    shape = (90, 110)
    nuclei = np.zeros(shape, np.int32)
    nuclei[_disc(shape, (30, 30), 9)] = 1
    nuclei[_disc(shape, (60, 80), 12)] = 2
    cells = np.zeros(shape, np.int32)
    cells[_disc(shape, (30, 33), 20)] = 1
    cells[_disc(shape, (62, 80), 25) & (cells == 0)] = 2
    cells[nuclei > 0] = nuclei[nuclei > 0]
    image = rng.random((3, *shape), dtype=np.float32)

    table = cell_table(image, nuclei, cells)
    ref_n = pd.DataFrame(regionprops_table(nuclei, properties=("label", "centroid", "area")))
    ref_c = pd.DataFrame(
        regionprops_table(cells, np.moveaxis(image, 0, -1), properties=("area", "intensity_mean"))
    )
    np.testing.assert_allclose(table["centroid_y"], ref_n["centroid-0"])
    np.testing.assert_allclose(table["centroid_x"], ref_n["centroid-1"])
    np.testing.assert_array_equal(table["nucleus_area"], ref_n["area"])
    np.testing.assert_array_equal(table["cell_area"], ref_c["area"])
    for k, name in enumerate(("dapi_mean", "tubulin_mean", "actin_mean")):
        np.testing.assert_allclose(table[name], ref_c[f"intensity_mean-{k}"], rtol=1e-5)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_linear_upsampling_matches_scipy_zoom(factor):
    # The full-resolution outlines come from this interpolation of the block-averaged image.
    small = np.random.default_rng(6).random((7, 9), dtype=np.float32)
    expected = ndi.zoom(small, factor, order=1, grid_mode=True, mode="nearest")
    got = _upsample_linear(small, factor, expected.shape)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    cropped = _upsample_linear(small, factor, (10, 11))
    np.testing.assert_allclose(cropped, expected[:10, :11], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nucleus_threshold": "median"}, "nucleus_threshold"),
        ({"cytoplasm_channels": (1, 5)}, "cytoplasm_channels"),
        ({"downsample": 0}, "downsample"),
        ({"split_ratio": 1.5}, "split_ratio"),
    ],
)
def test_bad_parameters_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        segment(np.zeros((3, 32, 32), np.float32), **kwargs)


def test_bad_image_shape_is_reported():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        segment(np.zeros((32, 32), np.float32))
