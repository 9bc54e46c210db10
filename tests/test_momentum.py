"""EMA updates, the cosine tau schedule, and how momentum methods apply them."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from phenossl.ssl.momentum import cosine_tau, ema_update_, momentum_copy


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_cosine_tau_endpoints_and_midpoint():
    assert cosine_tau(0, 100, 0.99, 1.0) == 0.99
    assert cosine_tau(100, 100, 0.99, 1.0) == 1.0
    assert cosine_tau(50, 100, 0.99, 1.0) == pytest.approx(0.995, abs=1e-12)
    assert cosine_tau(250, 100, 0.99, 1.0) == 1.0  # clamped after the end
    assert cosine_tau(0, 10, 0.99, 0.999) == 0.99
    assert cosine_tau(10, 10, 0.99, 0.999) == pytest.approx(0.999, abs=1e-15)


def test_cosine_tau_follows_the_cosine_and_increases():
    total, base = 40, 0.9995
    values = [cosine_tau(s, total, base) for s in range(total + 1)]
    assert all(b >= a for a, b in itertools.pairwise(values))
    step = 13
    expected = 1 - (1 - base) * (math.cos(math.pi * step / total) + 1) / 2
    assert values[step] == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, 0, 0.9), "total_steps"), ((-1, 10, 0.9), "step"), ((0, 10, 1.5), "base_tau")],
)
def test_cosine_tau_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        cosine_tau(*args)


def test_momentum_copy_is_frozen_and_independent():
    online = _net()
    target = momentum_copy(online)
    for p_online, p_target in zip(online.parameters(), target.parameters()):
        assert torch.equal(p_online, p_target)
        assert not p_target.requires_grad
        assert p_online.requires_grad
        assert p_online.data_ptr() != p_target.data_ptr()


def test_ema_update_exact_values():
    online, target = _net(), _net()
    with torch.no_grad():
        for p in online.parameters():
            p.fill_(2.0)
        for p in target.parameters():
            p.fill_(1.0)
    ema_update_(online, target, tau=0.75)  # 0.75 * 1 + 0.25 * 2 = 1.25, exact in binary
    for p in target.parameters():
        assert torch.equal(p, torch.full_like(p, 1.25))
    for p in online.parameters():  # the online network is untouched
        assert torch.equal(p, torch.full_like(p, 2.0))


def test_ema_update_matches_formula_and_leaves_buffers():
    torch.manual_seed(0)
    online, target = _net(), _net()
    online[1].running_mean.fill_(5.0)
    before = [p.clone() for p in target.parameters()]
    ema_update_(online, target, tau=0.99)
    for new, old, o in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(new, 0.99 * old + 0.01 * o, atol=1e-7, rtol=0)
    assert torch.equal(target[1].running_mean, torch.zeros(4))
    ema_update_(online, target, tau=0.0)  # tau 0 copies the online weights
    for new, o in zip(target.parameters(), online.parameters()):
        assert torch.equal(new, o)


def test_ema_update_rejects_mismatched_modules_and_tau():
    with pytest.raises(ValueError, match="number of parameters"):
        ema_update_(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.9)
    with pytest.raises(ValueError, match="tau"):
        ema_update_(nn.Linear(2, 2), nn.Linear(2, 2), 1.2)


class _Backbone(nn.Module):
    feature_dim = 6

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_momentum_method_follows_the_schedule():
    from phenossl.ssl.methods import build_method

    torch.manual_seed(0)
    method = build_method(
        "byol",
        _Backbone(),
        proj_hidden_dim=8,
        proj_output_dim=4,
        pred_hidden_dim=8,
        base_tau=0.9,
        final_tau=1.0,
    )
    with pytest.raises(RuntimeError, match="on_train_start"):
        method.after_optimizer_step(0)
    method.on_train_start(total_steps=4)
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)  # pretend an optimiser step moved the online network
    online = [p.clone() for p in method.backbone.parameters()]
    momentum = [p.clone() for p in method.momentum_backbone.parameters()]
    method.after_optimizer_step(0)
    assert float(method.tau) == 0.9  # first step uses base_tau
    for new, m, o in zip(method.momentum_backbone.parameters(), momentum, online):
        torch.testing.assert_close(new, 0.9 * m + 0.1 * o, atol=1e-7, rtol=0)
    method.after_optimizer_step(2)
    assert float(method.tau) == pytest.approx(cosine_tau(2, 4, 0.9, 1.0), abs=1e-12)
    method.after_optimizer_step(4)
    assert float(method.tau) == 1.0
