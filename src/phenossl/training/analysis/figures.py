"""The paper's figures from the result store's frame (matplotlib, Agg, no pyplot state).

Each function returns a :class:`matplotlib.figure.Figure`; :func:`save_png` writes it with the
Agg canvas. Nothing here opens a window or touches matplotlib's global backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from phenossl.training.analysis import bias
from phenossl.training.analysis._results_frame import NO_METHOD, hashable, numeric_values, short
from phenossl.training.analysis.tables import (
    backbone_column,
    backbone_sort_key,
    distinct_backbones,
    grid_columns,
)

#: accuracy metrics drawn against a swept parameter, one panel each, when the store has them
ACCURACY_METRICS = {"top1": "linear top-1", "finetune_top1": "fine-tuning top-1", "knn_top1": "kNN"}


def save_png(path: str | os.PathLike, figure: Figure, dpi: int = 120) -> Path:
    """Write ``figure`` to ``path`` as a PNG with the Agg canvas and return the path.

    Path first, as :func:`phenossl.montage.save_png` and the package's other writers.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)  # attach an Agg canvas: no pyplot, no global backend
    figure.savefig(path, dpi=dpi, format="png")
    return path


def _grid(n: int, ncols: int, size: tuple[float, float]) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    figure = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return figure, axes[:n]


def accuracy_figure(
    frame: pd.DataFrame, parameter: str, *, metrics: Sequence[str] | None = None, title: str = ""
) -> Figure:
    """Accuracy (%) against a swept parameter, one line per method: seed mean, error bars of
    the seed standard deviation, and every seed as a faint point (appendix Figures 1-3).

    ``metrics`` default to those of :data:`ACCURACY_METRICS` that the frame holds.
    """
    if metrics is None:
        metrics = [m for m in ACCURACY_METRICS if "metric." + m in frame.columns]
    if not metrics:
        raise ValueError(f"no accuracy metric ({', '.join(ACCURACY_METRICS)}) in the frame")
    figure, axes = _grid(len(metrics), 3, (5.0, 3.6))
    for ax, metric in zip(axes, metrics):
        stats = bias.metric_by_value(frame, parameter, metric)
        for method, rows in stats.groupby("method", sort=True):
            line = ax.errorbar(
                rows["value"],
                100 * rows["mean"],
                yerr=100 * rows["std"].fillna(0.0),
                marker="o",
                markersize=3,
                capsize=2,
                label=str(method),
            )
            runs = frame[frame["method"].astype(str) == method]
            x = numeric_values(runs, parameter)
            y = 100 * pd.to_numeric(runs["metric." + metric], errors="coerce")
            ax.scatter(x, y, s=6, alpha=0.3, color=line[0].get_color(), linewidths=0)
        ax.set_xlabel(short(parameter))
        ax.set_ylabel(f"{ACCURACY_METRICS.get(metric, metric)} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small", ncols=2 if frame["method"].nunique() > 6 else 1)
    if title:
        figure.suptitle(title)
    return figure


