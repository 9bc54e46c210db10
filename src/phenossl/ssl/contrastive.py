"""Contrastive methods: SimCLR, MoCoV2+, NNCLR, ReSSL.

Default hyperparameters are the paper's CIFAR settings (appendix B.1) completed with
solo-learn's CIFAR configurations; :mod:`phenossl.ssl.presets` documents which is which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phenossl.models.heads import mlp
from phenossl.ssl.base import Method, MomentumMethod, register
from phenossl.ssl.losses import moco_loss, nnclr_loss, nt_xent_loss, ressl_loss
from phenossl.ssl.memory import FeatureQueue, NNMemoryBank
from phenossl.ssl.momentum import momentum_copy


@register
class SimCLR(Method):
    """SimCLR (Chen et al., ICML 2020): NT-Xent between the projections of two views.

    Projector: Linear-ReLU-Linear (no BatchNorm, as in solo-learn).
    """

    name = "simclr"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        temperature: float = 0.2,
    ) -> None:
        super().__init__(backbone)
        self.temperature = temperature
        self.projector = mlp(self.feature_dim, [proj_hidden_dim], proj_output_dim, batch_norm=False)

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        x1, x2 = self._two_views(views)
        z1 = self.projector(self.backbone(x1))
        z2 = self.projector(self.backbone(x2))
        return {"loss": nt_xent_loss(z1, z2, self.temperature)}


@register
class MoCoV2Plus(MomentumMethod):
    """MoCoV2+ (Chen et al., 2020, symmetric variant as in solo-learn).

    Each view's query is contrasted with the momentum key of the other view and with a queue of
    earlier keys *of that other view*; the loss is the mean of the two directions. One queue per
    view. Projector: Linear-ReLU-Linear (no BatchNorm), with a momentum copy.

    Buffers: ``queues.0`` / ``queues.1`` (:class:`~phenossl.ssl.memory.FeatureQueue`, keys of
    view 1 / view 2, L2-normalised).
    """

    name = "mocov2plus"
    momentum_heads = ("projector",)

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        queue_size: int = 32768,
        temperature: float = 0.2,
        base_tau: float = 0.99,
        final_tau: float = 0.999,
    ) -> None:
        super().__init__(backbone, base_tau=base_tau, final_tau=final_tau)
        self.temperature = temperature
        self.projector = mlp(self.feature_dim, [proj_hidden_dim], proj_output_dim, batch_norm=False)
        self.momentum_projector = momentum_copy(self.projector)
        self.queues = nn.ModuleList([FeatureQueue(queue_size, proj_output_dim) for _ in range(2)])

    @torch.no_grad()
    def _key(self, x: Tensor) -> Tensor:
        return F.normalize(self.momentum_projector(self.momentum_backbone(x)), dim=1)

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        x1, x2 = self._two_views(views)
        q1 = self.projector(self.backbone(x1))
        q2 = self.projector(self.backbone(x2))
        k1, k2 = self._key(x1), self._key(x2)
        queue1, queue2 = (cast(FeatureQueue, q).values() for q in self.queues)
        loss = (
            moco_loss(q1, k2, queue2, self.temperature)
            + moco_loss(q2, k1, queue1, self.temperature)
        ) / 2
        self.enqueue(self.queues[0], k1)
        self.enqueue(self.queues[1], k2)
        return {"loss": loss, "tau": self.tau.detach().clone()}


@register
class NNCLR(Method):
    """NNCLR (Dwibedi et al., ICCV 2021): contrast the nearest neighbour of one view, taken from a
    support set of earlier projections, with the prediction of the other view.

    Projector: 3 linear layers with BatchNorm, including on the output; predictor:
    Linear-BN-ReLU-Linear. The support set (``support``, an
    :class:`~phenossl.ssl.memory.NNMemoryBank`) receives the normalised view-1 projections.
    """

    name = "nnclr"
    heads = ("projector", "predictor")

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        queue_size: int = 65536,
        temperature: float = 0.2,
    ) -> None:
        super().__init__(backbone)
        self.temperature = temperature
        self.projector = mlp(
            self.feature_dim,
            [proj_hidden_dim, proj_hidden_dim],
            proj_output_dim,
            output_norm="bn",
        )
        self.predictor = mlp(proj_output_dim, [pred_hidden_dim], proj_output_dim)
        self.support = NNMemoryBank(queue_size, proj_output_dim)

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        x1, x2 = self._two_views(views)
        z1 = self.projector(self.backbone(x1))
        z2 = self.projector(self.backbone(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
        _, nn1 = self.support.nearest(z1)
        _, nn2 = self.support.nearest(z2)
        loss = (nnclr_loss(nn1, p2, self.temperature) + nnclr_loss(nn2, p1, self.temperature)) / 2
        self.enqueue(self.support, z1)
        return {"loss": loss}


@register
class ReSSL(MomentumMethod):
    """ReSSL (Zheng et al., NeurIPS 2021): the online query of view 1 must reproduce the sharper
    similarity distribution of the momentum key of view 2 over a queue of earlier keys.

    ``views[0]`` is the strongly augmented view (query), ``views[1]`` the weak one (key):
    ``weak_views = (1,)`` makes the trainer build it with crop and flip only.
    Projector: Linear-ReLU-Linear (no BatchNorm), with a momentum copy. Buffer: ``queue``.
    """

    name = "ressl"
    weak_views = (1,)
    momentum_heads = ("projector",)

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        queue_size: int = 65536,
        temperature_q: float = 0.1,
        temperature_k: float = 0.04,
        base_tau: float = 0.99,
        final_tau: float = 1.0,
    ) -> None:
        super().__init__(backbone, base_tau=base_tau, final_tau=final_tau)
        self.temperature_q = temperature_q
        self.temperature_k = temperature_k
        self.projector = mlp(self.feature_dim, [proj_hidden_dim], proj_output_dim, batch_norm=False)
        self.momentum_projector = momentum_copy(self.projector)
        self.queue = FeatureQueue(queue_size, proj_output_dim)

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        strong, weak = self._two_views(views)
        query = F.normalize(self.projector(self.backbone(strong)), dim=1)
        with torch.no_grad():
            key = F.normalize(self.momentum_projector(self.momentum_backbone(weak)), dim=1)
        loss = ressl_loss(query, key, self.queue.values(), self.temperature_q, self.temperature_k)
        self.enqueue(self.queue, key)
        return {"loss": loss, "tau": self.tau.detach().clone()}
