"""The CIFAR presets against solo-learn's published recipes; ReSSL's weak view; SimSiam's
zero-initialised residual blocks; the effective learning rate printed and recorded per run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from phenossl.augment import build_augmentation, weak_view
from phenossl.data.datasets import build_dataset, write_cifar_like
from phenossl.models.backbones import build_backbone, zero_init_residual_
from phenossl.ssl.methods import METHODS
from phenossl.ssl.presets import PRESETS
from phenossl.training.train.config import TrainConfig
from phenossl.training.train.optim import LARS, build_optimizer
from phenossl.training.train.trainer import TrainStep, build_method_for, train

# solo-learn's CIFAR scripts, scripts/pretrain/cifar/<method>.sh (argparse era, the line the
# appendix's values come from): optimizer, lr per 256 images, weight decay, batch, LARS eta,
# --grad_clip_lars, --exclude_bias_n_norm (None: plain SGD), --zero_init_residual.
SOLO_LEARN_CIFAR = {
    "barlow_twins": ("lars", 0.3, 1e-4, 256, 0.02, True, True, False),
    "byol": ("lars", 1.0, 1e-5, 256, 0.02, True, True, False),
    "deepclusterv2": ("lars", 0.6, 1e-6, 256, 0.02, True, False, False),
    "dino": ("lars", 0.3, 1e-6, 256, 0.02, True, True, False),
    "mocov2plus": ("sgd", 0.3, 1e-4, 256, None, None, None, False),
    "nnbyol": ("lars", 1.0, 1e-5, 256, 0.02, True, True, False),
    "nnclr": ("lars", 0.4, 1e-5, 256, 0.02, True, True, False),
    "ressl": ("sgd", 0.05, 1e-4, 256, None, None, None, False),
    "simclr": ("lars", 0.4, 1e-5, 256, 0.02, True, True, False),
    "simsiam": ("sgd", 0.5, 1e-5, 256, None, None, None, True),
    "swav": ("lars", 0.6, 1e-6, 256, 0.02, True, False, False),
    "vibcreg": ("lars", 0.3, 1e-4, 256, 0.02, True, True, False),
    "vicreg": ("lars", 0.3, 1e-4, 256, 0.02, True, True, False),
}
# where the appendix (B.1) states another value, the preset keeps the appendix's
APPENDIX_WINS = {("dino", "weight_decay"): 1e-4}
APPENDIX_BATCH = {"dino": 256, "vicreg": 256}  # the others: 512


def test_the_table_covers_every_method():
    assert set(SOLO_LEARN_CIFAR) == set(METHODS)
    lars = [m for m, row in SOLO_LEARN_CIFAR.items() if row[0] == "lars"]
    assert len(lars) == 10
    assert {m for m in METHODS if m not in lars} == {"mocov2plus", "ressl", "simsiam"}


@pytest.mark.parametrize("name", sorted(SOLO_LEARN_CIFAR))
def test_cifar_preset_matches_solo_learns_recipe(name):
    optimizer, lr, wd, solo_batch, eta, clip, exclude, zero_init = SOLO_LEARN_CIFAR[name]
    preset = PRESETS[name]
    assert preset.optimizer == optimizer
    assert preset.lr == lr
    assert preset.weight_decay == APPENDIX_WINS.get((name, "weight_decay"), wd)
    assert preset.momentum == 0.9
    assert preset.zero_init_residual is zero_init
    # solo-learn's lr is per `solo_batch` images, scaled linearly to the appendix's batch
    assert preset.batch_size == APPENDIX_BATCH.get(name, 512)
    assert preset.lr_scaling == "linear"
    assert preset.effective_lr() == pytest.approx(lr * preset.batch_size / solo_batch)
    if optimizer == "lars":
        assert (preset.lars_eta, preset.lars_clip_lr) == (eta, clip)
        assert preset.lars_exclude_bias_n_norm is exclude
    assert f"scripts/pretrain/cifar/{name}.sh" in preset.source
    assert f"Optimizer {optimizer.upper()}" in preset.source


@pytest.mark.parametrize("name", ["byol", "swav", "ressl"])
def test_the_config_and_optimiser_follow_the_preset(name):
    config = TrainConfig.from_dict({"model": {"backbone": "vgg11_bn"}, "method": {"name": name}})
    optimizer, _, _, _, eta, clip, exclude, _ = SOLO_LEARN_CIFAR[name]
    assert config.optim.optimizer == optimizer
    method = build_method_for(config, build_dataset("cifar10", _tiny_cifar(), limit=8))
    built = build_optimizer(method.parameter_groups(), config.optim)
    group = built.param_groups[0]
    assert group["lr"] == pytest.approx(config.optim.effective_lr())
    if optimizer == "lars":
        assert isinstance(built, LARS)
        assert (group["eta"], group["clip_lr"], group["exclude_bias_n_norm"]) == (
            eta,
            clip,
            exclude,
        )
    else:
        assert type(built) is torch.optim.SGD


def _tiny_cifar(root: list[Path] = []) -> Path:  # noqa: B006 - a cache across the module
    if not root:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="phenossl_recipes_"))
        write_cifar_like(path, n_train=32, n_test=16, seed=0)
        root.append(path)
    return root[0]


# --- ReSSL's weak view ---------------------------------------------------------------------------


def _coloured_batch(n: int = 16, size: int = 32) -> torch.Tensor:
    """Images that are one colour each, with a bright square off centre (crops and flips show)."""
    g = torch.Generator().manual_seed(0)
    colours = torch.rand(n, 3, 1, 1, generator=g) * 0.6 + 0.2
    x = colours.expand(n, 3, size, size).clone()
    x[:, :, 4:12, 4:12] = 1.0
    return x


def test_weak_view_keeps_crop_and_flip_and_drops_every_colour_step():
    strong = build_augmentation("cifar", hue=0.5, hue_p=1.0, jitter_p=1.0, gray_p=1.0)
    weak = weak_view(strong)
    assert weak.name == "cifar_weak" and weak.size == strong.size
    assert [type(s).__name__ for s in weak.geometry] == ["ResizedCrop", "Flip"]
    assert weak.pixel == ()
    x = _coloured_batch()
    torch.manual_seed(1)
    out = weak(x)
    # no colour change: every output pixel is a blend of its own image's two colours
    colours = x[:, :, 0, 0]
    for i in range(len(x)):
        background = (out[i] - colours[i][:, None, None]).abs().amax(0) < 1e-4
        square = (out[i] - 1.0).abs().amax(0) < 1e-4
        mixed = ~(background | square)
        # interpolated edge pixels lie on the segment between the two colours
        t = (out[i][:, mixed] - colours[i][:, None]) / (1.0 - colours[i][:, None])
        assert torch.allclose(t, t[:1].expand_as(t), atol=1e-3)
    assert not torch.allclose(strong(x)[:, :, 0, 0].std(1), colours.std(1), atol=1e-2)
    # the same geometry as the strong view: same crops and flips for the same random draws
    torch.manual_seed(2)
    geometric = weak(x)
    torch.manual_seed(2)
    plain = build_augmentation(
        "cifar", jitter_p=0.0, hue_p=0.0, gray_p=0.0, solarize_p=0.0, brightness=0.0
    )(x)
    torch.testing.assert_close(geometric, plain)


def test_weak_view_of_other_compositions_is_crop_and_flip_only():
    digit = weak_view(build_augmentation("mnist_digit"))
    assert [type(s).__name__ for s in digit.geometry] == ["ResizedCrop"]  # no pad, no rotation
    hand = weak_view(build_augmentation("mnist_handwriting"))
    assert [type(s).__name__ for s in hand.geometry] == ["Flip", "Flip", "ResizedCrop"]
    assert hand.pixel == () and digit.pixel == ()


@pytest.mark.parametrize(("name", "weak"), [("ressl", (1,)), ("simclr", ()), ("mocov2plus", ())])
def test_the_method_chooses_which_views_are_weak(name, weak):
    assert METHODS[name].weak_views == weak
    config = TrainConfig.from_dict(
        {
            "data": {"dataset": "cifar10", "root": str(_tiny_cifar())},
            "model": {"backbone": "vgg11_bn"},
            "method": {"name": name},
            "augmentation": [{"name": "cifar", "hue": 0.5, "hue_p": 1.0, "gray_p": 0.0}],
            "optim": {"batch_size": 8, "epochs": 1},
            "run": {"device": "cpu"},
        }
    )
    method = build_method_for(config, build_dataset("cifar10", _tiny_cifar(), limit=8))
    strong = build_augmentation("cifar", hue=0.5, hue_p=1.0, gray_p=0.0)
    step = TrainStep(
        method,
        build_optimizer(method.parameter_groups(), config.optim),
        [(strong, 1.0)],
        [0.5, 0.5, 0.5],
        [0.25, 0.25, 0.25],
        config,
        device=torch.device("cpu"),
        total_steps=1,
        warmup_steps=0,
    )
    ((first, second),) = step.view_augmentations
    assert first is strong
    assert (second.name == "cifar_weak") == (1 in weak)
    images = (_coloured_batch(8) * 255).round().to(torch.uint8)
    torch.manual_seed(0)
    (pair,) = step.views(images)
    colours = images[:, :, 0, 0].float() / 255
    corner = [v[:, :, 0, 0] * 0.25 + 0.5 for v in pair]  # undo the normalisation
    hue_free = [(c - colours).abs().amax().item() < 1e-3 for c in corner]
    # the weak view can only crop/flip: a corner pixel keeps its colour or the square's white
    if 1 in weak:
        white = (corner[1] - 1.0).abs().amax(1) < 1e-3
        own = (corner[1] - colours).abs().amax(1) < 1e-3
        assert bool((white | own).all())
    assert not hue_free[0]  # the strong view shifts the hue of every image


# --- SimSiam: zero-initialised residual blocks -------------------------------------------------


def test_zero_init_residual_zeroes_the_last_bn_of_every_block():
    r18 = build_backbone("resnet18", cifar_stem=True)
    assert zero_init_residual_(r18) == 8
    for block in (m for m in r18.modules() if type(m).__name__ == "BasicBlock"):
        assert torch.count_nonzero(block.bn2.weight) == 0
        assert torch.count_nonzero(block.bn1.weight) > 0
    r50 = build_backbone("resnet50")
    assert zero_init_residual_(r50) == 16
    assert all(
        torch.count_nonzero(m.bn3.weight) == 0
        for m in r50.modules()
        if type(m).__name__ == "Bottleneck"
    )
    vgg = build_backbone("vgg11_bn")
    state = {k: v.clone() for k, v in vgg.state_dict().items()}
    assert zero_init_residual_(vgg) == 0
    assert all(torch.equal(v, vgg.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize(("name", "zeroed"), [("simsiam", True), ("simclr", False)])
def test_simsiam_preset_starts_with_identity_residual_blocks(name, zeroed):
    config = TrainConfig.from_dict(
        {"model": {"backbone": "resnet18", "cifar_stem": True}, "method": {"name": name}}
    )
    assert config.model.zero_init_residual is zeroed
    method = build_method_for(config, build_dataset("cifar10", _tiny_cifar(), limit=8))
    bn2 = [m.bn2.weight for m in method.backbone.modules() if type(m).__name__ == "BasicBlock"]
    assert len(bn2) == 8
    assert all((torch.count_nonzero(w) == 0) == zeroed for w in bn2)
    off = TrainConfig.from_dict(
        {"model": {"zero_init_residual": False}, "method": {"name": "simsiam"}}
    )
    assert off.model.zero_init_residual is False  # the config can still turn it off


# --- the effective learning rate is printed and recorded ---------------------------------------


def test_every_run_records_its_optimiser_first(tmp_path):
    config = TrainConfig.from_dict(
        {
            "data": {"dataset": "cifar10", "root": str(_tiny_cifar()), "limit": 16},
            "model": {"backbone": "vgg11_bn"},
            "method": {"name": "byol", "proj_hidden_dim": 32, "pred_hidden_dim": 32},
            "augmentation": [{"name": "cifar", "size": 16}],
            "optim": {"batch_size": 8, "epochs": 1, "warmup_epochs": 0},
            "run": {"device": "cpu", "log_every": 1},
        }
    )
    train(config, tmp_path / "run")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["kind"] == "start"
    assert (first["optimizer"], first["base_lr"], first["batch_size"]) == ("lars", 1.0, 8)
    assert first["effective_lr"] == pytest.approx(1.0 * 8 / 256)
    assert first["lars_exclude_bias_n_norm"] is True
    assert sum(json.loads(line)["kind"] == "start" for line in lines) == 1
