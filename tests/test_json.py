"""One JSON conversion for every file the package writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from phenossl._json import to_json, write_json


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
    from phenossl import clustering_report, export, profile_report
    from phenossl.training.sweep import store

    assert export.to_json is to_json
    # the reports write their JSON through the one writer, which converts with to_json
    assert export.write_json is write_json
    assert clustering_report.write_json is write_json and profile_report.write_json is write_json
    assert store.json_safe({"x": np.nan}) == {"x": None}


def test_write_json_converts_and_writes_atomically(tmp_path):
    path = write_json(tmp_path / "a" / "r.json", {"x": np.float32(0.5), "y": np.nan}, parents=True)
    assert path.read_text() == '{\n  "x": 0.5,\n  "y": null\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary left behind
