"""Backbones: names, feature dims, stems, channel adaptation, cached ImageNet weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from phenossl.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    available_backbones,
    build_backbone,
)

# the documented feature dimension of every backbone (docs/architecture.md, module docstring)
FEATURE_DIMS = {
    **{f"vgg{d}{bn}": 512 for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "convnext_tiny": 768,
}


def _features(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return backbone.eval()(x)


def test_available_backbones_are_the_documented_ones():
    assert set(available_backbones()) == set(FEATURE_DIMS)


@pytest.mark.parametrize("name", sorted(FEATURE_DIMS))
def test_every_backbone_gives_its_feature_dim_at_32px(name):
    in_channels = 1 if name.endswith(("_bn", "18", "50", "152", "tiny")) else 3
    backbone = build_backbone(name, in_channels=in_channels, seed=0)
    out = _features(backbone, torch.rand(2, in_channels, 32, 32))
    assert out.shape == (2, FEATURE_DIMS[name])
    assert torch.isfinite(out).all()
    assert backbone.feature_dim == FEATURE_DIMS[name]
    assert backbone.name == name
    assert backbone.in_channels == in_channels


@pytest.mark.parametrize(
    ("name", "in_channels"),
    [("vgg11", 1), ("vgg11", 3), ("resnet18", 1), ("resnet18", 3), ("convnext_tiny", 3)],
)
def test_cell_crop_size_196px(name, in_channels):
    backbone = build_backbone(name, in_channels=in_channels, seed=0)
    out = _features(backbone, torch.rand(1, in_channels, 196, 196))
    assert out.shape == (1, FEATURE_DIMS[name])


@pytest.mark.parametrize("name", ["vgg11", "resnet18"])
def test_28px_inputs_work_without_cifar_stem(name):
    out = _features(build_backbone(name, seed=0), torch.rand(2, 3, 28, 28))
    assert out.shape == (2, FEATURE_DIMS[name])


def test_resnet_cifar_stem_keeps_resolution():
    maps = {}
    for stem in (False, True):
        backbone = build_backbone("resnet18", cifar_stem=stem, seed=0)
        backbone.body.layer4.register_forward_hook(lambda m, i, o, s=stem: maps.__setitem__(s, o))
        _features(backbone, torch.rand(1, 3, 32, 32))
    assert maps[False].shape[-2:] == (1, 1)  # stride 32
    assert maps[True].shape[-2:] == (4, 4)  # stride 8
    stem = build_backbone("resnet18", cifar_stem=True, in_channels=1, seed=0).body
    assert (stem.conv1.kernel_size, stem.conv1.stride, stem.conv1.in_channels) == (
        (3, 3),
        (1, 1),
        1,
    )
    assert isinstance(stem.maxpool, nn.Identity)


def test_convnext_needs_cifar_stem_below_32px():
    plain = build_backbone("convnext_tiny", seed=0)
    with pytest.raises(ValueError, match=r"at least 32 px.*cifar_stem=True"):
        _features(plain, torch.rand(1, 3, 28, 28))
    small = build_backbone("convnext_tiny", cifar_stem=True, seed=0)
    assert small.body.features[0][0].stride == (1, 1)
    assert _features(small, torch.rand(2, 3, 28, 28)).shape == (2, 768)


def test_vgg_cifar_stem_changes_nothing():
    a = build_backbone("vgg11_bn", seed=3)
    b = build_backbone("vgg11_bn", cifar_stem=True, seed=3)
    assert b.cifar_stem
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(_features(a, x), _features(b, x), rtol=0, atol=0)


def test_vgg_matches_torchvision_features_then_global_pooling():
    vgg = torchvision.models.vgg  # torchvision's own conv stack, without the big classifier
    reference = vgg.make_layers(vgg.cfgs["A"], batch_norm=True).eval()
    backbone = build_backbone("vgg11_bn")
    backbone.body.features.load_state_dict(reference.state_dict())  # same key layout
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x).mean(dim=(2, 3))
    torch.testing.assert_close(_features(backbone, x), expected)


def test_seed_makes_init_reproducible_and_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    a, b = build_backbone("resnet18", seed=7), build_backbone("resnet18", seed=7)
    c = build_backbone("resnet18", seed=8)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.body.conv1.weight, c.body.conv1.weight)


def test_random_init_input_statistics():
    backbone = build_backbone("vgg11", in_channels=2)
    assert backbone.input_mean == (0.5, 0.5)
    assert backbone.input_std == (0.25, 0.25)
    assert backbone.weights is None


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet19'.*vgg13_bn.*resnet18"):
        build_backbone("resnet19")
    with pytest.raises(ValueError, match="weights='imagenet21k'"):
        build_backbone("resnet18", weights="imagenet21k")
    with pytest.raises(ValueError, match="in_channels=0"):
        build_backbone("resnet18", in_channels=0)
    with pytest.raises(ValueError, match="cifar_stem"):
        build_backbone("resnet18", weights="imagenet", cifar_stem=True)


def test_forward_checks_the_channel_count():
    backbone = build_backbone("resnet18", in_channels=1)
    with pytest.raises(
        ValueError, match=r"expects input \(N, 1, H, W\), got shape \(2, 3, 32, 32\)"
    ):
        backbone(torch.rand(2, 3, 32, 32))


# --- ImageNet weights from the torch hub cache ------------------------------------------------


def _hub_file(torch_home: Path, url: str) -> Path:
    return torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def cached_resnet18(torch_home) -> nn.Module:
    """A torchvision ResNet18 (random, seeded) saved where the ImageNet weights belong."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    path = _hub_file(torch_home, torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    reference.fc = nn.Identity()
    return reference


