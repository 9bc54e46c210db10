"""Clustering: KMeans + AMI (max normalisation), permuted-label control, nearest cells, tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_mutual_info_score, mutual_info_score

from phenossl.clustering import (
    ami,
    cluster,
    composition_table,
    nearest_to_centroids,
    randomized_ami,
)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, pd.Series]:
    """Three well-separated Gaussian blobs in 16-D, 60 points each, labelled by blob."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 20, (3, 16))
    x = np.concatenate([c + rng.normal(0, 1, (60, 16)) for c in centres]).astype(np.float32)
    labels = pd.Series(np.repeat(["taxol", "DMSO", "nocodazole"], 60), name="compound")
    return x, labels


def test_separated_blobs_score_one_and_the_control_zero(blobs):
    x, labels = blobs
    result = cluster(x, labels, k=3, seed=1)
    assert result.ami == pytest.approx(1.0)
    assert abs(result.ami_control_mean) < 0.03
    assert 0 < result.ami_control_std < 0.03
    assert result.assignments.shape == (180,)
    assert result.centroids.shape == (3, 16)
    assert (result.k, result.seed) == (3, 1)
    # every blob is one cluster
    assert all(len(set(result.assignments[i * 60 : (i + 1) * 60])) == 1 for i in range(3))


def test_same_seed_same_result(blobs):
    x, labels = blobs
    a, b = cluster(x, labels, k=4, seed=5), cluster(x, labels, k=4, seed=5)
    np.testing.assert_array_equal(a.assignments, b.assignments)
    assert a.ami_control_mean == b.ami_control_mean


def test_ami_uses_the_max_normalisation():
    a = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    b = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    assert ami(a, b) == pytest.approx(adjusted_mutual_info_score(a, b, average_method="max"))
    # H(a) != H(b), so the normalisations differ and the larger denominator gives the smaller AMI
    assert ami(a, b) < adjusted_mutual_info_score(a, b, average_method="arithmetic")
    assert ami(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="12 and 3 entries"):
        ami(a, b[:3])


def test_ami_matches_the_appendix_formula_when_expected_mi_is_tiny():
    # with large, balanced clusters E[MI] ~ 0, so AMI ~ MI / max(H(a), H(b))
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 4000)
    b = np.where(rng.random(4000) < 0.9, a, 1 - a) * 2 + rng.integers(0, 2, 4000)
    entropy = [mutual_info_score(v, v) for v in (a, b)]
    assert ami(a, b) == pytest.approx(mutual_info_score(a, b) / max(entropy), abs=2e-3)


def test_randomized_ami_is_seeded_and_near_zero(blobs):
    _, labels = blobs
    assignments = pd.factorize(labels)[0]
    first = randomized_ami(assignments, labels, n_permutations=6, seed=3)
    assert first.shape == (6,)
    np.testing.assert_array_equal(
        first, randomized_ami(assignments, labels, n_permutations=6, seed=3)
    )
    assert not np.array_equal(first, randomized_ami(assignments, labels, n_permutations=6, seed=4))
    assert np.abs(first).max() < 0.05


def test_nearest_are_really_the_nearest_members():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5))
    assignments = rng.integers(0, 3, 200)
    centroids = rng.normal(size=(3, 5))
    nearest = nearest_to_centroids(x, assignments, centroids, 7)
    assert nearest.shape == (3, 7)
    for c in range(3):
        members = np.flatnonzero(assignments == c)
        distance = np.linalg.norm(x[members] - centroids[c], axis=1)
        expected = members[np.argsort(distance)[:7]]
        np.testing.assert_array_equal(nearest[c], expected)


def test_small_clusters_are_padded_with_minus_one():
    x = np.array([[0.0], [1.0], [10.0], [3.0]])
    assignments = np.array([0, 0, 1, 0])
    nearest = nearest_to_centroids(x, assignments, np.array([[0.9], [10.0]]), 4)
    np.testing.assert_array_equal(nearest, [[1, 0, 3, -1], [2, -1, -1, -1]])


def test_composition_counts_sum_up(blobs):
    x, labels = blobs
    result = cluster(x[:150], labels[:150], k=2, seed=0)
    table = result.composition
    assert table.index.name == "cluster"
    assert table.columns.name == "compound"
    assert list(table.columns) == ["DMSO", "nocodazole", "taxol"]  # sorted
    assert table.to_numpy().sum() == 150
    np.testing.assert_array_equal(table.sum(axis=1), np.bincount(result.assignments))
    assert table.sum(axis=0).to_dict() == labels[:150].value_counts().to_dict()


def test_composition_without_labels_counts_cells():
    table = composition_table(np.array([0, 2, 2, 0, 2]), k=4)
    assert list(table.columns) == ["n_cells"]
    assert table["n_cells"].tolist() == [2, 0, 3, 0]


def test_composition_with_numeric_labels():
    table = composition_table([0, 0, 1, 1], [0.3, 3.0, 3.0, 3.0])
    assert list(table.columns) == [0.3, 3.0]
    assert table.to_numpy().tolist() == [[1, 1], [0, 2]]


def test_without_labels_there_is_no_score(blobs):
    x, _ = blobs
    result = cluster(x, k=3, n_nearest=2)
    assert result.ami is None
    assert result.ami_control_mean is None
    assert result.nearest.shape == (3, 2)
    assert result.composition["n_cells"].sum() == 180


def test_to_dict_is_json(blobs):
    x, labels = blobs
    result = cluster(x, labels, k=3, n_nearest=3)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["ami"] == result.ami
    assert data["assignments"] == result.assignments.tolist()
    assert data["cluster_sizes"] == [60, 60, 60]
    assert data["composition"]["columns"] == ["DMSO", "nocodazole", "taxol"]
    assert data["composition"]["label"] == "compound"
    assert np.array(data["composition"]["counts"]).sum() == 180
    assert "centroids" not in result.to_dict(arrays=False)


def test_errors_say_what_was_expected(blobs):
    x, labels = blobs
    with pytest.raises(ValueError, match=r"k=4; expected .*2 <= k <= number of samples \(3\)"):
        cluster(x[:3], k=4)
    with pytest.raises(ValueError, match="k=1; expected"):
        cluster(x, k=1)
    bad = x.copy()
    bad[[5, 9], 2] = [np.nan, np.inf]
    with pytest.raises(ValueError, match=r"2 row\(s\) with NaN or inf \(rows \[5, 9\]\)"):
        cluster(bad)
    with pytest.raises(ValueError, match=r"labels has shape \(10,\); expected \(180,\)"):
        cluster(x, labels[:10])
    missing = labels.astype(object).copy()
    missing[[3, 70]] = [None, np.nan]
    with pytest.raises(ValueError, match=r"2 missing value\(s\) \(rows \[3, 70\]\)"):
        cluster(x, missing)
    with pytest.raises(ValueError, match=r"expected numbers \(N, D\)"):
        cluster(x[0])
    with pytest.raises(ValueError, match="n_permutations=-1"):
        cluster(x, labels, n_permutations=-1)
