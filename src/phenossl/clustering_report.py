"""A clustering report on disk: AMI, randomised-label control, composition and a gallery.

Used by ``phenossl cluster``, ``phenossl demo`` and the napari export, so that all three write the
same files:

``report.json``
    AMI, its randomised-label control (mean and std), K, label column, cell and cluster counts,
    the composition table and whatever the caller adds (model, seed, CropSet...).
``composition.csv``
    cluster x label counts (:func:`write_composition`, also the GUI export's
    ``<name>_composition.csv``).
``clusters.csv``
    one row per cell: ``cell_id``, ``cluster`` and the label column.
``montage.png``
    the cells nearest each centroid, one row per cluster (DAPI blue, Tubulin green, Actin red).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from phenossl._atomic import write_text
from phenossl._json import write_json
from phenossl.clustering import ClusterResult, cluster


def align_to_cells(
    features: np.ndarray, feature_cell_ids: np.ndarray, cell_ids: np.ndarray
) -> np.ndarray:
    """Rows of ``features`` reordered to follow ``cell_ids``.

    Raises
    ------
    ValueError
        A cell id has no embedding (the embeddings come from another CropSet).
    """
    feature_cell_ids = np.asarray(feature_cell_ids)
    order = pd.Index(feature_cell_ids).get_indexer(np.asarray(cell_ids))
    if (order < 0).any():
        raise ValueError(
            f"{int((order < 0).sum())} cell(s) of the CropSet have no embedding; were the "
            "embeddings computed from this CropSet?"
        )
    return np.asarray(features)[order]


class CropSetClustering(NamedTuple):
    """One clustering of a CropSet's cells (:func:`cluster_cropset`)."""

    result: ClusterResult
    #: the CropSet view the result refers to: its rows are the clustered cells, in order
    cells: Any
    label_column: str | None
    split: str | None


def cluster_cropset(
    features: np.ndarray,
    crops: Any,
    *,
    cell_ids: np.ndarray | None = None,
    label_column: str | None = "treatment",
    split: str | None = None,
    k: int = 2,
    seed: int = 0,
    n_init: int = 10,
    n_permutations: int = 10,
    n_nearest: int = 8,
) -> CropSetClustering:
    """Cluster the embeddings of a CropSet's cells (optionally one split).

    ``cell_ids`` name the cell of each row of ``features`` (default: the CropSet's order); the
    labels of the AMI are the ``label_column`` of the cell table (none: no AMI); ``k``,
    ``seed``, ``n_init``, ``n_permutations`` and ``n_nearest`` are those of
    :func:`~phenossl.clustering.cluster`.
    """
    table = crops.table
    if split is not None:
        if "split" not in table.columns:
            raise ValueError(f"split={split!r} asked but the CropSet has no 'split' column")
        mask = (table["split"] == split).to_numpy()
        if not mask.any():
            raise ValueError(
                f"no cell in split {split!r}; the CropSet has {sorted(table['split'].unique())}"
            )
        crops = crops.subset(mask)
        table = crops.table
    if cell_ids is not None:
        features = align_to_cells(features, cell_ids, table["cell_id"].to_numpy())
    elif len(features) != len(table):
        raise ValueError(f"{len(features)} embeddings for {len(table)} cells")
    labels = None
    if label_column:
        if label_column not in table.columns:
            raise ValueError(
                f"label column {label_column!r} not in the cell table; expected one of "
                f"{sorted(table.columns)}"
            )
        labels = table[label_column].astype(str).to_numpy()
    result = cluster(
        features,
        labels,
        k=k,
        seed=seed,
        n_init=n_init,
        n_permutations=n_permutations,
        n_nearest=n_nearest,
    )
    return CropSetClustering(result, crops, label_column, split)


def report_dict(
    result: ClusterResult,
    *,
    label_column: str | None,
    n_cells: int | None = None,
    extra: Mapping | None = None,
) -> dict[str, Any]:
    """The JSON description of one clustering: ``report.json``'s content, and each entry of
    ``clusters`` in a sweep run's ``evaluation.json``.

    The scores and ``label_column`` first, ``n_cells`` when given, then
    :meth:`~phenossl.clustering.ClusterResult.to_dict` (without the per-cell arrays) and
    ``extra``.
    """
    head: dict[str, Any] = {
        "ami": result.ami,
        "ami_control_mean": result.ami_control_mean,
        "ami_control_std": result.ami_control_std,
        "label_column": label_column,
    }
    if n_cells is not None:
        head["n_cells"] = n_cells
    return {**head, **result.to_dict(arrays=False), **dict(extra or {})}


def write_cluster_report(
    out: str | Path,
    features: np.ndarray,
    crops: Any,
    *,
    extra: Mapping[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Cluster a CropSet's embeddings and write the report files into ``out``.

    ``options`` are the keyword arguments of :func:`cluster_cropset`; ``extra`` is merged into
    ``report.json``.

    Returns
    -------
    dict
        The content of ``report.json``.
    """
    from phenossl.montage import centroid_gallery, save_png

    result, view, label_column, split = cluster_cropset(features, crops, **options)
    if label_column:
        result.composition.columns.name = label_column
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = report_dict(
        result,
        label_column=label_column,
        n_cells=len(view),
        extra={"split": split, **dict(extra or {})},
    )
    clusters = pd.DataFrame(
        {"cell_id": view.table["cell_id"].to_numpy(), "cluster": result.assignments}
    )
    if label_column:
        clusters[label_column] = view.table[label_column].to_numpy()
    write_text(out / "clusters.csv", clusters.to_csv(index=False))
    write_composition(out / "composition.csv", result)
    save_png(out / "montage.png", centroid_gallery(view, result.nearest))
    write_report_json(out / "report.json", report)
    return report


def write_composition(path: str | Path, result: ClusterResult) -> Path:
    """Write the cluster x label counts of ``result`` as CSV (atomically); returns the path."""
    return write_text(path, result.composition.to_csv())


def write_report_json(path: str | Path, report: Mapping[str, Any]) -> None:
    """Write a report dict as ``report.json`` does (atomically; numpy scalars, paths as values)."""
    write_json(path, report)
