"""A phenotype-profile report on disk, from :class:`phenossl.profiles.ProfileScores`.

Used by ``phenossl profile`` and the napari export, so both write the same files:

``profiles.csv``
    one row per well and per treatment profile: ``level`` (``well``/``treatment``), its metadata
    (plate, well, treatment, compound, moa, batch(es), n_cells) and the profile ``f0..f{D-1}``.
``scores.json``
    ``nsc``, ``nscb`` (1-NN MOA accuracies), ``ami`` (compound -> AMI, control...), the query
    counts, every query and its neighbour, the normalisation references and the settings.
``similarity.png``
    treatment x treatment cosine similarity, ordered by MOA.
``cells_pca.png``
    the first two principal components of the normalised cells, coloured by MOA.
``summary.md``
    the numbers in a few lines of Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from phenossl._atomic import atomic_path, write_text
from phenossl._json import write_json
from phenossl.profiles import CONTROL, ProfileScores, cosine_similarity

FILES = ("profiles.csv", "scores.json", "similarity.png", "cells_pca.png", "summary.md")


def profiles_frame(scores: ProfileScores) -> pd.DataFrame:
    """Well and treatment profiles in one table (``level`` tells them apart)."""
    return _frame(scores.wells, scores.well_meta, scores.treatments, scores.treatment_meta)


def write_profiles_csv(
    path: str | Path,
    features: np.ndarray,
    table: pd.DataFrame,
    *,
    how: str = "mean",
    normalization: str = "zscore",
    min_controls: int = 10,
) -> Path:
    """Only ``profiles.csv`` (no scoring): the napari export's profiles of the loaded fields.

    A missing ``moa`` (fields outside the MOA table) is written as ``unknown``.

    Raises
    ------
    ValueError
        The table lacks ``compound``/``plate``, or has fewer than 2 DMSO cells to normalise to.

    Examples
    --------
    >>> write_profiles_csv("out/profiles.csv", embeddings, cells)  # doctest: +SKIP
    """
    from phenossl.profiles import normalize_to_controls, treatment_profiles, well_profiles

    table = table.reset_index(drop=True)
    if "moa" in table.columns:
        table = table.assign(moa=table["moa"].astype(object).where(table["moa"].notna(), "unknown"))
    cells, _ = normalize_to_controls(
        features, table, method=normalization, min_controls=min_controls
    )
    wells, well_meta = well_profiles(cells, table, how)
    treatments, treatment_meta = treatment_profiles(wells, well_meta, how)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, _frame(wells, well_meta, treatments, treatment_meta).to_csv(index=False))
    return path


def _frame(wells, well_meta, treatments, treatment_meta) -> pd.DataFrame:
    parts = []
    for level, x, meta in (
        ("well", wells, well_meta),
        ("treatment", treatments, treatment_meta),
    ):
        values = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
        parts.append(pd.concat([meta.assign(level=level).reset_index(drop=True), values], axis=1))
    frame = pd.concat(parts, ignore_index=True)
    first = ["level", "plate", "well", "batch", "batches", "treatment", "compound", "moa"]
    first = [c for c in first if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def moa_order(meta: pd.DataFrame) -> np.ndarray:
    """Row order of treatment profiles grouped by MOA (DMSO first), then treatment."""
    key = meta.assign(_ctrl=meta["compound"] != CONTROL)
    return key.sort_values(["_ctrl", "moa", "treatment"], kind="stable").index.to_numpy()


def similarity_figure(scores: ProfileScores) -> Figure:
    """Treatment x treatment cosine similarity heatmap, ordered by MOA (a matplotlib Figure)."""
    meta = scores.treatment_meta.reset_index(drop=True)
    order = moa_order(meta)
    sim = cosine_similarity(scores.treatments)[np.ix_(order, order)]
    labels = [f"{meta.at[i, 'treatment']} ({meta.at[i, 'moa']})" for i in order]
    n = len(order)
    side = min(4 + 0.22 * n, 30)
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot()
    image = ax.imshow(sim, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(n), labels, fontsize=6)
    moas = meta["moa"].to_numpy()[order]
    for edge in np.flatnonzero(moas[1:] != moas[:-1]) + 0.5:
        ax.axhline(edge, color="k", lw=0.5)
        ax.axvline(edge, color="k", lw=0.5)
    ax.set_title("treatment profiles: cosine similarity (ordered by MOA)")
    fig.colorbar(image, ax=ax, shrink=0.6)
    fig.tight_layout()
    return fig


def pca_figure(scores: ProfileScores, max_cells: int = 5000, seed: int = 0) -> Figure:
    """The normalised cells on their first two principal components, coloured by MOA."""
    x = scores.cells
    moa = scores.table["moa"].astype(str).to_numpy()
    rows = np.arange(len(x))
    if len(rows) > max_cells:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_cells, replace=False))
    centred = x[rows] - x[rows].mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T if vt.shape[0] >= 2 else np.c_[centred @ vt[:1].T, np.zeros(len(rows))]
    explained = [*(s[:2] ** 2 / max((s**2).sum(), 1e-12)).tolist(), 0.0]
    fig = Figure(figsize=(8, 6))
    ax = fig.add_subplot()
    names = sorted(set(moa[rows]), key=lambda m: (m != CONTROL, m))
    for i, name in enumerate(names):
        sel = moa[rows] == name
        color = "lightgrey" if name == CONTROL else f"C{i % 10}"
        ax.scatter(
            xy[sel, 0], xy[sel, 1], s=4, color=color, label=f"{name} ({int(sel.sum())})", alpha=0.7
        )
    ax.set_xlabel(f"PC1 ({100 * explained[0]:.0f} %)")
    ax.set_ylabel(f"PC2 ({100 * explained[1]:.0f} %)")
    ax.set_title("cells (DMSO-normalised), coloured by MOA")
    ax.legend(fontsize=6, markerscale=3, loc="best")
    fig.tight_layout()
    return fig


def save_figure(path: str | Path, fig: Figure, dpi: int = 120) -> None:
    """Write a Figure to ``path`` as PNG with the Agg canvas (no pyplot state); path first."""
    FigureCanvasAgg(fig)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi)


def summary_markdown(scores: ProfileScores, title: str = "Phenotype profiles") -> str:
    """A short Markdown summary: counts, NSC/NSCB, the compound contrasts."""
    s = scores.scores()
    settings = s["settings"]

    def acc(protocol: str) -> str:
        value = s[protocol]
        n = s["n_queries"][protocol]
        return (
            "n/a (no query)" if value is None else f"{value:.3f} ({s['n_correct'][protocol]}/{n})"
        )

    refs = scores.references["reference"].value_counts().to_dict()
    lines = [
        f"# {title}",
        "",
        f"{s['n_cells']} cells, {s['n_wells']} well profiles, {s['n_treatments']} treatment "
        f"profiles ({settings['aggregation']} of DMSO-{settings['normalization']}-normalised "
        "cells, wells then treatments).",
        f"Normalisation reference per plate: {refs} (plate: its own DMSO cells; batch: the DMSO "
        "cells of its week; all: every DMSO cell).",
        "",
        "| protocol | 1-NN MOA accuracy (cosine) | skipped treatments |",
        "|---|---|---|",
        f"| NSC | {acc('nsc')} | {len(s['skipped']['nsc'])} |",
        f"| NSCB | {acc('nscb')} | {len(s['skipped']['nscb'])} |",
        "",
    ]
    if s["ami"]:
        has_probe = any("probe" in v for v in s["ami"].values())
        head = "| compound | cells | AMI K=2 vs DMSO | control |" + (
            " probe |" if has_probe else ""
        )
        lines += [head, "|---|---|---|---|" + ("---|" if has_probe else "")]
        for name, v in s["ami"].items():
            control = "" if v["control"] is None else f"{v['control']:.3f}"
            row = f"| {name} | {v['n_cells']} | {v['ami']:.3f} ± {v['ami_std']:.3f} | {control} |"
            if has_probe:
                row += f" {v['probe']:.3f} ± {v['probe_std']:.3f} |"
            lines.append(row)
    else:
        lines.append(f"No compound has {settings['min_cells']} cells and DMSO: no AMI contrast.")
    return "\n".join(lines) + "\n"


def write_profile_report(
    out: str | Path,
    scores: ProfileScores,
    *,
    extra: Mapping[str, Any] | None = None,
    title: str = "Phenotype profiles",
) -> dict[str, Any]:
    """Write every file of the report into ``out``; returns the content of ``scores.json``.

    Examples
    --------
    >>> from phenossl.profiles import score_profiles
    >>> rng = np.random.default_rng(0)
    >>> table = pd.DataFrame({"compound": ["DMSO"] * 40 + ["a"] * 20 + ["b"] * 20,
    ...                       "moa": ["DMSO"] * 40 + ["X"] * 40, "plate": ["Week1_1"] * 80})
    >>> x = rng.normal(size=(80, 5)); x[40:, 0] += 5
    >>> content = write_profile_report("report", score_profiles(x, table, contrasts=False))
    >>> content["nsc"], sorted(p.name for p in Path("report").iterdir())  # doctest: +NORMALIZE_WHITESPACE
    (1.0, ['cells_pca.png', 'profiles.csv', 'scores.json', 'similarity.png', 'summary.md'])
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    content = {**scores.scores(), **dict(extra or {})}
    write_text(out / "profiles.csv", profiles_frame(scores).to_csv(index=False))
    write_json(out / "scores.json", content)
    save_figure(out / "similarity.png", similarity_figure(scores))
    save_figure(out / "cells_pca.png", pca_figure(scores))
    write_text(out / "summary.md", summary_markdown(scores, title))
    return content
