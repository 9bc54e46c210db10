"""The SSL method registry: ``METHODS[name]`` and ``build_method(name, backbone, **hparams)``.

The 13 methods whose settings appendix B.1 gives (its Table 2 reports 12 of them, all but DINO)
live in small modules grouped by family; importing this module registers all of them:

=================  ====================================================  =========================
name               class                                                 module
=================  ====================================================  =========================
``barlow_twins``   :class:`~phenossl.ssl.redundancy.BarlowTwins`          ``ssl.redundancy``
``byol``           :class:`~phenossl.ssl.distillation.BYOL`               ``ssl.distillation``
``deepclusterv2``  :class:`~phenossl.ssl.prototypes.DeepClusterV2`        ``ssl.prototypes``
``dino``           :class:`~phenossl.ssl.distillation.DINO`               ``ssl.distillation``
``mocov2plus``     :class:`~phenossl.ssl.contrastive.MoCoV2Plus`          ``ssl.contrastive``
``nnbyol``         :class:`~phenossl.ssl.distillation.NNBYOL`             ``ssl.distillation``
``nnclr``          :class:`~phenossl.ssl.contrastive.NNCLR`               ``ssl.contrastive``
``ressl``          :class:`~phenossl.ssl.contrastive.ReSSL`               ``ssl.contrastive``
``simclr``         :class:`~phenossl.ssl.contrastive.SimCLR`              ``ssl.contrastive``
``simsiam``        :class:`~phenossl.ssl.distillation.SimSiam`            ``ssl.distillation``
``swav``           :class:`~phenossl.ssl.prototypes.SwAV`                 ``ssl.prototypes``
``vibcreg``        :class:`~phenossl.ssl.redundancy.VIbCReg`              ``ssl.redundancy``
``vicreg``         :class:`~phenossl.ssl.redundancy.VICReg`               ``ssl.redundancy``
=================  ====================================================  =========================
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from phenossl.ssl.base import METHODS, Method, MomentumMethod, register
from phenossl.ssl.contrastive import NNCLR, MoCoV2Plus, ReSSL, SimCLR
from phenossl.ssl.distillation import BYOL, DINO, NNBYOL, SimSiam
from phenossl.ssl.prototypes import DeepClusterV2, SwAV
from phenossl.ssl.redundancy import BarlowTwins, VIbCReg, VICReg

__all__ = [
    "BYOL",
    "DINO",
    "METHODS",
    "NNBYOL",
    "NNCLR",
    "BarlowTwins",
    "DeepClusterV2",
    "Method",
    "MoCoV2Plus",
    "MomentumMethod",
    "ReSSL",
    "SimCLR",
    "SimSiam",
    "SwAV",
    "VICReg",
    "VIbCReg",
    "build_method",
    "method_hparams",
    "register",
]


def _method_class(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown SSL method {name!r}; expected one of {sorted(METHODS)}"
        ) from None


def method_hparams(name: str) -> dict[str, Any]:
    """The hyperparameters ``build_method(name, ...)`` accepts, with their defaults.

    Required hyperparameters (DeepClusterV2's ``dataset_size``) map to
    ``inspect.Parameter.empty``.
    """
    signature = inspect.signature(_method_class(name).__init__)
    return {
        key: parameter.default
        for key, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def build_method(name: str, backbone: nn.Module, **hparams: Any) -> Method:
    """Build the SSL method ``name`` around ``backbone``.

    Parameters
    ----------
    name
        A key of :data:`METHODS`.
    backbone
        Online encoder ``(N, C, H, W) -> (N, D)`` with an integer ``feature_dim``.
    **hparams
        Method hyperparameters (see :func:`method_hparams`); e.g.
        ``build_method(p.method, backbone, **p.method_kwargs)`` for a preset ``p``.

    Raises
    ------
    ValueError
        Unknown method, unknown hyperparameter, or a required one missing.
    """
    accepted = method_hparams(name)
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise ValueError(
            f"build_method({name!r}): unknown hyperparameter(s) {unknown}; accepted: "
            f"{sorted(accepted)}"
        )
    missing = sorted(
        key
        for key, default in accepted.items()
        if default is inspect.Parameter.empty and key not in hparams
    )
    if missing:
        raise ValueError(f"build_method({name!r}): missing required hyperparameter(s) {missing}")
    return _method_class(name)(backbone, **hparams)
