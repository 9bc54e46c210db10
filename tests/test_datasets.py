"""Training datasets: MNIST (real files), CIFAR in the official layout, image folders, CropSets."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from phenossl.data.cifar import read_cifar
from phenossl.data.cropset import CropSetWriter
from phenossl.data.datasets import DATASETS, build_dataset, limit_dataset, write_cifar_like
from phenossl.data.idx import read_idx, write_idx
from phenossl.data.image_dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    pixel_statistics,
)

# --- MNIST (the real files) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_train(mnist_root):
    return build_dataset("mnist", mnist_root, split="train")


def test_real_mnist_shapes_labels_and_statistics(mnist_root, mnist_train):
    test = build_dataset("mnist", mnist_root, split="test")
    assert len(mnist_train) == 60000
    assert len(test) == 10000
    assert mnist_train.images.shape == (60000, 1, 28, 28)
    assert mnist_train.images.dtype == torch.uint8
    assert (mnist_train.channels, mnist_train.image_size) == (1, 28)
    assert mnist_train.classes == [str(d) for d in range(10)]
    assert mnist_train.targets[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test.targets[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    counts = torch.bincount(mnist_train.targets, minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    # the well-known MNIST normalisation constants
    assert mnist_train.mean[0] == pytest.approx(0.1307, abs=1e-4)
    assert mnist_train.std[0] == pytest.approx(0.3081, abs=1e-4)
    images, targets = mnist_train.get_batch(torch.tensor([0, 59999, -1]))
    assert images.shape == (3, 1, 28, 28)
    assert targets.dtype == torch.int64
    assert torch.equal(images[1], images[2])
    assert images[0].max() == 255
    assert images[0, 0, 0, 0] == 0


def test_mnist_limit_takes_the_first_or_a_seeded_subset(mnist_root, mnist_train):
    first = build_dataset("mnist", mnist_root, limit=100)
    assert len(first) == 100
    assert torch.equal(first.images, mnist_train.images[:100])
    assert torch.equal(first.targets, mnist_train.targets[:100])
    assert first.mean == mnist_train.mean  # a subset normalises like its parent

    random = build_dataset("mnist", mnist_root, limit=100, limit_seed=3)
    assert not torch.equal(random.images, first.images)
    # each image of the random subset is the full set's image at a sorted random index
    rows = np.sort(np.random.default_rng(3).choice(60000, 100, replace=False))
    assert torch.equal(random.images, mnist_train.images[rows])
    assert len(limit_dataset(first, 1000)) == 100  # a limit above the size keeps everything


def _write_mnist(folder, n=5, *, gz=True, labels=None):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10 if labels is None else labels
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize("layout", ["flat-gz", "torchvision-raw"])
def test_mnist_folder_layouts(tmp_path, layout):
    folder = tmp_path if layout == "flat-gz" else tmp_path / "MNIST" / "raw"
    images, labels = _write_mnist(folder, gz=layout == "flat-gz")
    ds = build_dataset("mnist", tmp_path)
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), images)
    np.testing.assert_array_equal(ds.targets.numpy(), labels)


def test_idx_round_trip_and_bad_magic_or_size(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(path, ndim=3), array)

    with pytest.raises(ValueError, match=r"a\.gz: magic number 0x00000803 says 3 dimensions"):
        read_idx(path, ndim=1)
    data = gzip.decompress(path.read_bytes())
    bad_magic = tmp_path / "bad_magic"
    bad_magic.write_bytes(b"\x12\x34" + data[2:])
    with pytest.raises(ValueError, match=r"bad_magic: magic number 0x12340803 is not an IDX"):
        read_idx(bad_magic)
    bad_type = tmp_path / "bad_type"
    bad_type.write_bytes(data[:2] + b"\x0d" + data[3:])
    with pytest.raises(ValueError, match=r"bad_type: IDX type code 0x0d"):
        read_idx(bad_type)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(data[:-1])
    with pytest.raises(
        ValueError, match=r"truncated: 39 bytes, but the header's shape \(2, 3, 4\)"
    ):
        read_idx(truncated)
    not_gzip = tmp_path / "plain.gz"
    not_gzip.write_bytes(data)
    with pytest.raises(ValueError, match=r"plain\.gz: cannot read"):
        read_idx(not_gzip)
    with pytest.raises(FileNotFoundError, match="IDX file not found"):
        read_idx(tmp_path / "absent.gz")


def test_mnist_errors_name_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\.gz.*download=True"):
        build_dataset("mnist", tmp_path)
    _write_mnist(tmp_path, n=5, labels=np.arange(4, dtype=np.uint8))
    with pytest.raises(
        ValueError, match=r"holds 5 images but .*train-labels-idx1-ubyte\.gz 4 labels"
    ):
        build_dataset("mnist", tmp_path)
    with pytest.raises(ValueError, match="split='val' for mnist; expected one of train, test"):
        build_dataset("mnist", tmp_path, split="val")


# --- CIFAR in the official python-pickle layout ------------------------------------------------


def test_cifar10_round_trip_matches_torchvision(tmp_path, monkeypatch):
    folder = write_cifar_like(tmp_path, n_train=53, n_test=17, seed=1)
    assert sorted(p.name for p in folder.iterdir()) == [
        "batches.meta",
        *(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
    ]
    train = build_dataset("cifar10", tmp_path)
    test = build_dataset("cifar10", tmp_path, split="test")
    assert (len(train), len(test)) == (53, 17)
    assert train.images.shape == (53, 3, 32, 32)
    assert train.images.dtype == torch.uint8
    assert train.classes[:3] == ["airplane", "automobile", "bird"]
    assert len(train.classes) == 10
    # balanced labels
    assert torch.bincount(train.targets, minlength=10).tolist() == [6, 6, 6] + [5] * 7

    # oracle: torchvision reads the same files (its md5 check bypassed) into the same data
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    for split, ours in (("train", train), ("test", test)):
        tv = tv_cifar.CIFAR10(str(tmp_path), train=split == "train")
        np.testing.assert_array_equal(ours.images.permute(0, 2, 3, 1).numpy(), tv.data)
        assert ours.targets.tolist() == tv.targets
        assert ours.classes == tv.classes

    # the root may also be the cifar-10-batches-py folder itself
    assert torch.equal(build_dataset("cifar10", folder).images, train.images)

    # the official files were pickled with numpy 1, whose arrays name numpy.core.multiarray
    test_batch = folder / "test_batch"
    data = test_batch.read_bytes()
    test_batch.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert test_batch.read_bytes() != data
    assert torch.equal(build_dataset("cifar10", tmp_path, split="test").images, test.images)


def test_cifar100_fine_and_coarse_labels(tmp_path):
    write_cifar_like(tmp_path, n_train=230, n_test=40, num_classes=100, seed=2)
    fine = build_dataset("cifar100", tmp_path)
    coarse = build_dataset("cifar100", tmp_path, labels="coarse")
    assert len(fine.classes) == 100
    assert len(coarse.classes) == 20
    assert fine.classes[7] == "class_07"
    assert coarse.classes[1] == "superclass_01"
    assert torch.equal(coarse.targets, fine.targets // 5)
    assert int(fine.targets.max()) == 99  # every class present with 230 balanced images
    assert len(build_dataset("cifar100", tmp_path, split="test")) == 40


@pytest.mark.usefixtures("one_torch_thread")
def test_cifar_like_classes_are_learnable_from_pixels(tmp_path):
    from phenossl.training.evaluate.protocols import linear_eval

    write_cifar_like(tmp_path, n_train=300, n_test=100, seed=0)
    train = build_dataset("cifar10", tmp_path)
    test = build_dataset("cifar10", tmp_path, split="test")

    def features(ds):  # 4x4 average-pooled pixels
        return torch.nn.functional.avg_pool2d(ds.images.float() / 255, 8).flatten(1)

    result = linear_eval(
        features(train), train.targets, features(test), test.targets, epochs=30, device="cpu"
    )
    assert result.top1 > 0.9


def test_cifar_statistics_are_exact(tmp_path):
    write_cifar_like(tmp_path, n_train=40, n_test=10, seed=0)
    ds = build_dataset("cifar10", tmp_path)
    pixels = ds.images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(ds.mean, pixels.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(ds.std, pixels.std(axis=(0, 2, 3)), rtol=1e-12)
    batches = [ds.images[:7], ds.images[7:]]
    mean, std = pixel_statistics(batches, 3)
    assert mean == pytest.approx(ds.mean, rel=1e-12)
    assert std == pytest.approx(ds.std, rel=1e-12)


def test_cifar_missing_folder_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        build_dataset("cifar10", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data_batch_1..5, test_batch, batches.meta" in message
    assert "download=True" in message
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python.*train, test, meta"):
        build_dataset("cifar100", tmp_path, split="test")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar_broken_files(tmp_path):
    folder = write_cifar_like(tmp_path, n_train=10, n_test=5)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"CIFAR file missing: .*data_batch_3"):
        build_dataset("cifar10", tmp_path)
    # a pickle that would run code is refused, not executed
    marker = tmp_path / "pwned"
    (folder / "data_batch_3").write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    with pytest.raises(
        ValueError, match=r"data_batch_3: not a CIFAR .*refusing to load \w+\.system"
    ):
        build_dataset("cifar10", tmp_path)
    assert not marker.exists()
    entry = {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3: 'data' has shape \(2, 100\)"):
        build_dataset("cifar10", tmp_path)
    entry = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3: 'labels' outside 0..9"):
        read_cifar(tmp_path)
    with pytest.raises(FileExistsError, match="already exists"):
        write_cifar_like(tmp_path, n_train=1, n_test=1)


# --- ImageNet-100 folder -----------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    def save(path, array):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)

    wide = np.zeros((30, 60, 3), np.uint8)  # left half red, right half blue
    wide[:, :30, 0], wide[:, 30:, 2] = 200, 200
    green = np.zeros((50, 40, 3), np.uint8)
    green[..., 1] = 120
    save(tmp_path / "train" / "n02000000" / "b.png", green)
    save(tmp_path / "train" / "n01000000" / "a.PNG", wide)
    save(tmp_path / "train" / "n01000000" / "c.png", green)
    (tmp_path / "train" / "n01000000" / "notes.txt").write_text("not an image")
    save(tmp_path / "val" / "n01000000" / "v.png", wide)
    save(tmp_path / "val" / "n02000000" / "w.png", green)
    return tmp_path


def test_image_folder_decodes_resizes_and_centre_crops(image_folder):
    ds = build_dataset("imagenet100", image_folder, resize=32, crop=24, workers=2)
    assert ds.classes == ["n01000000", "n02000000"]
    assert ds.targets.tolist() == [0, 0, 1]  # a.PNG, c.png, b.png; notes.txt is skipped
    assert (ds.channels, ds.image_size, ds.mean, ds.std) == (3, 24, IMAGENET_MEAN, IMAGENET_STD)
    images, targets = ds.get_batch([0, 2])
    assert images.shape == (2, 3, 24, 24)
    assert images.dtype == torch.uint8
    assert targets.tolist() == [0, 1]
    # 30x60 -> short side 32 -> 32x64 -> centre 24 columns 20..43: red up to column 31, then blue
    wide = images[0].int()
    assert (wide[0, :, :10] == 200).all()
    assert (wide[2, :, :10] == 0).all()
    assert (wide[2, :, 14:] == 200).all()
    assert (wide[0, :, 14:] == 0).all()
    assert (images[1, 1] == 120).all()
    assert (images[1, [0, 2]] == 0).all()

    val = build_dataset("imagenet100", image_folder, split="val", resize=32, crop=24)
    test = build_dataset("imagenet100", image_folder, split="test", resize=32, crop=24)
    assert len(val) == len(test) == 2  # no test/ folder: test reads val/
    assert torch.equal(val.get_batch([0, 1])[0], test.get_batch([0, 1])[0])
    # default: short side 256, centre crop 224
    assert build_dataset("imagenet100", image_folder)[1][0].shape == (3, 224, 224)


def test_image_folder_errors(image_folder, tmp_path):
    bad = image_folder / "train" / "n02000000" / "broken.png"
    bad.write_bytes(b"not a png")
    ds = build_dataset("imagenet100", image_folder, resize=32, crop=24)
    with pytest.raises(ValueError, match=r"cannot decode image .*broken\.png"):
        ds.get_batch([0, 3])  # sorted: a.PNG, c.png, b.png, broken.png
    with pytest.raises(FileNotFoundError, match=r"image folder not found: .*nowhere/train"):
        build_dataset("imagenet100", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="crop=300 is larger than resize=256"):
        build_dataset("imagenet100", image_folder, crop=300)
    with pytest.raises(ValueError, match="imagenet100 cannot be downloaded"):
        build_dataset("imagenet100", tmp_path / "nowhere", download=True)


# --- CropSets ------------------------------------------------------------------------------------


@pytest.fixture
def cropset_path(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 3, 16, 16), dtype=np.uint8)
    table = pd.DataFrame(
        {
            "field_id": [f"P/B02/s{i % 3}" for i in range(12)],
            "treatment": ["taxol@1", "DMSO@0", "nocodazole@3", "DMSO@0"] * 3,
            "concentration": [1.0, 0.0, 3.0, 0.0] * 3,
            "moa": ["Microtubule stabilizers", None, "Microtubule destabilizers", None] * 3,
            # nocodazole (rows 2, 6, 10) never lands in "val"
            "split": ["train"] * 6 + ["val", "val", "test", "val", "test", "test"],
        }
    )
    path = tmp_path / "crops"
    with CropSetWriter(path, size=16) as writer:
        writer.add(images[:5], table.iloc[:5])
        writer.add(images[5:], table.iloc[5:])
    return path, images, table


def test_cropset_labels_splits_and_pixels(cropset_path):
    path, images, _table = cropset_path
    ds = build_dataset("cropset", path, split=None, label_column="treatment")
    assert len(ds) == 12
    assert (ds.channels, ds.image_size) == (3, 16)
    assert ds.classes == ["DMSO@0", "nocodazole@3", "taxol@1"]
    assert ds.targets.tolist() == [2, 0, 1, 0] * 3
    got, targets = ds.get_batch([11, 0, 5])
    np.testing.assert_array_equal(got.numpy(), images[[11, 0, 5]])
    assert targets.tolist() == [0, 2, 0]

    val = build_dataset("cropset", path, split="val", label_column="treatment")
    assert len(val) == 3
    assert val.classes == ds.classes  # classes come from the whole CropSet, not the split
    assert val.targets.tolist() == [1, 0, 0]  # rows 6, 7, 9
    np.testing.assert_array_equal(val.get_batch([0, 1, 2])[0].numpy(), images[[6, 7, 9]])

    numeric = build_dataset("cropset", path, split="train", label_column="concentration")
    assert numeric.classes == ["0", "1", "3"]
    assert numeric.targets.tolist() == [1, 0, 2, 0, 1, 0]
    moa = build_dataset("cropset", path, split=None, label_column="moa")
    assert moa.classes == ["Microtubule destabilizers", "Microtubule stabilizers"]
    assert moa.targets[:4].tolist() == [1, -1, 0, -1]  # missing MOA: -1

    unlabelled = build_dataset("cropset", path, split="test")
    assert unlabelled.classes == []
    assert unlabelled.targets.tolist() == [-1, -1, -1]


def test_cropset_statistics_exact_or_sampled(cropset_path):
    path, images, _ = cropset_path
    exact = build_dataset("cropset", path, split=None)
    pixels = images.astype(np.float64) / 255
    np.testing.assert_allclose(exact.mean, pixels.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(exact.std, pixels.std(axis=(0, 2, 3)), rtol=1e-12)
    sampled = build_dataset("cropset", path, split=None, stats_samples=6)
    rows = np.sort(np.random.default_rng(0).choice(12, 6, replace=False))
    np.testing.assert_allclose(sampled.mean, pixels[rows].mean(axis=(0, 2, 3)), rtol=1e-12)


def test_cropset_errors(cropset_path, tmp_path):
    path, _, _ = cropset_path
    with pytest.raises(
        ValueError, match=r"no column 'compound' in cells\.csv; columns are cell_id"
    ):
        build_dataset("cropset", path, label_column="compound")
    with pytest.raises(
        ValueError, match=r"no crop has split 'holdout'.*\['test', 'train', 'val'\]"
    ):
        build_dataset("cropset", path, split="holdout")
    plain = tmp_path / "plain"
    with CropSetWriter(plain, size=8) as writer:
        writer.add(np.zeros((2, 3, 8, 8), np.uint8), pd.DataFrame({"treatment": ["a", "b"]}))
    with pytest.raises(ValueError, match="has no 'split' column; pass split=None"):
        build_dataset("cropset", plain)
    assert len(build_dataset("cropset", plain, split=None)) == 2
    with pytest.raises(FileNotFoundError, match="CropSet folder not found"):
        build_dataset("cropset", tmp_path / "none", split=None)


# --- generic behaviour ---------------------------------------------------------------------------


def test_subsets_and_index_checks(cropset_path):
    path, images, _ = cropset_path
    ds = build_dataset("cropset", path, split=None, label_column="treatment")
    sub = ds.subset([3, 1, 10])
    assert len(sub) == 3
    assert sub.classes == ds.classes
    assert (sub.mean, sub.std) == (ds.mean, ds.std)
    assert sub.targets.tolist() == [0, 0, 1]
    np.testing.assert_array_equal(sub.get_batch([2, 0])[0].numpy(), images[[10, 3]])
    assert len(sub.subset([0])) == 1
    assert sub.subset([-1])[0][1] == 1
    with pytest.raises(IndexError, match="index 12 out of range for a dataset of 12 images"):
        ds.get_batch([0, 12])
    with pytest.raises(ValueError, match="indices must be integers"):
        ds.get_batch(np.array([0.5]))
    assert ds.get_batch([])[0].shape == (0, 3, 16, 16)


def test_build_dataset_rejects_unknown_names_and_options(tmp_path):
    assert DATASETS == ("cifar10", "cifar100", "mnist", "imagenet100", "cropset")
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; expected one of cifar10"):
        build_dataset("svhn", tmp_path)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['crop'\] for dataset 'cifar10'"):
        build_dataset("cifar10", tmp_path, crop=24)
    write_cifar_like(tmp_path, n_train=2, n_test=1)
    with pytest.raises(ValueError, match="limit=0; expected a positive integer"):
        build_dataset("cifar10", tmp_path, limit=0)
