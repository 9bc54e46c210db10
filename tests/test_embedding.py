"""Embedding: input kinds, scaling, batching, progress, errors."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from phenossl import Progress
from phenossl.embedding import embed, iter_embed
from phenossl.models.backbones import build_backbone
from phenossl.models.checkpoint import save_checkpoint


class FakeCropSet:
    """The CropSet protocol: ``len`` and ``iter_batches`` yielding read-only uint8 batches."""

    def __init__(self, images: np.ndarray) -> None:
        self._images = images

    def __len__(self) -> int:
        return len(self._images)

    def iter_batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            batch = self._images[start : start + batch_size]
            batch.flags.writeable = False  # like numpy.load(mmap_mode="r")
            yield batch


class ChannelMeans(nn.Module):
    """Features = the per-channel mean of the (scaled) input: makes the scaling visible."""

    def __init__(self, **attributes) -> None:
        super().__init__()
        self.__dict__.update(attributes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (10, 3, 20, 20), dtype=np.uint8)


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return build_backbone("resnet18", seed=0)


@pytest.fixture(scope="module")
def expected(crops, resnet) -> np.ndarray:
    """Direct computation: (x / 255 - 0.5) / 0.25 through the model in eval mode."""
    x = (torch.from_numpy(crops).float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        return resnet.eval()(x).numpy()


def test_array_gives_the_direct_computation(crops, resnet, expected):
    out = embed(crops, resnet, device="cpu", batch_size=4)
    assert out.dtype == np.float32
    assert out.shape == (10, 512)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("native", [True, False])
def test_cpu_amp_embeds_in_bf16_only_on_cpus_that_have_it(monkeypatch, crops, resnet, native):
    import phenossl._device
    from phenossl.embedding import Embedder

    monkeypatch.setattr(phenossl._device, "cpu_has_native_bf16", lambda: native)
    seen = []
    hook = resnet.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    try:
        plain = embed(crops, resnet, device="cpu", batch_size=4)
        fast = embed(crops, resnet, device="cpu", batch_size=4, cpu_amp=True)
        streamed = Embedder(resnet, device="cpu", batch_size=4, cpu_amp=True)(crops)
    finally:
        hook.remove()
    assert fast.dtype == np.float32 and fast.shape == plain.shape
    np.testing.assert_array_equal(streamed, fast)
    low = torch.bfloat16 if native else torch.float32
    assert seen == [torch.float32] * 3 + [low] * 6  # 3 batches each
    if native:
        cosine = (
            (fast * plain).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(plain, axis=1)
        )
        assert cosine.min() > 0.99 and not np.array_equal(fast, plain)
    else:
        np.testing.assert_array_equal(fast, plain)


@pytest.mark.parametrize("kind", ["tensor", "list", "iterator", "cropset", "crops", "float"])
def test_every_input_kind_gives_the_same_result(crops, resnet, expected, kind):
    source = {
        "tensor": lambda: torch.from_numpy(crops),
        "list": lambda: [crops[:3], crops[3:4], crops[4:]],
        "iterator": lambda: iter([crops[:6], crops[6:]]),
        "cropset": lambda: FakeCropSet(crops.copy()),
        "crops": lambda: SimpleNamespace(images=crops, table=None, n_dropped=0),
        "float": lambda: crops.astype(np.float64) / 255,
    }[kind]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's warning about non-writable arrays
        out = embed(source, resnet, device="cpu", batch_size=4)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batch_size_does_not_change_the_result(crops, resnet, expected, batch_size):
    out = embed(crops, resnet, device="cpu", batch_size=batch_size)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_outputs_that_are_views_of_the_input_stay_intact(crops):
    flat = nn.Flatten()  # returns a view of the (reused) scaled input
    out = embed(iter([crops[:3], crops[3:]]), flat, device="cpu", batch_size=2)
    expected = ((crops.astype(np.float32) / 255 - 0.5) / 0.25).reshape(len(crops), -1)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_backbone_name_is_built_with_the_seed_and_crop_channels(crops):
    one_channel = crops[:, :1]
    out = embed(one_channel, "resnet18", device="cpu", seed=3)
    x = (torch.from_numpy(one_channel).float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        direct = build_backbone("resnet18", in_channels=1, seed=3).eval()(x).numpy()
    np.testing.assert_allclose(out, direct, rtol=1e-5, atol=1e-5)


def test_scaling_and_channel_order():
    images = np.zeros((1, 3, 4, 4), dtype=np.uint8)
    images[0, 0], images[0, 1], images[0, 2] = 255, 51, 0  # DAPI, Tubulin, Actin
    out = embed(images, ChannelMeans(), device="cpu")  # random-init statistics 0.5 / 0.25
    np.testing.assert_allclose(
        out, [[(1 - 0.5) / 0.25, (0.2 - 0.5) / 0.25, -0.5 / 0.25]], rtol=1e-6
    )
    model = ChannelMeans(input_mean=(0.0, 0.1, 0.2), input_std=(1.0, 0.5, 0.25))
    out = embed(images.astype(np.float32) / 255, model, device="cpu")
    np.testing.assert_allclose(out, [[1.0, (0.2 - 0.1) / 0.5, -0.2 / 0.25]], rtol=1e-6)


def test_checkpoint_path_uses_its_input_statistics(tmp_path, crops):
    backbone = build_backbone("vgg11", seed=2)
    mean, std = [0.1, 0.2, 0.3], [0.2, 0.3, 0.4]
    path = save_checkpoint(
        tmp_path / "vgg.pt", backbone=backbone, metadata={"input_mean": mean, "input_std": std}
    )
    out = embed(crops[:4], str(path), device="cpu")
    x = torch.from_numpy(crops[:4]).float() / 255
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        direct = backbone.eval()(x).numpy()
    np.testing.assert_allclose(out, direct, rtol=1e-5, atol=1e-5)


def test_l2_normalize_scales_each_embedding_alone(crops, resnet, expected):
    out = embed(crops, resnet, device="cpu", normalize="l2")
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    direct = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(out, direct, rtol=1e-4, atol=1e-6)
    # per cell: a cell's embedding does not depend on the others embedded with it
    alone = embed(crops[3:4], resnet, device="cpu", normalize="l2")
    np.testing.assert_allclose(alone[0], out[3], rtol=1e-4, atol=1e-6)
    # "auto" on a module that records nothing and "none" keep the network's output
    for normalize in ("auto", "none"):
        np.testing.assert_allclose(
            embed(crops, resnet, device="cpu", normalize=normalize), expected, rtol=1e-4, atol=1e-5
        )
    # an all-zero embedding stays zero (no division by zero)
    grey = np.full_like(crops[:2], 128)
    zeros = embed(grey, ChannelMeans(input_mean=128 / 255, input_std=1.0), normalize="l2")
    np.testing.assert_array_equal(zeros, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="normalize='cosine'; expected one of auto, none, l2"):
        embed(crops, resnet, device="cpu", normalize="cosine")


def test_auto_normalisation_is_what_the_checkpoint_records(tmp_path, crops):
    backbone = build_backbone("vgg11", seed=2)
    plain = save_checkpoint(tmp_path / "plain.pt", backbone=backbone, metadata={})
    cosine = save_checkpoint(
        tmp_path / "l2.pt", backbone=backbone, metadata={"embedding_norm": "l2"}
    )
    raw = embed(crops[:4], str(plain), device="cpu")
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    unit = embed(crops[:4], str(cosine), device="cpu")
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(embed(crops[:4], str(cosine), device="cpu", normalize="none"), raw)
    bad = save_checkpoint(tmp_path / "bad.pt", backbone=backbone, metadata={"embedding_norm": "x"})
    with pytest.raises(ValueError, match="embedding_norm='x'; expected 'none' or 'l2'"):
        embed(crops[:4], str(bad), device="cpu")


def test_progress_events(crops, resnet):
    events: list[Progress] = []
    embed(crops, resnet, device="cpu", batch_size=4, progress=events.append)
    assert [e.done for e in events] == [0, 4, 8, 10]
    assert {e.total for e in events} == {10}
    events.clear()
    embed(iter([crops[:6], crops[6:]]), resnet, device="cpu", progress=events.append)
    assert [(e.done, e.total) for e in events] == [(0, 0), (6, 0), (10, 0)]


def test_iter_embed_returns_the_result_through_stop_iteration(crops):
    gen = iter_embed(crops[:2], ChannelMeans(), device="cpu")
    events = [next(gen), next(gen)]
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value.shape == (2, 3)
    assert [(e.done, e.total) for e in events] == [(0, 2), (2, 2)]
    assert all(isinstance(e, Progress) for e in events)


def test_module_runs_in_eval_mode_and_keeps_its_training_flag(crops):
    model = build_backbone("vgg11_bn", seed=0).train()
    running = model.body.features[1].running_mean.clone()
    embed(crops[:2], model, device="cpu")
    assert model.training
    assert torch.equal(model.body.features[1].running_mean, running)  # no BN update


def test_empty_input_gives_zero_rows():
    out = embed(np.zeros((0, 3, 32, 32), dtype=np.uint8), "vgg11", device="cpu")
    assert out.shape == (0, 512)
    assert out.dtype == np.float32


def test_non_finite_output_names_the_model_and_rows(crops):
    images = crops[:6].astype(np.float32) / 255
    images[4, 1, 2, 3] = np.nan
    model = ChannelMeans(name="broken-net")
    with pytest.raises(ValueError, match=r"model 'broken-net' produced non-finite.*rows \[4\]"):
        embed(images, model, device="cpu", batch_size=3)


def test_bad_inputs_are_named(crops, resnet):
    with pytest.raises(ValueError, match=r"shape \(3, 20, 20\); expected \(N, C, H, W\)"):
        embed(crops[0], resnet, device="cpu")
    with pytest.raises(ValueError, match="dtype int64; expected uint8 or float"):
        embed(crops.astype(np.int64), resnet, device="cpu")
    with pytest.raises(ValueError, match=r"batch 1 has shape \(2, 1, 20, 20\); expected \(b, 3"):
        embed([crops[:2], crops[:2, :1]], resnet, device="cpu")
    with pytest.raises(TypeError, match="crops is a int"):
        embed(5, resnet, device="cpu")
    with pytest.raises(ValueError, match="batch_size=0"):
        embed(crops, resnet, batch_size=0, device="cpu")


def test_bad_models_are_named(crops, resnet, tmp_path):
    with pytest.raises(
        ValueError, match=r"model='resnet19' is neither a shipped model .* a backbone name"
    ):
        embed(crops, "resnet19", device="cpu")
    with pytest.raises(ValueError, match="weights applies to a backbone name"):
        embed(crops, resnet, weights="imagenet", device="cpu")
    with pytest.raises(ValueError, match=r"expects 3-channel inputs.*crops have 1 channels"):
        embed(crops[:, :1], resnet, device="cpu")
    with pytest.raises(TypeError, match="model is a int"):
        embed(crops, 3, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_device_is_resolved(crops):
    with pytest.raises(ValueError, match="CUDA is not available"):
        embed(crops, ChannelMeans(), device="cuda")
