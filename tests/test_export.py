from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from phenossl.export import (
    cells_with_embeddings,
    embedding_columns,
    export_cells,
    has_parquet,
    run_parameters,
    to_json,
)


@pytest.fixture
def cells():
    return pd.DataFrame(
        {
            "field_id": ["P/B02/s1", "P/B02/s1", "P/C03/s1"],
            "label": [1, 2, 1],
            "moa": pd.array(["DMSO", pd.NA, "Actin disruptors"], dtype="string"),
            "cluster": pd.Categorical([1, 0, 1], categories=[0, 1]),
        },
        index=[10, 11, 12],  # not 0..n-1: the export must not depend on it
    )


def test_embedding_columns_sort_in_order():
    assert embedding_columns(3) == ["emb_000", "emb_001", "emb_002"]
    names = embedding_columns(1500)
    assert names == sorted(names) and names[-1] == "emb_1499"


def test_cells_with_embeddings_appends_aligned_columns(cells):
    emb = np.arange(6, dtype=np.float64).reshape(3, 2)
    table = cells_with_embeddings(cells, emb)
    assert list(table.columns) == [*cells.columns, "emb_000", "emb_001"]
    assert table["emb_001"].dtype == np.float32
    np.testing.assert_array_equal(table[["emb_000", "emb_001"]].to_numpy(), emb)
    with pytest.raises(ValueError, match=r"expected \(3, D\)"):
        cells_with_embeddings(cells, emb[:2])


def test_export_writes_csv_json_and_parquet_that_read_back(cells, tmp_path):
    emb = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    events = []
    params = {"seed": np.int64(3), "k": 2, "path": Path("/x"), "ami": float("nan")}
    paths = export_cells(tmp_path / "out", cells, emb, params, name="run", progress=events.append)
    assert events[-1].done == events[-1].total
    back = pd.read_csv(paths["csv"])
    assert back["label"].tolist() == [1, 2, 1]
    assert back["cluster"].tolist() == [1, 0, 1]
    assert back["moa"].isna().tolist() == [False, True, False]
    np.testing.assert_allclose(back[embedding_columns(4)].to_numpy(), emb, rtol=1e-6)
    assert json.loads(paths["json"].read_text()) == {"seed": 3, "k": 2, "path": "/x", "ami": None}
    if has_parquet():
        frame = pd.read_parquet(paths["parquet"])
        assert frame["cluster"].astype(int).tolist() == [1, 0, 1]
        assert frame["moa"].isna().tolist() == [False, True, False]
        np.testing.assert_array_equal(frame[embedding_columns(4)].to_numpy(), emb)
    else:
        assert "parquet" not in paths
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in paths.values()
    )


def test_export_without_embeddings_and_a_bad_name(cells, tmp_path):
    paths = export_cells(tmp_path, cells, None, {}, parquet=False)
    assert set(paths) == {"csv", "json"}
    assert list(pd.read_csv(paths["csv"]).columns) == list(cells.columns)
    with pytest.raises(ValueError, match="plain file name"):
        export_cells(tmp_path, cells, None, {}, name="a/b")


def test_an_interrupted_export_leaves_no_partial_file(cells, tmp_path):
    from phenossl.export import iter_export_cells

    gen = iter_export_cells(tmp_path, cells, None, {}, parquet=False)
    next(gen)  # started the CSV
    gen.close()  # cancelled
    assert list(tmp_path.iterdir()) == []


def test_to_json_converts_numpy_paths_and_dataclasses():
    @dataclass
    class Options:
        k: int
        sizes: tuple

    value = {"o": Options(2, (np.int32(1), 2.5)), "a": np.arange(2), "na": pd.NA}
    assert to_json(value) == {"o": {"k": 2, "sizes": [1, 2.5]}, "a": [0, 1], "na": None}


def test_run_parameters_are_the_runs_settings_and_scores_as_json(cells):
    from phenossl.clustering import cluster
    from phenossl.pipeline import PipelineOptions, PipelineResult

    rng = np.random.default_rng(0)
    clustering = cluster(rng.normal(size=(3, 4)), ["a", "b", "a"], k=2, seed=5, n_nearest=1)
    result = PipelineResult(cells, rng.normal(size=(3, 4)), clustering, n_fields=2, n_processed=2)
    options = PipelineOptions(model="resnet18", k=2, seed=5)
    params = run_parameters(
        result,
        options,
        model="resnet18 (random init)",
        fields=cells["field_id"].unique(),
        timings={"total_s": 1.5},
    )
    assert params["model"] == "resnet18 (random init)" and params["seed"] == 5
    assert params["options"]["model"] == "resnet18" and params["options"]["k"] == 2
    assert params["fields"] == ["P/B02/s1", "P/C03/s1"] and params["n_fields"] == 2
    assert params["summary"]["cells"] == 3 and params["timings_s"] == {"total_s": 1.5}
    assert (
        params["clustering"]["ami"] == clustering.ami and "assignments" not in params["clustering"]
    )
    assert json.loads(json.dumps(to_json(params))) == to_json(params)
