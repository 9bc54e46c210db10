"""Base classes of the SSL methods and the method registry.

A method is an ``nn.Module`` that owns the online backbone, its heads and all training state
(momentum networks, queues, memory banks, prototypes, centres) as parameters and registered
buffers, so ``state_dict()`` resumes a run exactly. The trainer drives it through five hooks::

    method.on_train_start(total_steps)          # once, before the first step
    method.on_epoch_start(epoch)                # before each epoch (0-based)
    out = method.training_step(views, indices)  # out["loss"].backward(); optimizer.step()
    method.after_optimizer_step(step)           # 0-based index of the step just taken
    method.parameter_groups()                   # for building the optimiser

Queues and memory banks are filled through :meth:`Method.enqueue`. Inside
``with method.deferred_enqueues():`` (the trainer's loss mix: one ``training_step`` per
composition) the enqueues are held back and applied when the block ends, so every composition of
a step is contrasted against the same queue of *earlier* batches, never against keys of the
batch's own images enqueued by the composition before it.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from phenossl.ssl.memory import FeatureQueue
from phenossl.ssl.momentum import cosine_tau, ema_update_, momentum_copy

__all__ = ["METHODS", "Method", "MomentumMethod", "register"]


class Method(nn.Module, abc.ABC):
    """Base class of the SSL methods.

    Parameters
    ----------
    backbone
        Online encoder mapping ``(N, C, H, W)`` to ``(N, D)``, with an integer ``feature_dim``.

    Buffers
    -------
    epoch : long scalar, the current epoch (set by :meth:`on_epoch_start`)
    """

    name: ClassVar[str]
    #: indices of the views that must be weakly augmented (crop and flip only; the trainer
    #: makes them with ``phenossl.augment.weak_view``); ReSSL's key view is ``(1,)``
    weak_views: ClassVar[tuple[int, ...]] = ()
    #: the trained heads, by attribute name: their optimiser groups follow the backbone's
    heads: ClassVar[tuple[str, ...]] = ("projector",)
    backbone: nn.Module
    epoch: Tensor

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        feature_dim = getattr(backbone, "feature_dim", None)
        if not isinstance(feature_dim, int) or feature_dim <= 0:
            raise ValueError(
                f"{type(self).__name__}: the backbone must have a positive integer "
                f"`feature_dim` attribute (the size of its (N, D) output), got {feature_dim!r}"
            )
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))

    @property
    def current_epoch(self) -> int:
        return int(self.epoch)

    def enqueue(self, memory: nn.Module, items: Tensor) -> None:
        """``memory.enqueue(items)`` now, or at the end of :meth:`deferred_enqueues`."""
        pending = self.__dict__.get("_pending_enqueues")
        if pending is None:
            cast(FeatureQueue, memory).enqueue(items)
        else:
            pending.append((memory, items.detach()))

    @contextmanager
    def deferred_enqueues(self) -> Iterator[None]:
        """Hold back :meth:`enqueue` calls; apply them, in call order, when the block succeeds.

        Examples
        --------
        >>> with method.deferred_enqueues():  # doctest: +SKIP
        ...     loss = sum(w * method.training_step(v, i)["loss"] for w, v in mix)
        """
        if self.__dict__.get("_pending_enqueues") is not None:
            raise RuntimeError(f"{type(self).__name__}: deferred_enqueues() is not reentrant")
        pending: list[tuple[nn.Module, Tensor]] = []
        self.__dict__["_pending_enqueues"] = pending
        try:
            yield
        finally:
            self.__dict__["_pending_enqueues"] = None
        for memory, items in pending:
            cast(FeatureQueue, memory).enqueue(items)

    @abc.abstractmethod
    def training_step(self, views: Sequence[Tensor], indices: Tensor) -> dict[str, Tensor]:
        """Loss of one batch: ``{"loss": scalar with grad, **detached logs}``.

        Parameters
        ----------
        views
            Two augmented views of the batch, each ``(B, C, H, W)``.
        indices
            ``(B,)`` dataset indices of the batch's samples (DeepClusterV2 uses them).
        """

    def head_groups(self) -> list[tuple[str, nn.Module, dict[str, Any]]]:
        """``(name, module, extra optimiser options)`` of every trained head (:attr:`heads`)."""
        return [(name, getattr(self, name), {}) for name in self.heads]

    def on_train_start(self, total_steps: int) -> None:
        """Called once before training with the total number of optimiser steps."""
        if total_steps <= 0:
            raise ValueError(f"on_train_start: total_steps must be positive, got {total_steps}")

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch (0-based)."""
        if epoch < 0:
            raise ValueError(f"on_epoch_start: epoch must be >= 0, got {epoch}")
        self.epoch.fill_(epoch)

    def after_optimizer_step(self, step: int) -> None:
        """Called after each optimiser step (``step`` 0-based); momentum updates go here."""

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups: ``[{"name", "params", **options}, ...]``.

        The backbone comes first, then each head (projector, predictor, prototypes...). Only
        parameters that require a gradient are listed; momentum networks are not. An option
        ``static_lr=True`` (SimSiam's predictor, as in solo-learn) asks the trainer to keep that
        group's learning rate constant instead of following the schedule.
        """
        groups = [{"name": "backbone", "params": _trainable(self.backbone)}]
        for name, module, options in self.head_groups():
            groups.append({"name": name, "params": _trainable(module), **options})
        return [group for group in groups if group["params"]]

    @staticmethod
    def _two_views(views: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        if len(views) != 2:
            raise ValueError(f"training_step: expected exactly 2 views, got {len(views)}")
        first, second = views
        if first.shape[0] != second.shape[0]:
            raise ValueError(
                "training_step: the two views must hold the same samples, got batch sizes "
                f"{first.shape[0]} and {second.shape[0]}"
            )
        if first.shape[0] < 2:
            raise ValueError(
                f"training_step: a batch needs at least 2 samples (batch statistics), "
                f"got {first.shape[0]}"
            )
        return first, second


class MomentumMethod(Method):
    """A method with a momentum (EMA) copy of the backbone and of some heads.

    Parameters
    ----------
    backbone
        Online encoder.
    base_tau, final_tau
        Ends of the cosine EMA schedule (:func:`phenossl.ssl.momentum.cosine_tau`).

    Buffers
    -------
    total_steps : long scalar set by :meth:`on_train_start`
    tau : float scalar, the coefficient used by the last momentum update
    """

    #: the heads that have a momentum copy ``momentum_<head>``, EMA-updated with the backbone
    momentum_heads: ClassVar[tuple[str, ...]] = ()
    total_steps: Tensor
    tau: Tensor

    def __init__(self, backbone: nn.Module, *, base_tau: float, final_tau: float) -> None:
        super().__init__(backbone)
        if not 0.0 <= base_tau <= final_tau <= 1.0:
            raise ValueError(
                f"{type(self).__name__}: expected 0 <= base_tau <= final_tau <= 1, got "
                f"base_tau={base_tau}, final_tau={final_tau}"
            )
        self.base_tau = base_tau
        self.final_tau = final_tau
        self.momentum_backbone = momentum_copy(backbone)
        self.register_buffer("total_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("tau", torch.tensor(base_tau, dtype=torch.float64))

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """``(online, momentum)`` module pairs updated by EMA: the backbone, then
        :attr:`momentum_heads`.
        """
        heads = [(getattr(self, h), getattr(self, f"momentum_{h}")) for h in self.momentum_heads]
        return [(self.backbone, self.momentum_backbone), *heads]

    def on_train_start(self, total_steps: int) -> None:
        super().on_train_start(total_steps)
        self.total_steps.fill_(total_steps)

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        total = int(self.total_steps)
        if total <= 0:
            raise RuntimeError(
                f"{type(self).__name__}.after_optimizer_step: call on_train_start(total_steps) "
                "first (the tau schedule needs the length of training)"
            )
        tau = cosine_tau(step, total, self.base_tau, self.final_tau)
        self.tau.fill_(tau)
        for online, target in self.momentum_pairs():
            ema_update_(online, target, tau)


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a :class:`Method` subclass to :data:`METHODS` under ``cls.name``."""
    if cls.name in METHODS:
        raise ValueError(f"register: a method named {cls.name!r} is already registered")
    METHODS[cls.name] = cls
    return cls
