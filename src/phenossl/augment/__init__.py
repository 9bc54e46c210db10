"""Named augmentation compositions from the paper, batched on the training device.

::

    from phenossl.augment import build_augmentation, make_views

    aug = build_augmentation("cifar", hue=0.5, hue_p=0.3)  # an nn.Module
    view1, view2 = make_views(aug, images)  # float (B, C, H, W) in [0, 1], any device

Every sample gets its own random parameters, drawn from torch's RNG on the batch's device, so a
GPU batch is augmented on the GPU and a seeded run is reproducible. Normalisation is not part of a
composition: the trainer applies it. Modules: :mod:`~phenossl.augment.geometry` (per-sample affine
maps fused into one resampling), :mod:`~phenossl.augment.intensity` (colour jitter, grayscale,
solarisation, inversion, erasing), :mod:`~phenossl.augment.views` (the module, views) and
:mod:`~phenossl.augment.compositions` (the named compositions).
"""

from phenossl.augment.compositions import COMPOSITIONS, build_augmentation, check_param, describe
from phenossl.augment.views import Augmentation, make_views, weak_view

__all__ = [
    "COMPOSITIONS",
    "Augmentation",
    "build_augmentation",
    "check_param",
    "describe",
    "make_views",
    "weak_view",
]
