"""The ImageDataset contract: subsets, index checks, exact statistics, content fingerprints."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from phenossl.data.cropset import CropSet, CropSetWriter
from phenossl.data.image_dataset import (
    FINGERPRINT_IMAGES,
    CropSetDataset,
    TensorImageDataset,
    check_indices,
    pixel_statistics,
)


def _toy(n: int = 6, seed: int = 0) -> TensorImageDataset:
    images = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 2, 4, 4), np.uint8))
    return TensorImageDataset(images, torch.arange(n) % 2, name="toy", classes=["a", "b"])


def test_tensor_dataset_subset_is_compact_and_keeps_parent_stats():
    images = torch.arange(4 * 1 * 2 * 2, dtype=torch.uint8).reshape(4, 1, 2, 2)
    ds = TensorImageDataset(images, torch.tensor([0, 1, 1, -1]), name="toy", classes=["a", "b"])
    sub = ds.subset([2, 0])
    assert torch.equal(sub.images, images[[2, 0]])
    assert sub.mean == ds.mean
    assert sub.std == ds.std
    assert sub.targets.tolist() == [1, 0]
    assert ds.to("cpu") is ds
    assert ds.device == torch.device("cpu")
    with pytest.raises(ValueError, match=r"toy: targets outside -1\.\.1"):
        TensorImageDataset(images, torch.tensor([0, 1, 2, 0]), name="toy", classes=["a", "b"])
    with pytest.raises(ValueError, match=r"toy: images must be uint8 \(N, C, S, S\)"):
        TensorImageDataset(images.float(), torch.zeros(4), name="toy", classes=["a"])


def test_check_indices_wraps_negatives_and_refuses_floats_bools_and_out_of_range():
    np.testing.assert_array_equal(check_indices(torch.tensor([-1, 0, 2]), 3), [2, 0, 2])
    assert check_indices([], 3).dtype == np.int64
    with pytest.raises(ValueError, match="indices must be integers"):
        check_indices(np.array([True, False]), 3)
    with pytest.raises(IndexError, match="toy: index -4 out of range for a dataset of 3 images"):
        check_indices([0, -4], 3, "toy")


def test_pixel_statistics_are_exact_and_do_not_depend_on_the_batching():
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (10, 3, 5, 5), np.uint8))
    mean, std = pixel_statistics([images], 3)
    expected = images.numpy().transpose(1, 0, 2, 3).reshape(3, -1) / 255.0
    np.testing.assert_allclose(mean, expected.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(std, expected.std(axis=1), rtol=1e-12)  # population std
    assert pixel_statistics(images.split(3), 3) == (mean, std)
    with pytest.raises(ValueError, match=r"expected uint8 \(b, 1, H, W\) batches"):
        pixel_statistics([images], 1)
    with pytest.raises(ValueError, match="empty dataset"):
        pixel_statistics([], 3)


# --- fingerprints: what the data is, not where it lies -----------------------------------------


def test_the_fingerprint_follows_the_content():
    ds = _toy()
    same = TensorImageDataset(
        ds.images.clone(), ds.targets.clone(), name="other", classes=["a", "b"]
    )
    assert same.fingerprint == ds.fingerprint  # the name and the object do not count
    relabelled = ds.targets.clone()
    relabelled[3] = 1 - relabelled[3]
    assert _with(ds, targets=relabelled).fingerprint != ds.fingerprint
    changed = ds.images.clone()
    changed[5, 1, 3, 3] ^= 1  # one bit of the last image
    assert _with(ds, images=changed).fingerprint != ds.fingerprint
    assert ds.subset(range(5)).fingerprint != ds.fingerprint
    more = TensorImageDataset(ds.images, ds.targets, name="toy", classes=["a", "b", "c"])
    assert more.fingerprint != ds.fingerprint


def _with(ds: TensorImageDataset, **changes) -> TensorImageDataset:
    kwargs = {"images": ds.images, "targets": ds.targets, **changes}
    return TensorImageDataset(**kwargs, name=ds.name, classes=ds.classes)


def test_the_fingerprint_reads_a_bounded_sample_of_the_images():
    n = 5 * FINGERPRINT_IMAGES
    ds = _toy(n)
    read: list[np.ndarray] = []
    original = ds._read

    def recording(positions: np.ndarray) -> torch.Tensor:
        read.append(positions)
        return original(positions)

    ds._read = recording
    ds.fingerprint
    (positions,) = read
    assert len(positions) == FINGERPRINT_IMAGES
    assert positions[0] == 0 and positions[-1] == n - 1  # spread over the whole dataset


def test_a_cropset_keeps_its_fingerprint_when_moved_and_a_split_has_its_own(tmp_path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"treatment": ["x", "y"] * 4, "split": ["train"] * 6 + ["test"] * 2})
    with CropSetWriter(tmp_path / "a", size=8) as writer:
        writer.add(rng.integers(0, 256, (8, 3, 8, 8), np.uint8), table)
    shutil.copytree(tmp_path / "a", tmp_path / "b")

    def fingerprint(folder: str, split: str | None = "train") -> str:
        cropset = CropSet(tmp_path / folder)
        return CropSetDataset(cropset, label_column="treatment", split=split).fingerprint

    assert fingerprint("a") == fingerprint("b")
    assert fingerprint("a", "test") != fingerprint("a")
    assert fingerprint("a", None) != fingerprint("a")
