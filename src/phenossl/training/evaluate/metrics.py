"""Classification scores from one confusion matrix over the whole test set.

Per-class accuracy is the recall of each class, correct predictions of the class over its test
samples, read from one confusion matrix of the whole test set (not an average of per-batch
scores); top-1 is the matrix's trace over its total.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

Labels = Tensor | np.ndarray | Sequence[int]


@dataclass(kw_only=True)
class ClassificationResult:
    """Test-set scores of a classifier.

    Attributes
    ----------
    top1, top5
        Accuracies in [0, 1]; ``top5`` is None with 5 classes or fewer.
    per_class
        float64 ``(C,)`` recall of each class (NaN for a class absent from the test set).
    confusion
        int64 ``(C, C)``: row = true class, column = predicted class.
    history
        One dict per training epoch (``epoch``, ``loss``, ``train_top1``, ``lr``); empty for kNN.
    """

    top1: float
    top5: float | None
    per_class: np.ndarray
    confusion: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return int(self.confusion.shape[0])

    def to_dict(self, classes: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-compatible scores; per-class accuracies keyed by class name when given."""
        names = list(classes) if classes is not None else [str(c) for c in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for {self.num_classes} classes")
        per_class = {
            n: (None if math.isnan(a) else float(a)) for n, a in zip(names, self.per_class)
        }
        return {
            "top1": self.top1,
            "top5": self.top5,
            "per_class_accuracy": per_class,
            "confusion_matrix": self.confusion.tolist(),
            "history": self.history,
        }


def confusion_matrix(y_true: Labels, y_pred: Labels, num_classes: int) -> np.ndarray:
    """int64 ``(C, C)`` counts: row = true class, column = predicted class.

    Examples
    --------
    >>> confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], num_classes=3)
    array([[1, 1, 0],
           [0, 1, 0],
           [0, 0, 1]])
    """
    true, pred = as_labels(y_true, "y_true"), as_labels(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} labels but y_pred {pred.size}")
    _check_range(true, num_classes, "y_true")
    _check_range(pred, num_classes, "y_pred")
    flat = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def per_class_accuracy(y_true: Labels, y_pred: Labels, num_classes: int) -> np.ndarray:
    """Recall of each class from one confusion matrix over all the samples.

    Returns float64 ``(C,)``: correct predictions of class ``c`` / samples of class ``c``
    (NaN for a class with no sample).

    Examples
    --------
    >>> per_class_accuracy([0, 0, 1], [0, 1, 1], num_classes=3)  # class 2 has no sample
    array([0.5, 1. , nan])
    """
    return _recall(confusion_matrix(y_true, y_pred, num_classes))


def _recall(confusion: np.ndarray) -> np.ndarray:
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / support, np.nan)


def score(scores: Tensor, y_true: Tensor, num_classes: int) -> ClassificationResult:
    """Top-1/top-5 accuracy, per-class accuracy and confusion from class scores ``(N, C)``.

    Examples
    --------
    >>> import torch
    >>> result = score(torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]]), torch.tensor([0, 1, 1]), 2)
    >>> round(result.top1, 3), result.top5, result.per_class.tolist()
    (0.667, None, [1.0, 0.5])
    """
    scores, y_true = scores.detach().float().cpu(), y_true.detach().cpu().long()
    if scores.ndim != 2 or scores.shape != (len(y_true), num_classes):
        raise ValueError(
            f"scores have shape {tuple(scores.shape)}; expected ({len(y_true)}, {num_classes})"
        )
    if len(y_true) == 0:
        raise ValueError("cannot score an empty test set")
    pred = scores.argmax(dim=1)
    top5 = None
    if num_classes > 5:
        hits = (scores.topk(5, dim=1).indices == y_true[:, None]).any(dim=1)
        top5 = float(hits.float().mean())
    confusion = confusion_matrix(y_true.numpy(), pred.numpy(), num_classes)
    return ClassificationResult(
        top1=float(np.trace(confusion) / confusion.sum()),
        top5=top5,
        per_class=_recall(confusion),
        confusion=confusion,
    )


def as_labels(values: Labels, name: str) -> np.ndarray:
    """Integer class indices as a flat int64 array (``name`` is for the error message)."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got {array.dtype}")
    return array.astype(np.int64).reshape(-1)


def _check_range(labels: np.ndarray, num_classes: int, name: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise ValueError(f"{name} holds {bad}; expected class indices in 0..{num_classes - 1}")
