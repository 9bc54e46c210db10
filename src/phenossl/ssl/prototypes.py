"""Clustering-based methods: SwAV (online Sinkhorn codes) and DeepClusterV2 (k-means codes)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phenossl.models.heads import NormalizedLinear, mlp
from phenossl.ssl.base import Method, register
from phenossl.ssl.losses import deepclusterv2_loss, sinkhorn, swav_loss
from phenossl.ssl.memory import FeatureQueue, IndexedMemory, spherical_kmeans


@register
class SwAV(Method):
    """SwAV (Caron et al., NeurIPS 2020): predict the Sinkhorn code of one view from the other.

    Codes are computed without gradient from the prototype scores of the batch, completed from
    epoch ``epoch_queue_starts`` on by the scores of a queue of earlier projections (one
    :class:`~phenossl.ssl.memory.FeatureQueue` per view, only its filled part is used). The
    prototypes (unit-norm rows, :class:`~phenossl.models.heads.NormalizedLinear`) get no
    gradient during the first ``freeze_prototypes_epochs`` epochs. Projector:
    Linear-BN-ReLU-Linear, output L2-normalised.
    """

    name = "swav"
    heads = ("projector", "prototypes")

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 128,
        num_prototypes: int = 3000,
        temperature: float = 0.1,
        sk_iters: int = 3,
        sk_epsilon: float = 0.05,
        queue_size: int = 3840,
        epoch_queue_starts: int = 50,
        freeze_prototypes_epochs: int = 2,
    ) -> None:
        super().__init__(backbone)
        if queue_size < 0:
            raise ValueError(f"SwAV: queue_size must be >= 0 (0 disables it), got {queue_size}")
        self.temperature = temperature
        self.sk_iters = sk_iters
        self.sk_epsilon = sk_epsilon
        self.epoch_queue_starts = epoch_queue_starts
        self.freeze_prototypes_epochs = freeze_prototypes_epochs
        self.projector = mlp(self.feature_dim, [proj_hidden_dim], proj_output_dim)
        self.prototypes = NormalizedLinear(proj_output_dim, num_prototypes)
        self.queues = nn.ModuleList(
            [FeatureQueue(queue_size, proj_output_dim, init="zeros") for _ in range(2)]
            if queue_size > 0
            else []
        )

    @torch.no_grad()
    def _codes(self, scores: Tensor, view: int) -> Tensor:
        batch = scores.shape[0]
        scores = scores.detach()
        if len(self.queues) and self.current_epoch >= self.epoch_queue_starts:
            queued = cast(FeatureQueue, self.queues[view]).ordered()
            if queued.shape[0]:
                scores = torch.cat([scores, self.prototypes(queued.to(scores.dtype))])
        return sinkhorn(scores, self.sk_iters, self.sk_epsilon)[:batch]

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        x1, x2 = self._two_views(views)
        frozen = self.current_epoch < self.freeze_prototypes_epochs
        z = [F.normalize(self.projector(self.backbone(x)), dim=1) for x in (x1, x2)]
        scores = [self.prototypes(zv, frozen=frozen) for zv in z]
        codes = [self._codes(s, view) for view, s in enumerate(scores)]
        loss = swav_loss(scores, codes, self.temperature)
        for queue, zv in zip(self.queues, z):
            self.enqueue(queue, zv)
        return {"loss": loss}


@register
class DeepClusterV2(Method):
    """DeepClusterV2 (Caron et al., NeurIPS 2020): classify each view into the k-means cluster
    of its sample, with ``num_heads`` independent clusterings of ``num_prototypes`` clusters.

    The normalised projections of every sample are stored at its dataset index in
    :class:`~phenossl.ssl.memory.IndexedMemory`. At the start of each epoch with a filled memory,
    :func:`~phenossl.ssl.memory.spherical_kmeans` (head ``h`` on view ``h % 2``, seeded from
    ``(seed, epoch, h)``) sets the prototypes (buffer ``prototypes`` ``(H, K, D)``) and the
    per-sample cluster ``assignments`` ``(H, dataset_size)``, ``-1`` when unknown. The first
    epoch of a fresh run therefore only fills the memory: its loss is 0 (as in solo-learn, where
    it is undefined and the steps are skipped). Projector: Linear-BN-ReLU-Linear.

    Parameters
    ----------
    dataset_size
        Number of samples in the training set; ``indices`` must lie in ``[0, dataset_size)``.
        Must be at least ``num_prototypes``.
    """

    name = "deepclusterv2"
    prototypes: Tensor
    assignments: Tensor

    def __init__(
        self,
        backbone: nn.Module,
        *,
        dataset_size: int,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 128,
        num_prototypes: int = 3000,
        num_heads: int = 3,
        temperature: float = 0.1,
        kmeans_iters: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__(backbone)
        if num_heads <= 0 or num_prototypes <= 0:
            raise ValueError(
                "DeepClusterV2: num_heads and num_prototypes must be positive, got "
                f"{num_heads} and {num_prototypes}"
            )
        if dataset_size < num_prototypes:
            raise ValueError(
                f"DeepClusterV2: dataset_size ({dataset_size}) must be at least num_prototypes "
                f"({num_prototypes}); k-means needs one sample per cluster"
            )
        self.temperature = temperature
        self.kmeans_iters = kmeans_iters
        self.seed = seed
        self.projector = mlp(self.feature_dim, [proj_hidden_dim], proj_output_dim)
        self.memory = IndexedMemory(2, dataset_size, proj_output_dim)
        self.register_buffer(
            "prototypes",
            F.normalize(torch.randn(num_heads, num_prototypes, proj_output_dim), dim=-1),
        )
        self.register_buffer(
            "assignments", torch.full((num_heads, dataset_size), -1, dtype=torch.long)
        )

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        filled = self.memory.filled.nonzero().squeeze(1)
        if filled.numel() == 0:
            return
        n_prototypes = self.prototypes.shape[1]
        if filled.numel() < n_prototypes:
            warnings.warn(
                f"DeepClusterV2: only {filled.numel()} samples in memory, fewer than "
                f"num_prototypes={n_prototypes}; keeping the previous clustering",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        self.recluster(epoch)

    @torch.no_grad()
    def recluster(self, epoch: int) -> None:
        """Run k-means on the memory bank and refresh ``prototypes`` and ``assignments``."""
        filled = self.memory.filled.nonzero().squeeze(1)
        n_views = self.memory.embeddings.shape[0]
        for head in range(self.prototypes.shape[0]):
            seed = int(np.random.SeedSequence([self.seed, epoch, head]).generate_state(1)[0])
            generator = torch.Generator().manual_seed(seed)
            embeddings = self.memory.embeddings[head % n_views, filled]
            centroids, labels = spherical_kmeans(
                embeddings, self.prototypes.shape[1], self.kmeans_iters, generator=generator
            )
            self.prototypes[head] = centroids.to(self.prototypes.dtype)
            self.assignments[head].fill_(-1)
            self.assignments[head, filled] = labels

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        x1, x2 = self._two_views(views)
        if indices is None or indices.shape != (x1.shape[0],):
            raise ValueError(
                "DeepClusterV2.training_step: indices must be the (B,) dataset indices of the "
                f"batch, got {None if indices is None else tuple(indices.shape)} for B={x1.shape[0]}"
            )
        dataset_size = self.assignments.shape[1]
        if int(indices.min()) < 0 or int(indices.max()) >= dataset_size:
            raise ValueError(
                f"DeepClusterV2.training_step: indices must lie in [0, {dataset_size}) "
                f"(dataset_size), got values in [{int(indices.min())}, {int(indices.max())}]"
            )
        z = [F.normalize(self.projector(self.backbone(x)), dim=1) for x in (x1, x2)]
        prototypes = self.prototypes.to(z[0].dtype)
        scores = torch.einsum("vnd,hkd->hvnk", torch.stack(z), prototypes)
        targets = self.assignments[:, indices.to(self.assignments.device)]
        loss = deepclusterv2_loss(scores, targets, self.temperature)
        self.memory.update(indices, z)
        return {"loss": loss, "labelled_fraction": (targets[0] >= 0).float().mean()}
