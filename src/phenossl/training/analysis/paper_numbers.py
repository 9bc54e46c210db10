"""Published numbers that the reports print next to ours.

Sources: the appendix of Bendidi et al. (``../shared/paper/appendix.txt``: Tables 1-4) and the
solo-learn README reference accuracies quoted in ``DESIGN.md``. Accuracies are in percent, as
published; method names are the keys of :data:`phenossl.ssl.base.METHODS`.

Parameters are named as the ``cifar`` augmentation composition names them (``hue``, ``hue_p``,
``jitter_p``, ``crop_scale``); :data:`PARAMETER_ALIASES` lists the names under which a store's
sweep may hold each of the paper's axes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

#: human label of each of the paper's swept parameters
PARAMETER_LABELS = MappingProxyType(
    {
        "hue": "hue intensity",
        "hue_p": "hue probability",
        "jitter_p": "colour jitter probability",
        "crop_scale": "crop size (lower bound of the area scale)",
        "flip_p": "horizontal flip probability",
    }
)

#: store parameter names that stand for each of the paper's axes. Table 3's "Color Jitter
#: Probability" is, by appendix B.1, the sweep of the hue step's probability (intensity 0.1), so
#: it matches ``hue_p`` as well as a sweep of the whole jitter step's probability (``jitter_p``).
PARAMETER_ALIASES = MappingProxyType(
    {
        "hue": ("hue",),
        "hue_p": ("hue_p",),
        "color_jitter_p": ("jitter_p", "hue_p"),
        "crop_scale": ("crop_scale", "crop_min_scale", "min_scale"),
    }
)

#: Table 1 (appendix): hue intensity sweep, ResNet18 (the dataset is CIFAR-100, 100 classes).
#: Per method: classes with a significant (p < 0.05) negative correlation under linear evaluation
#: and under fine-tuning, and the percentage of classes with the same trend in both.
TABLE1: Mapping[str, Any] = MappingProxyType(
    {
        "parameter": "hue",
        "dataset": "cifar100",
        "methods": MappingProxyType(
            {
                "simclr": (97, 96, 45.0),
                "byol": (80, 100, 52.0),
                "vicreg": (92, 92, 53.0),
            }
        ),
    }
)

#: Table 2 (appendix): CIFAR-10, ResNet18, 20 hue probabilities at hue intensity 0.5, seeds 5-9;
#: linear top-1 (%) mean and standard deviation.
TABLE2: Mapping[str, Any] = MappingProxyType(
    {
        "parameter": "hue_p",
        "dataset": "cifar10",
        "methods": MappingProxyType(
            {
                "barlow_twins": (89.59, 0.73),
                "byol": (92.09, 0.37),
                "deepclusterv2": (86.9, 1.9),
                "mocov2plus": (92.37, 0.44),
                "nnbyol": (91.3, 0.57),
                "nnclr": (89.76, 0.74),
                "ressl": (90.21, 0.85),
                "simclr": (90.16, 0.87),
                "simsiam": (89.6, 1.01),
                "swav": (86.96, 1.2),
                "vibcreg": (82.47, 0.89),
                "vicreg": (89.82, 0.94),
            }
        ),
    }
)

#: Table 3 (appendix): CIFAR-100, ResNet18, Barlow Twins, BYOL, MoCo v2, SimCLR, VICReg. Number of
#: classes biased in all 5 methods, in at least 3 and in at least 2, per swept parameter (keys
#: of :data:`PARAMETER_ALIASES`).
TABLE3: Mapping[str, Any] = MappingProxyType(
    {
        "dataset": "cifar100",
        "methods": ("barlow_twins", "byol", "mocov2plus", "simclr", "vicreg"),
        "columns": MappingProxyType(
            {
                "hue": MappingProxyType({"all": 51, 3: 97, 2: 99}),
                "color_jitter_p": MappingProxyType({"all": 0, 3: 3, 2: 27}),
                "crop_scale": MappingProxyType({"all": 0, 3: 4, 2: 8}),
            }
        ),
    }
)

#: Table 4 (appendix): MNIST linear evaluation top-1 (%) by method and backbone.
TABLE4: Mapping[str, Any] = MappingProxyType(
    {
        "dataset": "mnist",
        "methods": MappingProxyType(
            {
                "byol": MappingProxyType({"vgg11": 61.3, "resnet18": 62.5, "convnext_tiny": 51.6}),
                "mocov2plus": MappingProxyType(
                    {"vgg11": 62.1, "resnet18": 63.8, "convnext_tiny": 58.7}
                ),
            }
        ),
    }
)

#: solo-learn README (ResNet18, 1000 epochs, online linear evaluation): top-1 (%) on CIFAR-10
#: and CIFAR-100, as quoted in DESIGN.md.
SOLO_LEARN = MappingProxyType(
    {
        "barlow_twins": (92.10, 70.90),
        "byol": (92.58, 70.46),
        "deepclusterv2": (88.85, 63.61),
        "dino": (89.52, 66.76),
        "mocov2plus": (92.94, 69.89),
        "nnclr": (91.88, 69.62),
        "ressl": (90.63, 65.92),
        "simclr": (90.74, 65.78),
        "simsiam": (90.51, 66.04),
        "swav": (89.17, 64.88),
        "vibcreg": (91.18, 67.37),
        "vicreg": (92.07, 68.54),
    }
)


def solo_learn_top1(method: str, dataset: str) -> float | None:
    """solo-learn's reference top-1 (%) of ``method`` on ``cifar10``/``cifar100``, else None."""
    pair = SOLO_LEARN.get(method)
    index = {"cifar10": 0, "cifar100": 1}.get(dataset)
    return None if pair is None or index is None else pair[index]


def paper_axes(parameter: str) -> tuple[str, ...]:
    """The paper's axes (keys of :data:`PARAMETER_ALIASES`) that ``parameter`` may stand for.

    ``parameter`` may be dotted (``augmentation.0.hue_p``): its last component is matched, so
    ``hue_p`` gives ``("hue_p", "color_jitter_p")``.
    """
    base = parameter.rsplit(".", 1)[-1]
    return tuple(axis for axis, names in PARAMETER_ALIASES.items() if base in names)
