"""Evaluation of a backbone: linear probe and kNN on frozen features, and fine-tuning.

Protocols (accuracies are fractions in [0, 1]):

- :func:`extract_features` runs the frozen backbone once over a dataset; the linear probe and
  kNN then work on those features (the paper's "linear evaluation": frozen encoder, a
  classifier trained for 100 epochs).
- :func:`linear_eval`: a linear classifier on *standardised* features (each dimension shifted
  and scaled by its training-set mean and standard deviation, fixed, with no batch norm), trained
  with SGD, momentum 0.9, batch 256, no weight decay and a cosine learning-rate decay to 0 over
  100 epochs from 0.1. solo-learn's linear protocol uses the same optimiser, epochs and batch
  size on raw features, with a step decay at epochs 60 and 80 and a learning rate tuned per
  method (0.1 to 3.0); standardising the features makes one learning rate fit every backbone
  and method, and the cosine schedule needs no milestones.
- :func:`knn_accuracy` / :func:`knn_eval`: solo-learn's weighted kNN (from InstDisc, Wu et
  al. 2018): cosine similarity to the training features, the ``k = 20`` nearest neighbours vote
  with weight ``exp(similarity / 0.07)`` (or 1 each with ``weighted=False``).
- :func:`finetune`: the whole backbone plus a linear head trained with cross-entropy (SGD,
  momentum 0.9, cosine decay; optional augmentation from :mod:`phenossl.augment`), for the
  paper's linear-evaluation versus fine-tuning comparison (Table 1).

Per-class accuracy is the recall of each class from one confusion matrix over the whole test
set (:func:`per_class_accuracy`), not an average of per-batch scores.

Inputs: images are scaled to [0, 1] and normalised with the backbone's ``input_mean`` /
``input_std`` (a phenossl checkpoint records the training dataset's), falling back to the
dataset's ``mean``/``std`` for a module without them; ``normalize=(mean, std)`` overrides both.
On CUDA the backbone runs under autocast (bf16 where supported) in channels_last.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from phenossl._device import amp_dtype, autocast, memory_format, resolve_device
from phenossl._progress import Progress, ProgressCallback, ProgressGenerator, Stages, drives
from phenossl._rng import RunRng
from phenossl.data.image_dataset import ImageDataset
from phenossl.training.evaluate._preprocess import (
    Normalize,
    Preprocess,
    check_finite,
    check_positive,
    in_order,
    prefetch,
)
from phenossl.training.evaluate.metrics import (
    ClassificationResult,
    Labels,
    as_labels,
    confusion_matrix,
    per_class_accuracy,
    score,
)

__all__ = [
    "ClassificationResult",
    "FinetuneResult",
    "LinearEvalResult",
    "ProtocolResults",
    "StandardizedLinear",
    "confusion_matrix",
    "extract_features",
    "finetune",
    "iter_extract_features",
    "iter_finetune",
    "iter_linear_eval",
    "iter_protocols",
    "knn_accuracy",
    "knn_eval",
    "linear_eval",
    "per_class_accuracy",
    "protocol_stages",
    "score",
]


# -- results ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class LinearEvalResult(ClassificationResult):
    """A linear probe's scores; ``classifier`` is the state dict of the probe (a
    :class:`StandardizedLinear`: the feature mean/std buffers and the linear layer)."""

    classifier: dict[str, Tensor]


@dataclass(kw_only=True)
class FinetuneResult(ClassificationResult):
    """Fine-tuning scores with the trained ``backbone`` and ``head`` (``nn.Linear``) state dicts."""

    backbone: dict[str, Tensor]
    head: dict[str, Tensor]


class StandardizedLinear(nn.Module):
    """``linear((x - mean) / std)`` with fixed ``mean``/``std`` buffers (no batch norm)."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Tensor, std: Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())
        self.linear = nn.Linear(mean.numel(), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear((x - self.mean) / self.std)


# -- features ----------------------------------------------------------------------------------


def iter_extract_features(
    backbone: nn.Module,
    dataset: ImageDataset,
    *,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    normalize: Normalize | None = None,
    input_size: int | None = None,
    amp: bool = True,
) -> ProgressGenerator[tuple[Tensor, Tensor]]:
    """Run the frozen backbone over ``dataset`` in index order, yielding progress per batch.

    Parameters
    ----------
    backbone
        Maps ``(N, C, H, W)`` to ``(N, D)``; moved to ``device`` and run in eval mode (its
        mode is restored after).
    dataset
        An :class:`~phenossl.data.image_dataset.ImageDataset`.
    batch_size
        Images per forward pass.
    device
        ``"auto"`` or a torch device.
    normalize
        ``(mean, std)`` per channel in [0, 1] units; default: the backbone's ``input_mean`` /
        ``input_std``, else the dataset's statistics.
    input_size
        Resize the images to this side (bilinear, antialiased) before the backbone.
    amp
        Autocast on CUDA.

    Returns
    -------
    (Tensor, Tensor)
        float32 features ``(N, D)`` and int64 targets ``(N,)``, on the CPU.
    """
    dev = resolve_device(device)
    check_positive(batch_size, "batch_size")
    prepare = Preprocess(backbone, dataset, normalize, input_size, dev)
    n = len(dataset)
    yield Progress(0, n, f"features on {dev}")
    was_training = backbone.training
    backbone.to(dev).to(memory_format=memory_format(dev)).eval()
    parts: list[Tensor] = []
    done = 0
    try:
        for images, _ in prefetch(dataset, in_order(n, batch_size)):
            with torch.no_grad(), autocast(dev, enabled=amp):
                out = backbone(prepare(images))
            if out.ndim != 2 or out.shape[0] != len(images):
                raise ValueError(
                    f"backbone returned shape {tuple(out.shape)} for {len(images)} images; "
                    "expected (n, D) features"
                )
            parts.append(out.float().cpu())
            done += len(images)
            yield Progress(done, n, f"features: {done}/{n}")
    finally:
        backbone.train(was_training)
    if not parts:
        raise ValueError(f"dataset {dataset.name!r} is empty")
    features = torch.cat(parts)
    if not torch.isfinite(features).all():
        raise ValueError("the backbone produced non-finite features; try amp=False")
    return features, dataset.targets.clone()


@drives(iter_extract_features)
def extract_features(*, progress: ProgressCallback | None = None) -> tuple[Tensor, Tensor]:
    """Frozen-backbone features and targets of a dataset; see :func:`iter_extract_features`."""


# -- linear probe ------------------------------------------------------------------------------


def iter_linear_eval(
    train_feats: Tensor,
    train_y: Labels,
    test_feats: Tensor,
    test_y: Labels,
    *,
    num_classes: int | None = None,
    epochs: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> ProgressGenerator[LinearEvalResult]:
    """Train a linear classifier on frozen features; yields progress after every epoch.

    The features are standardised with the training set's per-dimension mean and standard
    deviation; the classifier starts from zero weights and is trained with SGD (momentum,
    ``weight_decay``) and a per-step cosine decay of ``lr`` to 0 (module docstring).

    Parameters
    ----------
    train_feats, test_feats
        float ``(N, D)`` features.
    train_y, test_y
        int class indices ``(N,)`` in ``[0, num_classes)``.
    num_classes
        Default: the largest label + 1.
    epochs, lr, momentum, weight_decay, batch_size
        Optimisation settings.
    seed
        Seed of the batch order.
    device
        ``"auto"`` or a torch device.

    Returns
    -------
    LinearEvalResult
    """
    dev = resolve_device(device)
    x_train, y_train, x_test, y_test, num_classes = _train_test(
        train_feats, train_y, test_feats, test_y, num_classes
    )
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        check_positive(value, name)
    check_finite(lr, "lr", positive=True)
    for name, rate in (("momentum", momentum), ("weight_decay", weight_decay)):
        check_finite(rate, name)
    x_train, y_train = x_train.to(dev), y_train.to(dev)
    mean = x_train.mean(dim=0)
    std = x_train.std(dim=0, correction=0).clamp_min(1e-6)
    probe = StandardizedLinear(mean, std, num_classes).to(dev)
    nn.init.zeros_(probe.linear.weight)
    nn.init.zeros_(probe.linear.bias)
    optimizer = torch.optim.SGD(
        probe.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    steps = math.ceil(len(x_train) / batch_size)
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    yield Progress(0, epochs, f"linear probe on {dev}")
    for epoch in range(epochs):
        order = torch.randperm(len(x_train), generator=generator).to(dev)
        total_loss, correct = torch.zeros((), device=dev), torch.zeros((), device=dev)
        lr_now = _cosine(lr, epoch * steps, epochs * steps)
        for step, batch in enumerate(order.split(batch_size)):
            _set_lr(optimizer, _cosine(lr, epoch * steps + step, epochs * steps))
            logits = probe(x_train[batch])
            loss = F.cross_entropy(logits, y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(batch)
            correct += (logits.detach().argmax(dim=1) == y_train[batch]).sum()
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(total_loss) / len(x_train),
                "train_top1": float(correct) / len(x_train),
                "lr": lr_now,
            }
        )
        yield Progress(
            epoch + 1, epochs, f"epoch {epoch + 1}/{epochs} loss {history[-1]['loss']:.3f}"
        )
    probe.eval()
    with torch.no_grad():
        logits = torch.cat([probe(chunk.to(dev)) for chunk in x_test.split(4096)])
    result = score(logits, y_test, num_classes)
    state = {k: v.detach().cpu().clone() for k, v in probe.state_dict().items()}
    return LinearEvalResult(**vars(result) | {"history": history}, classifier=state)


@drives(iter_linear_eval)
def linear_eval(*, progress: ProgressCallback | None = None) -> LinearEvalResult:
    """Linear classifier on frozen features; see :func:`iter_linear_eval`."""


# -- kNN ---------------------------------------------------------------------------------------


def knn_eval(
    train_feats: Tensor,
    train_y: Labels,
    test_feats: Tensor,
    test_y: Labels,
    *,
    k: int = 20,
    temperature: float = 0.07,
    weighted: bool = True,
    num_classes: int | None = None,
    chunk_size: int = 1024,
    device: str | torch.device = "auto",
) -> ClassificationResult:
    """Weighted kNN classification on cosine similarity (solo-learn / InstDisc).

    Each test feature's ``k`` most similar training features (cosine similarity) vote for their
    class with weight ``exp(similarity / temperature)``, or 1 each when ``weighted`` is False;
    the class scores rank the predictions (top-1, top-5).

    Parameters
    ----------
    train_feats, test_feats
        float ``(N, D)`` features (L2-normalised here).
    train_y, test_y
        int class indices ``(N,)``.
    k
        Neighbours per test sample (at most the training set's size).
    temperature
        Softness of the weights.
    weighted
        Similarity-weighted vote (True) or majority vote (False).
    num_classes
        Default: the largest label + 1.
    chunk_size
        Test samples compared with the training set at once (memory: chunk x N_train floats).
    device
        ``"auto"`` or a torch device.
    """
    dev = resolve_device(device)
    x_train, y_train, x_test, y_test, num_classes = _train_test(
        train_feats, train_y, test_feats, test_y, num_classes
    )
    check_positive(k, "k")
    check_positive(chunk_size, "chunk_size")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature!r}; expected > 0")
    k = min(k, len(x_train))
    x_train = F.normalize(x_train.to(dev), dim=1)
    y_train = y_train.to(dev)
    scores = []
    for chunk in x_test.split(chunk_size):
        similarity = F.normalize(chunk.to(dev), dim=1) @ x_train.T
        top_sim, top_idx = similarity.topk(k, dim=1)
        weights = (top_sim / temperature).exp() if weighted else torch.ones_like(top_sim)
        votes = torch.zeros(len(chunk), num_classes, device=dev, dtype=weights.dtype)
        votes.scatter_add_(1, y_train[top_idx], weights)
        scores.append(votes.cpu())
    return score(torch.cat(scores), y_test, num_classes)


def knn_accuracy(
    train_feats: Tensor, train_y: Labels, test_feats: Tensor, test_y: Labels, **options: Any
) -> float:
    """Top-1 accuracy in [0, 1] of the weighted kNN classifier; ``options`` are
    :func:`knn_eval`'s (``k``, ``temperature``, ``weighted``, ``device``...).
    """
    return knn_eval(train_feats, train_y, test_feats, test_y, **options).top1


# -- fine-tuning -------------------------------------------------------------------------------


def iter_finetune(
    backbone: nn.Module,
    train_dataset: ImageDataset,
    test_dataset: ImageDataset,
    *,
    epochs: int = 30,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 128,
    augmentation: str | nn.Module | None = None,
    normalize: Normalize | None = None,
    input_size: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    amp: bool = True,
) -> ProgressGenerator[FinetuneResult]:
    """Train a copy of ``backbone`` with a linear head on labelled images; yields per step.

    Cross-entropy, SGD with momentum and ``weight_decay`` on every parameter, learning rate
    ``lr`` decayed to 0 by a per-step cosine; batch norm in training mode. The defaults are a
    common CIFAR fine-tuning recipe (the paper gives no settings). ``backbone`` itself is not
    modified; the result holds the trained weights.

    Parameters
    ----------
    backbone
        Maps ``(N, C, H, W)`` to ``(N, D)``; ``D`` is ``backbone.feature_dim`` or found with a
        forward pass.
    train_dataset, test_dataset
        Labelled datasets with the same classes.
    epochs, lr, momentum, weight_decay, batch_size
        Optimisation settings.
    augmentation
        Applied to every training batch in [0, 1] before normalisation: a composition name of
        :mod:`phenossl.augment` (built with its defaults) or a module; None for no augmentation.
    normalize, input_size
        As in :func:`iter_extract_features`; ``input_size`` defaults to the augmentation's
        output size (its ``size``), so test images are seen at the training size.
    seed
        Seeds the head's initialisation, the batch order and the augmentation, with private
        random streams (torch's global RNG state is left as it was).
    device, amp
        Device, and autocast on CUDA.

    Returns
    -------
    FinetuneResult
    """
    dev = resolve_device(device)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        check_positive(value, name)
    check_finite(lr, "lr", positive=True)
    for name, rate in (("momentum", momentum), ("weight_decay", weight_decay)):
        check_finite(rate, name)
    num_classes = len(train_dataset.classes)
    if num_classes < 2:
        raise ValueError(f"{train_dataset.name}: fine-tuning needs >= 2 classes")
    if test_dataset.classes != train_dataset.classes:
        raise ValueError(f"the test set's classes differ from the training set's ({num_classes})")
    _check_labelled(train_dataset)
    _check_labelled(test_dataset)
    augment = _augmentation(augmentation)
    if input_size is None:  # test images at the size the augmentation trains at
        input_size = getattr(augment, "size", None)
    rng = RunRng(seed, dev)
    prepare = Preprocess(backbone, train_dataset, normalize, input_size, dev)
    model = copy.deepcopy(backbone).to(dev).to(memory_format=memory_format(dev))
    with rng:
        head = nn.Linear(_feature_dim(model, prepare, train_dataset), num_classes).to(dev)
    net = nn.Sequential(model, head)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    steps = math.ceil(len(train_dataset) / batch_size)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp and amp_dtype(dev) == torch.float16)
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    total = epochs * steps
    yield Progress(0, total, f"fine-tuning on {dev}")
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(train_dataset), generator=generator)
        seen, loss_sum, correct = 0, torch.zeros((), device=dev), torch.zeros((), device=dev)
        lr_now = _cosine(lr, epoch * steps, epochs * steps)
        for step, (images, targets) in enumerate(prefetch(train_dataset, order.split(batch_size))):
            _set_lr(optimizer, _cosine(lr, epoch * steps + step, epochs * steps))
            x = images.to(dev, non_blocking=True).float() / 255.0
            if augment is not None:
                with rng:
                    x = augment(x)
            targets = targets.to(dev, non_blocking=True)
            with autocast(dev, enabled=amp):
                logits = net(prepare.scaled(x))
                loss = F.cross_entropy(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            seen += len(targets)
            loss_sum += loss.detach() * len(targets)
            correct += (logits.detach().argmax(dim=1) == targets).sum()
            done = epoch * steps + step + 1
            yield Progress(done, total, f"epoch {epoch + 1}/{epochs}")
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(loss_sum) / seen,
                "train_top1": float(correct) / seen,
                "lr": lr_now,
            }
        )
    net.eval()
    logits = []
    for images, _ in prefetch(test_dataset, in_order(len(test_dataset), batch_size)):
        with torch.no_grad(), autocast(dev, enabled=amp):
            logits.append(net(prepare(images)).float().cpu())
    result = score(torch.cat(logits), test_dataset.targets, num_classes)
    return FinetuneResult(
        **vars(result) | {"history": history},
        backbone={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        head={k: v.detach().cpu().clone() for k, v in head.state_dict().items()},
    )


@drives(iter_finetune)
def finetune(*, progress: ProgressCallback | None = None) -> FinetuneResult:
    """Fine-tune a copy of the backbone with a linear head; see :func:`iter_finetune`."""


# -- the protocols together ---------------------------------------------------------------------


@dataclass
class ProtocolResults:
    """What :func:`iter_protocols` computed.

    ``scores`` maps each protocol run (``linear``, ``knn``, ``finetune``, in that order) to its
    result; ``test_features`` are the frozen test-set ``(features, targets)`` when they were
    computed (for a frozen protocol, or when asked for).
    """

    scores: dict[str, ClassificationResult]
    test_features: tuple[Tensor, Tensor] | None = None


def protocol_stages(
    linear: Any = None, knn: Any = None, finetune: Any = None, *, test_features: bool = False
) -> int:
    """How many progress stages :func:`iter_protocols` runs with these settings (None: skipped)."""
    runs = [p is not None for p in (linear, knn, finetune)]
    frozen = runs[0] or runs[1]
    return frozen + (frozen or test_features) + sum(runs)


def iter_protocols(
    backbone: nn.Module,
    train: ImageDataset | None,
    test: ImageDataset,
    *,
    linear: dict[str, Any] | None = None,
    knn: dict[str, Any] | None = None,
    finetune: dict[str, Any] | None = None,
    test_features: bool = False,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    input_size: int | None = None,
    amp: bool = True,
    seed: int = 0,
    stages: Stages | None = None,
) -> ProgressGenerator[ProtocolResults]:
    """The evaluation protocols of a backbone on a train/test pair, frozen features computed once.

    Parameters
    ----------
    backbone, train, test
        The model and the labelled data (``train`` may be None when only ``test_features``
        are asked for).
    linear, knn, finetune
        Keyword arguments of :func:`linear_eval`, :func:`knn_eval` and :func:`finetune` (beyond
        the data, ``device``, ``seed``, ``input_size`` and ``amp``); None skips the protocol,
        ``{}`` runs it with its defaults.
    test_features
        Also compute the frozen test features when no frozen protocol needs them.
    batch_size
        Images per batch of the feature extraction.
    device, input_size, amp, seed
        As for each protocol.
    stages
        Progress stages to run in (the caller's, with :func:`protocol_stages` of them left);
        None: a new count of just these.

    Returns
    -------
    ProtocolResults
    """
    if stages is None:
        stages = Stages(protocol_stages(linear, knn, finetune, test_features=test_features))

    def features(data: ImageDataset | None, name: str) -> ProgressGenerator[tuple[Tensor, Tensor]]:
        if data is None:
            raise ValueError(f"{name} features asked for without a {name} dataset")
        gen = iter_extract_features(
            backbone, data, batch_size=batch_size, device=device, input_size=input_size, amp=amp
        )
        return (yield from stages.run(gen, f"{name} features"))

    scores: dict[str, ClassificationResult] = {}
    frozen = linear is not None or knn is not None
    test_xy = None
    if frozen:
        x_train, y_train = yield from features(train, "train")
    if frozen or test_features:
        test_xy = yield from features(test, "test")
    num_classes = len(test.classes)
    if linear is not None:
        assert test_xy is not None
        linear_gen = iter_linear_eval(
            x_train, y_train, *test_xy, num_classes=num_classes, seed=seed, device=device, **linear
        )
        scores["linear"] = yield from stages.run(linear_gen, "linear probe")
    if knn is not None:
        assert test_xy is not None
        scores["knn"] = knn_eval(
            x_train, y_train, *test_xy, num_classes=num_classes, device=device, **knn
        )
        yield stages.done("kNN")
    if finetune is not None:
        if train is None:
            raise ValueError("fine-tuning asked for without a train dataset")
        finetune_gen = iter_finetune(
            backbone, train, test, seed=seed, device=device, input_size=input_size, amp=amp,
            **finetune,
        )  # fmt: skip
        scores["finetune"] = yield from stages.run(finetune_gen, "fine-tuning")
    return ProtocolResults(scores, test_xy)


# -- helpers -----------------------------------------------------------------------------------


def _cosine(base_lr: float, step: int, total: int) -> float:
    """Cosine decay from ``base_lr`` at step 0 towards 0 at step ``total``."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * step / total))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _feature_dim(model: nn.Module, prepare: Preprocess, dataset: ImageDataset) -> int:
    dim = getattr(model, "feature_dim", None)
    if dim is not None:
        return int(dim)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(prepare(dataset.get_batch([0])[0]))
    model.train(was_training)
    return int(out.shape[1])


def _augmentation(augmentation: str | nn.Module | None) -> Callable[[Tensor], Tensor] | None:
    if augmentation is None or isinstance(augmentation, nn.Module):
        return augmentation
    if isinstance(augmentation, str):
        from phenossl.augment import build_augmentation

        return build_augmentation(augmentation)
    raise TypeError(
        f"augmentation is a {type(augmentation).__name__}; expected a composition name, "
        "an nn.Module or None"
    )


def _features(feats: Tensor, labels: Labels, split: str) -> tuple[Tensor, Tensor]:
    feats = torch.as_tensor(feats)
    if feats.ndim != 2 or not feats.is_floating_point():
        raise ValueError(
            f"{split} features must be a float (N, D) tensor, got {feats.dtype} "
            f"{tuple(feats.shape)}"
        )
    y = torch.from_numpy(as_labels(labels, f"{split} labels"))
    if len(y) != len(feats):
        raise ValueError(f"{split}: {len(feats)} feature rows but {len(y)} labels")
    if len(y) == 0:
        raise ValueError(f"{split}: no samples")
    if (y < 0).any():
        raise ValueError(f"{split} labels hold -1 (unlabelled samples); drop them first")
    return feats.float(), y


def _train_test(
    train_feats: Tensor,
    train_y: Labels,
    test_feats: Tensor,
    test_y: Labels,
    num_classes: int | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Checked train and test features and labels, and the number of classes (default: the
    largest label + 1).
    """
    x_train, y_train = _features(train_feats, train_y, "train")
    x_test, y_test = _features(test_feats, test_y, "test")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"train features have {x_train.shape[1]} dims, test {x_test.shape[1]}")
    largest = max(int(y_train.max()), int(y_test.max())) + 1
    if num_classes is None:
        num_classes = largest
    elif num_classes < largest:
        raise ValueError(f"num_classes={num_classes} but the labels go up to {largest - 1}")
    return x_train, y_train, x_test, y_test, int(num_classes)


def _check_labelled(dataset: ImageDataset) -> None:
    if (dataset.targets < 0).any():
        raise ValueError(
            f"dataset {dataset.name!r} has unlabelled images (target -1); "
            "choose a label column or drop them"
        )
