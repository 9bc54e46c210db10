"""The shipped cell model: stored in the package, safe to load, the default, cropped as trained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import phenossl
from phenossl.models.pretrained import (
    DEFAULT_MODEL,
    REQUIRED_KEYS,
    available_pretrained,
    expected_sizes,
    export_pretrained,
    load_pretrained,
    model_crop_size,
    pretrained_metadata,
    pretrained_path,
)
from phenossl.training.train.config import TrainConfig, load_config

RECIPE = Path(__file__).resolve().parents[1] / "training" / "phenossl_cells.yaml"


def test_the_cell_model_is_installed_small_and_loads_without_unpickling():
    assert DEFAULT_MODEL == "phenossl-cells"
    assert "phenossl-cells" in available_pretrained()
    path = pretrained_path("phenossl-cells")
    assert path.stat().st_size < 25 * 2**20
    data = torch.load(path, map_location="cpu", weights_only=True)
    weights = data["backbone"]
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}
    meta = data["metadata"]
    for key in REQUIRED_KEYS:
        assert meta[key] is not None, key
    assert meta["crop_size"] == 68 and meta["input_size"] == 48
    assert meta["backbone"] == "vgg13_bn" and meta["method"] == "mocov2plus"
    assert meta["composition"] == "fluorescence"
    assert len(meta["plates"]["train"]) == 10 and len(meta["plates"]["held_out"]) == 17
    assert not set(meta["plates"]["train"]) & set(meta["plates"]["held_out"])


def test_the_shipped_weights_come_from_the_documented_recipe():
    # `phenossl train --config training/phenossl_cells.yaml` must reproduce what ships: the
    # same method, backbone, composition, optimiser, schedule and seed (only where the data lives
    # and the run's bookkeeping may differ)
    meta = pretrained_metadata("phenossl-cells")
    shipped, recipe = TrainConfig.from_dict(meta["config"]), load_config(RECIPE)
    assert meta["training_command"] == f"phenossl train --config training/{RECIPE.name}"
    for section in ("model", "method", "augmentation", "optim"):
        assert getattr(shipped, section) == getattr(recipe, section), section
    assert shipped.run.seed == recipe.run.seed and meta["seed"] == recipe.run.seed
    assert (shipped.data.dataset, shipped.data.split) == (recipe.data.dataset, recipe.data.split)
    assert meta["epochs"] == recipe.optim.epochs


def test_embed_by_name_uses_the_shipped_weights_at_their_input_size():
    backbone, meta = load_pretrained("phenossl-cells")
    assert next(backbone.parameters()).dtype == torch.float32
    crops = np.random.default_rng(0).integers(0, 256, (4, 3, 68, 68), dtype=np.uint8)
    features = phenossl.embed(crops, model="phenossl-cells", device="cpu")
    assert features.shape == (4, backbone.feature_dim) and features.dtype == np.float32
    resized = torch.nn.functional.interpolate(
        torch.from_numpy(crops).float() / 255, size=(48, 48), mode="bilinear", antialias=True
    )
    mean = torch.tensor(meta["input_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["input_std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = backbone((resized - mean) / std).numpy()
    # it records embedding_norm "l2": unit-length embeddings unless asked otherwise
    assert meta["embedding_norm"] == backbone.embedding_norm == "l2"
    unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(features, unit, rtol=1e-4, atol=1e-5)
    raw = phenossl.embed(crops, model="phenossl-cells", device="cpu", normalize="none")
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-4)
    # a different random init gives different features: the weights are really loaded
    random = phenossl.embed(crops, model="vgg13_bn", device="cpu", input_size=48)
    assert not np.allclose(features, random, atol=1e-2)


def test_crops_are_cut_at_the_size_the_model_expects():
    from phenossl.pipeline import PipelineOptions, resolve_crop_size

    assert model_crop_size("phenossl-cells") == 68
    assert expected_sizes("phenossl-cells", 196) == (68, 48)
    assert expected_sizes("vgg13_bn", 196) == (196, 196)
    assert model_crop_size("vgg13_bn") is None
    assert PipelineOptions().crop_size is None
    assert resolve_crop_size(None, "phenossl-cells") == 68
    assert resolve_crop_size(None, "vgg13_bn") == 196
    assert resolve_crop_size(100, "phenossl-cells") == 100
    assert pretrained_metadata("phenossl-cells")["name"] == "phenossl-cells"


def test_phenossl_embed_defaults_to_the_shipped_model():
    from phenossl.cli import build_parser

    args = build_parser().parse_args(["embed", "crops", "--out", "e.npz"])
    assert args.model == "phenossl-cells"


def test_unknown_names_and_incomplete_exports_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown pretrained model 'nope'"):
        pretrained_path("nope")
    with pytest.raises(ValueError, match="phenossl-cells"):
        phenossl.embed(np.zeros((1, 3, 68, 68), np.uint8), model="nope", device="cpu")
    with pytest.raises(ValueError, match="weights applies"):
        phenossl.embed(
            np.zeros((1, 3, 68, 68), np.uint8),
            model="phenossl-cells",
            weights="imagenet",
            device="cpu",
        )
    with pytest.raises(ValueError, match="lacks"):
        export_pretrained(pretrained_path("phenossl-cells"), tmp_path / "x.pt", data="BBBC021")


def test_export_round_trip(tmp_path):
    meta = pretrained_metadata("phenossl-cells")
    keep = {key: meta[key] for key in REQUIRED_KEYS}
    out = export_pretrained(pretrained_path("phenossl-cells"), tmp_path / "copy.pt", **keep)
    a, _ = load_pretrained("phenossl-cells")
    from phenossl.models.checkpoint import load_backbone

    b, meta_b = load_backbone(out)
    assert meta_b["crop_size"] == 68
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x.float(), y.float()), name
