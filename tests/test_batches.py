"""Feeders: the same batches from memory or read ahead, in order, at most ``depth`` ahead."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from phenossl.data.datasets import build_dataset, write_cifar_like
from phenossl.data.image_dataset import TensorImageDataset
from phenossl.training.train import batches as feeding
from phenossl.training.train.batches import DeviceFeeder, PrefetchFeeder, make_feeder

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    """Small CIFAR-10-like data in the official layout (48 training, 24 test images)."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_like(root, n_train=48, n_test=24, seed=0)
    return root


def test_feeders_give_the_same_batches(cifar_root):
    dataset = build_dataset("cifar10", cifar_root, limit=24)
    order = torch.randperm(24, generator=torch.Generator().manual_seed(0)).view(3, 8)
    device = DeviceFeeder(dataset, CPU)
    prefetch = PrefetchFeeder(dataset, CPU)
    try:
        for (a, i), (b, j) in zip(device.batches(order), prefetch.batches(order), strict=True):
            assert torch.equal(i, j)
            assert torch.equal(a, b)
            assert torch.equal(a, dataset.get_batch(i)[0])
    finally:
        prefetch.close()
    assert isinstance(make_feeder(dataset, CPU, "auto"), DeviceFeeder)
    lazy = make_feeder(dataset, CPU, "never")
    assert isinstance(lazy, PrefetchFeeder)
    lazy.close()


class _Recording(TensorImageDataset):
    """Numbered 1x4x4 images; remembers which batches were read, and can return bad ones."""

    def __init__(self, n: int = 12, bad: str | None = None) -> None:
        images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4)
        super().__init__(images.contiguous(), torch.zeros(n), name="rec", classes=["a"])
        self.calls: list[list[int]] = []
        self.lock = threading.Lock()
        self.bad = bad

    def get_batch(self, indices):
        with self.lock:
            self.calls.append([int(i) for i in indices])
        images, targets = super().get_batch(indices)
        if self.bad == "float":
            images = images.float()
        elif self.bad == "raise":
            raise OSError("disk gone")
        return images, targets


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_prefetch_keeps_the_order_and_reads_at_most_depth_batches_ahead(depth):
    dataset = _Recording()
    order = torch.randperm(12, generator=torch.Generator().manual_seed(1)).view(6, 2)
    feeder = PrefetchFeeder(dataset, CPU, depth=depth)
    try:
        for step, (images, indices) in enumerate(feeder.batches(order)):
            assert torch.equal(indices, order[step])
            assert images[:, 0, 0, 0].tolist() == order[step].tolist()  # image i holds value i
            with dataset.lock:
                assert len(dataset.calls) <= min(6, step + depth)  # never further ahead
    finally:
        feeder.close()
    assert dataset.calls == order.tolist()  # each batch read once, in order


def test_an_early_stop_leaves_later_batches_unread_and_close_stops_the_thread():
    dataset = _Recording()
    feeder = PrefetchFeeder(dataset, CPU, depth=2)
    batches = feeder.batches(torch.arange(12).view(6, 2))
    next(batches)
    batches.close()
    feeder.close()
    assert len(dataset.calls) <= 2
    with pytest.raises(RuntimeError):
        feeder._pool.submit(print)  # shut down


def _feed_all(kind, dataset) -> None:
    feeder = kind(dataset, CPU)
    try:
        list(feeder.batches(torch.arange(4).view(2, 2)))
    finally:
        feeder.close()


@pytest.mark.parametrize("kind", [DeviceFeeder, PrefetchFeeder])
def test_feeders_refuse_batches_that_are_not_uint8_images(kind):
    message = r"_Recording\.get_batch returned torch\.float32 \((\d+), 1, 4, 4\); expected a uint8"
    with pytest.raises(ValueError, match=message):
        _feed_all(kind, _Recording(bad="float"))


def test_a_failed_read_is_raised_at_its_step():
    feeder = PrefetchFeeder(_Recording(bad="raise"), CPU)
    try:
        with pytest.raises(OSError, match="disk gone"):
            list(feeder.batches(torch.arange(4).view(2, 2)))
    finally:
        feeder.close()


def test_make_feeder_preloads_up_to_the_auto_limit(monkeypatch):
    dataset = _Recording()  # 12 images of 16 bytes
    monkeypatch.setattr(feeding, "AUTO_PRELOAD_BYTES", 12 * 16)
    assert isinstance(make_feeder(dataset, CPU, "auto"), DeviceFeeder)
    monkeypatch.setattr(feeding, "AUTO_PRELOAD_BYTES", 12 * 16 - 1)
    lazy = make_feeder(dataset, CPU, "auto")
    assert isinstance(lazy, PrefetchFeeder)
    lazy.close()
    assert isinstance(make_feeder(dataset, CPU, "always"), DeviceFeeder)
    with pytest.raises(ValueError, match=r"data\.preload='sometimes'; expected 'auto'"):
        make_feeder(dataset, CPU, "sometimes")
