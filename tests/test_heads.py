"""Projector / predictor MLPs, prototype layers and IterNorm whitening."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from phenossl.models.heads import DINOHead, IterNorm, NormalizedLinear, mlp


def _layer_types(module: nn.Sequential) -> list[str]:
    return [type(layer).__name__ for layer in module]


def test_mlp_layouts_of_the_methods():
    byol = mlp(32, [64], 16)
    assert _layer_types(byol) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert (byol[0].in_features, byol[0].out_features, byol[3].out_features) == (32, 64, 16)

    moco = mlp(32, [64], 16, batch_norm=False)
    assert _layer_types(moco) == ["Linear", "ReLU", "Linear"]

    simsiam = mlp(32, [64, 64], 16, hidden_bias=False, output_bias=False, output_norm="bn_noaffine")
    assert _layer_types(simsiam) == [
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
        "BatchNorm1d",
    ]
    assert all(layer.bias is None for layer in simsiam if isinstance(layer, nn.Linear))
    assert not simsiam[-1].affine

    vibcreg = mlp(32, [64, 64], 16, activation="gelu", output_norm="iternorm")
    assert _layer_types(vibcreg)[2] == "GELU"
    assert isinstance(vibcreg[-1], IterNorm)

    assert mlp(32, [64], 16)(torch.randn(5, 32)).shape == (5, 16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden_dims": [0]}, "positive"),
        ({"activation": "tanh"}, "activation"),
        ({"output_norm": "ln"}, "output_norm"),
    ],
)
def test_mlp_rejects_bad_arguments(kwargs, match):
    args = {"in_dim": 4, "hidden_dims": [8], "out_dim": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        mlp(**args)


def test_normalized_linear_scores_against_unit_prototypes():
    torch.manual_seed(0)
    layer = NormalizedLinear(8, 5)
    torch.testing.assert_close(layer.prototypes().norm(dim=1), torch.ones(5))
    x = nn.functional.normalize(torch.randn(4, 8), dim=1)
    scores = layer(x)
    assert scores.shape == (4, 5)
    assert bool((scores.abs() <= 1 + 1e-6).all())
    with torch.no_grad():
        layer.weight.mul_(7.0)  # the norm of the weight rows does not matter
    torch.testing.assert_close(layer(x), scores)


def test_normalized_linear_frozen_passes_no_gradient_to_prototypes():
    layer = NormalizedLinear(8, 5)
    x = torch.randn(4, 8, requires_grad=True)
    layer(x, frozen=True).sum().backward()
    assert layer.weight.grad is None
    assert x.grad is not None
    layer(x).sum().backward()
    assert layer.weight.grad is not None


def test_dino_head_shapes_initialisation_and_freezing():
    torch.manual_seed(0)
    head = DINOHead(32, 24, 16, 7)
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 24), (24, 24), (24, 16)]
    assert all(isinstance(m, nn.GELU) for m in head.mlp if not isinstance(m, nn.Linear))
    for m in linears:  # truncated normal, std 0.02, cut at +-2
        assert m.weight.abs().max() <= 2.0
        assert torch.equal(m.bias, torch.zeros_like(m.bias))
        assert 0.01 < m.weight.std().item() < 0.03
    x = torch.randn(6, 32)
    assert head(x).shape == (6, 7)
    head(x, freeze_last_layer=True).sum().backward()
    assert head.last_layer.weight.grad is None
    assert linears[0].weight.grad is not None


def test_iternorm_group_sizes_follow_solo_learn():
    assert (IterNorm(2048).num_groups, IterNorm(2048).group_size) == (64, 32)
    assert (IterNorm(16).num_groups, IterNorm(16).group_size) == (16, 1)
    assert (IterNorm(96, num_groups=64).num_groups, IterNorm(96, num_groups=64).group_size) == (
        48,
        2,
    )


def _correlated(n: int, d: int, seed: int = 0, mixing_scale: float = 0.2) -> torch.Tensor:
    """Correlated, shifted features whose covariance is well conditioned (condition ~4)."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.eye(d) + mixing_scale * torch.randn(d, d, generator=generator)
    return torch.randn(n, d, generator=generator) @ mixing + 3.0


def _inverse_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix.double())
    return (vectors @ torch.diag(values.rsqrt()) @ vectors.t()).float()


def test_iternorm_approaches_the_exact_inverse_square_root():
    x = _correlated(512, 4)
    target = _inverse_sqrt(torch.cov(x.t(), correction=0))
    errors = []
    for iterations in (1, 3, 5):
        layer = IterNorm(4, num_groups=1, iterations=iterations, eps=0.0, momentum=1.0)
        layer(x)  # momentum 1: the running matrix is this batch's whitening matrix
        errors.append((layer.running_whitening[0] - target).abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 5e-3  # T = 5, VIbCReg's setting, is close on well-conditioned input


def test_iternorm_whitens_each_group_separately():
    x = torch.cat([_correlated(512, 4, seed=1), 5.0 * _correlated(512, 4, seed=2)], dim=1)
    out = IterNorm(8, num_groups=2, iterations=7, eps=0.0)(x)
    assert out.mean(0).abs().max() < 1e-4
    for group in out.split(4, dim=1):
        covariance = torch.cov(group.t(), correction=0)
        torch.testing.assert_close(covariance, torch.eye(4), atol=1e-4, rtol=0)


def test_iternorm_running_statistics_and_eval_mode():
    torch.manual_seed(0)
    layer = IterNorm(8, num_groups=2, momentum=1.0)  # running stats = the last batch's
    x = _correlated(128, 8, seed=2)
    train_out = layer(x)
    layer.eval()
    torch.testing.assert_close(layer(x), train_out, atol=1e-5, rtol=1e-5)
    layer.train()
    default = IterNorm(8, num_groups=2)
    default(x)
    assert not torch.equal(default.running_mean, torch.zeros_like(default.running_mean))


def test_iternorm_backward_and_affine():
    layer = IterNorm(8, num_groups=2)
    x = _correlated(64, 8, seed=3).requires_grad_()
    (layer(x) * torch.randn(64, 8)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    assert layer.weight.grad is not None
    assert layer.bias.grad is not None
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        layer(torch.zeros(4, 6))
