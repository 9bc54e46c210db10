"""Training presets of the paper's SSL runs (appendix B.1, B.2, B.4).

``PRESETS[name]`` is a :class:`MethodPreset`. The 13 CIFAR-10/100 presets are keyed by method
name; the paper's other settings are named ``<method>_<setting>``:

- ``mocov2plus_mnist`` / ``byol_mnist`` (B.2: VGG11 / ResNet18 / ConvNeXt-Tiny on MNIST),
- ``mocov2plus_cells`` (B.4: VGG13 on the BBBC021 cell crops),
- ``mocov2plus_imagenet100``, ``byol_imagenet100``, ``simclr_imagenet100``,
  ``vicreg_imagenet100`` (B.1, ImageNet-100).

Every preset says in ``source`` which values come from the appendix and which are completed
from solo-learn's published CIFAR configurations (``scripts/pretrain/cifar/*.yaml``) and the
method defaults of its argparse-era releases: the appendix lists the same methods, and its
learning rates are exactly those of solo-learn's CIFAR configs.

Optimiser: each CIFAR preset uses the optimiser solo-learn's CIFAR script uses for that method
(``scripts/pretrain/cifar/<method>.sh``, the argparse-era release line whose values the appendix
repeats, e.g. SimCLR's weight decay 1e-5, which the later ``<method>.yaml`` changed to 1e-4).
Ten methods train with LARS (trust coefficient ``eta`` 0.02, ``--grad_clip_lars``: the adaptive
rate is clipped to the global one); MoCoV2+, ReSSL and SimSiam with plain SGD (momentum 0.9).
Eight of the LARS scripts pass ``--exclude_bias_n_norm`` (biases and normalisation weights, the
1-D parameters, get neither adaptation nor weight decay); the SwAV and DeepClusterV2 scripts do
not, so their LARS adapts and decays every parameter (the later YAML configs exclude them for
these two as well and drop the clipping for VIbCReg; :data:`SOLO_LEARN_LATER_YAML` lists those
differences). Plain SGD decays every parameter, as in solo-learn, whose default keeps weight
decay on biases and norms. The appendix itself says "SGD" for all methods.
:data:`SOLO_LEARN_CIFAR_OPTIMIZER` holds the per-method choice.

Learning rates: ``lr`` is a *base* learning rate. With ``lr_scaling == "linear"`` (all SGD and
LARS presets) the optimiser uses ``lr * batch_size / 256``: solo-learn's configs are written for
batch 256 and its argparse-era ``additional_setup_pretrain`` scales them linearly with the batch
size (newer releases dropped that scaling, so whether the paper's batch-512 runs used 1x or 2x
is not certain; ``with_overrides(lr_scaling="none")`` gives the other reading). With
``lr_scaling == "none"`` (the Adam presets of B.2/B.4, the authors' own setup) ``lr`` is used as
is. :func:`scaled_lr` applies the rule (for presets and training configs alike).

Schedule: ``"warmup_cosine"`` is solo-learn's linear warm-up from ``warmup_start_lr`` for
``warmup_epochs`` epochs, then cosine decay to ``min_lr`` (both scaled like ``lr``);
``"constant"`` keeps ``lr`` (the appendix gives no schedule for the Adam runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "PRESETS",
    "SOLO_LEARN_CIFAR_OPTIMIZER",
    "SOLO_LEARN_LATER_YAML",
    "MethodPreset",
    "get_preset",
    "scaled_lr",
]


def scaled_lr(rate: float, batch_size: int, scaling: str) -> float:
    """The optimiser's rate for base ``rate``: ``rate * batch_size / 256`` when ``scaling`` is
    ``"linear"``, ``rate`` itself when it is ``"none"``.

    Examples
    --------
    >>> scaled_lr(0.4, 512, "linear"), scaled_lr(1e-3, 512, "none")
    (0.8, 0.001)
    """
    return rate * batch_size / 256 if scaling == "linear" else rate


@dataclass(frozen=True)
class MethodPreset:
    """Optimisation settings and method hyperparameters of one training run.

    Attributes
    ----------
    method
        Registry name of the method (``phenossl.ssl.methods.METHODS``).
    optimizer
        ``"sgd"`` (with ``momentum``), ``"lars"`` (SGD with momentum and LARS, see
        ``lars_*``) or ``"adam"``.
    lr
        Base learning rate; see ``lr_scaling``.
    lr_scaling
        ``"linear"``: the optimiser's rate is ``lr * batch_size / 256``; ``"none"``: ``lr``.
    weight_decay
        L2 weight decay of the optimiser (all parameter groups).
    batch_size
        Images per step (each seen as two views).
    epochs
        Training epochs.
    scheduler
        ``"warmup_cosine"`` or ``"constant"``.
    warmup_epochs, warmup_start_lr, min_lr
        Warm-up length and the start / end rates of the schedule (base rates, scaled like
        ``lr``).
    momentum
        SGD / LARS momentum (ignored by Adam).
    lars_eta, lars_clip_lr, lars_exclude_bias_n_norm
        LARS trust coefficient, clipping of the adaptive rate to the global one, and whether
        1-D parameters (biases, normalisation weights) skip adaptation and weight decay
        (``phenossl.training.train.optim.LARS``; ignored by SGD and Adam).
    zero_init_residual
        Zero-initialise the last BatchNorm of every residual block of a ResNet backbone
        (torchvision's ``zero_init_residual``; other backbones have no such block).
    method_kwargs
        Keyword arguments for ``build_method(method, backbone, **method_kwargs)``.
    source
        Where each value comes from (appendix vs solo-learn defaults vs our assumption).
    """

    method: str
    optimizer: Literal["sgd", "lars", "adam"]
    lr: float
    lr_scaling: Literal["linear", "none"]
    weight_decay: float
    batch_size: int
    epochs: int
    scheduler: Literal["warmup_cosine", "constant"] = "warmup_cosine"
    warmup_epochs: int = 10
    warmup_start_lr: float = 3e-5
    min_lr: float = 0.0
    momentum: float = 0.9
    lars_eta: float = 0.02
    lars_clip_lr: bool = True
    lars_exclude_bias_n_norm: bool = True
    zero_init_residual: bool = False
    method_kwargs: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        # Presets are shared module-level constants: make their kwargs read-only.
        object.__setattr__(self, "method_kwargs", MappingProxyType(dict(self.method_kwargs)))

    def effective_lr(self, batch_size: int | None = None) -> float:
        """Learning rate handed to the optimiser for ``batch_size`` (default: the preset's)."""
        batch = self.batch_size if batch_size is None else batch_size
        if batch <= 0:
            raise ValueError(f"effective_lr: batch_size must be positive, got {batch}")
        return scaled_lr(self.lr, batch, self.lr_scaling)

    def with_overrides(self, **changes: Any) -> MethodPreset:
        """A copy with some fields replaced; ``method_kwargs`` entries are merged, not replaced."""
        kwargs = changes.pop("method_kwargs", None)
        if kwargs is not None:
            changes["method_kwargs"] = {**self.method_kwargs, **kwargs}
        return replace(self, **changes)


#: solo-learn's CIFAR optimiser per method, from ``scripts/pretrain/cifar/<method>.sh``:
#: (optimizer, --grad_clip_lars, --exclude_bias_n_norm); every LARS script passes --eta_lars 0.02
#: (the two flags mean nothing for SGD).
SOLO_LEARN_CIFAR_OPTIMIZER: Mapping[str, tuple[Literal["sgd", "lars"], bool, bool]] = (
    MappingProxyType(
        {
            "barlow_twins": ("lars", True, True),
            "byol": ("lars", True, True),
            "deepclusterv2": ("lars", True, False),
            "dino": ("lars", True, True),
            "mocov2plus": ("sgd", False, False),
            "nnbyol": ("lars", True, True),
            "nnclr": ("lars", True, True),
            "ressl": ("sgd", False, False),
            "simclr": ("lars", True, True),
            "simsiam": ("sgd", False, False),
            "swav": ("lars", True, False),
            "vibcreg": ("lars", True, True),
            "vicreg": ("lars", True, True),
        }
    )
)

#: where solo-learn's later ``scripts/pretrain/cifar/<method>.yaml`` differ from the ``.sh``
#: scripts on the optimiser or a value the appendix repeats (the presets follow the ``.sh``)
SOLO_LEARN_LATER_YAML: Mapping[str, str] = MappingProxyType(
    {
        "deepclusterv2": "exclude_bias_n_norm True",
        "swav": "exclude_bias_n_norm True",
        "vibcreg": "no clip_lr (solo-learn's default: unclipped)",
        "simclr": "weight decay 1e-4",
    }
)


def _optimizer_note(method: str) -> str:
    name, clip, exclude = SOLO_LEARN_CIFAR_OPTIMIZER[method]
    script = f"solo-learn scripts/pretrain/cifar/{method}.sh"
    if name == "sgd":
        note = f"Optimizer SGD (momentum 0.9, weight decay on every parameter): {script}."
    else:
        rate = "clipped" if clip else "unclipped"
        norms = (
            "excluded from adaptation and weight decay"
            if exclude
            else "adapted and decayed like the rest"
        )
        note = (
            f"Optimizer LARS (momentum 0.9, eta 0.02, {rate} adaptive rate, biases and norm "
            f"weights {norms}): {script}."
        )
    if method in SOLO_LEARN_LATER_YAML:
        note += f" (solo-learn's later {method}.yaml: {SOLO_LEARN_LATER_YAML[method]}.)"
    return (
        f"{note} The appendix says SGD for all methods. Warm-up cosine schedule (10 warm-up "
        "epochs from 3e-5, down to 0 unless stated): solo-learn defaults. lr is per 256 images "
        "(solo-learn's linear scaling)."
    )


def _cifar(
    method: str,
    lr: float,
    weight_decay: float,
    appendix: str,
    solo: str,
    *,
    batch_size: int = 512,
    **kwargs: Any,
) -> MethodPreset:
    options: dict[str, Any] = {
        k: kwargs.pop(k)
        for k in ("warmup_epochs", "warmup_start_lr", "min_lr", "zero_init_residual")
        if k in kwargs
    }
    optimizer, clip, exclude = SOLO_LEARN_CIFAR_OPTIMIZER[method]
    if optimizer == "lars":  # SGD presets keep the LARS defaults for a --set optim.optimizer=lars
        options.update(lars_clip_lr=clip, lars_exclude_bias_n_norm=exclude)
    return MethodPreset(
        method=method,
        optimizer=optimizer,
        lr=lr,
        lr_scaling="linear",
        weight_decay=weight_decay,
        batch_size=batch_size,
        epochs=1000,
        method_kwargs=kwargs,
        source=f"CIFAR-10/100, appendix B.1: {appendix}, 1000 epochs. solo-learn CIFAR: {solo}. "
        f"{_optimizer_note(method)}",
        **options,
    )


_CIFAR: dict[str, MethodPreset] = {
    "barlow_twins": _cifar(
        "barlow_twins",
        0.3,
        1e-4,
        "lr 0.3, weight decay 1e-4, projector output 2048, batch 512",
        "projector hidden 2048, lambda 0.0051, scale_loss 0.1",
        proj_hidden_dim=2048,
        proj_output_dim=2048,
        lambd=0.0051,
        scale_loss=0.1,
    ),
    "byol": _cifar(
        "byol",
        1.0,
        1e-5,
        "lr 1.0, weight decay 1e-5, projector output 256, base tau 0.99, batch 512",
        "projector hidden 4096, predictor hidden 4096, final tau 1.0",
        proj_hidden_dim=4096,
        proj_output_dim=256,
        pred_hidden_dim=4096,
        base_tau=0.99,
        final_tau=1.0,
    ),
    "deepclusterv2": _cifar(
        "deepclusterv2",
        0.6,
        1e-6,
        "lr 0.6, 11 warm-up epochs, weight decay 1e-6, 3000 prototypes, projector output 128, "
        "batch 512",
        "projector hidden 2048, 3 heads of 3000 prototypes, temperature 0.1, 10 k-means "
        "iterations, warm-up from lr 0, min lr 0.0006; dataset_size must be given by the trainer",
        warmup_epochs=11,
        warmup_start_lr=0.0,
        min_lr=0.0006,
        proj_hidden_dim=2048,
        proj_output_dim=128,
        num_prototypes=3000,
        num_heads=3,
        temperature=0.1,
        kmeans_iters=10,
    ),
    "dino": _cifar(
        "dino",
        0.3,
        1e-4,
        "lr 0.3, weight decay 1e-4, 4096 prototypes, base tau 0.9995, projector output 256, "
        "batch 256",
        "projector hidden 2048, no BN in head, student T 0.1, teacher T 0.07 after a linear "
        "warm-up from 0.04 over 50 epochs, centre momentum 0.9, last layer frozen for 1 epoch, "
        "final tau 1.0 (solo-learn's CIFAR config has weight decay 1e-6; appendix wins)",
        batch_size=256,
        proj_hidden_dim=2048,
        proj_output_dim=256,
        num_prototypes=4096,
        use_bn_in_head=False,
        student_temperature=0.1,
        teacher_temperature=0.07,
        warmup_teacher_temperature=0.04,
        warmup_teacher_temperature_epochs=50,
        center_momentum=0.9,
        freeze_last_layer=1,
        base_tau=0.9995,
        final_tau=1.0,
    ),
    "mocov2plus": _cifar(
        "mocov2plus",
        0.3,
        1e-4,
        "lr 0.3, weight decay 1e-4, queue 32768, temperature 0.2, base tau 0.99, projector "
        "output 256, batch 512",
        "projector hidden 2048 (no BN), final tau 0.999",
        proj_hidden_dim=2048,
        proj_output_dim=256,
        queue_size=32768,
        temperature=0.2,
        base_tau=0.99,
        final_tau=0.999,
    ),
    "nnbyol": _cifar(
        "nnbyol",
        1.0,
        1e-5,
        "lr 1.0, weight decay 1e-5, base tau 0.99, projector output 256, batch 512",
        "projector hidden 4096, predictor hidden 4096, support set 65536, final tau 1.0 "
        "(NNBYOL has no temperature: its loss is BYOL's)",
        proj_hidden_dim=4096,
        proj_output_dim=256,
        pred_hidden_dim=4096,
        queue_size=65536,
        base_tau=0.99,
        final_tau=1.0,
    ),
    "nnclr": _cifar(
        "nnclr",
        0.4,
        1e-5,
        "lr 0.4, weight decay 1e-5, queue 65536, temperature 0.2, projector output 256, batch 512",
        "projector hidden 2048, predictor hidden 4096",
        proj_hidden_dim=2048,
        proj_output_dim=256,
        pred_hidden_dim=4096,
        queue_size=65536,
        temperature=0.2,
    ),
    "ressl": _cifar(
        "ressl",
        0.05,
        1e-4,
        "lr 0.05, weight decay 1e-4, base tau 0.99, projector output 256, batch 512",
        "projector hidden 4096 (no BN), queue 65536, temperature_q 0.1, temperature_k 0.04, "
        "final tau 1.0",
        proj_hidden_dim=4096,
        proj_output_dim=256,
        queue_size=65536,
        temperature_q=0.1,
        temperature_k=0.04,
        base_tau=0.99,
        final_tau=1.0,
    ),
    "simclr": _cifar(
        "simclr",
        0.4,
        1e-5,
        "lr 0.4, weight decay 1e-5, temperature 0.2, projector output 256, batch 512",
        "projector hidden 2048 (solo-learn's CIFAR config has weight decay 1e-4; appendix wins)",
        proj_hidden_dim=2048,
        proj_output_dim=256,
        temperature=0.2,
    ),
    "simsiam": _cifar(
        "simsiam",
        0.5,
        1e-5,
        "lr 0.5, weight decay 1e-5, projector output 2048, batch 512",
        "projector hidden 2048, predictor hidden 512, predictor at a constant lr, last BN of "
        "each residual block zero-initialised (--zero_init_residual in simsiam.sh)",
        zero_init_residual=True,
        proj_hidden_dim=2048,
        proj_output_dim=2048,
        pred_hidden_dim=512,
    ),
    "swav": _cifar(
        "swav",
        0.6,
        1e-6,
        "lr 0.6, weight decay 1e-6, queue 3840, 3000 prototypes, projector output 128, batch 512",
        "projector hidden 2048, temperature 0.1, Sinkhorn 3 iterations with epsilon 0.05, queue "
        "used from epoch 50, prototypes frozen for 2 epochs",
        proj_hidden_dim=2048,
        proj_output_dim=128,
        num_prototypes=3000,
        temperature=0.1,
        sk_iters=3,
        sk_epsilon=0.05,
        queue_size=3840,
        epoch_queue_starts=50,
        freeze_prototypes_epochs=2,
    ),
    "vibcreg": _cifar(
        "vibcreg",
        0.3,
        1e-4,
        "lr 0.3, weight decay 1e-4, invariance 25, variance 25, covariance 200, projector "
        "output 2048, batch 512",
        "projector hidden 2048 with GELU, IterNorm on the output",
        proj_hidden_dim=2048,
        proj_output_dim=2048,
        sim_loss_weight=25.0,
        var_loss_weight=25.0,
        cov_loss_weight=200.0,
        iternorm=True,
    ),
    "vicreg": _cifar(
        "vicreg",
        0.3,
        1e-4,
        "lr 0.3, weight decay 1e-4, invariance 25, variance 25, covariance 1.0, projector "
        "output 2048, batch 256",
        "projector hidden 2048",
        batch_size=256,
        proj_hidden_dim=2048,
        proj_output_dim=2048,
        sim_loss_weight=25.0,
        var_loss_weight=25.0,
        cov_loss_weight=1.0,
    ),
}

_ADAM_NOTE = (
    "Adam with the appendix's lr used as is (no batch scaling); no schedule is given, so the "
    "lr is kept constant (our assumption)."
)


def _adam(source: str, **settings: Any) -> MethodPreset:
    """The appendix's Adam runs (MNIST, cells): its lr used as is, kept constant, no warm-up."""
    return MethodPreset(
        optimizer="adam",
        lr_scaling="none",
        scheduler="constant",
        warmup_epochs=0,
        source=f"{source} {_ADAM_NOTE}",
        **settings,
    )


_MOCO_SMALL = dict(
    _CIFAR["mocov2plus"].method_kwargs, proj_output_dim=128, queue_size=1024, temperature=0.07
)

_OTHER: dict[str, MethodPreset] = {
    "mocov2plus_mnist": _adam(
        method="mocov2plus",
        lr=1e-3,
        weight_decay=1e-4,
        batch_size=32,
        epochs=250,
        method_kwargs=_MOCO_SMALL,
        source="MNIST, appendix B.2: MoCoV2+ (VGG11), Adam lr 1e-3, weight decay 1e-4, queue "
        "1024, batch 32, temperature 0.07, projector output 128, 250 epochs. solo-learn "
        "defaults: projector hidden 2048, tau 0.99 -> 0.999.",
    ),
    "mocov2plus_cells": _adam(
        method="mocov2plus",
        lr=1e-3,
        weight_decay=1e-4,
        batch_size=128,
        epochs=400,
        method_kwargs=_MOCO_SMALL,
        source="BBBC021 cells, appendix B.4: MoCoV2+ (VGG13), Adam lr 1e-3, weight decay 1e-4, "
        "queue 1024, batch 128, temperature 0.07, 400 epochs. Projector output 128 as on MNIST "
        "(B.4 does not give it); solo-learn defaults: projector hidden 2048, tau 0.99 -> 0.999.",
    ),
    "byol_mnist": _adam(
        method="byol",
        lr=0.01,
        weight_decay=1e-5,
        batch_size=32,
        epochs=250,
        method_kwargs=_CIFAR["byol"].method_kwargs,
        source="MNIST, appendix B.2: BYOL lr 0.01, weight decay 1e-5, projector output 256, "
        "'same parameters' as the MoCoV2+ MNIST run (Adam, batch 32, 250 epochs). solo-learn "
        "defaults: projector and predictor hidden 4096, tau 0.99 -> 1.0.",
    ),
}

_IMAGENET = {
    "mocov2plus": (0.3, 1e-4),
    "vicreg": (0.3, 1e-4),
    "simclr": (0.4, 1e-5),
    "byol": (0.45, 1e-5),
}
for _method, (_lr, _wd) in _IMAGENET.items():
    _OTHER[f"{_method}_imagenet100"] = _CIFAR[_method].with_overrides(
        lr=_lr,
        weight_decay=_wd,
        batch_size=128,
        epochs=400,
        source=f"ImageNet-100, appendix B.1: lr {_lr}, weight decay {_wd}, batch 128, 400 epochs "
        "(ResNet18/50, ConvNeXt-Tiny). Method hyperparameters as the CIFAR preset (the appendix "
        f"repeats 'the same parameters'). {_optimizer_note(_method)}",
    )

PRESETS: Mapping[str, MethodPreset] = MappingProxyType({**_CIFAR, **_OTHER})


def get_preset(name: str) -> MethodPreset:
    """``PRESETS[name]`` with an error that lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None
