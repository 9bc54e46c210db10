"""Momentum (EMA) encoders and their cosine tau schedule.

BYOL, NNBYOL, MoCoV2+, ReSSL and DINO keep a slowly moving copy of the online network::

    theta_m <- tau * theta_m + (1 - tau) * theta_online

after every optimiser step, with ``tau`` increased from ``base_tau`` to ``final_tau`` along a
cosine over the whole training (Grill et al., BYOL; solo-learn's ``MomentumUpdater``)::

    tau(step) = final_tau - (final_tau - base_tau) * (cos(pi * step / total_steps) + 1) / 2
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_tau(step: int, total_steps: int, base_tau: float, final_tau: float = 1.0) -> float:
    """EMA coefficient at ``step`` (0-based) of a cosine schedule over ``total_steps``.

    ``step = 0`` gives ``base_tau``, ``step = total_steps`` gives ``final_tau``; steps beyond the
    end stay at ``final_tau``.
    """
    if total_steps <= 0:
        raise ValueError(f"cosine_tau: total_steps must be positive, got {total_steps}")
    if step < 0:
        raise ValueError(f"cosine_tau: step must be >= 0, got {step}")
    if not 0.0 <= base_tau <= 1.0 or not 0.0 <= final_tau <= 1.0:
        raise ValueError(
            f"cosine_tau: base_tau and final_tau must lie in [0, 1], got {base_tau}, {final_tau}"
        )
    progress = min(step, total_steps) / total_steps
    return final_tau - (final_tau - base_tau) * (math.cos(math.pi * progress) + 1.0) / 2.0


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` (same weights and buffers, ``requires_grad=False``)."""
    target = copy.deepcopy(module)
    for parameter in target.parameters():
        parameter.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update_(online: nn.Module, target: nn.Module, tau: float) -> None:
    """In place ``target <- tau * target + (1 - tau) * online`` over the parameters.

    Buffers (BatchNorm running statistics) are not averaged: the momentum network keeps its own,
    as in BYOL and solo-learn.
    """
    online_params = list(online.parameters())
    target_params = list(target.parameters())
    if len(online_params) != len(target_params):
        raise ValueError(
            "ema_update_: online and target modules differ in their number of parameters "
            f"({len(online_params)} vs {len(target_params)})"
        )
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"ema_update_: tau must lie in [0, 1], got {tau}")
    for target_param, online_param in zip(target_params, online_params):
        target_param.lerp_(online_param, 1.0 - tau)
