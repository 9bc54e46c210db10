"""Representation-collapse diagnostics of a feature matrix (no labels needed).

- :func:`effective_rank`: Roy and Vetterli's effective rank (2007), ``exp`` of the entropy of the
  normalised singular values of the centred features: ``D`` for isotropic features, 1 when all
  variance lies along one direction, and a "complete" collapse (one point) gives 0.
- :func:`collapse_stats`: that rank and the per-dimension standard deviation of the
  L2-normalised features (SimSiam's collapse check, Chen and He 2021: about ``1/sqrt(D)`` for
  spread-out features, 0 for a collapsed output), with a verdict.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["collapse_stats", "effective_rank"]

#: below these the features count as collapsed: effective rank, and ``std_mean * sqrt(D)``
MIN_EFFECTIVE_RANK = 2.0
MIN_NORMALISED_STD = 0.1


def _matrix(features: Any) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features: expected a (N >= 2, D) matrix, got shape {tuple(x.shape)}")
    x = x.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("features: contain NaN or infinite values")
    return x


def effective_rank(features: Any) -> float:
    """Effective rank of the centred ``(N, D)`` features, in ``[0, min(N, D)]``.

    Examples
    --------
    >>> round(effective_rank(np.eye(4)), 3)  # 4 orthogonal points, centred: rank 3, all equal
    3.0
    """
    x = _matrix(features)
    singular = torch.linalg.svdvals(x - x.mean(0))
    total = singular.sum()
    if total <= 1e-12 * max(1.0, float(x.abs().max())):
        return 0.0
    p = singular / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def collapse_stats(features: Any) -> dict[str, float | bool | int]:
    """Effective rank and per-dimension spread of ``(N, D)`` features, and a collapse verdict.

    ``std_mean``/``std_min``: the mean / smallest per-dimension standard deviation of the
    L2-normalised features; ``std_normalised = std_mean * sqrt(D)`` is about 1 for spread-out
    features. ``collapsed`` is true when the effective rank is below
    :data:`MIN_EFFECTIVE_RANK` or ``std_normalised`` below :data:`MIN_NORMALISED_STD`.

    Examples
    --------
    >>> stats = collapse_stats(np.ones((8, 4)))
    >>> stats["effective_rank"], stats["collapsed"]
    (0.0, True)
    """
    x = _matrix(features)
    dim = x.shape[1]
    std = torch.nn.functional.normalize(x, dim=1).std(0)
    rank = effective_rank(x)
    normalised = float(std.mean()) * math.sqrt(dim)
    return {
        "n": int(x.shape[0]),
        "dim": int(dim),
        "effective_rank": round(rank, 3),
        "std_mean": float(std.mean()),
        "std_min": float(std.min()),
        "std_normalised": round(normalised, 4),
        "collapsed": bool(rank < MIN_EFFECTIVE_RANK or normalised < MIN_NORMALISED_STD),
    }
