"""Evaluation on frozen features (linear probe, kNN), fine-tuning, per-class accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from phenossl._progress import Progress
from phenossl.data.datasets import build_dataset, write_cifar_like
from phenossl.data.image_dataset import TensorImageDataset
from phenossl.training.evaluate.protocols import (
    StandardizedLinear,
    confusion_matrix,
    extract_features,
    finetune,
    iter_extract_features,
    iter_linear_eval,
    knn_accuracy,
    knn_eval,
    linear_eval,
    per_class_accuracy,
    score,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _drain(gen):
    """Run a progress generator: (events, returned value)."""
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def _clusters(n, num_classes=5, dim=16, spread=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g) * spread
    y = torch.arange(n) % num_classes
    return centres[y] + torch.randn(n, dim, generator=g), y


# --- metrics -------------------------------------------------------------------------------------


def test_per_class_accuracy_is_recall_from_one_confusion_matrix():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 1, 0, 1, 1, 0]
    confusion = confusion_matrix(y_true, y_pred, 4)
    np.testing.assert_array_equal(
        confusion, [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    )
    accuracy = per_class_accuracy(torch.tensor(y_true), np.array(y_pred), 4)
    np.testing.assert_allclose(accuracy[:3], [2 / 3, 1.0, 0.0])
    assert np.isnan(accuracy[3])  # no test sample of class 3
    with pytest.raises(ValueError, match=r"y_pred holds 4; expected class indices in 0\.\.3"):
        confusion_matrix([0, 1], [0, 4], 4)
    with pytest.raises(ValueError, match="y_true has 2 labels but y_pred 3"):
        confusion_matrix([0, 1], [0, 1, 1], 4)


def test_score_top1_top5_and_per_class():
    scores = torch.tensor(
        [
            [9.0, 8, 7, 6, 5, 4, 0],  # true 0: top-1 hit
            [9.0, 8, 7, 6, 5, 4, 0],  # true 4: top-5 hit, top-1 miss
            [9.0, 8, 7, 6, 5, 4, 0],  # true 6: miss in both
            [0.0, 0, 0, 0, 0, 0, 1],  # true 6: top-1 hit
        ]
    )
    result = score(scores, torch.tensor([0, 4, 6, 6]), 7)
    assert result.top1 == 0.5
    assert result.top5 == 0.75
    assert result.per_class[6] == 0.5
    assert result.confusion[4, 0] == 1
    few = score(torch.eye(3), torch.tensor([0, 1, 1]), 3)
    assert few.top5 is None  # 5 classes or fewer
    assert few.top1 == pytest.approx(2 / 3)
    assert few.to_dict(["a", "b", "c"])["per_class_accuracy"] == {"a": 1.0, "b": 0.5, "c": None}


# --- linear probe --------------------------------------------------------------------------------


def test_linear_eval_separates_clustered_features():
    x_train, y_train = _clusters(500, num_classes=8, seed=0)
    x_test, y_test = _clusters(200, num_classes=8, seed=0)  # same centres
    x_test = x_test + 0.1 * torch.randn(x_test.shape, generator=torch.Generator().manual_seed(1))
    result = linear_eval(x_train, y_train, x_test, y_test, epochs=15, device="cpu")
    assert result.top1 >= 0.99
    assert result.top5 == 1.0
    assert np.all(result.per_class >= 0.95)
    assert result.confusion.sum() == 200
    assert len(result.history) == 15
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.history[0]["lr"] == 0.1
    assert result.history[-1]["lr"] < 0.01
    # the returned classifier state reproduces the test predictions
    probe = StandardizedLinear(torch.zeros(16), torch.ones(16), 8)
    probe.load_state_dict(result.classifier)
    assert torch.allclose(probe.mean, x_train.mean(dim=0))
    predicted = probe(x_test).argmax(dim=1)
    assert (predicted == y_test).float().mean().item() == pytest.approx(result.top1)


def test_linear_eval_is_at_chance_on_random_labels():
    g = torch.Generator().manual_seed(0)
    x_train, x_test = torch.randn(1000, 32, generator=g), torch.randn(1000, 32, generator=g)
    y_train = torch.randint(0, 10, (1000,), generator=g)
    y_test = torch.randint(0, 10, (1000,), generator=g)
    result = linear_eval(x_train, y_train, x_test, y_test, epochs=20, device="cpu")
    assert 0.05 < result.top1 < 0.16  # chance is 0.1 (sd ~0.01)
    assert result.history[-1]["train_top1"] > result.top1 + 0.05  # it fits noise, not signal


def test_linear_eval_standardises_features_and_is_seeded():
    x_train, y_train = _clusters(300, seed=2)
    x_test, y_test = _clusters(100, seed=2)
    kwargs = {"epochs": 3, "batch_size": 64, "device": "cpu"}
    first = linear_eval(x_train, y_train, x_test, y_test, seed=5, **kwargs)
    again = linear_eval(x_train, y_train, x_test, y_test, seed=5, **kwargs)
    for key, value in first.classifier.items():
        assert torch.equal(value, again.classifier[key])
    # affine rescaling of the features does not change the standardised problem
    scaled = linear_eval(1000 * x_train + 7, y_train, 1000 * x_test + 7, y_test, seed=5, **kwargs)
    torch.testing.assert_close(
        scaled.classifier["linear.weight"], first.classifier["linear.weight"], rtol=1e-3, atol=1e-4
    )
    other = linear_eval(x_train, y_train, x_test, y_test, seed=6, **kwargs)
    assert not torch.equal(other.classifier["linear.weight"], first.classifier["linear.weight"])


def test_iter_linear_eval_reports_every_epoch_and_validates_inputs():
    x, y = _clusters(50, seed=0)
    events, result = _drain(iter_linear_eval(x, y, x, y, epochs=4, device="cpu"))
    assert [e.done for e in events] == [0, 1, 2, 3, 4]
    assert all(isinstance(e, Progress) and e.total == 4 for e in events)
    assert result.top1 > 0.9
    with pytest.raises(ValueError, match="train: 50 feature rows but 49 labels"):
        linear_eval(x, y[:-1], x, y, device="cpu")
    with pytest.raises(ValueError, match="test labels hold -1"):
        linear_eval(x, y, x, torch.full_like(y, -1), device="cpu")
    with pytest.raises(ValueError, match="train features have 16 dims, test 8"):
        linear_eval(x, y, x[:, :8], y, device="cpu")
    with pytest.raises(ValueError, match="num_classes=3 but the labels go up to 4"):
        linear_eval(x, y, x, y, num_classes=3, device="cpu")


# --- kNN -----------------------------------------------------------------------------------------


def test_knn_on_clustered_features():
    x_train, y_train = _clusters(400, num_classes=10, dim=32, seed=3)
    x_test, y_test = _clusters(200, num_classes=10, dim=32, seed=3)
    assert knn_accuracy(x_train, y_train, x_test, y_test, device="cpu") == 1.0
    shuffled = y_train[torch.randperm(400, generator=torch.Generator().manual_seed(0))]
    assert knn_accuracy(x_train, shuffled, x_test, y_test, device="cpu") < 0.3


def test_knn_weighted_vote_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    x_train, x_test = torch.randn(60, 8, generator=g), torch.randn(25, 8, generator=g)
    y_train = torch.randint(0, 4, (60,), generator=g)
    y_test = torch.randint(0, 4, (25,), generator=g)
    result = knn_eval(x_train, y_train, x_test, y_test, k=7, num_classes=4, chunk_size=4)
    a = x_test.numpy() / np.linalg.norm(x_test.numpy(), axis=1, keepdims=True)
    b = x_train.numpy() / np.linalg.norm(x_train.numpy(), axis=1, keepdims=True)
    similarity = a @ b.T
    expected = []
    for row in similarity:
        nearest = np.argsort(-row)[:7]
        votes = np.zeros(4)
        np.add.at(votes, y_train.numpy()[nearest], np.exp(row[nearest] / 0.07))
        expected.append(votes.argmax())
    np.testing.assert_array_equal(result.confusion.sum(axis=0), np.bincount(expected, minlength=4))
    assert result.top1 == pytest.approx(np.mean(np.array(expected) == y_test.numpy()))


def test_knn_weighting_changes_the_vote():
    # one very close neighbour of class 0, two farther ones of class 1
    x_train = torch.tensor([[1.0, 0.02], [0.6, 0.8], [0.6, -0.8]])
    y_train = torch.tensor([0, 1, 1])
    query, truth = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    assert knn_accuracy(x_train, y_train, query, truth, k=3, weighted=True) == 1.0
    assert knn_accuracy(x_train, y_train, query, truth, k=3, weighted=False) == 0.0
    with pytest.raises(ValueError, match="temperature=0; expected > 0"):
        knn_eval(x_train, y_train, query, truth, temperature=0)


# --- features --------------------------------------------------------------------------------------


class _MeanColour(nn.Module):
    """Features = per-channel mean of the (normalised) input."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def _toy_dataset(n=10, channels=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    return TensorImageDataset(
        images, torch.arange(n) % 2, name="toy", classes=["a", "b"], mean=[0.5] * 3, std=[0.2] * 3
    )


