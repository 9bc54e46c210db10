"""Optimisers and the learning-rate schedule: LARS, build_optimizer, scheduled_lr, lr scaling."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from phenossl.training.train.config import TrainConfig
from phenossl.training.train.optim import (
    LARS,
    build_optimizer,
    describe_optimizer,
    optimizer_summary,
    scheduled_lr,
    set_learning_rates,
)


def _optim(**optim):
    return TrainConfig.from_dict({"method": {"name": "simclr"}, "optim": optim}).optim


# --- LARS ----------------------------------------------------------------------------------------


def test_lars_follows_solo_learn_and_skips_biases_and_norms():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(4, 3))
    bias = torch.nn.Parameter(torch.randn(4))
    weight.grad, bias.grad = torch.randn(4, 3), torch.randn(4)
    w0, b0 = weight.detach().clone(), bias.detach().clone()
    lr, wd, eta = 0.5, 0.1, 0.02
    LARS([weight, bias], lr=lr, momentum=0.9, weight_decay=wd, eta=eta).step()
    trust = eta * w0.norm() / (weight.grad.norm() + wd * w0.norm() + 1e-8)
    expected = w0 - lr * min(float(trust) / lr, 1.0) * (weight.grad + wd * w0)
    torch.testing.assert_close(weight.detach(), expected)
    torch.testing.assert_close(bias.detach(), b0 - lr * bias.grad)  # no adaptation, no decay

    both = torch.nn.Parameter(b0.clone())
    both.grad = bias.grad.clone()
    LARS([both], lr=lr, weight_decay=wd, eta=eta, exclude_bias_n_norm=False).step()
    trust = eta * b0.norm() / (bias.grad.norm() + wd * b0.norm() + 1e-8)
    torch.testing.assert_close(
        both.detach(), b0 - lr * min(float(trust) / lr, 1.0) * (bias.grad + wd * b0)
    )


def test_lars_leaves_biases_and_norm_weights_alone_when_excluding():
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm1d(4)
    layer = torch.nn.Linear(3, 4)
    params = [layer.weight, layer.bias, norm.weight, norm.bias]
    for p in params:
        p.grad = torch.randn_like(p)
    before = [p.detach().clone() for p in params]
    LARS(params, lr=1.0, weight_decay=0.5, eta=0.02).step()
    for p, p0 in zip(params[1:], before[1:]):  # 1-D: plain SGD step, no decay, no adaptation
        torch.testing.assert_close(p.detach(), p0 - p.grad)
    assert not torch.allclose(layer.weight.detach(), before[0] - layer.weight.grad)


def test_lars_on_excluded_parameters_is_sgd_with_momentum():
    """Biases and norm weights take torch's SGD step (with momentum, without weight decay)."""
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(5))
    reference = torch.nn.Parameter(ours.detach().clone())
    lars = LARS([ours], lr=0.1, momentum=0.9, weight_decay=0.5)
    sgd = torch.optim.SGD([reference], lr=0.1, momentum=0.9)
    for _ in range(3):
        grad = torch.randn(5)
        ours.grad, reference.grad = grad.clone(), grad.clone()
        lars.step()
        sgd.step()
        torch.testing.assert_close(ours.detach(), reference.detach())


@pytest.mark.parametrize(
    "bad", [{"lr": 0.0}, {"lr": 0.1, "momentum": -0.1}, {"lr": 0.1, "eta": 0.0}]
)
def test_lars_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match="LARS: expected lr > 0"):
        LARS([torch.nn.Parameter(torch.zeros(2))], **bad)


# --- building the optimiser: every group at the batch-scaled rate ---------------------------------


def _groups():
    backbone, predictor = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)
    return [
        {"params": list(backbone.parameters()), "name": "backbone"},
        {"params": list(predictor.parameters()), "name": "predictor", "static_lr": True},
    ]


@pytest.mark.parametrize(
    ("name", "kind"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("lars", LARS)]
)
def test_build_optimizer_starts_every_group_at_the_batch_scaled_rate(name, kind):
    optim = _optim(optimizer=name, lr=0.3, batch_size=128, lr_scaling="linear", weight_decay=1e-4)
    groups = _groups()
    optimizer = build_optimizer(groups, optim)
    assert type(optimizer) is kind
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(0.15)] * 2  # 0.3 x 128/256
    assert [g["name"] for g in optimizer.param_groups] == ["backbone", "predictor"]
    assert optimizer.param_groups[1]["static_lr"] is True
    assert all(g["weight_decay"] == 1e-4 for g in optimizer.param_groups)
    assert "lr" not in groups[0]  # the method's groups are not changed
    assert optimizer_summary(optim)["effective_lr"] == pytest.approx(0.15)


def test_without_scaling_the_rate_is_the_base_rate_at_any_batch_size():
    for batch_size in (64, 1024):
        optim = _optim(lr=0.3, batch_size=batch_size, lr_scaling="none")
        assert build_optimizer(_groups(), optim).param_groups[0]["lr"] == pytest.approx(0.3)
        assert scheduled_lr(0, 10, 0, optim) == pytest.approx(0.3)


def test_set_learning_rates_leaves_static_groups_at_the_base_rate():
    optimizer = build_optimizer(_groups(), _optim(optimizer="sgd", lr=0.2, lr_scaling="none"))
    set_learning_rates(optimizer, lr=0.05, base_lr=0.2)
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.2]


# --- the schedule --------------------------------------------------------------------------------


def test_warmup_cosine_scales_start_peak_and_end_with_the_batch():
    optim = _optim(
        lr=0.4,
        batch_size=512,
        lr_scaling="linear",
        scheduler="warmup_cosine",
        warmup_start_lr=0.1,
        min_lr=0.01,
    )
    start, peak, end = 0.2, 0.8, 0.02  # every rate x 512/256
    rates = [scheduled_lr(step, 20, 4, optim) for step in range(25)]
    assert rates[0] == pytest.approx(start)
    assert rates[2] == pytest.approx((start + peak) / 2)  # linear ramp
    assert rates[4] == pytest.approx(peak)
    assert rates[12] == pytest.approx((peak + end) / 2)  # half way through the cosine
    assert rates[8] == pytest.approx(end + (peak - end) * (1 + math.cos(math.pi / 4)) / 2)
    assert rates[20] == pytest.approx(end) and rates[24] == pytest.approx(end)  # held at the end
    assert all(a < b for a, b in itertools.pairwise(rates[:5]))
    assert all(a > b for a, b in itertools.pairwise(rates[4:21]))


def test_without_warmup_the_cosine_starts_at_the_peak():
    optim = _optim(lr=0.1, lr_scaling="none", scheduler="warmup_cosine", min_lr=0.0)
    assert scheduled_lr(0, 10, 0, optim) == pytest.approx(0.1)
    assert scheduled_lr(5, 10, 0, optim) == pytest.approx(0.05)


# --- the effective learning rate is printed ------------------------------------------------------


def test_describe_optimizer_names_the_optimiser_and_the_effective_rate():
    byol = TrainConfig.from_dict({"method": {"name": "byol"}}).optim
    text = describe_optimizer(byol)
    assert text.startswith("optimizer LARS (eta 0.02, clipped, biases and norms excluded)")
    assert "lr 1 x 512/256 = 2 (linear batch scaling)" in text
    none = TrainConfig.from_dict(
        {"method": {"name": "byol"}, "optim": {"lr_scaling": "none"}}
    ).optim
    assert "lr 1 (no batch scaling)" in describe_optimizer(none)
