"""The paper's tables computed from the result store's frame, with its published numbers beside.

Each function returns a ``pandas.DataFrame``; accuracies and AMI percentages are in percent
(the store holds fractions in [0, 1]). Paper columns (``paper_*``) appear when the sweep is on
the paper's axis and the dataset is the paper's one (or cannot be told from the frame); their
numbers come from :mod:`phenossl.training.analysis.paper_numbers`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from phenossl.training.analysis import bias
from phenossl.training.analysis import paper_numbers as paper
from phenossl.training.analysis._results_frame import (
    PARAM,
    distinct,
    hashable,
    metric_column,
    require_columns,
    short,
    swept_parameters,
)

_CONVNEXT_SIZES = {"tiny": 0, "small": 1, "base": 2, "large": 3}
#: families in the paper's column order (Table 4: VGG11, ResNet18, ConvNeXt-Tiny); others after
_FAMILY_ORDER = {"vgg": 0, "resnet": 1, "convnext": 2}
#: Table 3's rows: the key of :data:`paper_numbers.TABLE3` columns and the rule's label
TABLE3_ROWS = (
    ("all", "in all methods"),
    (3, "in at least 3 methods"),
    (2, "in at least 2 methods"),
)


def paper_applies(dataset: str | None, paper_dataset: str) -> bool:
    """Whether a paper number may stand beside ours: same dataset, or ours unknown."""
    return dataset is None or dataset == paper_dataset


def fraction_to_percent(values: pd.Series, column: str) -> pd.Series:
    """Fractions in [0, 1] as percent; a value outside says the column is not a fraction."""
    values = pd.to_numeric(values, errors="coerce").astype(np.float64)
    finite = values[np.isfinite(values)]
    if ((finite < 0) | (finite > 1)).any():
        bad = float(finite[(finite < 0) | (finite > 1)].iloc[0])
        raise ValueError(f"{column} holds {bad}; expected fractions in [0, 1]")
    return 100 * values


def table2(
    frame: pd.DataFrame, parameter: str, *, metric: str = "top1", dataset: str | None = None
) -> pd.DataFrame:
    """Mean and standard deviation of top-1 (%) over a sweep, per method (appendix Table 2).

    ``mean``/``std``/``std_runs``/``seed_std`` follow :func:`bias.metric_summary` (``std`` is
    across parameter values of the seed means). Adds ``paper_mean``/``paper_std`` on the hue
    probability axis and ``solo_learn`` (the solo-learn reference top-1) on CIFAR.
    """
    column = metric_column(frame, metric)
    scaled = frame.assign(**{column: fraction_to_percent(frame[column], column)})
    table = bias.metric_summary(scaled, parameter, metric)
    if "hue_p" in paper.paper_axes(parameter) and paper_applies(dataset, paper.TABLE2["dataset"]):
        published = paper.TABLE2["methods"]
        table["paper_mean"] = [published.get(m, (np.nan,))[0] for m in table["method"]]
        table["paper_std"] = [published.get(m, (np.nan, np.nan))[1] for m in table["method"]]
    if dataset in ("cifar10", "cifar100"):
        table["solo_learn"] = [paper.solo_learn_top1(m, dataset) for m in table["method"]]
        table["solo_learn"] = table["solo_learn"].astype(np.float64)
    return table


def table1(
    linear: pd.DataFrame, finetune: pd.DataFrame, *, parameter: str, dataset: str | None = None
) -> pd.DataFrame:
    """Significant negative correlations under linear evaluation and fine-tuning (Table 1).

    ``linear``/``finetune`` are :func:`bias.correlate_sweep` tables of one sweep. ``match`` is
    in percent. Adds the paper's counts and match on the hue intensity axis.
    """
    table = bias.behaviour_match(linear, finetune)
    table["match"] = 100 * table["match"]
    if "hue" in paper.paper_axes(parameter) and paper_applies(dataset, paper.TABLE1["dataset"]):
        published = paper.TABLE1["methods"]
        nan3 = (np.nan, np.nan, np.nan)
        for i, name in enumerate(("paper_negative_linear", "paper_negative_finetune")):
            table[name] = pd.array(
                [published.get(m, nan3)[i] for m in table["method"]], dtype="Int64"
            )
        table["paper_match"] = [published.get(m, nan3)[2] for m in table["method"]]
    return table


class Table3Column(NamedTuple):
    """One sweep of :func:`table3`: its label, swept parameter, correlations and dataset."""

    label: str
    parameter: str
    results: pd.DataFrame
    dataset: str | None = None


def table3(
    columns: Sequence[Table3Column],
    *,
    min_methods: Sequence[int] = (3, 2),
    same_sign: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Classes biased in all / at least k methods, one column per sweep (appendix Table 3).

    Parameters
    ----------
    columns
        One :class:`Table3Column` per sweep; ``results`` is its :func:`bias.correlate_sweep`
        table (two methods or more).
    min_methods, same_sign
        As in :func:`bias.shared_biases`.

    Returns
    -------
    counts
        One row per rule (``in all methods``, ``in at least k methods``) and a last row
        ``methods`` (how many methods each column holds); per sweep a column ``label`` with our
        count (``<NA>`` where k exceeds the methods) and, on the paper's axes, ``label (paper)``.
    classes
        Long form: ``sweep, rule, n_classes, classes`` (the class names).
    """
    if not columns:
        raise ValueError("table3 needs at least one sweep")
    rules = ["in all methods", *(f"in at least {k} methods" for k in min_methods)]
    counts: dict[str, list] = {}
    long_rows = []
    for column in columns:
        results = column.results
        shared = bias.shared_biases(results, min_methods=min_methods, same_sign=same_sign)
        counts[column.label] = [*shared["n_classes"].tolist(), results["method"].nunique()]
        for rule, row in zip(rules, shared.itertuples()):
            long_rows.append((column.label, rule, row.n_classes, row.classes))
        axes = paper.paper_axes(column.parameter)
        axis = next((a for a in axes if a in paper.TABLE3["columns"]), None)
        if axis is not None and paper_applies(column.dataset, paper.TABLE3["dataset"]):
            published = paper.TABLE3["columns"][axis]
            counts[f"{column.label} (paper)"] = [
                *(published.get(k, pd.NA) for k in ("all", *min_methods)),
                len(paper.TABLE3["methods"]),
            ]
    table = pd.DataFrame(counts, index=[*rules, "methods"], dtype="Int64")
    table.index.name = "classes biased"
    classes = pd.DataFrame(long_rows, columns=["sweep", "rule", "n_classes", "classes"])
    return table.reset_index(), classes


