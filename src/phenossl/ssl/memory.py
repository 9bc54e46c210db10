"""Queues and memory banks of embeddings, and what is computed on them.

- :class:`FeatureQueue`: a first-in first-out ring buffer of embeddings (MoCoV2+ and ReSSL
  negatives, SwAV's queue). Any batch size works, including sizes that do not divide the queue
  length and a smaller last batch: items are written at consecutive positions modulo the length.
- :class:`NNMemoryBank`: a :class:`FeatureQueue` that also answers nearest-neighbour queries
  (NNCLR's and NNBYOL's support set).
- :class:`IndexedMemory`: one embedding per dataset sample and view, addressed by the dataset
  index (DeepClusterV2's memory bank), and :func:`spherical_kmeans` to cluster it.

All state lives in registered buffers, so a method's ``state_dict()`` carries it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FeatureQueue",
    "IndexedMemory",
    "NNMemoryBank",
    "nearest_neighbours",
    "spherical_kmeans",
]

# Rows scored at once in nearest-centroid searches (bounds the (rows, K) similarity matrix).
_CHUNK = 8192


class FeatureQueue(nn.Module):
    """Ring buffer of ``size`` embeddings of dimension ``dim``.

    Parameters
    ----------
    size
        Number of stored embeddings.
    dim
        Embedding dimension.
    init
        ``"random"``: start with random unit vectors (MoCo, NNCLR, ReSSL: they serve as
        negatives / neighbours until real keys replace them); ``"zeros"``: start empty (SwAV,
        which only reads the filled part, see :meth:`ordered`).

    Buffers
    -------
    queue : ``(size, dim)`` float32
    ptr : long scalar, the next position to write
    num_filled : long scalar, how many positions hold enqueued items (at most ``size``)
    """

    queue: Tensor
    ptr: Tensor
    num_filled: Tensor

    def __init__(self, size: int, dim: int, *, init: Literal["random", "zeros"] = "random") -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"FeatureQueue: size and dim must be positive, got {size}, {dim}")
        if init == "random":
            data = F.normalize(torch.randn(size, dim), dim=1)
        elif init == "zeros":
            data = torch.zeros(size, dim)
        else:
            raise ValueError(f"FeatureQueue: init must be 'random' or 'zeros', got {init!r}")
        self.register_buffer("queue", data)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_filled", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.queue.shape[0]

    @property
    def dim(self) -> int:
        return self.queue.shape[1]

    @torch.no_grad()
    def enqueue(self, items: Tensor) -> None:
        """Append ``items`` ``(B, dim)``, overwriting the oldest entries (any ``B``)."""
        if items.ndim != 2 or items.shape[1] != self.dim:
            raise ValueError(
                f"FeatureQueue.enqueue: expected items (B, {self.dim}), got {tuple(items.shape)}"
            )
        n = items.shape[0]
        if n == 0:
            return
        start = int(self.ptr)
        if n > self.size:  # only the newest `size` items survive a full lap
            start = (start + n - self.size) % self.size
            items = items[-self.size :]
        positions = (start + torch.arange(items.shape[0], device=self.queue.device)) % self.size
        self.queue[positions] = items.detach().to(self.queue.dtype)
        self.ptr.fill_((int(self.ptr) + n) % self.size)
        self.num_filled.fill_(min(self.size, int(self.num_filled) + n))

    def values(self) -> Tensor:
        """A detached copy of the whole buffer ``(size, dim)`` in storage order.

        A copy, so the caller can use it in a loss and enqueue afterwards without breaking
        autograd's saved tensors.
        """
        return self.queue.detach().clone()

    def ordered(self) -> Tensor:
        """The enqueued items only, oldest first ``(num_filled, dim)`` (a copy)."""
        filled = int(self.num_filled)
        if filled < self.size:
            return self.queue[:filled].detach().clone()
        return torch.roll(self.queue.detach(), shifts=-int(self.ptr), dims=0)


def nearest_neighbours(query: Tensor, bank: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest row of ``bank`` for each row of ``query`` by cosine similarity.

    Returns
    -------
    indices : ``(N,)`` long
    neighbours : ``(N, D)`` the selected rows of ``bank`` (no gradient)
    """
    if query.ndim != 2 or bank.ndim != 2 or query.shape[1] != bank.shape[1]:
        raise ValueError(
            "nearest_neighbours: expected query (N, D) and bank (K, D), got "
            f"{tuple(query.shape)} and {tuple(bank.shape)}"
        )
    with torch.no_grad():
        bank = bank.detach()
        similarity = F.normalize(query.detach(), dim=1) @ F.normalize(bank, dim=1).t()
        indices = similarity.argmax(dim=1)
    return indices, bank[indices]


