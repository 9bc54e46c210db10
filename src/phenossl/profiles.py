"""Phenotype profiles from cell embeddings, and the BBBC021 mechanism-of-action benchmark.

The steps, as pure functions:

1. :func:`normalize_to_controls`: each plate's cells are z-scored against that plate's DMSO
   cells (the plate effect removed, DMSO variation as the unit). A plate with fewer than
   ``min_controls`` DMSO cells borrows the DMSO cells of its batch (the week of the plate name:
   ``Week4_27481`` -> ``Week4``), and a batch without enough borrows all DMSO cells; the table of
   references says which plate used what. ``method="whiten"`` adds typical variation
   normalisation (TVN, Ando et al. 2017): a ZCA whitening fitted on the pooled normalised DMSO
   cells, so that DMSO variation is isotropic.
2. :func:`well_profiles` / :func:`treatment_profiles`: cells -> wells -> treatments
   (``compound@concentration``), by mean (default) or median. Measured on the 17 held-out real
   plates (NSC, 25 queries): mean 0.40 / median 0.32 for random-init VGG13-BN, 0.48 / 0.48 for
   the hand-crafted features (``docs/real-cells.md``); the mean is also DeepProfiler's choice.
3. :func:`moa_accuracy`: 1-nearest-neighbour MOA accuracy of treatment profiles by cosine
   similarity (Ljosa et al. 2013; DeepProfiler), under NSC (the neighbour is another compound)
   or NSCB (another compound, and none of the neighbour's batches is one of the query's). DMSO is
   never a query nor a neighbour; a query whose MOA has no eligible neighbour is skipped.
4. :func:`compound_contrasts`: the paper's cell-level scores. For every compound with enough
   cells, KMeans K=2 on its cells plus as many DMSO cells (balanced sample), AMI against
   compound-vs-DMSO with the randomised-label control (:func:`phenossl.clustering.cluster`), and
   optionally a 5-fold linear probe (balanced accuracy); mean and std over seeds.

:func:`iter_score_profiles` / :func:`score_profiles` run them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from phenossl._progress import Progress, ProgressCallback, ProgressGenerator, drives

CONTROL = "DMSO"
AGGREGATIONS = ("median", "mean")
NORMALIZATIONS = ("zscore", "whiten", "none")
#: what the compound contrasts cluster (:func:`contrast_input`)
CONTRAST_NORMALIZATIONS = ("none", "global", "contrast", *NORMALIZATIONS[:2])
_REQUIRED = ("compound", "moa", "plate")


def batch_of(plate: str) -> str:
    """The batch (week) of a BBBC021 plate name: the part before the first ``_``.

    Examples
    --------
    >>> batch_of("Week4_27481")
    'Week4'
    """
    return str(plate).split("_", 1)[0]


def prepare_table(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of a per-cell table with the columns the profiles need.

    Requires ``compound``, ``moa`` and ``plate``; adds ``treatment`` (``compound@concentration``
    with ``%g``, or the compound when there is no ``concentration``) when missing, ``batch``
    (the ``week`` column, else :func:`batch_of` the plate) when missing, and ``well`` (one well
    per plate) when missing.

    Examples
    --------
    >>> t = pd.DataFrame({"compound": ["DMSO", "taxol"], "concentration": [0.0, 0.3],
    ...                   "moa": ["DMSO", "Microtubule stabilizers"],
    ...                   "plate": ["Week4_1", "Week4_1"], "well": ["B02", "B03"]})
    >>> prepare_table(t)[["treatment", "batch"]].values.tolist()
    [['DMSO@0', 'Week4'], ['taxol@0.3', 'Week4']]
    """
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(
            f"the per-cell table has no column(s) {missing}; expected {list(_REQUIRED)} "
            "(and ideally concentration, well)"
        )
    out = table.copy()
    for column in _REQUIRED:
        bad = out[column].isna().to_numpy()
        if bad.any():
            raise ValueError(
                f"column {column!r} is empty in {int(bad.sum())} row(s) (first rows "
                f"{np.flatnonzero(bad)[:5].tolist()}); expected a value for every cell"
            )
    out["compound"] = out["compound"].astype(str)
    out["moa"] = out["moa"].astype(str)
    out["plate"] = out["plate"].astype(str)
    if "treatment" not in out.columns:
        if "concentration" in out.columns:
            conc = out["concentration"].astype(float)
            out["treatment"] = [f"{c}@{v:g}" for c, v in zip(out["compound"], conc, strict=True)]
        else:
            out["treatment"] = out["compound"]
    if "batch" not in out.columns:
        out["batch"] = (
            out["week"].astype(str) if "week" in out.columns else out["plate"].map(batch_of)
        )
    if "well" not in out.columns:
        out["well"] = "all"
    out["well"] = out["well"].astype(str)
    return out


