"""`phenossl train` on a tiny config: smoke section, overrides, resume, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from phenossl.cli import main
from phenossl.data.datasets import write_cifar_like
from phenossl.models.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def config_file(tmp_path) -> Path:
    write_cifar_like(tmp_path / "cifar", n_train=40, n_test=10, seed=0)
    config = {
        "data": {"dataset": "cifar10", "root": str(tmp_path / "cifar")},
        "model": {"backbone": "vgg11_bn"},
        "method": {"name": "byol", "proj_hidden_dim": 32, "pred_hidden_dim": 32},
        "augmentation": [{"name": "cifar", "size": 16}],
        "optim": {"batch_size": 8, "epochs": 50},
        "smoke": {"data": {"limit": 16}, "optim": {"epochs": 1}, "run": {"log_every": 1}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_smoke_run_writes_the_run_folder_and_resumes(tmp_path, config_file, capsys):
    out = tmp_path / "run"
    argv = ["-q", "train", "--config", str(config_file), "--out", str(out), "--smoke"]
    assert main([*argv, "--set", "method.proj_output_dim=24", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"final checkpoint -> {out / 'final.pt'}" in printed
    assert "byol / vgg11_bn on cifar10 for 1 epochs" in printed
    assert "precision: float32 on cpu" in printed
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["optim"]["epochs"] == 1
    assert saved["data"]["limit"] == 16
    assert saved["run"]["device"] == "cpu"
    assert saved["method"]["proj_output_dim"] == 24
    meta = load_checkpoint(out / "final.pt")["metadata"]
    assert (meta["method"], meta["epoch"]) == ("byol", 1)
    stamp = (out / "final.pt").stat().st_mtime_ns

    assert main([*argv, "--set", "method.proj_output_dim=24", "--device", "cpu"]) == 0
    assert (out / "final.pt").stat().st_mtime_ns == stamp  # finished: nothing retrained
    assert main([*argv, "--set", "method.proj_output_dim=24", "--no-resume"]) == 0
    assert (out / "final.pt").stat().st_mtime_ns != stamp


def test_train_default_out_folder(tmp_path, config_file, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "train", "--config", str(config_file), "--smoke", "--device", "cpu"]) == 0
    assert (tmp_path / "runs" / "tiny_smoke" / "final.pt").is_file()
    assert "runs/tiny_smoke/final.pt" in capsys.readouterr().out


def test_train_errors_name_the_key(tmp_path, config_file, capsys):
    argv = ["train", "--config", str(config_file), "--out", str(tmp_path / "x"), "--smoke"]
    assert main([*argv, "--set", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "phenossl train: error: optim.lrr: unknown key" in err
    assert "tiny.yaml" in err
    assert main([*argv, "--set", "optim.lr"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
