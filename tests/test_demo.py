from __future__ import annotations

import json

import pytest

from phenossl._progress import run
from phenossl.demo import iter_demo


def test_demo_reports_random_init_the_shipped_model_and_its_fine_tune(tmp_path):
    """A fast variant (random-init ResNet18 at 32 px, a one-epoch fine-tune): every stage, all
    three reports, on the test split, with crops cut at the shipped model's 68 px."""
    from phenossl.data.cropset import CropSet
    from phenossl.models.checkpoint import load_checkpoint

    events = []
    out = tmp_path / "demo"
    report = run(
        iter_demo(out, model="resnet18", input_size=32, seed=1, train_epochs=1), events.append
    )
    on_disk = json.loads((out / "report" / "report.json").read_text())
    assert on_disk["ami"] == pytest.approx(report["ami"])
    crops = CropSet(out / "crops")
    assert crops.size == 68 and on_disk["crop_size"] == 68
    n_test = int((crops.table["split"] == "test").sum())
    assert report["n_cells"] == n_test and report["split"] == "test"
    assert report["label_column"] == "compound"
    assert list(report["models"]) == ["random", "shipped", "trained"]
    random_init = json.loads((out / "report_random" / "report.json").read_text())
    shipped = json.loads((out / "report_shipped" / "report.json").read_text())
    assert report["models"]["random"]["ami"] == pytest.approx(random_init["ami"])
    assert report["models"]["shipped"]["ami"] == pytest.approx(shipped["ami"])
    assert random_init["weights"] == "random" and shipped["weights"] == "phenossl-cells"
    assert random_init["input_size"] == 32
    assert shipped["input_size"] == 48 and shipped["crop_size"] == 68
    for r in (report, random_init, shipped):
        assert r["n_cells"] == n_test
        assert 0 <= r["ami"] <= 1
        assert r["ami_control_mean"] < 0.05
    assert set(on_disk["timings"]) == {
        "plate_s", "cells_s", "embed_random_s", "cluster_random_s", "embed_shipped_s",
        "cluster_shipped_s", "train_s", "embed_trained_s", "cluster_trained_s",
    }  # fmt: skip
    checkpoint = load_checkpoint(out / "run" / "final.pt")
    config = checkpoint["metadata"]["config"]
    assert checkpoint["metadata"]["method"] == "mocov2plus"
    assert config["model"] == {**config["model"], "backbone": "vgg13_bn", "init": "phenossl-cells"}
    assert config["augmentation"][0]["name"] == "fluorescence"
    assert on_disk["model"] == str(out / "run" / "final.pt")
    for folder in ("report", "report_random", "report_shipped"):
        assert (out / folder / "montage.png").is_file()
        assert (out / folder / "composition.csv").is_file()
    dones = [e.done for e in events]
    assert dones == sorted(dones) and dones[-1] == events[-1].total
    assert any(e.message.startswith("train") for e in events)


def test_demo_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        run(iter_demo(tmp_path))


@pytest.mark.slow
def test_the_readme_demo_command(tmp_path, capsys):
    """`phenossl demo` exactly as the README runs it (random init, phenossl-cells, fine-tune)."""
    from phenossl.cli import main

    assert main(["-q", "demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "random-init vgg13_bn " in out and "AMI (compound, K=2" in out
    assert "\nphenossl-cells " in out
    assert "phenossl-cells fine-tuned (3 epochs on the training split)  AMI" in out
    assert out.count("randomised-label control") == 3
    report = json.loads((tmp_path / "demo" / "report" / "report.json").read_text())
    models = report["models"]
    for r in models.values():
        assert r["ami"] > r["ami_control_mean"] + 10 * max(r["ami_control_std"], 1e-3)
    # on 68-px single-cell crops the trained features beat the random ones (README: 0.170,
    # 0.208, 0.322)
    assert models["shipped"]["ami"] > models["random"]["ami"]
    assert models["trained"]["ami"] > models["random"]["ami"]