def test_imagenet_weights_load_from_the_cache(cached_resnet18):
    backbone = build_backbone("resnet18", weights="imagenet")
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        expected = cached_resnet18(x)
    torch.testing.assert_close(_features(backbone, x), expected)
    assert backbone.weights == "imagenet"
    assert backbone.input_mean == IMAGENET_MEAN
    assert backbone.input_std == IMAGENET_STD


def test_imagenet_weights_for_one_channel_sum_the_rgb_filters(cached_resnet18):
    backbone = build_backbone("resnet18", weights="imagenet", in_channels=1)
    grey = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        expected = cached_resnet18(grey.expand(-1, 3, -1, -1))
    torch.testing.assert_close(_features(backbone, grey), expected)
    assert backbone.input_mean == pytest.approx([sum(IMAGENET_MEAN) / 3])


def test_imagenet_weights_for_six_channels_tile_the_rgb_filters(cached_resnet18):
    backbone = build_backbone("resnet18", weights="imagenet", in_channels=6)
    rgb = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        expected = cached_resnet18(rgb)
    # channel c takes filter c mod 3 scaled by 3/6: the RGB image twice gives the RGB response
    torch.testing.assert_close(_features(backbone, torch.cat([rgb, rgb], dim=1)), expected)
    assert backbone.input_std == IMAGENET_STD * 2


def test_imagenet_vgg_ignores_the_classifier_in_the_file(torch_home):
    source = build_backbone("vgg11", seed=1)
    state = {f"features.{k}": v for k, v in source.body.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(3, 3)
    path = _hub_file(torch_home, torchvision.models.VGG11_Weights.IMAGENET1K_V1.url)
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    loaded = build_backbone("vgg11", weights="imagenet")
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(_features(loaded, x), _features(source, x))


def test_missing_imagenet_weights_name_the_path_and_url(torch_home):
    url = torchvision.models.ResNet50_Weights.DEFAULT.url
    expected = _hub_file(torch_home, url)
    with pytest.raises(FileNotFoundError) as info:
        build_backbone("resnet50", weights="imagenet")
    assert str(expected) in str(info.value)
    assert url in str(info.value)
    assert not expected.exists()  # nothing was downloaded


def test_online_users_get_imagenet_weights_downloaded_with_progress(torch_home, monkeypatch):
    """Downloads on (PHENOSSL_OFFLINE unset): torchvision's downloader fetches the file once."""
    url = torchvision.models.VGG11_Weights.DEFAULT.url
    expected = _hub_file(torch_home, url)
    source = torchvision.models.vgg11()
    calls = []

    def fake_download(got_url, dst, progress):
        calls.append((got_url, Path(dst), progress))
        torch.save(source.state_dict(), dst)

    monkeypatch.delenv("PHENOSSL_OFFLINE")
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    build_backbone("vgg11", weights="imagenet")
    assert calls == [(url, expected, True)]
    build_backbone("vgg11", weights="imagenet")  # cached now: no second download
    assert len(calls) == 1

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(FileNotFoundError, match="could not be downloaded"):
        build_backbone("resnet18", weights="imagenet")


class _Touch:
    """Unpickling this creates a file: proof that arbitrary code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_imagenet_file_is_loaded_with_weights_only(torch_home, tmp_path):
    marker = tmp_path / "unpickled"
    path = _hub_file(torch_home, torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url)
    path.parent.mkdir(parents=True)
    torch.save({"conv1.weight": _Touch(marker)}, path)
    with pytest.raises(ValueError, match="cannot read ImageNet weights"):
        build_backbone("resnet18", weights="imagenet")
    assert not marker.exists()
