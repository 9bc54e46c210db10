"""The augmentation module: one fused geometric warp, then the pixel-value steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from phenossl.augment.geometry import (
    INTERPOLATIONS,
    CenterCrop,
    Flip,
    GeometricStep,
    ResizedCrop,
    needs_warp,
    sample_matrices,
    warp,
)
from phenossl.augment.intensity import PixelStep

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class Augmentation(nn.Module):
    """A named composition: float (B, C, H, W) in [0, 1] -> one augmented view (B, C, S, S).

    Geometric steps are composed into one per-sample affine map and applied with a single
    resampling; the pixel-value steps follow, in order. Every sample draws its own parameters
    from torch's RNG on the batch's device (the colour-jitter order from the CPU RNG), so a
    seeded ``torch.manual_seed`` run is reproducible. The module has no parameters or buffers: it
    runs on whatever device the batch is on. float16/bfloat16 batches are processed in float32 and
    returned in their own dtype. When no step can change the batch (every probability 0, crop
    covering the whole image, no resize) the input tensor itself is returned.

    Parameters
    ----------
    name
        The composition's name (see ``phenossl.augment.COMPOSITIONS``).
    params
        Its parameters, for ``repr`` and for saving with a checkpoint's config.
    geometry, pixel
        The steps; steps that can never change an image are dropped.
    size
        Output side ``S``; ``None`` keeps the input's ``(H, W)``.
    interpolation
        ``"bilinear"``, ``"bicubic"`` or ``"nearest"`` for the warp.
    """

    def __init__(
        self,
        name: str,
        params: Mapping[str, Any],
        geometry: Sequence[GeometricStep] = (),
        pixel: Sequence[PixelStep] = (),
        size: int | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation={interpolation!r}; expected one of {INTERPOLATIONS}")
        self.name = name
        self.params = dict(params)
        self.geometry = tuple(s for s in geometry if not s.noop)
        self.pixel = tuple(s for s in pixel if not s.noop)
        self.size = size
        self.interpolation = interpolation

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
            got = (
                f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x)
            )
            raise ValueError(
                f"augmentation {self.name!r} expects a float (B, C, H, W) batch in [0, 1], got "
                f"{got}; convert uint8 crops with x.float() / 255"
            )
        dtype = x.dtype
        out = x.float() if dtype in _LOW_PRECISION else x
        in_size = (x.shape[2], x.shape[3])
        out_size = in_size if self.size is None else (self.size, self.size)
        if needs_warp(self.geometry, in_size, out_size):
            matrices = sample_matrices(self.geometry, x.shape[0], in_size, out_size, x.device)
            out = warp(out, matrices, out_size, self.interpolation)
        for step in self.pixel:
            out = step(out)
        return out.to(dtype)

    def extra_repr(self) -> str:
        return ", ".join([repr(self.name), *(f"{k}={v!r}" for k, v in self.params.items())])


def weak_view(augmentation: Augmentation) -> Augmentation:
    """The weak counterpart of a composition: its crops and flips only, same output size.

    ReSSL's key view (Zheng et al. 2021; solo-learn's ``augmentations/ressl.yaml``): the random
    resized crop and horizontal flip of the strong view, with the same parameters, and no colour
    jitter, grayscale, solarisation, rotation, affine map, padding or erasing.

    Examples
    --------
    >>> from phenossl.augment import build_augmentation
    >>> weak_view(build_augmentation("cifar")).name
    'cifar_weak'
    """
    geometry = [s for s in augmentation.geometry if isinstance(s, ResizedCrop | CenterCrop | Flip)]
    return Augmentation(
        f"{augmentation.name}_weak",
        augmentation.params,
        geometry=geometry,
        pixel=(),
        size=augmentation.size,
        interpolation=augmentation.interpolation,
    )


def make_views(
    augmentations: nn.Module | Sequence[nn.Module], x: Tensor, n_views: int = 2
) -> list[Tensor]:
    """``n_views`` independently augmented views of the batch ``x``.

    With one augmentation every view uses it; with a sequence, view ``i`` uses
    ``augmentations[i % len(augmentations)]`` (e.g. ``[aug_a, aug_b]`` and ``n_views=2`` gives one
    view of each, as in asymmetric SSL pipelines), and ``n_views`` must be a multiple of its length.
    """
    augs = [augmentations] if isinstance(augmentations, nn.Module) else list(augmentations)
    if not augs:
        raise ValueError("make_views needs at least one augmentation, got an empty sequence")
    if n_views < 1 or n_views % len(augs):
        raise ValueError(
            f"n_views={n_views} must be a positive multiple of the number of augmentations "
            f"({len(augs)})"
        )
    return [augs[i % len(augs)](x) for i in range(n_views)]
