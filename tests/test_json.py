"""One JSON conversion for every file the package writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from phenossl._json import to_json


def test_numpy_paths_missing_values_and_non_finite_floats_become_plain_json():
    value = {1: np.float32(0.5), "p": Path("a/b"), "x": np.array([1.0, np.inf]), "na": pd.NA}
    out = to_json(value)
    assert out == {"1": 0.5, "p": "a/b", "x": [1.0, None], "na": None}
    json.dumps(out, allow_nan=False)  # valid JSON: no NaN or Infinity literals


def test_strict_refuses_what_would_become_a_repr():
    assert to_json(object()).startswith("<object")
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        to_json({"a": [object()]}, strict=True)


def test_the_reports_and_the_store_share_it():
    from phenossl import cluster_report, export, profile_report
    from phenossl.training import store

    assert export.to_json is to_json
    assert cluster_report.to_json is to_json and profile_report.to_json is to_json
    assert store.json_safe({"x": np.nan}) == {"x": None}
