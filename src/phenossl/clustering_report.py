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


def _why_undefined(report: Mapping[str, Any]) -> str | None:
    """Why a report's AMI cannot be read (no labels, a single label value), or None."""
    column = report.get("label_column")
    if not column or report.get("ami") is None:
        return "no label column to score against"
    values = (report.get("composition") or {}).get("columns")
    if values is not None and len(values) < 2:
        only = f" (every cell has {column} {values[0]})" if values else ""
        return f"undefined{only}"
    return None


def describe_ami(report: Mapping[str, Any]) -> tuple[str, str]:
    """A clustering's AMI in words: a headline and a line that says what it means.

    ``report`` is a :func:`report_dict` (``report.json``). The AMI compares two groupings, so it
    is *undefined* where the cells carry a single label value (a DMSO-only field): the headline
    says so instead of showing the 0 that the formula gives.

    Examples
    --------
    >>> report = {"ami": 0.25, "ami_control_mean": 0.001, "ami_control_std": 0.004,
    ...           "label_column": "compound", "composition": {"columns": ["DMSO", "taxol"]}}
    >>> describe_ami(report)[0]
    'AMI vs compound: 0.250'
    >>> describe_ami({**report, "composition": {"columns": ["DMSO"]}})[0]
    'AMI vs compound: undefined (every cell has compound DMSO)'
    """
    column = report.get("label_column")
    why = _why_undefined(report)
    if why is not None:
        if not column:
            return f"AMI: {why}", ""
        return f"AMI vs {column}: {why}", (
            f"The AMI compares the clusters with the {column} labels and needs at least two "
            f"{column} values among the cells: load fields of several treatments or score "
            "against another column."
        )
    meaning = f"AMI: how well the clusters match the {column} labels, 0 = chance, 1 = identical."
    headline = f"AMI vs {column}: {report['ami']:.3f}"
    if report.get("ami_control_mean") is None:
        return headline, meaning
    control = (
        f"randomised {column} labels: {report['ami_control_mean']:.3f} "
        f"± {report['ami_control_std']:.3f}"
    )
    return headline, f"{control}. {meaning}"


def format_ami(report: Mapping[str, Any]) -> str:
    """One line for a terminal: the AMI of a :func:`report_dict`, K, cells and the control.

    Examples
    --------
    >>> format_ami({"ami": 0.25, "ami_control_mean": 0.001, "ami_control_std": 0.004, "k": 2,
    ...             "n_cells": 500, "label_column": "compound"})
    'AMI (compound, K=2, 500 cells): 0.250   randomised-label control: 0.001 ± 0.004'
    """
    line = f"AMI ({report.get('label_column')}, K={report['k']}, {report['n_cells']} cells): "
    why = _why_undefined(report)
    if why is not None:
        return line + why
    line += f"{report['ami']:.3f}"
    if report.get("ami_control_mean") is not None:
        line += (
            f"   randomised-label control: {report['ami_control_mean']:.3f} "
            f"± {report['ami_control_std']:.3f}"
        )
    return line


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
