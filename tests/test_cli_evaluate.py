"""`phenossl evaluate` end to end on a tiny checkpoint and tiny CIFAR-like data."""

from __future__ import annotations

import json

import pytest

from phenossl.cli import main
from phenossl.cli.evaluation import parse_options
from phenossl.data.datasets import write_cifar_like
from phenossl.models.backbones import build_backbone
from phenossl.models.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    write_cifar_like(root, n_train=60, n_test=30, seed=0)
    checkpoint = save_checkpoint(
        root / "model.pt",
        backbone=build_backbone("vgg11_bn", seed=0),
        metadata={"method": "mocov2plus", "epoch": 3, "seed": 5, "input_mean": [0.45] * 3},
    )
    return root, checkpoint


def test_evaluate_all_protocols_end_to_end(setup, capsys):
    root, checkpoint = setup
    out = root / "results" / "eval.json"
    args = ["-q", "evaluate", str(checkpoint), "--dataset", "cifar10", "--data-root", str(root)]
    args += ["--protocol", "all", "--epochs", "2", "--batch-size", "32", "--device", "cpu"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for protocol in ("linear", "knn", "finetune"):
        assert f"{protocol}: top-1 " in printed
    assert "per-class accuracy: mean" in printed
    report = json.loads(out.read_text())
    assert report["checkpoint_metadata"] == {
        "method": "mocov2plus",
        "backbone": "vgg11_bn",
        "epoch": 3,
        "seed": 5,
    }
    assert (report["n_train"], report["n_test"]) == (60, 30)
    assert report["classes"][0] == "airplane"
    assert set(report["protocols"]) == {"linear", "knn", "finetune"}
    for result in report["protocols"].values():
        per_class = result["per_class_accuracy"]
        assert list(per_class) == report["classes"]
        assert 0.0 <= result["top1"] <= 1.0
        confusion = result["confusion_matrix"]
        assert sum(map(sum, confusion)) == 30
        # top-1 and the per-class accuracies come from the same confusion matrix
        assert result["top1"] == pytest.approx(sum(confusion[i][i] for i in range(10)) / 30)
    # colour-coded classes: even random VGG features separate them well above chance (0.1)
    assert report["protocols"]["linear"]["top1"] > 0.5
    assert report["protocols"]["knn"]["top1"] > 0.5
    assert len(report["protocols"]["linear"]["history"]) == 2
    assert len(report["protocols"]["finetune"]["history"]) == 2


def test_evaluate_linear_prints_without_writing(setup, capsys):
    root, checkpoint = setup
    args = ["-q", "evaluate", str(checkpoint), "--dataset", "cifar10", "--data-root", str(root)]
    assert main([*args, "--epochs", "1", "--limit", "20", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("linear: top-1 ")
    assert "knn" not in printed
    assert "results ->" not in printed


def test_evaluate_reports_bad_input(setup, tmp_path, capsys):
    root, checkpoint = setup
    base = ["evaluate", str(checkpoint), "--dataset"]
    assert main([*base, "cifar100", "--data-root", str(root)]) == 2
    assert "cifar-100-python" in capsys.readouterr().err
    assert main([*base, "svhn", "--data-root", str(root)]) == 2
    assert "unknown dataset 'svhn'" in capsys.readouterr().err
    assert main([*base, "cifar10", "--data-root", str(root), "--data-option", "oops"]) == 2
    assert "--data-option 'oops': expected KEY=VALUE" in capsys.readouterr().err
    assert main([*base, "cifar10", "--data-root", str(root), "--data-option", "crop=3"]) == 2
    assert "unknown option(s) ['crop']" in capsys.readouterr().err
    missing = tmp_path / "none.pt"
    assert main(["evaluate", str(missing), "--dataset", "cifar10", "--data-root", str(root)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_evaluate_checks_channels(setup, tmp_path, capsys):
    root, _ = setup
    grey = save_checkpoint(
        tmp_path / "grey.pt", backbone=build_backbone("vgg11", in_channels=1), metadata={}
    )
    assert main(["evaluate", str(grey), "--dataset", "cifar10", "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "backbone takes 1 channel(s) but 'cifar10' images have 3" in err


def test_parse_options():
    assert parse_options(["label_column=treatment", "limit=5", "x=0.5", "y=None"]) == {
        "label_column": "treatment",
        "limit": 5,
        "x": 0.5,
        "y": None,
    }