def backbone_column(frame: pd.DataFrame) -> str | None:
    """The column naming each run's backbone: ``param.<...>backbone`` or ``backbone``."""
    for column in frame.columns:
        if isinstance(column, str) and column.startswith(PARAM) and short(column) == "backbone":
            return column
    return "backbone" if "backbone" in frame.columns else None


def backbone_sort_key(name: str) -> tuple:
    """Order backbones as the paper's tables: VGG, ResNet, ConvNeXt, other families by name,
    then by size within a family (``resnet18 < resnet50 < resnet101``)."""
    match = re.fullmatch(r"([a-z_]*?)_?(\d+|tiny|small|base|large)(.*)", str(name))
    if not match:
        return (len(_FAMILY_ORDER), str(name), 0, "")
    family, size, rest = match.groups()
    rank = _CONVNEXT_SIZES.get(size)
    return (
        _FAMILY_ORDER.get(family, len(_FAMILY_ORDER)),
        family,
        int(size) if rank is None else rank,
        rest,
    )


def grid_columns(frame: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    """The swept ``param.*`` columns other than ``exclude``."""
    return [PARAM + p for p in swept_parameters(frame) if PARAM + p not in exclude]


def _seed_stats(frame: pd.DataFrame, keys: list[str], value: pd.Series) -> pd.DataFrame:
    data = frame[keys].map(hashable).assign(_y=value.to_numpy())
    data = data.dropna(subset=["_y"])
    grouped = data.groupby(keys, sort=False, dropna=False)["_y"]
    return grouped.agg(mean="mean", std=lambda s: s.std(ddof=1), n="count").reset_index()


def table4(
    frame: pd.DataFrame, *, metric: str = "top1", dataset: str | None = None
) -> pd.DataFrame:
    """Linear top-1 (%) by method and backbone, mean and std over seeds (appendix Table 4).

    Rows: ``method``, the other swept parameters, ``backbone``, ``mean``, ``std``, ``n``,
    and ``paper`` (the published accuracy on MNIST; ``_bn`` variants match the paper's VGGs).
    """
    require_columns(frame, ("method", "seed"), "table 4")
    backbone = backbone_column(frame)
    if backbone is None:
        raise ValueError("table 4 needs a backbone column (param.backbone or backbone)")
    column = metric_column(frame, metric)
    keys = ["method", *grid_columns(frame, (backbone,)), backbone]
    table = _seed_stats(frame, keys, fraction_to_percent(frame[column], column))
    table = table.rename(columns={backbone: "backbone"})
    table = table.sort_values(
        "backbone", key=lambda s: s.map(backbone_sort_key), kind="stable"
    ).sort_values("method", kind="stable")
    if paper_applies(dataset, paper.TABLE4["dataset"]):
        published = paper.TABLE4["methods"]
        table["paper"] = [
            published.get(m, {}).get(str(b).removesuffix("_bn"), np.nan)
            for m, b in zip(table["method"], table["backbone"])
        ]
    return _short_columns(table.reset_index(drop=True))


def table4_wide(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`table4` laid out as the paper's: one row per method (and grid point), one
    ``mean ± std`` column per backbone, each followed by the paper's value when it has one."""
    require_columns(table, ("method", "backbone", "mean", "std"), "table 4 layout")
    keys = [c for c in table.columns if c not in ("backbone", "mean", "std", "n", "paper")]
    backbones = sorted(table["backbone"].astype(str).unique(), key=backbone_sort_key)
    rows = []
    for key, part in table.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key))
        cells = part.set_index(part["backbone"].astype(str))
        for b in backbones:
            if b not in cells.index:
                row[b] = pd.NA
                continue
            mean, std = cells.at[b, "mean"], cells.at[b, "std"]
            row[b] = f"{mean:.2f}" + ("" if np.isnan(std) else f" ± {std:.2f}")
            if "paper" in cells.columns and not np.isnan(cells.at[b, "paper"]):
                row[f"{b} (paper)"] = cells.at[b, "paper"]
        rows.append(row)
    return pd.DataFrame(rows)


