"""The experiment configs in training/: every file loads in both scales, with the paper's grids."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from phenossl.training.sweep.config import is_sweep_config, load_sweep
from phenossl.training.train.config import load_config

TRAINING = Path(__file__).resolve().parents[1] / "training"
CONFIGS = sorted(TRAINING.glob("*.yaml"))
SWEEPS = [p for p in CONFIGS if is_sweep_config(p)]
CIFAR_5 = {"barlow_twins", "byol", "mocov2plus", "simclr", "vicreg"}


@functools.cache
def _sweep(name: str, smoke: bool = False):
    """The loaded config and its resolved runs (cached: the big grids take seconds)."""
    sweep = load_sweep(TRAINING / name, smoke=smoke)
    return sweep, list(sweep.runs())


def _runs(name: str, smoke: bool = False, **kwargs):
    if kwargs:
        return list(load_sweep(TRAINING / name, smoke=smoke, **kwargs).runs())
    return _sweep(name, smoke)[1]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
@pytest.mark.parametrize("smoke", [False, True], ids=["full", "smoke"])
def test_every_config_loads(path: Path, smoke: bool):
    if not is_sweep_config(path):
        config = load_config(path, smoke=smoke)
        assert config.optim.epochs >= 1
        return
    sweep, runs = _sweep(path.name, smoke)
    ids = [r.run_id for r in runs]
    assert len(runs) == sweep.n_runs == len(set(ids))
    assert ids == sweep.run_ids()
    assert all(
        i.startswith(f"{sweep.experiment}/") and i.endswith(f"seed={r.seed}")
        for i, r in zip(ids, runs)
    )
    assert all(r.smoke is smoke for r in runs)
    if smoke:  # minutes on a CPU: a handful of runs, one or two epochs
        assert len(runs) <= 6
        assert all(r.kind == "embed" or r.config["optim"]["epochs"] <= 2 for r in runs)


def test_every_experiment_has_a_sweep_config():
    names = {p.stem for p in SWEEPS}
    assert {
        "table2_hue_probability",
        "table3_hue_intensity",
        "table3_jitter_probability",
        "table3_crop_size",
        "fig1_flip_probability",
        "table1_linear_vs_finetune",
        "imagenet100_hue_intensity",
        "fig4_mnist_clustering",
        "table4_mnist_backbones",
        "bbbc021_cellular_clustering",
        "backbone_size",
    } <= names


def test_readme_lists_every_sweep_with_its_command():
    readme = (TRAINING / "README.md").read_text()
    for path in SWEEPS:
        assert f"phenossl sweep training/{path.name}" in readme, path.name


def test_table2_grid():
    runs = _runs("table2_hue_probability.yaml")
    assert len(runs) == 12 * 20 * 5
    assert {r.method for r in runs} == {
        "barlow_twins", "byol", "deepclusterv2", "mocov2plus", "nnbyol", "nnclr",
        "ressl", "simclr", "simsiam", "swav", "vibcreg", "vicreg",
    }  # fmt: skip
    hue_p = sorted({r.params["hue_p"] for r in runs})
    np.testing.assert_allclose(hue_p, np.linspace(0, 1, 20))
    assert {r.seed for r in runs} == {5, 6, 7, 8, 9}
    first = runs[0]
    assert first.dataset == "cifar10" and first.backbone == "resnet18"
    aug = first.config["augmentation"][0]
    assert (aug["name"], aug["hue"], aug["hue_p"]) == ("cifar", 0.5, first.params["hue_p"])
    assert first.config["optim"]["epochs"] == 1000 and first.config["run"]["seed"] == first.seed
    assert first.evaluate["linear"]["epochs"] == 100
    # the run id of the contract's example
    assert "table2_hue_p/simclr/hue_p=0.263/seed=5" in {r.run_id for r in runs}
    # DINO is available on request
    dino = _runs("table2_hue_probability.yaml", methods=["dino"], seeds=[5])
    assert len(dino) == 20 and dino[0].config["method"]["name"] == "dino"


@pytest.mark.parametrize(
    ("name", "axis", "values", "check"),
    [
        ("table3_hue_intensity.yaml", "hue", np.linspace(0, 0.5, 10),
         lambda aug, v: aug["hue"] == v and aug["hue_p"] == 0.8),
        ("table3_jitter_probability.yaml", "jitter_p", np.linspace(0, 1, 20),
         lambda aug, v: aug["jitter_p"] == aug["hue_p"] == v and aug["hue"] == 0.1),
        ("table3_crop_size.yaml", "crop_min_scale", np.linspace(0.2, 1, 8),
         lambda aug, v: list(aug["crop_scale"]) == [v, 1.0]),
        ("fig1_flip_probability.yaml", "flip_p", np.linspace(0, 1, 20),
         lambda aug, v: aug["flip_p"] == v),
        ("table1_linear_vs_finetune.yaml", "hue", np.linspace(0, 0.5, 10),
         lambda aug, v: aug["hue"] == v and aug["hue_p"] == 0.8),
    ],
)  # fmt: skip
def test_cifar100_sweeps(name, axis, values, check):
    runs = _runs(name)
    methods = {r.method for r in runs}
    assert methods == ({"simclr", "byol", "vicreg"} if name.startswith("table1") else CIFAR_5)
    assert len(runs) == len(methods) * len(values) * 5
    np.testing.assert_allclose(sorted({r.params[axis] for r in runs}), values)
    for r in runs:
        assert r.dataset == "cifar100" and r.config["data"]["root"] == "data/cifar100"
        assert check(r.config["augmentation"][0], r.params[axis]), r.run_id
    if name.startswith("table1"):
        assert runs[0].evaluate["linear"] and runs[0].evaluate["finetune"]


def test_imagenet100_grid():
    runs = _runs("imagenet100_hue_intensity.yaml")
    assert {r.method for r in runs} == {"byol", "mocov2plus", "vicreg", "simclr"}
    assert {r.backbone for r in runs} == {"resnet18", "resnet50", "convnext_tiny"}
    assert {r.seed for r in runs} == {5, 6, 7}
    byol = next(r for r in runs if r.method == "byol")
    optim = byol.config["optim"]
    assert (optim["batch_size"], optim["epochs"], optim["lr"]) == (128, 400, 0.45)
    assert byol.dataset == "imagenet100" and not byol.config["model"]["cifar_stem"]


def test_mnist_grids():
    runs = _runs("fig4_mnist_clustering.yaml")
    assert [r.params["composition"] for r in runs] == ["digit", "handwriting"]
    assert [r.config["augmentation"][0]["name"] for r in runs] == [
        "mnist_digit",
        "mnist_handwriting",
    ]
    for r in runs:
        assert r.backbone == "vgg11_bn" and r.method == "mocov2plus"
        assert r.config["method"]["queue_size"] == 1024 and r.config["optim"]["epochs"] == 250
        assert r.evaluate["cluster"][0]["k"] == 10
    table4 = _runs("table4_mnist_backbones.yaml")
    assert {(r.method, r.backbone) for r in table4} == {
        (m, b) for m in ("mocov2plus", "byol") for b in ("vgg11_bn", "resnet18", "convnext_tiny")
    }
    byol = next(r for r in table4 if r.method == "byol")
    assert byol.config["optim"]["lr"] == 0.01 and byol.config["method"]["proj_output_dim"] == 256


def test_bbbc021_and_backbone_size_grids():
    runs = _runs("bbbc021_cellular_clustering.yaml")
    assert len(runs) == 3 * 3
    lossmix = next(r for r in runs if r.params["augmentation"] == "lossmix")
    assert [a["weight"] for a in lossmix.config["augmentation"]] == [0.4, 1.0]
    rot = next(r for r in runs if r.params["augmentation"] == "affine_rot360")
    assert rot.config["augmentation"][0]["name"] == "cell_affine_rot360"
    assert {r.config["data"]["root"] for r in runs} == {
        f"data/crops/{s}_dmso" for s in ("nocodazole", "taxol", "cytochalasin_b")
    }
    assert [(c["k"], c["label_column"]) for c in runs[0].evaluate["cluster"]] == [
        (2, "is_treated"),
        (4, "treatment"),
    ]
    sizes = _runs("backbone_size.yaml")
    assert {r.kind for r in sizes} == {"embed"}
    assert {r.backbone for r in sizes} == {
        *(f"resnet{d}" for d in (18, 34, 50, 101, 152)),
        *(f"vgg{d}" for d in (11, 13, 16, 19)),
    }
    assert {r.config["weights"] for r in sizes} == {"imagenet"}
    assert {r.config["weights"] for r in _runs("backbone_size.yaml", smoke=True)} == {"random"}