def normalize_to_controls(
    features: np.ndarray,
    table: pd.DataFrame,
    *,
    method: str = "zscore",
    min_controls: int = 10,
    control: str = CONTROL,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Normalise cell features against the DMSO cells of their plate.

    Parameters
    ----------
    features
        ``(N, D)`` cell embeddings, rows matching ``table``.
    table
        Per-cell table (see :func:`prepare_table`).
    method
        ``"zscore"``: ``(x - mean_DMSO) / std_DMSO`` per plate and feature (a feature constant
        on the controls is only centred); ``"whiten"``: z-score, then ZCA whitening fitted on the
        pooled normalised DMSO cells (typical variation normalisation); ``"none"``.
    min_controls
        A plate with fewer DMSO cells uses the DMSO cells of its batch; a batch with fewer uses
        all DMSO cells.
    control
        The compound name of the controls.

    Returns
    -------
    normalized : numpy.ndarray
        float32 ``(N, D)``.
    references : pandas.DataFrame
        One row per plate: ``plate``, ``batch``, ``reference`` (``plate``, ``batch`` or
        ``all``), ``n_controls`` (DMSO cells used).

    Examples
    --------
    >>> t = pd.DataFrame({"compound": ["DMSO"] * 3 + ["taxol"], "moa": ["DMSO"] * 3 + ["MS"],
    ...                   "plate": ["Week1_1"] * 4})
    >>> x = np.array([[0.0], [1.0], [2.0], [4.0]])
    >>> z, refs = normalize_to_controls(x, t, min_controls=2)
    >>> round(float(z[3, 0]), 3), refs["reference"].tolist()
    (3.674, ['plate'])
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"method={method!r}; expected one of {NORMALIZATIONS}")
    x = _features(features, len(table))
    t = prepare_table(table)
    is_control = (t["compound"] == control).to_numpy()
    n_all = int(is_control.sum())
    plates = t["plate"].to_numpy()
    batches = t["batch"].to_numpy()
    rows = []
    out = np.empty_like(x)
    if method == "none":
        for plate in pd.unique(plates):
            rows.append((plate, batch_of(plate), "none", 0))
        return x.astype(np.float32), pd.DataFrame(
            rows, columns=["plate", "batch", "reference", "n_controls"]
        )
    if n_all < 2:
        raise ValueError(
            f"the table has {n_all} {control} cell(s) in column 'compound'; normalising to "
            "controls needs at least 2"
        )
    for plate in pd.unique(plates):
        on_plate = plates == plate
        batch = batches[on_plate][0]
        ref = is_control & on_plate
        level = "plate"
        if ref.sum() < min_controls:
            ref, level = is_control & (batches == batch), "batch"
        if ref.sum() < min_controls:
            ref, level = is_control, "all"
        mean = x[ref].mean(axis=0)
        std = x[ref].std(axis=0)
        std = np.where(std > 1e-8 * (1.0 + np.abs(mean)), std, 1.0)
        out[on_plate] = (x[on_plate] - mean) / std
        rows.append((plate, batch, level, int(ref.sum())))
    if method == "whiten":
        out = out @ _zca(out[is_control])
    references = pd.DataFrame(rows, columns=["plate", "batch", "reference", "n_controls"])
    return out.astype(np.float32), references


