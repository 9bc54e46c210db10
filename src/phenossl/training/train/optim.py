"""Optimisers and the per-step learning-rate schedule of the trainer.

- :class:`LARS`: SGD with layer-wise adaptive rates as in solo-learn (trust coefficient
  ``eta``, optional clipping of the adaptive rate to the global one, biases and normalisation
  weights excluded from adaptation and weight decay).
- :func:`build_optimizer`: SGD / Adam / LARS over a method's parameter groups.
- :func:`optimizer_summary` / :func:`describe_optimizer`: the optimiser and the effective
  learning rate of a run, as a record (``metrics.jsonl``) and as one printed line.
- :func:`scheduled_lr` (a pure function) and :func:`set_learning_rates`: linear warm-up then
  cosine decay (or a constant rate), evaluated at every optimiser step; groups flagged
  ``static_lr`` (SimSiam's predictor) keep the base rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from phenossl.training.train.config import OptimConfig

__all__ = [
    "LARS",
    "build_optimizer",
    "describe_optimizer",
    "optimizer_summary",
    "scheduled_lr",
    "set_learning_rates",
]


class LARS(Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) over SGD with momentum.

    For every parameter ``p`` with gradient ``g`` that is adapted (all of them, or with
    ``exclude_bias_n_norm`` all but the 1-D ones: biases and normalisation weights), when
    ``|p|`` and ``|g|`` are both non-zero::

        local = eta * |p| / (|g| + weight_decay * |p| + eps)
        local = min(local / lr, 1) if clip_lr else local
        d = (g + weight_decay * p) * local

    and ``d = g`` otherwise (no weight decay for excluded parameters). Then heavy-ball momentum
    ``buf = momentum * buf + (1 - dampening) * d`` (``buf = d`` on the first step) and
    ``p -= lr * buf``, as in ``torch.optim.SGD``. The branch is evaluated with tensor ops, so a
    step never waits for the GPU.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        eps: float = 1e-8,
        clip_lr: bool = True,
        exclude_bias_n_norm: bool = True,
    ) -> None:
        if lr <= 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(
                "LARS: expected lr > 0, momentum >= 0, weight_decay >= 0, eta > 0; got "
                f"lr={lr}, momentum={momentum}, weight_decay={weight_decay}, eta={eta}"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "eta": eta,
            "eps": eps,
            "clip_lr": clip_lr,
            "exclude_bias_n_norm": exclude_bias_n_norm,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if p.ndim != 1 or not group["exclude_bias_n_norm"]:
                    d_p = _lars_direction(p, d_p, lr, wd, group)
                state = self.state[p]
                if group["momentum"] != 0:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d_p.detach().clone()
                    else:
                        buf.mul_(group["momentum"]).add_(d_p, alpha=1 - group["dampening"])
                    d_p = buf
                p.add_(d_p, alpha=-lr)
        return loss


def _lars_direction(p: Tensor, grad: Tensor, lr: float, wd: float, group: dict) -> Tensor:
    p_norm = torch.linalg.vector_norm(p)
    g_norm = torch.linalg.vector_norm(grad)
    local = group["eta"] * p_norm / (g_norm + wd * p_norm + group["eps"])
    if group["clip_lr"]:
        local = torch.clamp(local / lr, max=1.0)
    adapted = (grad + wd * p) * local
    return torch.where((p_norm > 0) & (g_norm > 0), adapted, grad)


def build_optimizer(groups: list[dict[str, Any]], optim: OptimConfig) -> Optimizer:
    """The optimiser of ``optim`` over a method's ``parameter_groups()``.

    Every group starts at the effective base rate; extra keys of the groups (``name``,
    ``static_lr``) are kept in ``optimizer.param_groups`` for :func:`set_learning_rates`.
    """
    lr = optim.effective_lr()
    # a loaded config has every field (the method preset's value where not set)
    assert optim.momentum is not None
    assert optim.weight_decay is not None
    groups = [dict(g) for g in groups]
    if optim.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=lr, momentum=optim.momentum, weight_decay=optim.weight_decay
        )
    if optim.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=optim.weight_decay)
    if optim.optimizer == "lars":
        return LARS(
            groups,
            lr=lr,
            momentum=optim.momentum,
            weight_decay=optim.weight_decay,
            eta=optim.lars_eta,
            clip_lr=optim.lars_clip_lr,
            exclude_bias_n_norm=optim.lars_exclude_bias_n_norm,
        )
    raise ValueError(f"optim.optimizer={optim.optimizer!r}; expected 'sgd', 'adam' or 'lars'")


def optimizer_summary(optim: OptimConfig) -> dict[str, Any]:
    """The optimiser of ``optim`` and its effective (batch-scaled) peak learning rate.

    Examples
    --------
    >>> from phenossl.training.train.config import TrainConfig
    >>> optim = TrainConfig.from_dict({"method": {"name": "byol"}}).optim
    >>> optimizer_summary(optim)["effective_lr"]  # 1.0 per 256 images, batch 512
    2.0
    """
    out: dict[str, Any] = {
        "optimizer": optim.optimizer,
        "base_lr": optim.lr,
        "lr_scaling": optim.lr_scaling,
        "batch_size": optim.batch_size,
        "effective_lr": optim.effective_lr(),
        "weight_decay": optim.weight_decay,
        "scheduler": optim.scheduler,
    }
    if optim.optimizer != "adam":
        out["momentum"] = optim.momentum
    if optim.optimizer == "lars":
        out.update(
            lars_eta=optim.lars_eta,
            lars_clip_lr=optim.lars_clip_lr,
            lars_exclude_bias_n_norm=optim.lars_exclude_bias_n_norm,
        )
    return out


def describe_optimizer(optim: OptimConfig) -> str:
    """One line: the optimiser, its settings and how the effective learning rate comes about.

    Examples
    --------
    >>> from phenossl.training.train.config import TrainConfig
    >>> optim = TrainConfig.from_dict({"method": {"name": "ressl"}}).optim
    >>> print(describe_optimizer(optim))  # doctest: +NORMALIZE_WHITESPACE
    optimizer SGD, momentum 0.9, weight decay 0.0001;
    lr 0.05 x 512/256 = 0.1 (linear batch scaling), warmup_cosine schedule
    """
    s = optimizer_summary(optim)
    name = s["optimizer"].upper() if s["optimizer"] != "adam" else "Adam"
    if s["optimizer"] == "lars":
        clip = "clipped" if s["lars_clip_lr"] else "unclipped"
        norms = "excluded" if s["lars_exclude_bias_n_norm"] else "included"
        name += f" (eta {s['lars_eta']:g}, {clip}, biases and norms {norms})"
    parts = [f"optimizer {name}"]
    if "momentum" in s:
        parts.append(f"momentum {s['momentum']:g}")
    parts.append(f"weight decay {s['weight_decay']:g}")
    if s["lr_scaling"] == "linear":
        rate = (
            f"lr {s['base_lr']:g} x {s['batch_size']}/256 = {s['effective_lr']:g} "
            "(linear batch scaling)"
        )
    else:
        rate = f"lr {s['effective_lr']:g} (no batch scaling)"
    return f"{', '.join(parts)}; {rate}, {s['scheduler']} schedule"


def scheduled_lr(step: int, total_steps: int, warmup_steps: int, optim: OptimConfig) -> float:
    """Learning rate of optimiser step ``step`` (0-based) of ``total_steps``.

    ``warmup_cosine`` (solo-learn's ``LinearWarmupCosineAnnealingLR`` evaluated per step): a
    linear ramp from ``warmup_start_lr`` reaching ``lr`` at step ``warmup_steps``, then cosine
    decay from ``lr`` to ``min_lr`` at step ``total_steps``; ``constant``: ``lr``. All rates are
    scaled with :meth:`OptimConfig.effective_lr`.
    """
    base = optim.effective_lr()
    if optim.scheduler == "constant":
        return base
    start = optim.effective_lr(optim.warmup_start_lr)
    end = optim.effective_lr(optim.min_lr)
    if step < warmup_steps:
        return start + (base - start) * step / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return end + 0.5 * (base - end) * (1.0 + math.cos(math.pi * progress))


def set_learning_rates(optimizer: Optimizer, lr: float, base_lr: float) -> None:
    """Set every group's rate to ``lr``, except ``static_lr`` groups, which keep ``base_lr``."""
    for group in optimizer.param_groups:
        group["lr"] = base_lr if group.get("static_lr", False) else lr