def test_extract_features_normalises_like_the_backbone_says():
    ds = _toy_dataset()
    expected_unit = ds.images.float().div(255).mean(dim=(2, 3))
    net = _MeanColour()
    features, targets = extract_features(net, ds, batch_size=3, device="cpu")
    torch.testing.assert_close(features, (expected_unit - 0.5) / 0.2)  # dataset statistics
    assert torch.equal(targets, ds.targets)
    net.input_mean, net.input_std = (0.1, 0.2, 0.3), (0.5, 0.5, 0.5)
    features, _ = extract_features(net, ds, batch_size=4, device="cpu")
    torch.testing.assert_close(
        features, (expected_unit - torch.tensor([0.1, 0.2, 0.3])) / 0.5
    )  # the backbone's statistics win
    features, _ = extract_features(net, ds, device="cpu", normalize=([0.0], [1.0]))
    torch.testing.assert_close(features, expected_unit)
    with pytest.raises(ValueError, match="normalisation mean has 2 values but the images have 3"):
        extract_features(net, ds, device="cpu", normalize=([0.0, 0.0], [1.0]))


def test_extract_features_progress_mode_and_resizing():
    ds = _toy_dataset(n=7)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    net.train()
    events, (features, _) = _drain(iter_extract_features(net, ds, batch_size=3, device="cpu"))
    assert [(e.done, e.total) for e in events] == [(0, 7), (3, 7), (6, 7), (7, 7)]
    assert features.shape == (7, 4)
    assert net.training  # the mode is restored; BN ran in eval mode (running stats unchanged)
    assert torch.equal(net[1].running_mean, torch.zeros(4))
    sizes = []
    net.register_forward_pre_hook(lambda _, args: sizes.append(tuple(args[0].shape[-2:])))
    extract_features(net, ds, device="cpu", input_size=12)
    assert set(sizes) == {(12, 12)}