def _short_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``param.augmentation.0.hue`` -> ``hue`` where the short names stay distinct."""
    renamed = {c: short(c) for c in table.columns if isinstance(c, str) and c.startswith(PARAM)}
    shorts = list(renamed.values())
    if len(set(shorts)) != len(shorts) or set(shorts) & set(table.columns):
        return table
    return table.rename(columns=renamed)


def ami_table(frame: pd.DataFrame) -> pd.DataFrame:
    """AMI (%) of the clusterings per method and grid point, with the randomised-label control.

    Rows: ``method``, the swept parameters, ``ami_mean``, ``ami_std`` (over seeds), ``n`` and,
    when the store has them, ``control_mean``/``control_std`` (the mean over seeds of
    ``ami_control_mean`` and of ``ami_control_std``).
    """
    require_columns(frame, ("method", "seed"), "AMI table")
    keys = ["method", *grid_columns(frame, ())]
    data = frame[keys].map(hashable)
    data["ami"] = 100 * pd.to_numeric(frame[metric_column(frame, "ami")], errors="coerce")
    controls = [n for n in ("ami_control_mean", "ami_control_std") if "metric." + n in frame]
    for name in controls:
        data[name] = 100 * pd.to_numeric(frame["metric." + name], errors="coerce")
    grouped = data.groupby(keys, sort=False, dropna=False)
    table = grouped["ami"].agg(ami_mean="mean", ami_std=lambda s: s.std(ddof=1), n="count")
    for name in controls:
        table[name.replace("ami_", "")] = grouped[name].mean()
    return _short_columns(table.reset_index())


def distinct_backbones(frame: pd.DataFrame) -> list[str]:
    """The frame's backbones, smallest first within each family."""
    column = backbone_column(frame)
    if column is None:
        return []
    return sorted(map(str, distinct(frame[column])), key=backbone_sort_key)
