"""The paper's named augmentation compositions, their parameters and defaults.

Each composition is a factory with keyword-only parameters (the paper's values as defaults)
registered in :data:`COMPOSITIONS`; :func:`build_augmentation` checks the name and the parameters
and returns an :class:`~phenossl.augment.views.Augmentation`. Sources: appendix B.1 (CIFAR),
B.2 (MNIST), B.4 and the Table 3 / Figure 6 text (cells); where the appendix is silent the values
are torchvision's or solo-learn's defaults, named in each docstring.

All geometric steps run first, fused into one resampling, then the pixel-value steps. Flips,
rotations and affine maps commute with the pixel-wise colour operations, so this matches the
papers' orders up to interpolation; the two places where it shows are documented where they occur
(contrast's image mean is taken over the final view; background brought in by the geometry is
colour-jittered or inverted together with the image's own background).
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from phenossl.augment.geometry import (
    INTERPOLATIONS,
    Affine,
    CenterCrop,
    Flip,
    Pad,
    ResizedCrop,
    Rotate,
    Rotate90,
)
from phenossl.augment.intensity import (
    ChannelJitter,
    ColorJitter,
    Erase,
    GaussianBlur,
    GaussianNoise,
    Grayscale,
    Invert,
    Solarize,
)
from phenossl.augment.views import Augmentation

Factory = Callable[..., Augmentation]

#: composition name -> factory(**params) -> Augmentation
COMPOSITIONS: dict[str, Factory] = {}

RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision's RandomResizedCrop default


# --- parameter checks: each returns the normalised value or raises naming the parameter -----------


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r}: expected a number")
    return float(value)


def _within(accept: Callable[[float], bool], expected: str) -> Callable[[str, Any], float]:
    """A check of a number: ``accept(value)`` or a ValueError saying what was ``expected``."""

    def check(name: str, value: Any) -> float:
        v = _number(name, value)
        if not accept(v):
            raise ValueError(f"{name}={value!r}: expected {expected}")
        return v

    return check


_at_least_zero = _within(lambda v: v >= 0, "a number >= 0")
_positive = _within(lambda v: v > 0, "a number > 0")
_unit = _within(lambda v: 0 <= v <= 1, "a number in [0, 1]")
_probability = _within(lambda v: 0 <= v <= 1, "a probability in [0, 1]")
_hue = _within(lambda v: 0 <= v <= 0.5, "a hue intensity in [0, 0.5] (turns)")
_shear = _within(lambda v: 0 <= v < 90, "a shear angle in [0, 90) degrees")


def _interval(low: float, high: float, *, open_low: bool) -> Callable[[str, Any], tuple]:
    def check(name: str, value: Any) -> tuple[float, float]:
        if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
            raise ValueError(f"{name}={value!r}: expected a pair (low, high)")
        lo, hi = (_number(name, v) for v in value)
        lo_ok = lo > low if open_low else lo >= low
        if not (lo_ok and lo <= hi <= high):
            bracket = "(" if open_low else "["
            raise ValueError(
                f"{name}={value!r}: expected low <= high within {bracket}{low:g}, {high:g}]"
            )
        return (lo, hi)

    return check


def _size(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive integer or None")
    return int(value)


def _interpolation(name: str, value: Any) -> str:
    if value not in INTERPOLATIONS:
        raise ValueError(f"{name}={value!r}: expected one of {INTERPOLATIONS}")
    return value


_INF = float("inf")
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "size": _size,
    "interpolation": _interpolation,
    "crop_scale": _interval(0.0, _INF, open_low=True),
    "crop_ratio": _interval(0.0, _INF, open_low=True),
    "center_crop_scale": _positive,
    "brightness": _at_least_zero,
    "contrast": _at_least_zero,
    "saturation": _at_least_zero,
    "hue": _hue,
    "degrees": _at_least_zero,
    "affine_degrees": _at_least_zero,
    "affine_translate": _unit,
    "affine_shear": _shear,
    "pad": _interval(0.0, _INF, open_low=False),
    "gamma": _at_least_zero,
    "blur_sigma": _interval(0.0, _INF, open_low=False),
    "noise_std": _at_least_zero,
    "erase_scale": _interval(0.0, 1.0, open_low=True),
    "erase_ratio": _interval(0.0, _INF, open_low=True),
    "erase_value": _unit,
}


def check_param(name: str, value: Any) -> Any:
    """The checked, normalised value of composition parameter ``name`` (no module is built).

    Raises
    ------
    ValueError
        A bad value, named as ``name=value``.

    Examples
    --------
    >>> check_param("crop_scale", [0.2, 1])
    (0.2, 1.0)
    """
    return (_probability if name.endswith("_p") else _CHECKS[name])(name, value)


def _composition(name: str) -> Callable[[Callable[..., dict]], Factory]:
    """Register a plan function (checked params -> Augmentation arguments) as a factory."""

    def register(plan: Callable[..., dict]) -> Factory:
        signature = inspect.signature(plan)
        unchecked = [p for p in signature.parameters if not (p.endswith("_p") or p in _CHECKS)]
        if unchecked:  # a programming error in this module, caught at import
            raise TypeError(f"composition {name!r}: no value check for {unchecked}")

        @functools.wraps(plan)
        def factory(**params: Any) -> Augmentation:
            unknown = sorted(set(params) - set(signature.parameters))
            if unknown:
                raise ValueError(
                    f"unknown parameter(s) {', '.join(unknown)} for augmentation {name!r}; "
                    f"valid parameters: {', '.join(signature.parameters)}"
                )
            bound = signature.bind(**params)
            bound.apply_defaults()
            checked = {k: check_param(k, v) for k, v in bound.arguments.items()}
            return Augmentation(name, checked, **plan(**checked))

        COMPOSITIONS[name] = factory
        return factory

    return register


def build_augmentation(name: str, **params: Any) -> Augmentation:
    """Build the named composition with its paper defaults overridden by ``params``.

    Parameters
    ----------
    name
        One of :data:`COMPOSITIONS` (``cifar``, ``mnist_digit``, ``mnist_handwriting``,
        ``cell_affine_crop``, ``cell_affine_rot360``, ``cell_fig6_left``, ``cell_fig6_right``,
        ``identity``).
    **params
        Parameters of that composition (see :func:`describe`).

    Returns
    -------
    Augmentation
        An ``nn.Module`` mapping a float (B, C, H, W) batch in [0, 1] to one view (B, C, S, S).

    Raises
    ------
    ValueError
        For an unknown name or parameter (the message lists the valid ones) or a bad value.
    """
    factory = COMPOSITIONS.get(name)
    if factory is None:
        raise ValueError(
            f"unknown augmentation {name!r}; expected one of {', '.join(COMPOSITIONS)}"
        )
    return factory(**params)


def describe(name: str) -> dict[str, Any]:
    """The parameters of composition ``name`` and their defaults, in signature order."""
    if name not in COMPOSITIONS:
        raise ValueError(
            f"unknown augmentation {name!r}; expected one of {', '.join(COMPOSITIONS)}"
        )
    signature = inspect.signature(COMPOSITIONS[name])
    return {k: p.default for k, p in signature.parameters.items()}


# --- the compositions ---------------------------------------------------------------------------


@_composition("cifar")
def cifar(
    *,
    size: int | None = 32,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = RRC_RATIO,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    jitter_p: float = 0.8,
    hue: float = 0.1,
    hue_p: float = 0.8,
    gray_p: float = 0.2,
    solarize_p: float = 0.0,
    flip_p: float = 0.5,
    interpolation: str = "bicubic",
) -> dict:
    """CIFAR-10/100 (appendix B.1): solo-learn's CIFAR pipeline with hue as its own step.

    Random resized crop to ``size`` (area ``crop_scale``, swept by the paper over a lower bound
    in [0.2, 1]; aspect ``crop_ratio``), colour jitter (brightness 0.4, contrast 0.4, saturation
    0.2, in a random order per sample) with probability ``jitter_p`` 0.8, then hue, grayscale
    (``gray_p`` 0.2), solarisation (``solarize_p``) and a horizontal flip (``flip_p`` 0.5, swept).

    Hue is separated from the other jitter components because the paper varies its intensity and
    its probability on their own (intensity in [0, 0.5] at p = 0.8; probability in [0, 1] at
    intensity 0.5 or 0.1) while brightness, contrast and saturation stay at p = 0.8: it is a second
    jitter step, applied after the first with its own gate ``hue_p``, shifting the HSV hue by
    U(-hue, hue) turns. The defaults ``hue=0.1``, ``hue_p=0.8`` are solo-learn's hue intensity
    and jitter probability; each of the paper's sweeps overrides one of the two.

    Where the appendix is silent the values are solo-learn's CIFAR defaults
    (``scripts/pretrain/cifar/augmentations/asymmetric.yaml``): ``crop_scale`` (0.08, 1),
    grayscale 0.2, Gaussian blur and equalisation off (not implemented), solarisation 0 (its
    second, asymmetric view uses ``solarize_p=0.2``; threshold 0.5), bicubic resizing. The flip is
    merged into the warp; it commutes exactly with the colour steps that solo-learn runs before it.
    """
    return {
        "geometry": [ResizedCrop(crop_scale, crop_ratio), Flip("horizontal", flip_p)],
        "pixel": [
            ColorJitter(brightness, contrast, saturation, 0.0, p=jitter_p),
            ColorJitter(hue=hue, p=hue_p),
            Grayscale(gray_p),
            Solarize(solarize_p),
        ],
        "size": size,
        "interpolation": interpolation,
    }


@_composition("mnist_digit")
def mnist_digit(
    *,
    size: int | None = 32,
    pad: tuple[float, float] = (0.1, 0.4),
    invert_p: float = 0.5,
    degrees: float = 25.0,
    crop_scale: tuple[float, float] = (0.5, 0.9),
    crop_ratio: tuple[float, float] = RRC_RATIO,
    interpolation: str = "bilinear",
) -> dict:
    """MNIST, clustering by digit (appendix B.2).

    Padding of every side by U(*pad) of the image size (10-40 %), colour inversion (``invert_p``,
    torchvision's default 0.5: the appendix gives no probability), rotation by U(-25, 25) degrees,
    a random crop of ``crop_scale`` (0.5-0.9) of the padded image's area, resized to ``size``
    (32 x 32). The padding and rotated corners are background; since inversion runs after the warp
    they are inverted along with the digit's own background (a white canvas, not black corners on
    it).
    """
    return {
        "geometry": [Pad(pad), Rotate(degrees), ResizedCrop(crop_scale, crop_ratio)],
        "pixel": [Invert(invert_p)],
        "size": size,
        "interpolation": interpolation,
    }


@_composition("mnist_handwriting")
def mnist_handwriting(
    *,
    size: int | None = 32,
    hflip_p: float = 0.5,
    vflip_p: float = 0.5,
    degrees: float = 180.0,
    crop_scale: tuple[float, float] = (0.9, 1.1),
    crop_ratio: tuple[float, float] = RRC_RATIO,
    erase_p: float = 0.5,
    erase_scale: tuple[float, float] = (0.02, 0.3),
    erase_ratio: tuple[float, float] = (0.3, 3.3),
    erase_value: float = 0.0,
    interpolation: str = "bilinear",
) -> dict:
    """MNIST, clustering by handwriting flow (appendix B.2).

    Horizontal and vertical flips (p = 0.5 each), rotation by U(-180, 180) degrees, a random crop
    of ``crop_scale`` (0.9-1.1) of the image area resized to ``size`` (an area above 1 zooms out:
    the digit shrinks inside a background border), then random erasing of ``erase_scale``
    (0.02-0.3) of the area with probability 0.5 (torchvision's ratio (0.3, 3.3) and value 0).
    ``size`` defaults to 32 like the digit composition, the smallest input VGG11 accepts.
    """
    return {
        "geometry": [
            Flip("horizontal", hflip_p),
            Flip("vertical", vflip_p),
            Rotate(degrees),
            ResizedCrop(crop_scale, crop_ratio),
        ],
        "pixel": [Erase(erase_p, erase_scale, erase_ratio, erase_value)],
        "size": size,
        "interpolation": interpolation,
    }


_CELL_DOC = """

    Colour jitter: brightness, contrast and saturation 0.4, hue 0.125, with probability
    ``jitter_p`` 1.0, in a random order per sample, on the DAPI/Tubulin/Actin channels as if they
    were RGB. It runs after the warp, so contrast's image mean is the final view's and the
    background the geometry brings in is jittered like the cells' own dark background. The affine
    map is torchvision's ``RandomAffine(20, translate=(0.1, 0.1), shear=10)``. ``size=None`` keeps
    the input size (the paper's "original size", 196 px); crop areas above 1 zoom out.
    """


def _cell_doc(plan: Callable) -> Callable:
    plan.__doc__ = (plan.__doc__ or "") + _CELL_DOC
    return plan


@_composition("cell_affine_crop")
@_cell_doc
def cell_affine_crop(
    *,
    size: int | None = None,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.125,
    jitter_p: float = 1.0,
    affine_degrees: float = 20.0,
    affine_translate: float = 0.1,
    affine_shear: float = 10.0,
    crop_scale: tuple[float, float] = (0.9, 1.1),
    crop_ratio: tuple[float, float] = RRC_RATIO,
    interpolation: str = "bilinear",
) -> dict:
    """BBBC021 cells, Table 3 row 1: affine map, colour jitter, random crop (0.9-1.1) resized."""
    return {
        "geometry": [
            Affine(affine_degrees, affine_translate, affine_shear),
            ResizedCrop(crop_scale, crop_ratio),
        ],
        "pixel": [ColorJitter(brightness, contrast, saturation, hue, p=jitter_p)],
        "size": size,
        "interpolation": interpolation,
    }


@_composition("cell_affine_rot360")
@_cell_doc
def cell_affine_rot360(
    *,
    size: int | None = None,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.125,
    jitter_p: float = 1.0,
    affine_degrees: float = 20.0,
    affine_translate: float = 0.1,
    affine_shear: float = 10.0,
    degrees: float = 360.0,
    interpolation: str = "bilinear",
) -> dict:
    """BBBC021 cells, Table 3 row 2: affine map, colour jitter, rotation by U(-360, 360) degrees."""
    return {
        "geometry": [Affine(affine_degrees, affine_translate, affine_shear), Rotate(degrees)],
        "pixel": [ColorJitter(brightness, contrast, saturation, hue, p=jitter_p)],
        "size": size,
        "interpolation": interpolation,
    }


@_composition("cell_fig6_left")
@_cell_doc
def cell_fig6_left(
    *,
    size: int | None = None,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.125,
    jitter_p: float = 1.0,
    hflip_p: float = 0.5,
    vflip_p: float = 0.5,
    degrees: float = 360.0,
    affine_degrees: float = 20.0,
    affine_translate: float = 0.1,
    affine_shear: float = 10.0,
    crop_scale: tuple[float, float] = (0.9, 1.1),
    crop_ratio: tuple[float, float] = RRC_RATIO,
    interpolation: str = "bilinear",
) -> dict:
    """BBBC021 cells, Figure 6 left (and the 0.4-weighted loss of the mix).

    Colour jitter, horizontal and vertical flips (p = 0.5 each), rotation by U(-360, 360)
    degrees, the affine map, a random crop of 0.9-1.1 of the area resized to the original size.
    """
    return {
        "geometry": [
            Flip("horizontal", hflip_p),
            Flip("vertical", vflip_p),
            Rotate(degrees),
            Affine(affine_degrees, affine_translate, affine_shear),
            ResizedCrop(crop_scale, crop_ratio),
        ],
        "pixel": [ColorJitter(brightness, contrast, saturation, hue, p=jitter_p)],
        "size": size,
        "interpolation": interpolation,
    }


@_composition("cell_fig6_right")
@_cell_doc
def cell_fig6_right(
    *,
    size: int | None = None,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.125,
    jitter_p: float = 1.0,
    hflip_p: float = 0.5,
    vflip_p: float = 0.5,
    degrees: float = 360.0,
    center_crop_scale: float = 0.5,
    interpolation: str = "bilinear",
) -> dict:
    """BBBC021 cells, Figure 6 right (and the 1.0-weighted loss of the mix).

    Colour jitter, horizontal and vertical flips (p = 0.5 each), rotation by U(-360, 360)
    degrees, and the centre crop covering ``center_crop_scale`` (0.5) of the image *area*
    (side x 0.707, the meaning "scale" has for the random crops in the same text; pass 0.25 for
    half the side), resized to the original size.
    """
    return {
        "geometry": [
            Flip("horizontal", hflip_p),
            Flip("vertical", vflip_p),
            Rotate(degrees),
            CenterCrop(center_crop_scale),
        ],
        "pixel": [ColorJitter(brightness, contrast, saturation, hue, p=jitter_p)],
        "size": size,
        "interpolation": interpolation,
    }


@_composition("fluorescence")
def fluorescence(
    *,
    size: int | None = None,
    rot90_p: float = 1.0,
    hflip_p: float = 0.5,
    affine_degrees: float = 10.0,
    affine_translate: float = 0.05,
    affine_shear: float = 5.0,
    crop_scale: tuple[float, float] = (0.6, 1.0),
    crop_ratio: tuple[float, float] = (0.9, 1.0 / 0.9),
    brightness: float = 0.3,
    contrast: float = 0.3,
    gamma: float = 0.3,
    jitter_p: float = 0.8,
    blur_p: float = 0.3,
    blur_sigma: tuple[float, float] = (0.1, 1.0),
    noise_p: float = 0.3,
    noise_std: float = 0.03,
    interpolation: str = "bilinear",
) -> dict:
    """Fluorescence cells (the product's, not the paper's): channels are never mixed.

    A rotation by a multiple of 90 degrees (``rot90_p`` 1.0) and a horizontal flip (``hflip_p`` 0.5; together all
    eight symmetries of the square: cells have no up), a small affine map (U(-10, 10) degrees,
    translation up to 5 % of the side, shear up to 5 degrees), a random crop of ``crop_scale``
    (0.6-1.0) of the area with a near-square aspect resized to ``size``; then, with probability
    ``jitter_p`` 0.8, a per-channel gain, contrast and gamma jitter (each +-0.3, drawn per channel,
    so DAPI, Tubulin and Actin vary independently as stain and exposure do between wells and
    plates), a mild Gaussian blur (sigma 0.1-1 px, p 0.3) and Gaussian noise (std up to 0.03 of
    the range, p 0.3). No hue or saturation jitter: on stains those move a nucleus's DAPI signal
    into the cytoskeleton channels. Works on any channel count.
    """
    return {
        "geometry": [
            Rotate90(rot90_p),
            Flip("horizontal", hflip_p),
            Affine(affine_degrees, affine_translate, affine_shear),
            ResizedCrop(crop_scale, crop_ratio),
        ],
        "pixel": [
            ChannelJitter(brightness, contrast, gamma, p=jitter_p),
            GaussianBlur(blur_p, blur_sigma),
            GaussianNoise(noise_p, noise_std),
        ],
        "size": size,
        "interpolation": interpolation,
    }


@_composition("identity")
def identity(*, size: int | None = None, interpolation: str = "bilinear") -> dict:
    """No augmentation; with ``size`` the batch is resized to ``size`` x ``size``."""
    return {"size": size, "interpolation": interpolation}
