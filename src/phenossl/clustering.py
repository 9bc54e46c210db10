"""KMeans clustering of embeddings, scored with AMI against a label column.

:func:`cluster` runs KMeans and gathers everything the GUI and the reports show: the AMI between
clusters and labels, the same AMI against randomly permuted labels (the paper's control: what a
clustering unrelated to the labels scores), the cells nearest each centroid (Euclidean) and the
cluster x label composition. The pieces are pure functions usable on their own.

AMI uses ``average_method="max"``, the normalisation of the appendix's formula
``(MI - E[MI]) / (max(H(X), H(Y)) - E[MI])``; scikit-learn's default is the arithmetic mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_DISTANCE_CHUNK = 65536  # rows per chunk when measuring distances to centroids


@dataclass(frozen=True, eq=False)
class ClusterResult:
    """The outcome of :func:`cluster`.

    Attributes
    ----------
    assignments
        int64 ``(N,)`` cluster of each row, in ``0..k-1``.
    centroids
        ``(k, D)`` cluster centres.
    ami
        AMI between ``assignments`` and the labels; None without labels.
    ami_control_mean, ami_control_std
        Mean and (population) standard deviation of the AMI against ``n_permutations`` random
        permutations of the labels; None without labels or with ``n_permutations=0``.
    nearest
        int64 ``(k, n_nearest)``: row indices of each cluster's members nearest its centroid,
        closest first, padded with -1 when a cluster has fewer members.
    composition
        DataFrame cluster x label counts (one ``n_cells`` column without labels).
    k, seed
        The parameters of the run.
    inertia
        KMeans' sum of squared distances to the nearest centroid.
    """

    assignments: np.ndarray
    centroids: np.ndarray
    ami: float | None
    ami_control_mean: float | None
    ami_control_std: float | None
    nearest: np.ndarray
    composition: pd.DataFrame
    k: int
    seed: int
    inertia: float

    def to_dict(self, *, arrays: bool = True) -> dict[str, Any]:
        """A JSON-serialisable dict; ``arrays=False`` leaves out assignments and centroids."""
        out: dict[str, Any] = {
            "k": self.k,
            "seed": self.seed,
            "ami": self.ami,
            "ami_control_mean": self.ami_control_mean,
            "ami_control_std": self.ami_control_std,
            "inertia": self.inertia,
            "cluster_sizes": np.bincount(self.assignments, minlength=self.k).tolist(),
            "nearest": self.nearest.tolist(),
            "composition": {
                "label": self.composition.columns.name,
                "columns": [_json_scalar(c) for c in self.composition.columns],
                "counts": self.composition.to_numpy().tolist(),
            },
        }
        if arrays:
            out["assignments"] = self.assignments.tolist()
            out["centroids"] = self.centroids.tolist()
        return out


def cluster(
    embeddings: Any,
    labels: Sequence | np.ndarray | pd.Series | None = None,
    *,
    k: int = 2,
    seed: int = 0,
    n_init: int = 10,
    n_permutations: int = 10,
    n_nearest: int = 8,
) -> ClusterResult:
    """KMeans on the embeddings, with AMI against ``labels`` and a permuted-label control.

    Parameters
    ----------
    embeddings
        ``(N, D)`` finite numbers.
    labels
        One label per row (compound, concentration, MOA, treatment...), or None.
    k
        Number of clusters, ``2 <= k <= N``.
    seed
        Seeds KMeans and the label permutations.
    n_init
        KMeans restarts (the best inertia wins).
    n_permutations
        Random permutations of the labels for the control AMI (0 skips the control).
    n_nearest
        Centroid-nearest rows kept per cluster.

    Returns
    -------
    ClusterResult

    Examples
    --------
    Two well-separated groups of points, labelled by group:

    >>> rng = np.random.default_rng(0)
    >>> points = np.r_[rng.normal(0, 1, (20, 8)), rng.normal(6, 1, (20, 8))]
    >>> result = cluster(points, labels=["a"] * 20 + ["b"] * 20, k=2)
    >>> result.ami, np.bincount(result.assignments).tolist()
    (1.0, [20, 20])
    >>> abs(result.ami_control_mean) < 0.1  # shuffled labels: no agreement
    True
    """
    from sklearn.cluster import KMeans

    x = _embeddings(embeddings)
    n = len(x)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 2 <= k <= n:
        raise ValueError(f"k={k!r}; expected an integer with 2 <= k <= number of samples ({n})")
    for name, value, low in (("n_init", n_init, 1), ("n_permutations", n_permutations, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name}={value!r}; expected an integer >= {low}")
    codes = None if labels is None else _label_codes(labels, n)[0]

    km = KMeans(n_clusters=int(k), n_init=int(n_init), random_state=seed).fit(x)
    assignments = km.labels_.astype(np.int64)
    centroids = km.cluster_centers_
    score = control_mean = control_std = None
    if codes is not None:
        score = ami(assignments, codes)
        if n_permutations:
            control = randomized_ami(assignments, codes, n_permutations=n_permutations, seed=seed)
            control_mean, control_std = float(control.mean()), float(control.std())
    return ClusterResult(
        assignments=assignments,
        centroids=centroids,
        ami=score,
        ami_control_mean=control_mean,
        ami_control_std=control_std,
        nearest=nearest_to_centroids(x, assignments, centroids, n_nearest),
        composition=composition_table(assignments, labels, k=int(k)),
        k=int(k),
        seed=seed,
        inertia=float(km.inertia_),
    )


def ami(a: Sequence | np.ndarray, b: Sequence | np.ndarray) -> float:
    """Adjusted mutual information of two labelings, normalised by ``max(H(a), H(b))``."""
    from sklearn.metrics import adjusted_mutual_info_score

    if len(a) != len(b):
        raise ValueError(f"the two labelings have {len(a)} and {len(b)} entries; expected equal")
    return float(adjusted_mutual_info_score(a, b, average_method="max"))


def randomized_ami(
    assignments: Sequence | np.ndarray,
    labels: Sequence | np.ndarray | pd.Series,
    *,
    n_permutations: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """AMI of ``assignments`` against ``n_permutations`` random permutations of ``labels``.

    Returns
    -------
    numpy.ndarray
        float64 ``(n_permutations,)``; reproducible for a given ``seed``.
    """
    codes, _ = _label_codes(labels, len(assignments))
    rng = np.random.default_rng(seed)
    return np.array([ami(assignments, rng.permutation(codes)) for _ in range(n_permutations)])


def nearest_to_centroids(
    embeddings: np.ndarray, assignments: np.ndarray, centroids: np.ndarray, n: int
) -> np.ndarray:
    """Indices of each cluster's members nearest its centroid (Euclidean), closest first.

    Returns
    -------
    numpy.ndarray
        int64 ``(K, n)``, padded with -1 for clusters with fewer than ``n`` members; ties keep
        row order.
    """
    x = np.asarray(embeddings)
    assignments = np.asarray(assignments)
    centroids = np.asarray(centroids)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n={n!r}; expected an integer >= 0")
    k = len(centroids)
    if assignments.shape != (len(x),):
        raise ValueError(
            f"assignments has shape {assignments.shape}; expected ({len(x)},) like embeddings"
        )
    if len(x) and (assignments.min() < 0 or assignments.max() >= k):
        raise ValueError(f"assignments must lie in 0..{k - 1} (one per centroid)")
    distances = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), _DISTANCE_CHUNK):
        stop = start + _DISTANCE_CHUNK
        diff = x[start:stop] - centroids[assignments[start:stop]]
        distances[start:stop] = np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
    nearest = np.full((k, n), -1, dtype=np.int64)
    for c in range(k):
        members = np.flatnonzero(assignments == c)
        order = np.argsort(distances[members], kind="stable")[:n]
        nearest[c, : len(order)] = members[order]
    return nearest


def composition_table(
    assignments: Sequence | np.ndarray,
    labels: Sequence | np.ndarray | pd.Series | None = None,
    *,
    k: int | None = None,
) -> pd.DataFrame:
    """Counts of each label in each cluster.

    Rows are clusters ``0..k-1`` (``k`` defaults to ``max(assignments) + 1``), columns the labels
    in sorted order (order of appearance when they do not sort), named after a Series' name or
    ``"label"``. Without labels the table has one column, ``n_cells``.
    """
    assignments = np.asarray(assignments, dtype=np.int64)
    k = int(assignments.max()) + 1 if k is None else int(k)
    index = pd.RangeIndex(k, name="cluster")
    if labels is None:
        counts = np.bincount(assignments, minlength=k)[:, None]
        return pd.DataFrame(counts, index=index, columns=pd.Index(["n_cells"]))
    codes, uniques = _label_codes(labels, len(assignments))
    counts = np.zeros((k, len(uniques)), dtype=np.int64)
    np.add.at(counts, (assignments, codes), 1)
    try:
        order = sorted(range(len(uniques)), key=lambda i: uniques[i])
    except TypeError:  # mixed types: keep the order of appearance
        order = list(range(len(uniques)))
    name = getattr(labels, "name", None) or "label"
    columns = pd.Index([uniques[i] for i in order], name=name)
    return pd.DataFrame(counts[:, order], index=index, columns=columns)


def _embeddings(embeddings: Any) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.dtype.kind not in "fiu":
        raise ValueError(
            f"embeddings has shape {x.shape} and dtype {x.dtype}; expected numbers (N, D)"
        )
    x = x if x.dtype == np.float32 else x.astype(np.float64)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"embeddings has {rows.size} row(s) with NaN or inf (rows {rows[:10].tolist()}); "
            "expected finite values"
        )
    return x


def _label_codes(labels: Any, n: int) -> tuple[np.ndarray, list]:
    """Integer codes (0..U-1) of ``labels`` and the unique labels; missing labels are an error."""
    values = labels.to_numpy() if isinstance(labels, pd.Series | pd.Index) else labels
    values = np.asarray(values, dtype=object)
    if values.ndim != 1 or len(values) != n:
        raise ValueError(f"labels has shape {values.shape}; expected ({n},), one per embedding row")
    codes, uniques = pd.factorize(values)
    missing = np.flatnonzero(codes < 0)
    if missing.size:
        raise ValueError(
            f"labels has {missing.size} missing value(s) (rows {missing[:10].tolist()}); "
            "expected a label for every embedding row"
        )
    return codes.astype(np.int64), [_json_scalar(u) for u in uniques]


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