def class_curves_figure(
    curves: Mapping[str, bias.ClassCurves],
    results: pd.DataFrame,
    *,
    n: int = 5,
    title: str = "",
) -> Figure:
    """Per-class accuracy (%) against the parameter for each method's most biased classes:
    seed mean with a band of one seed standard deviation, the coefficient in the legend.

    Each panel draws the method's ``n`` significant classes of largest |coefficient|
    (:func:`bias.most_biased` of ``results``); a method without any draws its ``n`` strongest
    correlations instead, dashed and marked "n.s." (not significant).
    """
    methods = [m for m in curves if (results["method"] == m).any()]
    if not methods:
        raise ValueError("no method has both curves and correlations to draw")
    significant = bias.most_biased(results, n)
    strongest = bias.most_biased(results, n, significant_only=False)
    figure, axes = _grid(len(methods), 3, (5.0, 3.6))
    for ax, method in zip(axes, methods):
        c = curves[method]
        coef = results[results["method"] == method].set_index("class")["coefficient"]
        chosen = significant.get(method) or strongest.get(method, [])
        marked = not significant.get(method)
        for name in chosen:
            i = c.classes.index(name)
            mean, std = 100 * c.mean[i], 100 * c.std[i]
            label = f"{name} ({coef[name]:+.2f}{', n.s.' if marked else ''})"
            (line,) = ax.plot(
                c.values, mean, marker="o", markersize=3, linestyle="--" if marked else "-",
                label=label,
            )  # fmt: skip
            ax.fill_between(c.values, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        if chosen:
            ax.legend(fontsize="x-small")
        else:
            ax.text(
                0.5, 0.5, f"no class's accuracy varies with {short(c.parameter)}",
                ha="center", va="center", transform=ax.transAxes,
            )  # fmt: skip
        ax.set_title(method + (" (no significant class)" if marked else ""))
        ax.set_xlabel(short(c.parameter))
        ax.set_ylabel(f"{c.protocol} per-class accuracy (%)")
        ax.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return figure


def _family(name: str) -> str:
    return backbone_sort_key(name)[1] or str(name)


def ami_backbone_figure(frame: pd.DataFrame, *, title: str = "") -> Figure:
    """AMI (%) against backbone size, one panel per backbone family (appendix Figures 1-2).

    One line per combination of the other swept parameters (e.g. the concentration) and
    method, with error bars over seeds; the randomised-label control (``ami_control_mean``,
    averaged) as a dashed grey line with its own spread.
    """
    column = backbone_column(frame)
    backbones = distinct_backbones(frame)
    if column is None or len(backbones) < 2:
        raise ValueError("AMI against backbone size needs at least 2 backbones")
    series_keys = ["method", *grid_columns(frame, (column,))]
    families = list(dict.fromkeys(_family(b) for b in backbones))
    figure, axes = _grid(len(families), 2, (5.5, 3.8))
    data = frame[[*series_keys, column]].map(hashable)
    data["ami"] = 100 * pd.to_numeric(frame["metric.ami"], errors="coerce")
    has_control = "metric.ami_control_mean" in frame.columns
    if has_control:
        data["control"] = 100 * pd.to_numeric(frame["metric.ami_control_mean"], errors="coerce")
    for ax, family in zip(axes, families):
        names = [b for b in backbones if _family(b) == family]
        rows = data[data[column].astype(str).isin(names)]
        position = {b: i for i, b in enumerate(names)}
        for key, series in rows.groupby(series_keys, sort=True, dropna=False):
            stats = series.groupby(column)["ami"].agg(["mean", "std"])
            stats = stats.loc[sorted(stats.index, key=lambda b: position[str(b)])]
            parts = [_describe(k, v) for k, v in zip(series_keys, key)]
            label = ", ".join(p for p in parts if p) or "AMI"
            ax.errorbar(
                [position[str(b)] for b in stats.index],
                stats["mean"],
                yerr=stats["std"].fillna(0.0),
                marker="o",
                capsize=2,
                label=label,
            )
        if has_control:
            control = rows.groupby(column)["control"].agg(["mean", "std"])
            control = control.loc[sorted(control.index, key=lambda b: position[str(b)])]
            ax.errorbar(
                [position[str(b)] for b in control.index],
                control["mean"],
                yerr=control["std"].fillna(0.0),
                color="grey",
                linestyle="--",
                label="randomised labels",
            )
        ax.set_xticks(range(len(names)), names)
        ax.set_xlabel("backbone")
        ax.set_ylabel("AMI (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    if title:
        figure.suptitle(title)
    return figure


def _describe(column: str, value: object) -> str:
    if column == "method":
        return "" if value == NO_METHOD else str(value)
    return f"{short(column)}={value}"


def exemplar_figure(images: Sequence[tuple[str, np.ndarray]], *, title: str = "") -> Figure:
    """Montages of the images nearest each cluster centroid, one panel per run."""
    if not images:
        raise ValueError("no montage to draw")
    aspect = max(image.shape[1] / image.shape[0] for _, image in images)
    width = min(10.0, 5.0 * aspect)  # inches: wide montages 10 in, tall ones 5 in high
    ncols = max(1, min(4, int(16 // width)))
    figure, axes = _grid(len(images), ncols, (width + 0.2, width / aspect + 0.4))
    for ax, (label, image) in zip(axes, images):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
        ax.set_title(label, fontsize="small")
        ax.set_axis_off()
    if title:
        figure.suptitle(title)
    return figure
