"""Self-distillation methods (no negatives): BYOL, NNBYOL, SimSiam, DINO."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phenossl.models.heads import DINOHead, mlp
from phenossl.ssl.base import Method, MomentumMethod, register
from phenossl.ssl.losses import byol_loss, dino_center_update, dino_loss, simsiam_loss
from phenossl.ssl.memory import NNMemoryBank
from phenossl.ssl.momentum import momentum_copy


def _embedding_std(*z: Tensor) -> Tensor:
    """Mean per-dimension std of normalised embeddings: ~1/sqrt(D) when healthy, 0 when collapsed."""
    return torch.stack([F.normalize(x.detach(), dim=1).std(dim=0).mean() for x in z]).mean()


@register
class BYOL(MomentumMethod):
    """BYOL (Grill et al., NeurIPS 2020): predict the momentum projection of the other view.

    ``loss = byol(p1, z2_m) + byol(p2, z1_m)`` (summed over the two directions, as solo-learn).
    Projector and predictor: Linear-BN-ReLU-Linear; the projector has a momentum copy.
    """

    name = "byol"
    heads = ("projector", "predictor")
    momentum_heads = ("projector",)

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        base_tau: float = 0.99,
        final_tau: float = 1.0,
    ) -> None:
        super().__init__(backbone, base_tau=base_tau, final_tau=final_tau)
        self.projector = mlp(self.feature_dim, [proj_hidden_dim], proj_output_dim)
        self.momentum_projector = momentum_copy(self.projector)
        self.predictor = mlp(proj_output_dim, [pred_hidden_dim], proj_output_dim)

    def _online(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.projector(self.backbone(x))
        return z, self.predictor(z)

    @torch.no_grad()
    def _target(self, x: Tensor) -> Tensor:
        return self.momentum_projector(self.momentum_backbone(x))

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        x1, x2 = self._two_views(views)
        (z1, p1), (z2, p2) = self._online(x1), self._online(x2)
        t1, t2 = self._target(x1), self._target(x2)
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        return {"loss": loss, "z_std": _embedding_std(z1, z2), "tau": self.tau.detach().clone()}


@register
class NNBYOL(BYOL):
    """NNBYOL (Dwibedi et al., ICCV 2021, BYOL variant): BYOL whose targets are the nearest
    neighbours of the momentum projections in a support set of earlier momentum projections.

    Buffer: ``support`` (:class:`~phenossl.ssl.memory.NNMemoryBank`, normalised view-1 momentum
    projections).
    """

    name = "nnbyol"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        queue_size: int = 65536,
        base_tau: float = 0.99,
        final_tau: float = 1.0,
    ) -> None:
        super().__init__(
            backbone,
            proj_hidden_dim=proj_hidden_dim,
            proj_output_dim=proj_output_dim,
            pred_hidden_dim=pred_hidden_dim,
            base_tau=base_tau,
            final_tau=final_tau,
        )
        self.support = NNMemoryBank(queue_size, proj_output_dim)

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        x1, x2 = self._two_views(views)
        (z1, p1), (z2, p2) = self._online(x1), self._online(x2)
        t1 = F.normalize(self._target(x1), dim=1)
        t2 = F.normalize(self._target(x2), dim=1)
        _, nn1 = self.support.nearest(t1)
        _, nn2 = self.support.nearest(t2)
        loss = byol_loss(p1, nn2) + byol_loss(p2, nn1)
        self.enqueue(self.support, t1)
        return {"loss": loss, "z_std": _embedding_std(z1, z2), "tau": self.tau.detach().clone()}


@register
class SimSiam(Method):
    """SimSiam (Chen and He, CVPR 2021): predict the stop-gradient projection of the other view.

    ``loss = (simsiam(p1, z2) + simsiam(p2, z1)) / 2``. Projector: 3 linear layers, the hidden
    ones without bias (BatchNorm follows), output BatchNorm without affine parameters; predictor:
    Linear(no bias)-BN-ReLU-Linear, trained with a constant learning rate (``static_lr``).
    """

    name = "simsiam"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 2048,
        pred_hidden_dim: int = 512,
    ) -> None:
        super().__init__(backbone)
        # The output Linear's bias would be cancelled by the non-affine BatchNorm after it.
        self.projector = mlp(
            self.feature_dim,
            [proj_hidden_dim, proj_hidden_dim],
            proj_output_dim,
            hidden_bias=False,
            output_bias=False,
            output_norm="bn_noaffine",
        )
        self.predictor = mlp(proj_output_dim, [pred_hidden_dim], proj_output_dim, hidden_bias=False)

    def head_groups(self) -> list[tuple[str, nn.Module, dict[str, Any]]]:
        return [
            ("projector", self.projector, {}),
            ("predictor", self.predictor, {"static_lr": True}),
        ]

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        x1, x2 = self._two_views(views)
        z1 = self.projector(self.backbone(x1))
        z2 = self.projector(self.backbone(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = (simsiam_loss(p1, z2) + simsiam_loss(p2, z1)) / 2
        return {"loss": loss, "z_std": _embedding_std(z1, z2)}


@register
class DINO(MomentumMethod):
    """DINO (Caron et al., ICCV 2021): the student matches the centred, sharpened teacher
    distribution over ``num_prototypes`` outputs for the other view.

    The teacher (momentum backbone + momentum head) temperature rises linearly from
    ``warmup_teacher_temperature`` to ``teacher_temperature`` over the first
    ``warmup_teacher_temperature_epochs`` epochs; the student's last layer stays frozen for the
    first ``freeze_last_layer`` epochs. Buffer ``center`` ``(num_prototypes,)``: EMA of the
    teacher logits (momentum ``center_momentum``).
    """

    name = "dino"
    heads = ("head",)
    momentum_heads = ("head",)
    center: Tensor

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        num_prototypes: int = 4096,
        use_bn_in_head: bool = False,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.07,
        warmup_teacher_temperature: float = 0.04,
        warmup_teacher_temperature_epochs: int = 50,
        center_momentum: float = 0.9,
        freeze_last_layer: int = 1,
        base_tau: float = 0.9995,
        final_tau: float = 1.0,
    ) -> None:
        super().__init__(backbone, base_tau=base_tau, final_tau=final_tau)
        if warmup_teacher_temperature_epochs < 0 or freeze_last_layer < 0:
            raise ValueError(
                "DINO: warmup_teacher_temperature_epochs and freeze_last_layer must be >= 0, got "
                f"{warmup_teacher_temperature_epochs} and {freeze_last_layer}"
            )
        self.student_temperature = student_temperature
        self.final_teacher_temperature = teacher_temperature
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.warmup_teacher_temperature_epochs = warmup_teacher_temperature_epochs
        self.center_momentum = center_momentum
        self.freeze_last_layer = freeze_last_layer
        self.head = DINOHead(
            self.feature_dim,
            proj_hidden_dim,
            proj_output_dim,
            num_prototypes,
            batch_norm=use_bn_in_head,
        )
        self.momentum_head = momentum_copy(self.head)
        self.register_buffer("center", torch.zeros(num_prototypes))

    def teacher_temperature(self, epoch: int) -> float:
        """Teacher temperature at ``epoch``: linear warm-up, then constant."""
        warmup = self.warmup_teacher_temperature_epochs
        if epoch >= warmup:
            return self.final_teacher_temperature
        if warmup == 1:
            return self.warmup_teacher_temperature
        fraction = epoch / (warmup - 1)
        return self.warmup_teacher_temperature + fraction * (
            self.final_teacher_temperature - self.warmup_teacher_temperature
        )

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        x1, x2 = self._two_views(views)
        frozen = self.current_epoch < self.freeze_last_layer
        student = [self.head(self.backbone(x), freeze_last_layer=frozen) for x in (x1, x2)]
        with torch.no_grad():
            teacher = [self.momentum_head(self.momentum_backbone(x)) for x in (x1, x2)]
        temperature = self.teacher_temperature(self.current_epoch)
        loss = dino_loss(student, teacher, self.center, self.student_temperature, temperature)
        self.center.copy_(dino_center_update(self.center, teacher, self.center_momentum))
        return {
            "loss": loss,
            "teacher_temperature": torch.tensor(temperature),
            "tau": self.tau.detach().clone(),
        }
