"""Redundancy-reduction methods: Barlow Twins, VICReg, VIbCReg."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from phenossl.models.heads import mlp
from phenossl.ssl.base import Method, register
from phenossl.ssl.losses import (
    barlow_twins_loss,
    covariance_term,
    normalized_covariance_term,
    variance_covariance_loss,
)


class _TwoBranch(Method):
    """Shared shape of the three methods: one projector, a loss of the two projections."""

    projector: nn.Module

    def _project(self, views: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        x1, x2 = self._two_views(views)
        return self.projector(self.backbone(x1)), self.projector(self.backbone(x2))


@register
class BarlowTwins(_TwoBranch):
    """Barlow Twins (Zbontar et al., ICML 2021): push the cross-correlation of the standardised
    projections towards the identity. Projector: 3 linear layers with BatchNorm + ReLU.
    """

    name = "barlow_twins"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 2048,
        lambd: float = 0.0051,
        scale_loss: float = 0.1,
    ) -> None:
        super().__init__(backbone)
        self.lambd = lambd
        self.scale_loss = scale_loss
        self.projector = mlp(self.feature_dim, [proj_hidden_dim, proj_hidden_dim], proj_output_dim)

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        z1, z2 = self._project(views)
        return {"loss": barlow_twins_loss(z1, z2, self.lambd, self.scale_loss)}


@register
class VICReg(_TwoBranch):
    """VICReg (Bardes et al., ICLR 2022): invariance + variance hinge + covariance penalty.
    Projector: 3 linear layers with BatchNorm + ReLU. See :func:`~phenossl.ssl.losses.vicreg_loss`.
    """

    name = "vicreg"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 2048,
        sim_loss_weight: float = 25.0,
        var_loss_weight: float = 25.0,
        cov_loss_weight: float = 1.0,
    ) -> None:
        super().__init__(backbone)
        self.weights = (sim_loss_weight, var_loss_weight, cov_loss_weight)
        self.projector = mlp(self.feature_dim, [proj_hidden_dim, proj_hidden_dim], proj_output_dim)

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        z1, z2 = self._project(views)
        loss, terms = variance_covariance_loss(z1, z2, self.weights, covariance_term)
        return {"loss": loss, **terms}


@register
class VIbCReg(_TwoBranch):
    """VIbCReg (Lee and Aune, 2021): VICReg with a normalised covariance term and a projector of
    3 linear layers with BatchNorm + GELU ending in IterNorm whitening (``iternorm=True``).
    See :func:`~phenossl.ssl.losses.vibcreg_loss`.
    """

    name = "vibcreg"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 2048,
        sim_loss_weight: float = 25.0,
        var_loss_weight: float = 25.0,
        cov_loss_weight: float = 200.0,
        iternorm: bool = True,
    ) -> None:
        super().__init__(backbone)
        self.weights = (sim_loss_weight, var_loss_weight, cov_loss_weight)
        self.projector = mlp(
            self.feature_dim,
            [proj_hidden_dim, proj_hidden_dim],
            proj_output_dim,
            activation="gelu",
            output_norm="iternorm" if iternorm else None,
        )

    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        z1, z2 = self._project(views)
        loss, terms = variance_covariance_loss(z1, z2, self.weights, normalized_covariance_term)
        return {"loss": loss, **terms}