def _zca(controls: np.ndarray, shrink: float = 1e-2) -> np.ndarray:
    """ZCA whitening matrix of ``controls``, eigenvalues regularised by ``shrink * mean``."""
    centred = controls - controls.mean(axis=0)
    cov = centred.T @ centred / max(len(controls) - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    values = np.clip(values, 0.0, None)
    scale = 1.0 / np.sqrt(values + shrink * max(values.mean(), 1e-12))
    return (vectors * scale) @ vectors.T


def aggregate(
    features: np.ndarray, table: pd.DataFrame, by: Sequence[str], how: str = "mean"
) -> tuple[np.ndarray, pd.DataFrame]:
    """Median or mean of ``features`` over the groups of ``table[by]``.

    Returns the ``(G, D)`` profiles and a DataFrame with the ``by`` columns and ``n_cells``,
    one row per group, in sorted group order.

    Examples
    --------
    >>> t = pd.DataFrame({"g": ["a", "b", "a"]})
    >>> p, meta = aggregate(np.array([[1.0], [5.0], [3.0]]), t, ["g"], "mean")
    >>> p[:, 0].tolist(), meta["n_cells"].tolist()
    ([2.0, 5.0], [2, 1])
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"how={how!r}; expected one of {AGGREGATIONS}")
    x = _features(features, len(table))
    missing = [c for c in by if c not in table.columns]
    if missing:
        raise ValueError(f"the table has no column(s) {missing} to aggregate by")
    keys = table[list(by)].reset_index(drop=True)
    groups = keys.groupby(list(by), sort=True).indices
    profiles = np.empty((len(groups), x.shape[1]), dtype=np.float64)
    meta = []
    reduce = np.median if how == "median" else np.mean
    for i, (key, rows) in enumerate(groups.items()):
        profiles[i] = reduce(x[rows], axis=0)
        key = key if isinstance(key, tuple) else (key,)
        meta.append((*key, len(rows)))
    return profiles, pd.DataFrame(meta, columns=[*by, "n_cells"])


def well_profiles(
    features: np.ndarray, table: pd.DataFrame, how: str = "mean"
) -> tuple[np.ndarray, pd.DataFrame]:
    """Cells -> one profile per (plate, well, treatment).

    The metadata has ``plate, well, treatment, compound, moa, batch, n_cells``.
    """
    t = prepare_table(table)
    profiles, meta = aggregate(features, t, ["plate", "well", "treatment"], how)
    first = t.drop_duplicates("treatment").set_index("treatment")
    meta["compound"] = meta["treatment"].map(first["compound"])
    meta["moa"] = meta["treatment"].map(first["moa"])
    meta["batch"] = meta["plate"].map(t.drop_duplicates("plate").set_index("plate")["batch"])
    return profiles, meta


def treatment_profiles(
    well_features: np.ndarray, wells: pd.DataFrame, how: str = "mean"
) -> tuple[np.ndarray, pd.DataFrame]:
    """Well profiles -> one profile per treatment (each well counts once).

    The metadata has ``treatment, compound, moa, batches`` (the sorted batches of its wells,
    joined by ``;``), ``n_wells`` and ``n_cells``.
    """
    profiles, meta = aggregate(well_features, wells, ["treatment"], how)
    grouped = wells.groupby("treatment", sort=True)
    meta["compound"] = grouped["compound"].first().to_numpy()
    meta["moa"] = grouped["moa"].first().to_numpy()
    meta["batches"] = grouped["batch"].agg(lambda b: ";".join(sorted(set(b)))).to_numpy()
    meta = meta.rename(columns={"n_cells": "n_wells"})
    meta["n_cells"] = grouped["n_cells"].sum().to_numpy()
    return profiles, meta


def cosine_similarity(profiles: np.ndarray) -> np.ndarray:
    """``(G, G)`` cosine similarity of the rows (0 for an all-zero row)."""
    x = np.asarray(profiles, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return unit @ unit.T


def moa_accuracy(
    profiles: np.ndarray,
    meta: pd.DataFrame,
    protocol: str = "nsc",
    *,
    control: str = CONTROL,
) -> dict[str, Any]:
    """1-nearest-neighbour MOA accuracy of treatment profiles by cosine similarity.

    Parameters
    ----------
    profiles
        ``(G, D)`` treatment profiles.
    meta
        One row per profile with ``treatment, compound, moa`` and, for NSCB, ``batches``
        (``;``-joined batch names), as from :func:`treatment_profiles`.
    protocol
        ``"nsc"``: the neighbour must be another compound; ``"nscb"``: another compound that
        shares no batch with the query.
    control
        Compound excluded from queries and neighbours.

    Returns
    -------
    dict
        ``protocol``, ``accuracy`` (None without queries), ``n_queries``, ``n_correct``,
        ``skipped`` (treatments whose MOA has no eligible neighbour) and ``queries`` (one dict
        per query: treatment, moa, neighbour, neighbour_moa, similarity, correct).

    Examples
    --------
    >>> meta = pd.DataFrame({"treatment": ["a@1", "b@1", "c@1", "d@1"],
    ...                      "compound": ["a", "b", "c", "d"], "moa": ["X", "X", "Y", "Y"],
    ...                      "batches": ["W1", "W2", "W1", "W2"]})
    >>> p = np.array([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    >>> moa_accuracy(p, meta, "nsc")["accuracy"]
    1.0
    """
    if protocol not in ("nsc", "nscb"):
        raise ValueError(f"protocol={protocol!r}; expected 'nsc' or 'nscb'")
    need = ["treatment", "compound", "moa"] + (["batches"] if protocol == "nscb" else [])
    missing = [c for c in need if c not in meta.columns]
    if missing:
        raise ValueError(f"the profile table has no column(s) {missing}")
    x = _features(profiles, len(meta))
    sim = cosine_similarity(x)
    compound = meta["compound"].astype(str).to_numpy()
    moa = meta["moa"].astype(str).to_numpy()
    treatment = meta["treatment"].astype(str).to_numpy()
    batches = [set(str(b).split(";")) for b in meta["batches"]] if protocol == "nscb" else None
    is_control = compound == control
    queries: list[dict[str, Any]] = []
    skipped = []
    for q in np.flatnonzero(~is_control):
        eligible = ~is_control & (compound != compound[q])
        if batches is not None:
            eligible &= np.array([not (batches[q] & b) for b in batches])
        if not (eligible & (moa == moa[q])).any():
            skipped.append(str(treatment[q]))
            continue
        candidates = np.flatnonzero(eligible)
        best = candidates[np.argmax(sim[q, candidates])]
        queries.append(
            {
                "treatment": str(treatment[q]),
                "moa": str(moa[q]),
                "neighbour": str(treatment[best]),
                "neighbour_moa": str(moa[best]),
                "similarity": float(sim[q, best]),
                "correct": bool(moa[best] == moa[q]),
            }
        )
    n_correct = sum(bool(q["correct"]) for q in queries)
    return {
        "protocol": protocol,
        "accuracy": n_correct / len(queries) if queries else None,
        "n_queries": len(queries),
        "n_correct": n_correct,
        "skipped": skipped,
        "queries": queries,
    }


def linear_probe(
    features: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0
) -> float:
    """Balanced accuracy of a standardised logistic regression, stratified ``folds``-fold CV.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.r_[rng.normal(0, 1, (40, 3)), rng.normal(3, 1, (40, 3))]
    >>> linear_probe(x, np.r_[np.zeros(40), np.ones(40)]) > 0.9
    True
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(model, features, labels, cv=cv, scoring="balanced_accuracy")
    return float(np.mean(scores))


def contrast_input(
    features: np.ndarray,
    table: pd.DataFrame,
    normalization: str = "none",
    *,
    min_controls: int = 10,
    control: str = CONTROL,
) -> np.ndarray:
    """The cell features the compound contrasts cluster, float64 ``(N, D)``.

    Parameters
    ----------
    features
        ``(N, D)`` cell embeddings, rows matching ``table``.
    table
        Per-cell table (``compound``; ``plate`` for the per-plate normalisations).
    normalization
        ``"none"``: the embeddings as they are (the paper clusters them so); ``"global"``: each
        feature z-scored over all cells of ``table``, which is what the hand-crafted features
        (``embed(..., model="features")``) already are, so that every embedding reaches KMeans
        on the same scale; ``"contrast"``: the embeddings as they are here, each contrast's cells
        z-scored over themselves by :func:`compound_contrasts` (what standardising a selection
        before KMeans does); ``"zscore"`` / ``"whiten"``: normalised to the DMSO cells of their
        plate (:func:`normalize_to_controls`), which also removes plate effects.
    min_controls, control
        For :func:`normalize_to_controls` (the per-plate normalisations).

    Examples
    --------
    >>> t = pd.DataFrame({"compound": ["DMSO", "DMSO", "taxol"]})
    >>> contrast_input(np.array([[0.0, 10.0], [2.0, 10.0], [4.0, 10.0]]), t, "global").round(3)
    array([[-1.225,  0.   ],
           [ 0.   ,  0.   ],
           [ 1.225,  0.   ]])
    """
    from phenossl.cells.features import standardize

    if normalization not in CONTRAST_NORMALIZATIONS:
        raise ValueError(
            f"normalization={normalization!r}; expected one of {CONTRAST_NORMALIZATIONS}"
        )
    x = _features(features, len(table))
    if normalization == "global":
        return standardize(x)[0].astype(np.float64)
    if normalization in NORMALIZATIONS[:2]:
        x = normalize_to_controls(
            x, table, method=normalization, min_controls=min_controls, control=control
        )[0]
    return x.astype(np.float64)


def iter_compound_contrasts(
    features: np.ndarray,
    table: pd.DataFrame,
    *,
    normalization: str = "none",
    min_controls: int = 10,
    min_cells: int = 20,
    max_cells: int | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    n_permutations: int = 10,
    n_init: int = 10,
    probe: bool = False,
    folds: int = 5,
    control: str = CONTROL,
) -> ProgressGenerator[dict[str, dict[str, Any]]]:
    """Cell-level compound-vs-DMSO scores; see :func:`compound_contrasts`."""
    from phenossl.cells.features import standardize
    from phenossl.clustering import cluster

    x = contrast_input(features, table, normalization, min_controls=min_controls, control=control)
    compounds = table["compound"].astype(str).to_numpy()
    controls = np.flatnonzero(compounds == control)
    names, counts = np.unique(compounds[compounds != control], return_counts=True)
    chosen = [str(c) for c, n in zip(names, counts, strict=True) if n >= min_cells]
    if len(controls) < min_cells:
        chosen = []
    total = len(chosen) * len(seeds)
    yield Progress(0, total, "compound contrasts")
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(chosen):
        members = np.flatnonzero(compounds == name)
        n = min(len(members), len(controls), max_cells or len(members))
        amis: list[float] = []
        ctrl_means, ctrl_stds, probes = [], [], []
        for j, seed in enumerate(seeds):
            rng = np.random.default_rng(seed)
            rows = np.r_[
                rng.choice(members, n, replace=False), rng.choice(controls, n, replace=False)
            ]
            labels = np.r_[np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)]
            cells = standardize(x[rows])[0] if normalization == "contrast" else x[rows]
            result = cluster(
                cells, labels, k=2, seed=seed, n_init=n_init,
                n_permutations=n_permutations, n_nearest=0,
            )  # fmt: skip
            assert result.ami is not None  # labels were given
            amis.append(result.ami)
            ctrl_means.append(result.ami_control_mean)
            ctrl_stds.append(result.ami_control_std)
            if probe:
                probes.append(linear_probe(cells, labels, folds=folds, seed=seed))
            yield Progress(i * len(seeds) + j + 1, total, f"{name}, seed {seed}")
        entry: dict[str, Any] = {
            "ami": float(np.mean(amis)),
            "ami_std": float(np.std(amis)),
            "control": float(np.mean(np.array(ctrl_means, float))) if n_permutations else None,
            "control_std": float(np.mean(np.array(ctrl_stds, float))) if n_permutations else None,
            "ami_per_seed": [float(a) for a in amis],
            "n_cells": len(members),
            "n_dmso": len(controls),
            "n_per_side": int(n),
            "seeds": [int(s) for s in seeds],
        }
        if probe:
            entry["probe"] = float(np.mean(probes))
            entry["probe_std"] = float(np.std(probes))
            entry["probe_per_seed"] = [float(p) for p in probes]
        out[name] = entry
    return out


@drives(iter_compound_contrasts)
def compound_contrasts(*, progress: ProgressCallback | None = None) -> dict[str, dict[str, Any]]:
    """For each compound with ``min_cells`` cells: KMeans K=2 AMI of its cells against DMSO.

    The cells are clustered as :func:`contrast_input` gives them for ``normalization``
    (default ``"none"``: the embeddings as they are; ``"contrast"``: each draw's cells z-scored
    over themselves; ``min_controls`` for the per-plate ones).

    Each seed draws ``n = min(cells of the compound, DMSO cells, max_cells)`` cells of each side
    (balanced, without replacement), clusters them with
    :func:`phenossl.clustering.cluster` (K=2, AMI normalised by the max entropy, control =
    AMI against permuted labels) and, with ``probe=True``, scores a ``folds``-fold linear probe
    (:func:`linear_probe`) on the same cells.

    Returns
    -------
    dict
        compound -> ``ami``, ``ami_std`` (over seeds), ``control``, ``control_std`` (mean over
        seeds of the permutation mean and std), ``ami_per_seed``, ``n_cells``, ``n_dmso``,
        ``n_per_side``, ``seeds`` and, with ``probe``, ``probe``, ``probe_std``,
        ``probe_per_seed``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> t = pd.DataFrame({"compound": ["DMSO"] * 30 + ["taxol"] * 30})
    >>> x = np.r_[rng.normal(0, 1, (30, 4)), rng.normal(6, 1, (30, 4))]
    >>> round(compound_contrasts(x, t, seeds=[0])["taxol"]["ami"], 2)
    1.0
    """


@dataclass(eq=False)
class ProfileScores:
    """Everything :func:`score_profiles` computes.

    ``cells`` are the normalised cell features (rows of ``table``); ``wells``/``well_meta`` and
    ``treatments``/``treatment_meta`` the profiles; ``nsc``/``nscb`` the :func:`moa_accuracy`
    results; ``contrasts`` the :func:`compound_contrasts` mapping; ``references`` the per-plate
    normalisation references; ``settings`` the parameters.
    """

    table: pd.DataFrame
    cells: np.ndarray
    references: pd.DataFrame
    wells: np.ndarray
    well_meta: pd.DataFrame
    treatments: np.ndarray
    treatment_meta: pd.DataFrame
    nsc: dict[str, Any]
    nscb: dict[str, Any]
    contrasts: dict[str, dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def scores(self) -> dict[str, Any]:
        """The JSON-ready summary: ``nsc``, ``nscb`` (accuracies), ``ami`` and the counts."""
        return {
            "nsc": self.nsc["accuracy"],
            "nscb": self.nscb["accuracy"],
            "ami": self.contrasts,
            "n_queries": {"nsc": self.nsc["n_queries"], "nscb": self.nscb["n_queries"]},
            "n_correct": {"nsc": self.nsc["n_correct"], "nscb": self.nscb["n_correct"]},
            "skipped": {"nsc": self.nsc["skipped"], "nscb": self.nscb["skipped"]},
            "queries": {"nsc": self.nsc["queries"], "nscb": self.nscb["queries"]},
            "n_cells": len(self.table),
            "n_wells": len(self.well_meta),
            "n_treatments": len(self.treatment_meta),
            "normalization_references": self.references.to_dict(orient="records"),
            "settings": self.settings,
        }


def iter_score_profiles(
    features: np.ndarray,
    table: pd.DataFrame,
    *,
    how: str = "mean",
    normalization: str = "zscore",
    min_controls: int = 10,
    min_cells: int = 20,
    max_cells: int | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    n_permutations: int = 10,
    probe: bool = False,
    contrasts: bool = True,
    contrast_normalization: str = "none",
) -> ProgressGenerator[ProfileScores]:
    """Normalise, aggregate, score NSC/NSCB and the compound contrasts; see :func:`score_profiles`."""
    x = _features(features, len(table))
    t = prepare_table(table).reset_index(drop=True)
    yield Progress(0, 3, "normalising to DMSO")
    cells, references = normalize_to_controls(x, t, method=normalization, min_controls=min_controls)
    wells, well_meta = well_profiles(cells, t, how)
    treatments, treatment_meta = treatment_profiles(wells, well_meta, how)
    nsc = moa_accuracy(treatments, treatment_meta, "nsc")
    nscb = moa_accuracy(treatments, treatment_meta, "nscb")
    contrasts_by_compound: dict[str, dict[str, Any]] = {}
    if contrasts:
        yield Progress(1, 3, "compound contrasts")
        gen = iter_compound_contrasts(
            x, t, min_cells=min_cells, max_cells=max_cells, seeds=seeds,
            n_permutations=n_permutations, probe=probe, normalization=contrast_normalization,
            min_controls=min_controls,
        )  # fmt: skip
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                contrasts_by_compound = stop.value
                break
            yield Progress(1 + int(event.fraction > 0.5), 3, f"contrasts: {event.message}")
    yield Progress(3, 3, "done")
    settings = {
        "aggregation": how,
        "normalization": normalization,
        "min_controls": min_controls,
        "min_cells": min_cells,
        "max_cells": max_cells,
        "seeds": [int(s) for s in seeds],
        "n_permutations": n_permutations,
        "similarity": "cosine",
        "contrast_normalization": contrast_normalization,
    }
    return ProfileScores(
        t, cells, references, wells, well_meta, treatments, treatment_meta, nsc, nscb,
        contrasts_by_compound, settings,
    )  # fmt: skip


@drives(iter_score_profiles)
def score_profiles(*, progress: ProgressCallback | None = None) -> ProfileScores:
    """Profiles and every score for cell embeddings and their per-cell table.

    Parameters
    ----------
    features
        ``(N, D)`` cell embeddings, rows matching ``table``.
    table
        Per-cell table with ``compound, moa, plate`` (and ``concentration``, ``well``).
    how
        Aggregation, ``"mean"`` (default) or ``"median"``.
    normalization
        ``"zscore"`` (default), ``"whiten"`` or ``"none"``; see :func:`normalize_to_controls`.
    min_controls
        Fewest DMSO cells a plate needs to be its own reference (for the profiles, and for the
        contrasts under a per-plate ``contrast_normalization``).
    min_cells, max_cells, seeds, n_permutations, probe
        For :func:`compound_contrasts`.
    contrasts
        False skips the compound contrasts (profiles and NSC/NSCB only: fast).
    contrast_normalization
        What the contrasts cluster (:func:`contrast_input`): ``"none"`` (default, the raw
        embeddings, as in the paper), ``"global"``, ``"zscore"`` or ``"whiten"``.

    Returns
    -------
    ProfileScores

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> t = pd.DataFrame({"compound": ["DMSO"] * 40 + ["a"] * 20 + ["b"] * 20,
    ...                   "moa": ["DMSO"] * 40 + ["X"] * 40, "plate": ["Week1_1"] * 80})
    >>> x = rng.normal(size=(80, 5)); x[40:, 0] += 5
    >>> score_profiles(x, t, seeds=[0]).scores()["nsc"]
    1.0
    """


def _features(features: Any, n: int) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) != n:
        raise ValueError(f"features have shape {x.shape}; expected ({n}, D), one row per cell")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(
            f"features have NaN or inf in {int(bad.sum())} row(s) (first rows "
            f"{np.flatnonzero(bad)[:5].tolist()}); expected finite values"
        )
    return x
