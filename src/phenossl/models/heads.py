"""Projector / predictor MLPs, prototype layers and whitening for the SSL methods.

The layer recipes follow solo-learn's CIFAR configurations (the code the paper's appendix B.1
builds on): a projector is ``Linear -> [BatchNorm] -> activation`` repeated for each hidden layer,
then a final ``Linear`` optionally followed by a normalisation layer. Sizes come from
:mod:`phenossl.ssl.presets`; this module only builds layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Activation = Literal["relu", "gelu"]
OutputNorm = Literal["bn", "bn_noaffine", "iternorm"] | None

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


def mlp(
    in_dim: int,
    hidden_dims: Sequence[int],
    out_dim: int,
    *,
    batch_norm: bool = True,
    activation: Activation = "relu",
    hidden_bias: bool = True,
    output_bias: bool = True,
    output_norm: OutputNorm = None,
) -> nn.Sequential:
    """Build a projector / predictor MLP.

    Parameters
    ----------
    in_dim, out_dim
        Input and output feature sizes.
    hidden_dims
        One entry per hidden layer (``[]`` gives a single linear layer).
    batch_norm
        Put a ``BatchNorm1d`` after every hidden linear layer.
    activation
        ``"relu"`` or ``"gelu"``, after every hidden layer.
    hidden_bias, output_bias
        Whether the hidden / output linear layers have a bias (SimSiam drops the hidden biases
        because a BatchNorm follows them).
    output_norm
        ``None``, ``"bn"`` (affine BatchNorm, NNCLR), ``"bn_noaffine"`` (SimSiam) or
        ``"iternorm"`` (:class:`IterNorm`, VIbCReg).

    Returns
    -------
    nn.Sequential
    """
    if in_dim <= 0 or out_dim <= 0 or any(width <= 0 for width in hidden_dims):
        raise ValueError(
            "mlp: in_dim, hidden_dims and out_dim must be positive, got "
            f"{in_dim}, {list(hidden_dims)}, {out_dim}"
        )
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"mlp: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
        )
    layers: list[nn.Module] = []
    previous = in_dim
    for width in hidden_dims:
        layers.append(nn.Linear(previous, width, bias=hidden_bias))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(_ACTIVATIONS[activation]())
        previous = width
    layers.append(nn.Linear(previous, out_dim, bias=output_bias))
    if output_norm == "bn":
        layers.append(nn.BatchNorm1d(out_dim))
    elif output_norm == "bn_noaffine":
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    elif output_norm == "iternorm":
        layers.append(IterNorm(out_dim))
    elif output_norm is not None:
        raise ValueError(
            f"mlp: output_norm must be None, 'bn', 'bn_noaffine' or 'iternorm', got {output_norm!r}"
        )
    return nn.Sequential(*layers)


class NormalizedLinear(nn.Module):
    """Prototype layer: scores ``x @ normalize(W).T`` against unit-norm prototype vectors.

    This is a weight-normalised linear layer with its gain fixed to 1 (SwAV prototypes, DINO's
    last layer with ``norm_last_layer=True``): the direction of each row of ``W`` is learnt,
    its norm is not.

    Parameters
    ----------
    in_dim
        Size of the (usually L2-normalised) input features.
    num_prototypes
        Number of prototypes (output scores).
    """

    def __init__(self, in_dim: int, num_prototypes: int) -> None:
        super().__init__()
        if in_dim <= 0 or num_prototypes <= 0:
            raise ValueError(
                "NormalizedLinear: in_dim and num_prototypes must be positive, "
                f"got {in_dim} and {num_prototypes}"
            )
        self.weight = nn.Parameter(torch.empty(num_prototypes, in_dim))
        # nn.Linear's default initialisation
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    @property
    def num_prototypes(self) -> int:
        return self.weight.shape[0]

    def prototypes(self) -> Tensor:
        """Unit-norm prototype vectors, ``(num_prototypes, in_dim)``."""
        return F.normalize(self.weight, dim=1)

    def forward(self, x: Tensor, *, frozen: bool = False) -> Tensor:
        """Scores ``(N, num_prototypes)``; ``frozen=True`` lets no gradient reach the prototypes."""
        weight = self.prototypes()
        if frozen:
            weight = weight.detach()
        return F.linear(x, weight)


class DINOHead(nn.Module):
    """DINO head: MLP with GELU -> L2 normalisation -> :class:`NormalizedLinear` prototypes.

    Linear layers of the MLP are initialised with a truncated normal (std 0.02) and zero bias, as
    in DINO and solo-learn.

    Parameters
    ----------
    in_dim
        Backbone feature size.
    hidden_dim
        Width of the two hidden layers.
    bottleneck_dim
        Output size of the MLP (the paper's "projector output", 256).
    num_prototypes
        Number of output scores (4096 in the paper).
    batch_norm
        BatchNorm in the hidden layers (solo-learn's ``use_bn_in_head``, off by default).
    num_layers
        Number of linear layers in the MLP (3 in DINO).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        bottleneck_dim: int,
        num_prototypes: int,
        *,
        batch_norm: bool = False,
        num_layers: int = 3,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"DINOHead: num_layers must be >= 1, got {num_layers}")
        self.mlp = mlp(
            in_dim,
            [hidden_dim] * (num_layers - 1),
            bottleneck_dim,
            batch_norm=batch_norm,
            activation="gelu",
        )
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.last_layer = NormalizedLinear(bottleneck_dim, num_prototypes)

    def forward(self, x: Tensor, *, freeze_last_layer: bool = False) -> Tensor:
        """Logits ``(N, num_prototypes)``."""
        return self.last_layer(F.normalize(self.mlp(x), dim=-1), frozen=freeze_last_layer)


class IterNorm(nn.Module):
    """Iterative group whitening (Huang et al., CVPR 2019), VIbCReg's last projector layer.

    Features are split into groups of ``group_size`` channels; each group is centred and whitened
    with ``Sigma^{-1/2}`` approximated by ``iterations`` Newton-Schulz steps on the
    trace-normalised covariance::

        Sigma_N = Sigma / tr(Sigma),  P_0 = I,  P_k = 1.5 P_{k-1} - 0.5 P_{k-1}^3 Sigma_N,
        W = P_T / sqrt(tr(Sigma)),    x_hat = W (x - mean)

    followed by a per-channel affine map. Running mean and whitening matrix (momentum 0.1) are
    used in eval mode. Gradients go through the iterations by autograd. Group sizing follows
    solo-learn: ``group_size = ceil(num_features / num_groups)``, halved until it divides
    ``num_features``.

    Parameters
    ----------
    num_features
        Feature size.
    num_groups
        Requested number of groups (64 in VIbCReg).
    iterations
        Newton-Schulz iterations ``T`` (5).
    eps
        Added to the covariance diagonal.
    momentum
        Running-statistics momentum.
    affine
        Learnable per-channel scale and shift.
    """

    running_mean: Tensor
    running_whitening: Tensor

    def __init__(
        self,
        num_features: int,
        num_groups: int = 64,
        iterations: int = 5,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
    ) -> None:
        super().__init__()
        if num_features <= 0 or num_groups <= 0 or iterations <= 0:
            raise ValueError(
                "IterNorm: num_features, num_groups and iterations must be positive, got "
                f"{num_features}, {num_groups}, {iterations}"
            )
        group_size = (num_features - 1) // num_groups + 1
        while num_features % group_size != 0:
            group_size //= 2
        self.num_features = num_features
        self.group_size = group_size
        self.num_groups = num_features // group_size
        self.iterations = iterations
        self.eps = eps
        self.momentum = momentum
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(self.num_groups, group_size, 1))
        self.register_buffer(
            "running_whitening", torch.eye(group_size).repeat(self.num_groups, 1, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"IterNorm: expected input (N, {self.num_features}), got {tuple(x.shape)}"
            )
        dtype = x.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            n = x.shape[0]
            # (N, C) -> (G, d, N)
            grouped = x.t().reshape(self.num_groups, self.group_size, n)
            if self.training:
                mean = grouped.mean(dim=-1, keepdim=True)
                centred = grouped - mean
                eye = torch.eye(self.group_size, device=x.device, dtype=x.dtype)
                sigma = self.eps * eye + centred @ centred.transpose(1, 2) / n
                trace_inv = 1.0 / sigma.diagonal(dim1=1, dim2=2).sum(-1).view(-1, 1, 1)
                sigma_n = sigma * trace_inv
                p = eye.expand_as(sigma)
                for _ in range(self.iterations):
                    p = 1.5 * p - 0.5 * torch.linalg.matrix_power(p, 3) @ sigma_n
                whitening = p * trace_inv.sqrt()
                with torch.no_grad():
                    self.running_mean.lerp_(mean, self.momentum)
                    self.running_whitening.lerp_(whitening, self.momentum)
            else:
                centred = grouped - self.running_mean
                whitening = self.running_whitening
            out = (whitening @ centred).reshape(self.num_features, n).t()
            if self.weight is not None:
                out = out * self.weight + self.bias
        return out.to(dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, groups={self.num_groups}x{self.group_size}, "
            f"iterations={self.iterations}, eps={self.eps}, momentum={self.momentum}"
        )
