"""Geometric steps as per-sample affine maps, fused into a single resampling.

Every step draws its random parameters per sample and returns a batch of 3x3 matrices in
*centred pixel coordinates* of the current canvas (x to the right, y down, origin at the canvas
centre, one unit per pixel, so a canvas of width ``W`` spans ``x`` in ``[-W/2, W/2]``), together
with the canvas size after the step (steps such as padding or crop-and-resize change it, per
sample). :func:`warp` multiplies the matrices of all steps and resamples each image once, so a
composition of flips, rotations, an affine map and a crop costs one ``grid_sample`` and blurs the
image once, instead of once per step.

Outside the source image the output is ``0`` (the background): padding, zooming out and rotated
corners all show it. Inside, sampling clamps to the edge pixels, as cropping-then-resizing does, so
a crop that touches the image border is not darkened by zeros bleeding in through interpolation.
There is no antialiasing: the compositions here shrink an image by at most about 1.5x (the padded
MNIST digit canvas down to 32 px), where it would change little.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def _uniform(low: float, high: float, n: int, device: torch.device, extra: int = 0) -> Tensor:
    """``n`` (or ``(n, extra)``) draws from U(low, high) with torch's RNG on ``device``."""
    shape = (n, extra) if extra else (n,)
    return low + (high - low) * torch.rand(shape, device=device)


def _eye(n: int, device: torch.device) -> Tensor:
    return torch.eye(3, device=device).expand(n, 3, 3).clone()