class NNMemoryBank(FeatureQueue):
    """Support set of NNCLR / NNBYOL: a :class:`FeatureQueue` with nearest-neighbour lookup."""

    def nearest(self, query: Tensor) -> tuple[Tensor, Tensor]:
        """``(indices, neighbours)`` of the closest stored embedding (cosine) to each query."""
        return nearest_neighbours(query, self.queue)


class IndexedMemory(nn.Module):
    """One embedding per (view, dataset sample), written at the samples' dataset indices.

    Parameters
    ----------
    num_views
        Views stored per sample.
    size
        Dataset size (indices must lie in ``[0, size)``).
    dim
        Embedding dimension.

    Buffers
    -------
    embeddings : ``(num_views, size, dim)`` float32, random unit vectors until written
    filled : ``(size,)`` bool, which samples have been written
    """

    embeddings: Tensor
    filled: Tensor

    def __init__(self, num_views: int, size: int, dim: int) -> None:
        super().__init__()
        if num_views <= 0 or size <= 0 or dim <= 0:
            raise ValueError(
                "IndexedMemory: num_views, size and dim must be positive, got "
                f"{num_views}, {size}, {dim}"
            )
        self.register_buffer("embeddings", F.normalize(torch.randn(num_views, size, dim), dim=-1))
        self.register_buffer("filled", torch.zeros(size, dtype=torch.bool))

    @property
    def size(self) -> int:
        return self.embeddings.shape[1]

    @torch.no_grad()
    def update(self, indices: Tensor, views: Sequence[Tensor]) -> None:
        """Store ``views[v][i]`` as the embedding of sample ``indices[i]`` for view ``v``."""
        if len(views) != self.embeddings.shape[0]:
            raise ValueError(
                f"IndexedMemory.update: expected {self.embeddings.shape[0]} views, got {len(views)}"
            )
        indices = indices.to(self.embeddings.device, torch.long)
        if indices.ndim != 1 or any(
            v.shape != (indices.shape[0], self.embeddings.shape[2]) for v in views
        ):
            raise ValueError(
                "IndexedMemory.update: expected indices (B,) and views of shape "
                f"(B, {self.embeddings.shape[2]}), got {tuple(indices.shape)} and "
                f"{[tuple(v.shape) for v in views]}"
            )
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.size):
            raise ValueError(
                f"IndexedMemory.update: indices must lie in [0, {self.size}) (the dataset size), "
                f"got values in [{int(indices.min())}, {int(indices.max())}]"
            )
        for v, embedding in enumerate(views):
            self.embeddings[v, indices] = embedding.detach().to(self.embeddings.dtype)
        self.filled[indices] = True


def _nearest_centroid(x: Tensor, centroids: Tensor) -> Tensor:
    return torch.cat([(chunk @ centroids.t()).argmax(dim=1) for chunk in x.split(_CHUNK)])


@torch.no_grad()
def spherical_kmeans(
    x: Tensor, k: int, iterations: int = 10, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """K-means on the unit sphere (cosine similarity), as DeepClusterV2 runs on its memory bank.

    Centroids start at ``k`` distinct random rows of ``x``; each iteration assigns every row to
    its most similar centroid, replaces each non-empty cluster's centroid by the normalised mean
    of its rows (an empty cluster keeps its centroid), and a final assignment step follows the
    last update.

    Parameters
    ----------
    x
        ``(M, D)`` L2-normalised rows, ``M >= k``.
    k
        Number of clusters.
    iterations
        Update steps.
    generator
        CPU generator for the initial choice of rows (reproducible clustering).

    Returns
    -------
    centroids : ``(k, D)`` unit vectors
    assignments : ``(M,)`` long in ``[0, k)``
    """
    if x.ndim != 2:
        raise ValueError(f"spherical_kmeans: expected (M, D) rows, got {tuple(x.shape)}")
    if not 0 < k <= x.shape[0]:
        raise ValueError(
            f"spherical_kmeans: k must lie in [1, {x.shape[0]}] (the number of rows), got {k}"
        )
    if iterations < 0:
        raise ValueError(f"spherical_kmeans: iterations must be >= 0, got {iterations}")
    x = x.float()
    start = torch.randperm(x.shape[0], generator=generator)[:k].to(x.device)
    centroids = x[start].clone()
    assignments = _nearest_centroid(x, centroids)
    for _ in range(iterations):
        sums = torch.zeros_like(centroids).index_add_(0, assignments, x)
        counts = torch.bincount(assignments, minlength=k)
        non_empty = counts > 0
        centroids[non_empty] = F.normalize(sums[non_empty], dim=1)
        assignments = _nearest_centroid(x, centroids)
    return centroids, assignments
