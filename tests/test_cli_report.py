"""`phenossl report`: from a result store to the paper's tables and figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _results import backbone_frame, sweep_frame
from PIL import Image

from phenossl.cli import main
from phenossl.training.analysis.report import ARTEFACTS

TRAINING = Path(__file__).resolve().parents[1] / "training"


def _present(row: pd.Series, prefix: str) -> dict:
    """``{name: value}`` of a row's ``<prefix><name>`` cells that hold something."""
    return {
        c[len(prefix) :]: v
        for c, v in row.items()
        if c.startswith(prefix) and (isinstance(v, list | np.ndarray) or not pd.isna(v))
    }


def fill_store(path: Path, frame: pd.DataFrame) -> Path:
    """Record every run of a store-shaped frame as done in a real result store."""
    from phenossl.training.sweep.store import ResultStore

    with ResultStore(path) as store:
        store.add_runs(
            (
                row["run_id"],
                row["experiment"],
                {
                    "method": row["method"],
                    "seed": int(row["seed"]),
                    "params": _present(row, "param."),
                },
            )
            for _, row in frame.iterrows()
        )
        for _, row in frame.iterrows():
            record = store.claim()
            assert record is not None and record.run_id == row["run_id"]
            names = _present(row, "class_names.")
            per_class = {
                protocol: {"class_names": list(names[protocol]), "accuracy": list(accuracy)}
                for protocol, accuracy in _present(row, "per_class.").items()
            }
            store.finish(row["run_id"], metrics=_present(row, "metric."), per_class=per_class)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    slopes = np.zeros(10)
    slopes[0] = 0.8
    hue = sweep_frame(methods=("simclr", "byol"), seeds=(5, 6), slopes=slopes)
    frame = pd.concat([hue, backbone_frame(seeds=(0,))], ignore_index=True)
    return fill_store(tmp_path_factory.mktemp("cli_report") / "store", frame)


