"""Reading the result store's analysis frame (``ResultStore.frame()``).

The frame has one row per finished run and the columns ``run_id, experiment, method, seed``,
``param.<name>`` (swept parameters), ``metric.<name>`` (scalars), ``per_class.<protocol>`` (a
``(C,)`` array per row) and ``class_names.<protocol>`` (the ``C`` names). These helpers find
columns by short name, turn parameter values into numbers, check shapes (with errors that name
the column, the run and what was expected) and split the frame into experiments and sweeps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

#: the method of runs that train no SSL method (e.g. the pretrained backbones' study)
NO_METHOD = "none"
PARAM = "param."
METRIC = "metric."
PER_CLASS = "per_class."
CLASS_NAMES = "class_names."

_CIFAR10 = frozenset(
    ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
)
_CIFAR100_SAMPLE = frozenset(("apple", "aquarium_fish", "baby", "bear", "beaver", "wardrobe"))
_DIGITS = tuple(str(d) for d in range(10))


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` naming the columns ``what`` needs and the frame lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} needs the column(s) {missing} in the results frame; it has "
            f"{sorted(map(str, frame.columns))}"
        )


def _prefixed(frame: pd.DataFrame, prefix: str) -> list[str]:
    return [c[len(prefix) :] for c in frame.columns if isinstance(c, str) and c.startswith(prefix)]


def parameter_names(frame: pd.DataFrame) -> list[str]:
    """Names of the ``param.<name>`` columns, in frame order."""
    return _prefixed(frame, PARAM)


def metric_names(frame: pd.DataFrame) -> list[str]:
    """Names of the ``metric.<name>`` columns, in frame order."""
    return _prefixed(frame, METRIC)


def protocols(frame: pd.DataFrame) -> list[str]:
    """Protocols with per-class accuracies (both ``per_class.<p>`` and ``class_names.<p>``)."""
    names = set(_prefixed(frame, CLASS_NAMES))
    return [p for p in _prefixed(frame, PER_CLASS) if p in names]


def _column(frame: pd.DataFrame, prefix: str, name: str, kind: str) -> str:
    column = name if name.startswith(prefix) else prefix + name
    if column not in frame.columns:
        raise ValueError(
            f"the results frame has no {kind} {name!r} (column {column!r}); it has "
            f"{_prefixed(frame, prefix)}"
        )
    return column


def param_column(frame: pd.DataFrame, parameter: str) -> str:
    """The column of a swept parameter given as ``hue_p`` or ``param.hue_p``."""
    return _column(frame, PARAM, parameter, "parameter")


def metric_column(frame: pd.DataFrame, metric: str) -> str:
    """The column of a metric given as ``top1`` or ``metric.top1``."""
    return _column(frame, METRIC, metric, "metric")


def short(parameter: str) -> str:
    """``param.augmentation.0.hue_p`` -> ``hue_p`` (the last dotted component)."""
    return parameter.removeprefix(PARAM).rsplit(".", 1)[-1]


def hashable(value: Any) -> Any:
    """Lists and arrays become tuples so that values can be grouped and compared."""
    if isinstance(value, np.ndarray):
        return tuple(hashable(v) for v in value.tolist())
    if isinstance(value, list | tuple):
        return tuple(hashable(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def distinct(values: Iterable[Any]) -> list[Any]:
    """Distinct non-missing values (hashable form), sorted when they are comparable."""
    seen = list(dict.fromkeys(hashable(v) for v in values if not is_missing(v)))
    try:
        return sorted(seen)
    except TypeError:
        return seen


def swept_parameters(frame: pd.DataFrame) -> list[str]:
    """Parameters that take at least two distinct values in ``frame``."""
    return [p for p in parameter_names(frame) if len(distinct(frame[PARAM + p])) >= 2]


def numeric_values(frame: pd.DataFrame, parameter: str) -> pd.Series:
    """A parameter's values as float64, one per run.

    Numbers (and numeric strings) are taken as they are. Sequences of one length (an interval
    such as ``crop_scale = (0.2, 1.0)``) are reduced to the one position that varies across the
    runs (the lower bound, for the paper's crop sweep).

    Raises
    ------
    ValueError
        A run has no value, a value is not numeric, or more than one position of a sequence
        varies (no single number stands for it).
    """
    column = param_column(frame, parameter)
    raw = [hashable(v) for v in frame[column]]
    ids = _run_ids(frame)
    for run_id, value in zip(ids, raw):
        if is_missing(value):
            raise ValueError(f"run {run_id!r} has no value for {column!r}")
    if raw and all(isinstance(v, tuple) for v in raw):
        raw = _varying_position(raw, column)
    numbers = []
    for run_id, value in zip(ids, raw):
        try:
            if isinstance(value, bool) or not isinstance(value, Real | str):
                raise TypeError
            numbers.append(float(value))
        except (TypeError, ValueError):
            raise ValueError(
                f"run {run_id!r}: {column} = {value!r} is not a number; a correlation needs a "
                "numeric parameter"
            ) from None
    return pd.Series(numbers, index=frame.index, name=column, dtype=np.float64)


def _varying_position(values: list[tuple], column: str) -> list[Any]:
    lengths = {len(v) for v in values}
    if len(lengths) != 1:
        raise ValueError(f"{column} holds sequences of lengths {sorted(lengths)}; expected one")
    varying = [i for i in range(lengths.pop()) if len({v[i] for v in values}) > 1]
    if len(varying) > 1:
        raise ValueError(
            f"{column} varies at positions {varying} of its values; cannot reduce it to one number"
        )
    index = varying[0] if varying else 0
    return [v[index] for v in values]


def _run_ids(frame: pd.DataFrame) -> list[str]:
    if "run_id" in frame.columns:
        return [str(r) for r in frame["run_id"]]
    return [f"row {i}" for i in frame.index]


def per_class_block(frame: pd.DataFrame, protocol: str) -> tuple[list[str], np.ndarray]:
    """Class names and the ``(N, C)`` float64 per-class accuracies of every run.

    Raises
    ------
    ValueError
        The columns are missing, a run's array does not match its class names, or runs
        disagree on the classes.
    """
    acc_col, name_col = PER_CLASS + protocol, CLASS_NAMES + protocol
    require_columns(frame, (acc_col, name_col), f"per-class accuracy ({protocol!r})")
    classes: list[str] | None = None
    first = ""
    rows = []
    for run_id, accuracy, names in zip(_run_ids(frame), frame[acc_col], frame[name_col]):
        if _is_missing_array(accuracy) or _is_missing_array(names):
            raise ValueError(f"run {run_id!r} has no {acc_col!r}")
        names = [str(n) for n in names]
        values = np.asarray(accuracy, dtype=np.float64).reshape(-1)
        if values.size != len(names):
            raise ValueError(
                f"run {run_id!r}: {acc_col} has {values.size} values for {len(names)} class names"
            )
        if classes is None:
            classes, first = names, run_id
        elif names != classes:
            raise ValueError(
                f"runs {first!r} and {run_id!r} have different {name_col}; compare runs of one "
                "dataset"
            )
        rows.append(values)
    if classes is None:
        raise ValueError(f"no run to read {acc_col!r} from")
    return classes, np.stack(rows)


def _is_missing_array(value: Any) -> bool:
    return value is None or (not isinstance(value, Sequence | np.ndarray) and is_missing(value))


def infer_dataset(frame: pd.DataFrame) -> str | None:
    """``cifar10``, ``cifar100`` or ``mnist`` when the frame says or its class names show it.

    A ``dataset`` or ``param.dataset`` column wins; otherwise the class names of the first
    protocol are matched against the three datasets' names. ``None`` when neither tells.
    """
    for column in ("dataset", PARAM + "dataset"):
        if column in frame.columns:
            found = distinct(frame[column])
            if len(found) == 1:
                return str(found[0])
    for protocol in protocols(frame):
        names = frame[CLASS_NAMES + protocol].dropna()
        if names.empty:
            continue
        classes = [str(n) for n in names.iloc[0]]
        if set(classes) == _CIFAR10:
            return "cifar10"
        if len(classes) == 100 and set(classes) >= _CIFAR100_SAMPLE:
            return "cifar100"
        if tuple(classes) == _DIGITS:
            return "mnist"
    return None


def slugify(text: str) -> str:
    """Letters, digits and ``._=-`` kept; any other run of characters becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "_"


def value_text(value: Any) -> str:
    """A parameter value as short text: ``0.25``, ``(0.2,1)``, ``resnet18``."""
    value = hashable(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "(" + ",".join(value_text(v) for v in value) + ")"
    return str(value)


def experiments(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One frame per experiment, without the columns none of its runs fill.

    Runs without a method (the backbone-size study embeds with pretrained backbones, no SSL
    method) get the method :data:`NO_METHOD` so that grouping by method keeps them.
    """
    require_columns(frame, ("run_id", "experiment", "method", "seed"), "the results frame")
    frame = frame.assign(method=[NO_METHOD if is_missing(m) else m for m in frame["method"]])
    out = {}
    for name, runs in frame.groupby("experiment", sort=True):
        keep = [c for c in runs.columns if not all(is_missing(v) for v in runs[c])]
        out[str(name)] = runs[keep]
    return out


def find_sweeps(frame: pd.DataFrame) -> list[Sweep]:
    """Every (experiment, numeric swept parameter, values of the other swept parameters).

    A parameter is swept when it takes two distinct values or more within an experiment; it is
    numeric when :func:`numeric_values` reads it (numbers, or intervals with one varying bound).
    """
    sweeps = []
    for name, runs in experiments(frame).items():
        dataset = infer_dataset(runs)
        swept = [PARAM + p for p in swept_parameters(runs)]
        for column in swept:
            try:
                numeric_values(runs, column)
            except ValueError:
                continue
            others = [c for c in swept if c != column]
            if not others:
                sweeps.append(Sweep(name, column, (), runs, dataset))
                continue
            keys = [runs[c].map(hashable) for c in others]
            for values, part in runs.groupby(keys, sort=False, dropna=False):
                if len(distinct(part[column])) >= 2:
                    fixed = tuple(zip(others, values))
                    sweeps.append(Sweep(name, column, fixed, part, dataset))
    return sweeps


@dataclass(frozen=True, eq=False)
class Sweep:
    """One experiment's runs along one numeric parameter, the other swept ones fixed."""

    experiment: str
    parameter: str
    fixed: tuple[tuple[str, Any], ...]
    frame: pd.DataFrame
    dataset: str | None = None

    @property
    def label(self) -> str:
        """``experiment: parameter (other=value, ...)``."""
        fixed = ", ".join(f"{short(k)}={value_text(v)}" for k, v in self.fixed)
        return f"{self.experiment}: {short(self.parameter)}" + (f" ({fixed})" if fixed else "")

    @property
    def slug(self) -> str:
        """A file-name-safe, unique form of :attr:`label`."""
        parts = [self.experiment, short(self.parameter)]
        parts += [f"{short(k)}={value_text(v)}" for k, v in self.fixed]
        return slugify("__".join(parts))
