"""benchmarks/bench_real_cells.py: its scoring core on synthetic cells, and the real path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _benchmarks import load_benchmark

from phenossl.data.cropset import CropSetWriter


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_real_cells")


def _synthetic(rng, n=24):
    """One week, two plates; a, b (MOA X) shift feature 0, c, d (MOA Y) feature 1."""
    rows, feats = [], []
    moa = {"DMSO": "DMSO", "a": "X", "b": "X", "c": "Y", "d": "Y"}
    for plate, compounds in (("Week1_P1", ["DMSO", "a", "c"]), ("Week1_P2", ["DMSO", "b", "d"])):
        for w, compound in enumerate(compounds):
            for _ in range(n):
                v = rng.normal(size=5)
                v[{"X": 0, "Y": 1}.get(moa[compound], 4)] += 0 if compound == "DMSO" else 5.0
                feats.append(v)
                rows.append((plate, f"W{w}", compound, 0.0 if compound == "DMSO" else 1.0,
                             moa[compound], "test"))  # fmt: skip
    columns = ["plate", "well", "compound", "concentration", "moa", "split"]
    return pd.DataFrame(rows, columns=columns), np.array(feats)


def test_evaluate_embedding_scores_a_planted_embedding(bench):
    table, x = _synthetic(np.random.default_rng(0))
    good = bench.evaluate_embedding(x, table, seeds=(0,))
    noise = bench.evaluate_embedding(
        np.random.default_rng(1).normal(size=x.shape), table, seeds=(0,)
    )
    assert good["nsc"]["mean"] == 1.0 and good["nsc"]["n_queries"] == 4
    assert good["nscb"]["n_queries"] == 0 and good["nscb"]["mean"] is None  # one week only
    assert set(good["contrasts"]) == {"a", "b", "c", "d"}
    for name in good["contrasts"]:
        assert good["contrasts"][name]["ami"] > 0.8 > noise["contrasts"][name]["ami"] + 0.5
        assert good["contrasts"][name]["probe"] > 0.95
        assert noise["contrasts"][name]["probe"] < 0.8
    both = bench.combine_draws([good, noise])
    assert both["draws"] == 2 and both["nsc"]["std"] > 0
    report = {"embeddings": [
        {"name": "planted", "dim": 5, "embed_seconds": 0.0, "scores": good},
        {"name": "ImageNet ResNet50", "skipped": "weights not in the torch hub cache"},
    ]}  # fmt: skip
    md = bench.markdown_table(report)
    assert "| planted | 5 | 1.000" in md and "skipped: weights not" in md
    assert "a (24 + DMSO)" in md


@pytest.mark.slow
def test_main_on_a_cropset_with_a_checkpoint(bench, tmp_path):
    import torch

    from phenossl.models.backbones import build_backbone
    from phenossl.models.checkpoint import save_checkpoint

    table, _ = _synthetic(np.random.default_rng(0), n=8)
    rng = np.random.default_rng(0)
    with CropSetWriter(tmp_path / "cs", size=32) as writer:
        writer.add(rng.integers(0, 255, (len(table), 3, 32, 32), dtype=np.uint8), table)
    backbone = build_backbone("resnet18")
    meta = {"method": "none", "backbone": "resnet18", "in_channels": 3, "cifar_stem": False,
            "epoch": 0, "seed": 0, "input_mean": [0.5] * 3, "input_std": [0.25] * 3,
            "config": {"augmentation": [{"name": "identity", "size": 24}]}}  # fmt: skip
    save_checkpoint(tmp_path / "model.pt", backbone=backbone, metadata=meta)
    argv = ["--cropset", str(tmp_path / "cs"), "--only", "imagenet_resnet50", "--min-cells", "8",
            "--seeds", "1", "--checkpoint", f"{tmp_path / 'model.pt'}=tiny", "--device", "cpu",
            "--cache", str(tmp_path / "cache"), "--out-dir", str(tmp_path / "out")]  # fmt: skip
    torch.manual_seed(0)
    report = bench.main(argv)
    saved = json.loads((tmp_path / "out" / "real_cells.json").read_text())
    assert saved["n_cells"] == len(table) and saved["split"] == "test"
    names = [e["name"] for e in saved["embeddings"]]
    assert names == ["ImageNet ResNet50", "tiny"]
    tiny = saved["embeddings"][1]
    assert tiny["input_size"] == 24 and tiny["dim"] == 512 and not tiny["embed_cached"]
    assert set(tiny["scores"]["contrasts"]) == {"a", "b", "c", "d"}
    assert "| tiny | 512 |" in (tmp_path / "out" / "real_cells.md").read_text()
    again = bench.main(argv)  # the embedding comes from the cache
    assert again["embeddings"][1]["embed_cached"]
    assert report["embeddings"][1]["scores"]["nsc"] == again["embeddings"][1]["scores"]["nsc"]
    with pytest.raises(SystemExit, match="no such file"):
        bench.main([*argv[:-2], "--checkpoint", str(tmp_path / "nope.pt")])
    scaled = bench.main([*argv, "--contrast-normalization", "global"])
    assert report["contrast_normalization"] == "none"
    assert scaled["contrast_normalization"] == "global" and scaled["embeddings"][1]["embed_cached"]
    assert "contrast normalization global" in (tmp_path / "out" / "real_cells.md").read_text()


@pytest.mark.slow
def test_real_path_on_a_sample_of_the_shared_crops(bench, shared_data, tmp_path):
    data = shared_data / "bbbc021_crops"
    if not (data / "crops.npz").is_file():
        pytest.skip(f"the shared crops are not at {data}")
    report = bench.main(
        ["--data", str(data), "--only", "features", "--limit", "200", "--seeds", "1",
         "--cache", str(tmp_path / "cache"), "--out-dir", str(tmp_path / "out")]
    )  # fmt: skip
    assert report["n_plates"] >= 10 and 150 <= report["n_cells"] <= 220
    features = report["embeddings"][0]
    assert features["name"] == "hand-crafted features" and features["dim"] > 20
    scores = features["scores"]
    assert scores["nsc"]["n_queries"] > 5 and 0.0 <= scores["nsc"]["mean"] <= 1.0
    assert "cyclohexamide" in scores["contrasts"]
    # the cached import is the documented plate-level split
    cs_table = pd.read_csv(tmp_path / "cache" / "bbbc021_crops_cropset" / "cells.csv")
    test = cs_table[cs_table["split"] == "test"]
    assert len(test) == 2701 and test["plate"].nunique() == 17
    assert (test["replicate"] != 1).all()