def test_report_writes_the_index_and_the_tables(store, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["-q", "report", str(store), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "output(s) made" in printed and str(out / "index.md") in printed
    index = (out / "index.md").read_text()
    assert "experiments: backbone_size, hue_sweep" in index
    table2 = pd.read_csv(out / "table2__hue_sweep__hue.csv")
    assert sorted(table2["method"]) == ["byol", "simclr"]
    bias = pd.read_csv(out / "bias__hue_sweep__hue__linear.csv")
    assert bias.loc[bias["class"] == "airplane", "trend"].eq("ascending").all()
    assert (out / "fig_ami_backbone__backbone_size.png").stat().st_size > 0


def test_report_one_experiment_with_bh_and_spearman(store, tmp_path):
    out = tmp_path / "report"
    argv = ["-q", "report", str(store), "--out", str(out), "--experiment", "hue_sweep"]
    assert main([*argv, "--correction", "bh", "--test", "spearman", "--top-classes", "2"]) == 0
    assert "experiments: hue_sweep;" in (out / "index.md").read_text()
    assert not (out / "ami__backbone_size.csv").exists()
    bias = pd.read_csv(out / "bias__hue_sweep__hue__linear.csv")
    assert (bias["coefficient"] == bias["spearman_rho"]).all()
    assert (bias["p"] >= bias["spearman_p"] - 1e-12).all()


def test_report_errors_name_the_problem(store, tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "no such result store folder" in capsys.readouterr().err
    argv = ["report", str(store), "--out", str(tmp_path / "o"), "--experiment", "table9"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "table9" in err and "'backbone_size', 'hue_sweep'" in err
    empty = fill_store(tmp_path / "empty", sweep_frame().iloc[:0])
    assert main(["report", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "holds no finished run" in capsys.readouterr().err
    assert main(["report", str(store), "--out", str(tmp_path / "o"), "--alpha", "2"]) == 2
    assert "alpha=2.0" in capsys.readouterr().err


def test_report_is_listed_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "report" in capsys.readouterr().out


# --- end to end: real (smoke-sized) sweeps --------------------------------------------------------


def _tiny_settings(cifar_root: Path) -> dict:
    """A CIFAR run in seconds: 32 images of 16 px, one epoch, a tiny linear probe."""
    return {
        "train.data.root": str(cifar_root),
        "train.data.limit": 32,
        "train.optim.batch_size": 16,
        "train.optim.epochs": 1,
        "train.augmentation.0.size": 16,
        "train.run.eval.knn": False,
        "train.run.device": "cpu",
        "evaluate.linear.epochs": 2,
        "evaluate.data.train_limit": 64,
        "evaluate.data.test_limit": 64,
        "evaluate.device": "cpu",
    }


def _tiny_cropset(path: Path) -> Path:
    from phenossl.data.cropset import CropSetWriter

    rng = np.random.default_rng(0)
    rows = [("nocodazole", c) for c in (1.0, 3.0) for _ in range(6)] + [("DMSO", 0.0)] * 14
    table = pd.DataFrame(rows, columns=["compound", "concentration"])
    table["treatment"] = [f"{c}@{x:g}" for c, x in rows]
    level = np.where(table["compound"] == "DMSO", 40, 200)[:, None, None, None]
    images = np.clip(level + rng.normal(0, 20, (len(table), 3, 32, 32)), 0, 255)
    with CropSetWriter(path, size=32) as writer:
        writer.add(images.astype(np.uint8), table)
    return path


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory) -> Path:
    """A store filled by real sweeps: a hue sweep (2 methods x 3 values, linear and
    fine-tuning), a backbone grid with clustering, and the backbone-size study's smoke run."""
    import torch

    from phenossl.data.cifar import write_cifar_like
    from phenossl.training.sweep.config import load_sweep
    from phenossl.training.sweep.runner import sweep

    root = tmp_path_factory.mktemp("smoke")
    cifar = root / "cifar"
    write_cifar_like(cifar, n_train=128, n_test=64, seed=0)
    store = root / "store"
    tiny = _tiny_settings(cifar)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hue = {
            "experiment": "tiny_hue",
            "train": str(TRAINING / "cifar10_{method}.yaml"),
            "methods": ["simclr", "byol"],
            "grid": {
                "hue": {"values": [0.0, 0.25, 0.5], "set": {"train.augmentation.0.hue": "{value}"}}
            },
            "seeds": [5],
            "set": {**tiny, "train.model.backbone": "vgg11"},
            "evaluate": {"linear": {}, "finetune": {"epochs": 1, "batch_size": 16}},
        }
        backbones = {
            "experiment": "tiny_backbones",
            "train": str(TRAINING / "cifar10_{method}.yaml"),
            "methods": ["simclr"],
            "grid": {
                "backbone": {
                    "levels": {
                        "vgg11": {"train.model.backbone": "vgg11"},
                        "resnet18": {
                            "train.model.backbone": "resnet18",
                            "train.model.cifar_stem": True,
                        },
                    }
                }
            },
            "seeds": [5],
            "set": tiny,
            "evaluate": {"linear": {}, "cluster": {"k": 10, "n_nearest": 4}},
        }
        for config in (hue, backbones):
            assert sweep(load_sweep(config), store).complete
        crops = _tiny_cropset(root / "crops")
        study = load_sweep(
            TRAINING / "backbone_size.yaml",
            smoke=True,
            overrides={"embed.cropset": str(crops), "embed.input_size": 32, "embed.device": "cpu"},
        )
        assert sweep(study, store).complete
    finally:
        torch.set_num_threads(threads)
    return store


@pytest.mark.slow
def test_every_table_and_figure_from_a_real_smoke_store(smoke_store, tmp_path):
    out = tmp_path / "report"
    assert main(["-q", "report", str(smoke_store), "--out", str(out)]) == 0
    index = (out / "index.md").read_text()
    made = index.split("## Made")[1].split("## Skipped")[0]
    for artefact in ARTEFACTS:
        assert f"**{artefact}**" in made, f"{artefact} was not made"
    pngs = sorted(out.glob("*.png"))
    assert {p.name.split("__")[0] for p in pngs} == {
        "fig_accuracy",
        "fig_classes",
        "fig_ami_backbone",
        "fig_exemplars",
    }
    for png in pngs:
        with Image.open(png) as image:
            assert np.asarray(image.convert("L")).std() > 5, png.name
    table1 = pd.read_csv(out / "table1__tiny_hue__hue.csv")
    assert sorted(table1["method"]) == ["byol", "simclr"] and (table1["classes"] == 10).all()
    table2 = pd.read_csv(out / "table2__tiny_hue__hue.csv").set_index("method")
    assert table2.loc["simclr", "n_runs"] == 3 and table2.loc["simclr", "solo_learn"] == 90.74
    table3 = pd.read_csv(out / "table3.csv").set_index("classes biased")
    assert table3.loc["methods", "tiny_hue: hue"] == 2
    table4 = pd.read_csv(out / "table4__tiny_backbones.csv")
    assert list(table4["backbone"]) == ["vgg11", "resnet18"]
    assert table4["mean"].between(0, 100).all()
    ami = pd.read_csv(out / "ami__backbone_size.csv")
    assert len(ami) == 4 and (ami["ami_mean"] > ami["control_mean"]).all()