class GeometricStep(ABC):
    """One geometric operation with per-sample random parameters."""

    @property
    def noop(self) -> bool:
        """True when the step never moves a pixel (e.g. a flip with ``p=0``): it is dropped."""
        return False

    def is_identity_on(self, height: int, width: int) -> bool:
        """True when the step maps a ``height x width`` canvas onto itself unchanged."""
        return self.noop

    @abstractmethod
    def sample(self, size: Tensor, out_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Draw parameters for a batch.

        Parameters
        ----------
        size
            ``(B, 2)`` float canvas sizes ``(height, width)`` before the step.
        out_size
            ``(height, width)`` of the composition's output, for steps that resize.

        Returns
        -------
        matrix, size
            ``(B, 3, 3)`` forward maps (old canvas -> new canvas, centred pixel coordinates) and
            the ``(B, 2)`` canvas sizes after the step.
        """


@dataclass(frozen=True)
class Flip(GeometricStep):
    """Mirror about the vertical (``axis="horizontal"``) or horizontal axis with probability p."""

    axis: str
    p: float

    @property
    def noop(self) -> bool:
        return self.p == 0

    def sample(self, size: Tensor, out_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        n = size.shape[0]
        flipped = torch.rand(n, device=size.device) < self.p
        m = _eye(n, size.device)
        i = 0 if self.axis == "horizontal" else 1
        m[:, i, i] = 1.0 - 2.0 * flipped.float()
        return m, size


@dataclass(frozen=True)
class Rotate(GeometricStep):
    """Rotation about the canvas centre by an angle drawn from U(-degrees, degrees)."""

    degrees: float

    @property
    def noop(self) -> bool:
        return self.degrees == 0

    def sample(self, size: Tensor, out_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        n = size.shape[0]
        angle = torch.deg2rad(_uniform(-self.degrees, self.degrees, n, size.device))
        cos, sin = torch.cos(angle), torch.sin(angle)
        m = _eye(n, size.device)
        m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
        return m, size


@dataclass(frozen=True)
class Rotate90(GeometricStep):
    """With probability p, rotation about the canvas centre by 0, 90, 180 or 270 degrees (uniform).

    Exact on square canvases: no corner is lost and no background comes in.
    """

    p: float = 1.0

    @property
    def noop(self) -> bool:
        return self.p == 0

    def sample(self, size: Tensor, out_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        n = size.shape[0]
        k = torch.randint(0, 4, (n,), device=size.device).float()
        k = k * (torch.rand(n, device=size.device) < self.p).float()
        angle = k * (math.pi / 2)
        cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
        m = _eye(n, size.device)
        m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
        return m, size


@dataclass(frozen=True)
class Affine(GeometricStep):
    """torchvision's ``RandomAffine(degrees, translate=(t, t), shear=s)`` without scaling.

    Angle from U(-degrees, degrees); translation from U(-t, t) times the canvas width (x) and
    height (y), continuous rather than rounded to whole pixels; shear parallel to the x axis
    from U(-shear, shear) degrees (a single shear number in torchvision means exactly that).
    """

    degrees: float
    translate: float
    shear: float

    @property
    def noop(self) -> bool:
        return self.degrees == 0 and self.translate == 0 and self.shear == 0

    def sample(self, size: Tensor, out_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        n, dev = size.shape[0], size.device
        angle = torch.deg2rad(_uniform(-self.degrees, self.degrees, n, dev))
        shear = torch.tan(torch.deg2rad(_uniform(-self.shear, self.shear, n, dev)))
        shift = _uniform(-self.translate, self.translate, n, dev, extra=2) * size.flip(1)
        cos, sin = torch.cos(angle), torch.sin(angle)
        m = _eye(n, dev)
        # rotation @ [[1, shear], [0, 1]], then the translation
        m[:, 0, 0], m[:, 0, 1] = cos, cos * shear - sin
        m[:, 1, 0], m[:, 1, 1] = sin, sin * shear + cos
        m[:, :2, 2] = shift
        return m, size


@dataclass(frozen=True)
class Pad(GeometricStep):
    """Pad every side by a fraction of the image size drawn per sample from U(*fraction).

    The canvas grows from ``(H, W)`` to ``(H (1 + 2f), W (1 + 2f))`` with the image centred;
    a later crop or the final resize brings every sample back to the output size.
    """

    fraction: tuple[float, float]

    @property
    def noop(self) -> bool:
        return self.fraction == (0.0, 0.0)

    def sample(self, size: Tensor, out_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        f = _uniform(*self.fraction, size.shape[0], size.device)
        return _eye(size.shape[0], size.device), size * (1.0 + 2.0 * f)[:, None]


def _box_to_output(centre: Tensor, box: Tensor, out_size: tuple[int, int]) -> Tensor:
    """Matrices that map a box (centre ``(B, 2)`` x/y, size ``(B, 2)`` w/h) onto the output."""
    scale = torch.stack([out_size[1] / box[:, 0], out_size[0] / box[:, 1]], dim=1)
    m = _eye(box.shape[0], box.device)
    m[:, 0, 0], m[:, 1, 1] = scale[:, 0], scale[:, 1]
    m[:, :2, 2] = -centre * scale
    return m


@dataclass(frozen=True)
class ResizedCrop(GeometricStep):
    """torchvision's ``RandomResizedCrop`` generalised to zoom out, resized to the output size.

    Up to ``attempts`` candidate boxes per sample, of area ``scale`` times the canvas area and
    width/height ratio drawn log-uniformly from ``ratio``; the first valid one wins, otherwise
    torchvision's fallback (the largest centred box whose ratio is within ``ratio``). A candidate
    with area fraction at most 1 is valid when it fits inside the canvas, exactly as in
    torchvision. A candidate with area fraction above 1 *zooms out*: it is valid when it contains
    the canvas on both axes, and the image then lands at a random position inside the box, with
    background around it (torchvision would reject every such candidate). Sizes and positions are
    continuous, not rounded to whole pixels.
    """

    scale: tuple[float, float]
    ratio: tuple[float, float]
    attempts: int = 10

    def is_identity_on(self, height: int, width: int) -> bool:
        return height == width and self.scale == (1.0, 1.0) and self.ratio == (1.0, 1.0)

    def sample(self, size: Tensor, out_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        n, dev = size.shape[0], size.device
        hw = size[:, :1], size[:, 1:]  # (B, 1) each
        area = hw[0] * hw[1]
        frac = _uniform(*self.scale, n, dev, extra=self.attempts)
        log_ratio = _uniform(
            math.log(self.ratio[0]), math.log(self.ratio[1]), n, dev, self.attempts
        )
        ratio = torch.exp(log_ratio)
        w = torch.sqrt(area * frac * ratio)
        h = torch.sqrt(area * frac / ratio)
        tol = 1e-5  # relative; keeps a full-canvas candidate valid despite rounding in sqrt
        inside = (w <= hw[1] * (1 + tol)) & (h <= hw[0] * (1 + tol))
        contains = (w >= hw[1]) & (h >= hw[0])
        valid = torch.where(frac <= 1.0, inside, contains)
        first = valid.int().argmax(dim=1, keepdim=True)  # first valid candidate (0 if none)
        w = torch.gather(w, 1, first)
        h = torch.gather(h, 1, first)
        zoom_out = torch.gather(frac, 1, first) > 1.0
        w = torch.where(zoom_out, torch.maximum(w, hw[1]), torch.minimum(w, hw[1]))
        h = torch.where(zoom_out, torch.maximum(h, hw[0]), torch.minimum(h, hw[0]))

        # torchvision's fallback: the whole canvas, trimmed to the nearest allowed ratio
        aspect = hw[1] / hw[0]
        fb_w = torch.where(aspect > self.ratio[1], hw[0] * self.ratio[1], hw[1])
        fb_h = torch.where(aspect < self.ratio[0], hw[1] / self.ratio[0], hw[0])
        found = valid.any(dim=1, keepdim=True)
        box = torch.cat([torch.where(found, w, fb_w), torch.where(found, h, fb_h)], dim=1)

        # uniform position: inside the canvas, or (zooming out) around it; fallback centred
        u = torch.where(found, torch.rand(n, 2, device=dev), 0.5)
        centre = (u - 0.5) * (size.flip(1) - box)
        return _box_to_output(centre, box, out_size), _sizes(n, out_size, dev)


@dataclass(frozen=True)
class CenterCrop(GeometricStep):
    """The centred box covering ``scale`` of the canvas area (same aspect), resized to the output."""

    scale: float

    def is_identity_on(self, height: int, width: int) -> bool:
        return self.scale == 1.0

    def sample(self, size: Tensor, out_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        box = size.flip(1) * math.sqrt(self.scale)
        centre = torch.zeros_like(box)
        return _box_to_output(centre, box, out_size), _sizes(size.shape[0], out_size, size.device)


def _sizes(n: int, size: tuple[int, int], device: torch.device) -> Tensor:
    """``(n, 2)`` float (height, width), filled on the device (a host tensor would need a copy)."""
    out = torch.empty(n, 2, device=device)
    out[:, 0], out[:, 1] = size
    return out


def _invert_affine(m: Tensor) -> Tensor:
    """Inverse of a batch of 3x3 affine matrices, in closed form (no device sync, unlike inv)."""
    a, b, c, d = m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1]
    det = a * d - b * c
    inv = torch.zeros_like(m)
    inv[:, 0, 0], inv[:, 0, 1] = d / det, -b / det
    inv[:, 1, 0], inv[:, 1, 1] = -c / det, a / det
    inv[:, :2, 2] = -(inv[:, :2, :2] @ m[:, :2, 2:]).squeeze(2)
    inv[:, 2, 2] = 1.0
    return inv


def needs_warp(
    steps: Sequence[GeometricStep], in_size: tuple[int, int], out_size: tuple[int, int]
) -> bool:
    """False only when the steps provably leave every image untouched (then no resampling)."""
    return in_size != out_size or not all(s.is_identity_on(*in_size) for s in steps)


def sample_matrices(
    steps: Sequence[GeometricStep],
    batch: int,
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    device: torch.device,
) -> Tensor:
    """Compose the steps into ``(B, 3, 3)`` maps from input to output centred pixel coordinates."""
    size = _sizes(batch, in_size, device)
    total = _eye(batch, device)
    for step in steps:
        m, size = step.sample(size, out_size)
        total = m @ total
    # whatever canvas the steps leave (the input's, or a padded one) is resized to the output
    resize = _eye(batch, device)
    resize[:, 0, 0], resize[:, 1, 1] = out_size[1] / size[:, 1], out_size[0] / size[:, 0]
    return resize @ total


def warp(
    x: Tensor,
    matrices: Tensor,
    out_size: tuple[int, int],
    interpolation: str = "bilinear",
) -> Tensor:
    """Resample ``x`` (B, C, H, W) through per-sample forward maps onto ``out_size``.

    The background outside the source image is 0. Bicubic results are clamped to [0, 1].
    """
    b, c, h, w = x.shape
    inv = _invert_affine(matrices)  # output -> input, centred pixel coordinates
    # to grid_sample's normalised coordinates (align_corners=False): pixels / half-size
    theta = inv[:, :2, :].clone()
    theta[:, 0] *= 2 / w
    theta[:, 1] *= 2 / h
    theta[:, :, 0] *= out_size[1] / 2
    theta[:, :, 1] *= out_size[0] / 2
    grid = F.affine_grid(theta, [b, c, *out_size], align_corners=False)
    inside = (grid.abs() <= 1.0).all(dim=-1, keepdim=True).movedim(-1, 1)  # (B, 1, h, w)
    out = F.grid_sample(
        x, grid.to(x.dtype), mode=interpolation, padding_mode="border", align_corners=False
    )
    out = out * inside
    return out.clamp_(0.0, 1.0) if interpolation == "bicubic" else out
