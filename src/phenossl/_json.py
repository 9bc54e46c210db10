"""Plain JSON values from what the package holds: numpy scalars and arrays, paths, NA, dataclasses.

One conversion for every JSON file the package writes (reports, exports, run records, the result
store), so that they agree: numpy values become Python ones, paths strings, and NaN, infinity
and pandas' NA ``null`` (JSON has no NaN; ``json.dumps`` would write an invalid ``NaN``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def to_json(value: Any, *, strict: bool = False) -> Any:
    """A JSON-compatible copy of ``value``.

    Mappings (keys as strings), sequences, sets, numpy arrays and scalars, dataclasses and paths
    are converted; non-finite floats and pandas' NA/NaT become None. Anything else becomes its
    ``str``, or, with ``strict``, raises TypeError (for data whose identity matters, such as a
    run's spec, where a ``repr`` could differ between processes).

    Examples
    --------
    >>> to_json({"k": np.int64(2), "x": np.array([0.5, np.nan])})
    {'k': 2, 'x': [0.5, None]}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(dataclasses.asdict(value), strict=strict)
    if isinstance(value, Mapping):
        return {str(k): to_json(v, strict=strict) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v, strict=strict) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist(), strict=strict)
    if isinstance(value, np.generic):
        return to_json(value.item(), strict=strict)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if _is_missing(value):
        return None
    if strict:
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")
    return str(value)


def write_json(
    path: str | os.PathLike, value: Any, *, strict: bool = False, parents: bool = False
) -> Path:
    """Write :func:`to_json` of ``value`` to ``path`` atomically, indented, with a final newline.

    ``parents`` creates missing folders; ``strict`` as for :func:`to_json`.

    Examples
    --------
    >>> write_json("report.json", {"ami": np.float64(0.5)})  # doctest: +SKIP
    """
    from phenossl._atomic import write_text

    return write_text(
        path, json.dumps(to_json(value, strict=strict), indent=2) + "\n", parents=parents
    )


def _is_missing(value: Any) -> bool:
    pd = sys.modules.get("pandas")  # only pandas makes NA/NaT; do not import it for them
    return pd is not None and (value is pd.NA or value is pd.NaT)
