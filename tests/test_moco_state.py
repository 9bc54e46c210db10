"""benchmarks/moco_state.py: the measures of a tiny MoCoV2+ run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _benchmarks import load_benchmark

from phenossl.data.cropset import CropSetWriter


@pytest.fixture(scope="module")
def moco_state():
    return load_benchmark("moco_state")


def test_a_tiny_run_is_measured_and_written(moco_state, tmp_path):
    from phenossl.training.train.trainer import cropset_train_config, train

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"compound": ["DMSO"] * 48, "split": ["train"] * 40 + ["test"] * 8})
    with CropSetWriter(tmp_path / "cs", size=32) as writer:
        writer.add(rng.integers(0, 255, (48, 3, 32, 32), dtype=np.uint8), table)
    config = cropset_train_config(
        tmp_path / "cs", backbone="resnet18", augmentation="fluorescence", view_size=24,
        epochs=1, batch_size=8, split="train", device="cpu",
    )  # fmt: skip
    config.method = config.method.model_copy(update={"queue_size": 32, "proj_hidden_dim": 16})
    final = train(config, tmp_path / "run")
    last = final.parent / "checkpoints" / "last.pt"
    out = tmp_path / "state.json"
    results = moco_state.main(
        [str(last), "--cropset", str(tmp_path / "cs"), "--cells", "16", "--batch", "8",
         "--out", str(out)]
    )  # fmt: skip
    (result,) = results
    assert json.loads(out.read_text()) == results
    assert result["queue"] == 32 and result["cells"] == 16 and result["feature_dim"] == 512
    for key in ("positive_cos", "hardest_queued_cos", "mean_queued_cos", "online_vs_momentum_cos"):
        assert -1.0 <= result[key] <= 1.0
    assert result["hardest_queued_cos"] >= result["mean_queued_cos"]
    assert result["loss_queue"] > 0 and result["loss_in_batch"] > 0
    assert 1.0 <= result["effective_rank_backbone"] <= 16  # 16 cells span at most 15 directions
    with pytest.raises(SystemExit, match="MoCoV2\\+ trainer checkpoint"):
        moco_state.moco_state(final, tmp_path / "cs", cells=8, batch=8)  # no method state