# --- fine-tuning -----------------------------------------------------------------------------------


class _TinyNet(nn.Module):
    feature_dim = 8

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x):
        return self.body(x)


@pytest.fixture(scope="module")
def cifar_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_like(root, n_train=200, n_test=100, seed=0)
    return build_dataset("cifar10", root), build_dataset("cifar10", root, split="test")


def test_finetune_learns_a_tiny_separable_problem(cifar_like):
    train, test = cifar_like
    torch.manual_seed(0)
    net = _TinyNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng_before = torch.get_rng_state()
    result = finetune(net, train, test, epochs=6, lr=0.1, batch_size=32, seed=0, device="cpu")
    assert result.top1 > 0.5  # chance: 0.1
    assert result.history[-1]["loss"] < 0.7 * result.history[0]["loss"]
    assert result.history[-1]["train_top1"] > result.history[0]["train_top1"]
    assert result.confusion.sum() == len(test)
    # the caller's backbone is untouched; the result holds the trained weights
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key])
    assert not torch.equal(result.backbone["body.0.weight"], before["body.0.weight"])
    assert set(result.head) == {"weight", "bias"}
    assert result.head["weight"].shape == (10, 8)
    assert torch.equal(torch.get_rng_state(), rng_before)  # private random streams


def test_finetune_with_augmentation_is_reproducible(cifar_like):
    train, test = cifar_like
    train = train.subset(np.arange(64))
    net = _TinyNet()
    kwargs = {"epochs": 1, "batch_size": 32, "augmentation": "cifar", "device": "cpu"}
    runs = [finetune(net, train, test, seed=1, **kwargs) for _ in range(2)]
    other = finetune(net, train, test, seed=2, **kwargs)
    assert torch.equal(runs[0].backbone["body.0.weight"], runs[1].backbone["body.0.weight"])
    assert runs[0].history == runs[1].history
    # the test images are resized to the augmentation's output size (the composition's 32 px)
    small = TensorImageDataset(
        torch.nn.functional.interpolate(test.images[:8].float(), size=16).to(torch.uint8),
        test.targets[:8],
        name="small",
        classes=test.classes,
    )
    sizes = []
    net.register_forward_pre_hook(lambda _, args: sizes.append(tuple(args[0].shape[-2:])))
    finetune(net, train, small, seed=1, **kwargs)
    assert set(sizes) == {(32, 32)}
    assert not torch.equal(runs[0].backbone["body.0.weight"], other.backbone["body.0.weight"])
    with pytest.raises(ValueError, match="nope"):
        finetune(_TinyNet(), train, test, epochs=1, augmentation="nope", device="cpu")
    with pytest.raises(ValueError, match="the test set's classes differ"):
        finetune(_TinyNet(), train, _toy_dataset(), epochs=1, device="cpu")
