"""benchmarks/gpu_check.py: fails clearly without CUDA; its pieces run at a tiny CPU scale."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from _benchmarks import load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def gpu_check():
    return load_benchmark("gpu_check")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_fails_clearly_without_cuda(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: CUDA is not available")
    assert "--device cpu --tiny" in lines[0]
    assert not (tmp_path / "x.json").exists()


def test_the_default_is_the_real_gpu_scale(gpu_check):
    assert gpu_check.GPU.embed_size == 196 and gpu_check.GPU.train_sizes == (32, 68, 196)
    names = [c.name for c in gpu_check.training_cases(gpu_check.GPU)]
    assert names == ["simclr_resnet18", "mocov2plus_vgg13_68", "mocov2plus_vgg13_196"]
    with pytest.raises(SystemExit):
        gpu_check.main(["--parts", "nonsense"])


@pytest.mark.slow
def test_pieces_run_at_a_tiny_cpu_scale(gpu_check, tmp_path):
    torch.set_num_threads(1)
    scale = replace(gpu_check.TINY, embed_size=16, train_steps=1, n_train=16, n_test=8)
    (embed_row, _) = gpu_check.check_embedding(scale, CPU)
    assert embed_row["model"] == "vgg13_bn" and embed_row["embed_cells_per_s"] > 0
    assert "meets_target" in embed_row
    (train_row,) = gpu_check.check_training(scale, CPU, gpu_check.training_cases(scale)[:1])
    assert train_row["ratio_vs_backbone"] > 0 and "meets_ratio_target" in train_row

    root = tmp_path / "cifar10"
    gpu_check.write_cifar_like(root, n_train=16, n_test=8, seed=0)
    micro = replace(scale, backbone="vgg11_bn")
    row = gpu_check.check_method("ressl", root, tmp_path / "runs", micro, CPU)
    assert row["optimizer"] == "sgd" and row["steps"] == 6 and len(row["epoch_losses"]) == 3
    assert row["finite"] and all(math.isfinite(v) for v in row["epoch_losses"])
    assert row["feature_dim"] == 512 and row["feature_effective_rank"] > 0
    assert row["ok"] == (not row["feature_collapsed"])
    json.dumps(row)  # the report is JSON
