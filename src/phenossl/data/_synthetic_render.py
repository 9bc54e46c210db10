"""Render one synthetic 3-channel field (DAPI, Tubulin, Actin) with ground-truth labels.

The model, in the order :func:`render_cells` runs it:

1. **Placement.** Cell centres are drawn from a smooth random density (cells grow in colonies)
   and thinned greedily so that nuclei never overlap and neighbours keep a minimum spacing; a few
   cells are placed as post-mitotic daughter pairs whose nuclei almost touch.
2. **Shape.** Each cell is a star-shaped outline ``r(theta)`` around its nucleus: a polygon of
   4-7 rounded corners stretched along the cell's long axis (blended with a disc for rounded
   cells), plus pointed protrusions. A pixel belongs to the cell with the smallest normalised
   distance ``|x - c| / r(theta)`` when it is below 1: a multiplicatively weighted Voronoi
   diagram, so crowded cells share straight borders.
3. **Nuclei.** One ellipse, two (binucleate) or several small lobes (fragmented), each with a
   slightly irregular outline, a soft edge and chromatin texture.
4. **Cytoskeleton.** Tubulin: a diffuse dome, a perinuclear ring, thin microtubules traced as
   curved random walks from the nucleus, or long, curling, thick bundles. Actin: a diffuse level,
   a cortex along every cell border, straight stress fibres and bright aggregates.
5. **Optics and camera.** Autofluorescence, a smooth off-centre illumination falloff, a faint
   out-of-focus haze, a Gaussian point-spread function, shot noise (the Gaussian approximation of
   Poisson noise, exact enough at hundreds of photons), read noise on a camera offset, and
   quantisation to multiples of 16 like the real 12-bit camera stored in 16 bits.

Lengths are pixels at BBBC021's scale (nuclei about 25-40 px across); intensities are raw camera
counts calibrated on the real field ``Week2_24381/B02/s1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Phenotype", "RenderedField", "render_cells"]

# Camera and optics, calibrated on the real field's background levels and noise.
_CAMERA_OFFSET = 400.0
_AUTOFLUORESCENCE = (390.0, 310.0, 500.0)  # DAPI, Tubulin, Actin
_GAIN = 1.6  # counts per photoelectron
_READ_NOISE = 14.0  # counts
_QUANTUM = 16.0
_PSF_SIGMA = 1.0
_VIGNETTE = 0.14  # relative drop of the illumination from its centre to the far corner
_HAZE = 0.08  # fraction of the light spread out of focus

_N_ANGLES = 720  # angular resolution of cell outlines
_MAX_SPIKES = 3
_MAX_CORNERS = 7


@dataclass(frozen=True)
class Phenotype:
    """Morphology of one cell population (pixels at BBBC021's scale, raw camera counts).

    Numeric fields are interpolated between two phenotypes cell by cell (:meth:`blend`), so a
    treatment's phenotype is the morphology of a cell that responds fully.

    Attributes
    ----------
    density
        Cells per megapixel (a full 1024 x 1280 field has 1.31 megapixels).
    cell_radius
        Mean reach of a cell from its nucleus centre before neighbours crowd it.
    irregularity
        Blend of the outline between a disc (0) and an elongated polygon with 4-7 corners (1).
    protrusions
        Mean number of pointed protrusions per cell.
    nucleus_radius
        Equivalent radius of a single nucleus.
    nucleus_aspect
        Mean major / minor axis ratio of a nucleus.
    nucleus_irregularity
        Amplitude of the nuclear outline's harmonics (condensed chromatin is ragged).
    dapi
        Mean DAPI signal of a nucleus above background.
    chromatin
        Relative amplitude of the chromatin texture.
    binucleate
        Probability that a cell holds two nuclei (failed cytokinesis).
    fragmented
        Probability that the nucleus is broken into lobes or micronuclei.
    tubulin
        Diffuse tubulin signal where the cell is thickest.
    perinuclear
        Extra tubulin in a ring around the nucleus.
    microtubules
        Brightness of the thin microtubule network (0: fully depolymerised).
    bundles
        Brightness of thick, long, curling microtubule bundles.
    actin
        Diffuse actin signal.
    cortex
        Extra actin along the cell border.
    stress_fibres
        Brightness of straight actin stress fibres.
    aggregates
        Mean number of bright actin puncta per cell.
    """

    density: float
    cell_radius: float
    irregularity: float
    protrusions: float
    nucleus_radius: float
    nucleus_aspect: float
    nucleus_irregularity: float
    dapi: float
    chromatin: float
    binucleate: float
    fragmented: float
    tubulin: float
    perinuclear: float
    microtubules: float
    bundles: float
    actin: float
    cortex: float
    stress_fibres: float
    aggregates: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or not np.isfinite(value) or value < 0:
                raise ValueError(f"Phenotype.{f.name} must be a finite number >= 0, got {value!r}")
        if self.binucleate + self.fragmented > 1:
            raise ValueError(
                "Phenotype.binucleate + Phenotype.fragmented is a probability and must be <= 1, "
                f"got {self.binucleate} + {self.fragmented}"
            )
        if self.nucleus_aspect < 1:
            raise ValueError(f"Phenotype.nucleus_aspect must be >= 1, got {self.nucleus_aspect!r}")
        if not 4 <= self.nucleus_radius <= 100:
            raise ValueError(
                f"Phenotype.nucleus_radius must be in [4, 100] px, got {self.nucleus_radius!r}"
            )
        if not 1.2 * self.nucleus_radius <= self.cell_radius <= 200:
            raise ValueError(
                f"Phenotype.cell_radius must be in [1.2 x nucleus_radius, 200] px, got "
                f"{self.cell_radius!r} (nucleus_radius {self.nucleus_radius!r})"
            )

    def blend(self, other: Phenotype, t: np.ndarray | float) -> dict[str, np.ndarray]:
        """Per-cell parameters: ``self`` where ``t == 0``, ``other`` where ``t == 1``."""
        t = np.asarray(t, dtype=np.float64)
        return {
            f.name: (1.0 - t) * getattr(self, f.name) + t * getattr(other, f.name)
            for f in fields(self)
        }


class RenderedField(NamedTuple):
    """One rendered field and its ground truth.

    ``image`` is ``uint16 (3, H, W)`` raw counts, channels DAPI, Tubulin, Actin. ``nuclei`` and
    ``cells`` are ``int32 (H, W)`` labels: cell ``i`` holds every nucleus or nuclear fragment
    labelled ``i``, so a binucleate cell is two connected components of one nucleus label.
    """

    image: np.ndarray
    nuclei: np.ndarray
    cells: np.ndarray


@dataclass
class _Cells:
    """Geometry and blended parameters of the N placed cells, and their M nuclear objects."""

    y: np.ndarray  # (N,) centre (= nucleus centre)
    x: np.ndarray
    p: dict[str, np.ndarray]  # blended phenotype, (N,) per parameter
    outline: np.ndarray  # (N, _N_ANGLES) float32 radius r(theta) in pixels
    extent: np.ndarray  # (N,) largest distance of a nuclear pixel from the centre
    nuclei: np.ndarray  # (M, 8): owner, cy, cx, a, b, angle, irregularity, brightness

    @property
    def radius(self) -> np.ndarray:
        """Mean outline radius per cell."""
        return self.outline.mean(axis=1)


def render_cells(
    baseline: Phenotype,
    phenotype: Phenotype,
    strength: float,
    rng: np.random.Generator,
    shape: tuple[int, int],
) -> RenderedField:
    """Render a field of cells whose morphology moves from ``baseline`` towards ``phenotype``.

    Parameters
    ----------
    baseline, phenotype
        Morphology without and with the full treatment effect.
    strength
        Mean response in [0, 1]; each cell draws its own response around it.
    rng
        Source of all randomness (same state, same field).
    shape
        ``(H, W)`` of the field; the number of cells scales with its area.
    """
    cells = _place_cells(baseline, phenotype, strength, rng, shape)
    dapi, nuc_cover, nuclei = _draw_nuclei(cells, rng, shape)
    territory, d1, free, junction, dist = _territories(cells, shape)
    # a nucleus always belongs to its own cell, whatever the neighbours' outlines say
    cell_labels = np.where(nuclei > 0, nuclei, territory)
    filaments = _cytoskeleton(cells, cell_labels, rng)

    # diffuse signals, computed only on the pixels inside cells
    idx = np.flatnonzero(cell_labels)
    lab = cell_labels.ravel()[idx]
    d1, free, junction, dist, cover = (
        a.ravel()[idx] for a in (d1, free, junction, dist, nuc_cover)
    )
    p = cells.p

    def per_cell(values: np.ndarray) -> np.ndarray:
        table = np.zeros(len(values) + 1, dtype=np.float32)
        table[1:] = values
        return table[lab]

    # thickness: a dome highest over the nucleus, with a soft 1.5 px rim at the free border
    rim = np.clip(free * np.float32(1.0 / 1.5), 0.0, 1.0)
    rim[cover > 0] = 1.0
    dome = np.sqrt(np.clip(1.0 - d1 * d1, 0.0, 1.0))
    dome *= 0.7
    dome += 0.3
    dome *= rim
    extent = per_cell(cells.extent)
    ring = np.exp(-np.square((dist - 1.3 * extent) / (0.5 * extent + 1.0))) * rim
    border = np.exp(-np.minimum(free, 30.0) / 4.0) + 0.5 * np.exp(-junction / 2.5)

    signal: np.ndarray = np.zeros((3, cell_labels.size), dtype=np.float32)
    signal[0] = dapi.ravel()
    signal[1, idx] = per_cell(p["tubulin"]) * dome + per_cell(p["perinuclear"]) * ring
    signal[2, idx] = (
        per_cell(p["actin"]) * (0.7 + 0.3 * dome) * rim + per_cell(p["cortex"]) * border
    )
    signal = signal.reshape(3, *shape)
    signal[1:] += filaments
    signal[1] *= 1.0 - 0.15 * nuc_cover  # the nucleus displaces some cytoplasm
    image = _camera(signal, rng)
    return RenderedField(image, nuclei, cell_labels.astype(np.int32, copy=False))


def _place_cells(
    baseline: Phenotype,
    phenotype: Phenotype,
    strength: float,
    rng: np.random.Generator,
    shape: tuple[int, int],
) -> _Cells:
    """Draw cell positions, outlines and nuclei."""
    h, w = shape
    mean = baseline.blend(phenotype, np.float64(strength))
    n_target = int(rng.poisson(float(mean["density"]) * h * w / 1e6))
    n_cand = 8 * n_target + 16
    # each cell responds differently; the mean response is the treatment's strength
    if strength > 0:
        response = np.clip(strength * np.exp(0.35 * rng.standard_normal(n_cand)), 0.0, 1.0)
    else:
        response = np.zeros(n_cand)
    p = baseline.blend(phenotype, response)

    cy = rng.uniform(0, h, n_cand)
    cx = rng.uniform(0, w, n_cand)
    # colonies: keep candidates with a probability that follows a smooth random density
    coarse = rng.standard_normal((5, 6))
    density = ndi.map_coordinates(coarse, [cy * (4 / h), cx * (5 / w)], order=3, mode="nearest")
    keep = rng.random(n_cand) < 1.0 / (1.0 + np.exp(-3.0 * density))
    daughter = rng.random(n_cand) < 0.05

    radius = p["cell_radius"] * np.exp(0.15 * rng.standard_normal(n_cand))
    rn = p["nucleus_radius"] * np.exp(0.12 * rng.standard_normal(n_cand))
    aspect = 1.0 + (p["nucleus_aspect"] - 1.0) * np.exp(0.4 * rng.standard_normal(n_cand))
    u = rng.random(n_cand)
    kind = np.where(u < p["binucleate"], 1, np.where(u < p["binucleate"] + p["fragmented"], 2, 0))
    extent = np.select([kind == 0, kind == 1], [rn * np.sqrt(aspect), 2.0 * rn + 3.0], 1.85 * rn)
    # spacing uses the radius before binucleate cells grow, so that crowding does not select
    # against them (that would make them rarer than the phenotype says)
    chosen = _thin(cy, cx, extent, radius, keep, daughter, n_target, rng, shape)
    radius = np.where(kind == 1, 1.25 * radius, radius)
    n = len(chosen)
    p = {key: v[chosen] for key, v in p.items()}
    # cells differ in expression and staining: one lognormal factor per cell and channel
    for keys in (
        ("tubulin", "perinuclear", "microtubules", "bundles"),
        ("actin", "cortex", "stress_fibres"),
    ):
        factor = np.exp(0.25 * rng.standard_normal(n))
        for key in keys:
            p[key] = p[key] * factor
    y, x = cy[chosen], cx[chosen]
    radius, rn, aspect, kind = radius[chosen], rn[chosen], aspect[chosen], kind[chosen]

    # nuclei: one ellipse, two side by side, or several small lobes
    axis = rng.uniform(0, np.pi, n)  # long axis of the cell; the nucleus follows it
    bright = p["dapi"] * np.exp(0.18 * rng.standard_normal(n))
    mitotic = rng.random(n) < 0.02  # a few very bright condensed nuclei everywhere
    bright = np.where(mitotic, 1.8 * bright, bright)
    irregular = p["nucleus_irregularity"] + np.where(mitotic, 0.04, 0.0)
    nuclei = [
        _nuclear_objects(i, y[i], x[i], rn[i], aspect[i], kind[i], axis[i], rng) for i in range(n)
    ]
    objects = np.concatenate(nuclei) if n else np.zeros((0, 6))
    owner = objects[:, 0].astype(np.intp)
    objects = np.column_stack(
        [objects, irregular[owner], bright[owner] * rng.uniform(0.9, 1.1, len(owner))]
    )
    reach = np.hypot(objects[:, 1] - y[owner], objects[:, 2] - x[owner]) + 1.2 * objects[:, 3]
    extent = np.zeros(n)
    np.maximum.at(extent, owner, reach)

    outline = _outlines(radius, axis, p["irregularity"], p["protrusions"], extent, rng)
    return _Cells(y, x, p, outline, extent, objects)


def _thin(
    cy: np.ndarray,
    cx: np.ndarray,
    extent: np.ndarray,
    radius: np.ndarray,
    keep: np.ndarray,
    daughter: np.ndarray,
    n_target: int,
    rng: np.random.Generator,
    shape: tuple[int, int],
) -> np.ndarray:
    """Greedy placement: indices of accepted candidates (their cy/cx may be moved in place).

    Nuclei never overlap; ordinary neighbours keep ``0.38 x`` the sum of their reaches apart;
    a daughter candidate is moved next to an accepted cell with a 0.5-3 px nuclear gap.
    """
    h, w = shape
    ay, ax, ae, ar = (np.empty(n_target) for _ in range(4))
    chosen: list[int] = []
    for i in range(len(cy)):
        k = len(chosen)
        if k >= n_target:
            break
        if daughter[i] and k:
            j = int(rng.integers(k))
            angle = rng.uniform(0, 2 * np.pi)
            sep = ae[j] + extent[i] + rng.uniform(0.5, 3.0)
            cy[i], cx[i] = ay[j] + sep * np.sin(angle), ax[j] + sep * np.cos(angle)
            if not (0 <= cy[i] < h and 0 <= cx[i] < w):
                continue
        elif not keep[i]:
            continue
        if k:
            dist = np.hypot(ay[:k] - cy[i], ax[:k] - cx[i])
            if np.any(dist < ae[:k] + extent[i] + 0.5):
                continue
            if not daughter[i] and np.any(dist < 0.38 * (ar[:k] + radius[i])):
                continue
        ay[k], ax[k], ae[k], ar[k] = cy[i], cx[i], extent[i], radius[i]
        chosen.append(i)
    return np.asarray(chosen, dtype=np.intp)


def _nuclear_objects(
    owner: int,
    y: float,
    x: float,
    rn: float,
    aspect: float,
    kind: int,
    axis: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Ellipses ``(owner, cy, cx, a, b, angle)`` making up one cell's nuclear material."""
    angle = axis + 0.3 * rng.standard_normal()
    if kind == 0:
        s = np.sqrt(aspect)
        return np.array([[owner, y, x, rn * s, rn / s, angle]])
    if kind == 1:  # two daughter nuclei, side by side across the cell's long axis, 1-5 px apart
        a, b = 1.1 * 0.9 * rn, 0.9 * rn / 1.1
        side = angle + np.pi / 2
        tilt = 0.3 * rng.standard_normal(2)  # each nucleus's deviation from the long axis
        # half-width of each ellipse along the line joining them, plus its irregularity margin
        half = 1.1 * np.sqrt((a * np.sin(tilt)) ** 2 + (b * np.cos(tilt)) ** 2)
        gap = rng.uniform(1.0, 5.0)
        offsets = (-half[1] - gap / 2, half[0] + gap / 2)  # the pair is centred on (y, x)
        return np.array(
            [
                [owner, y + o * np.sin(side), x + o * np.cos(side), a, b, angle + t]
                for o, t in zip(offsets, tilt)
            ]
        )
    m = int(rng.integers(3, 7))  # lobes and micronuclei, overlapping or apart
    size = rn * rng.uniform(0.3, 0.62, m)
    off = rn * 1.1 * np.sqrt(rng.uniform(0.1, 1.0, m))
    theta = rng.uniform(0, 2 * np.pi, m)
    return np.column_stack(
        [
            np.full(m, owner),
            y + off * np.sin(theta),
            x + off * np.cos(theta),
            1.1 * size,
            size / 1.1,
            rng.uniform(0, np.pi, m),
        ]
    )


def _outlines(
    radius: np.ndarray,
    axis: np.ndarray,
    irregularity: np.ndarray,
    protrusions: np.ndarray,
    extent: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Cell outlines ``r(theta)`` sampled at ``_N_ANGLES`` angles, ``(N, _N_ANGLES)``.

    An irregular cell is a polygon of 3-6 corners with slightly concave sides, stretched along
    its long axis; a regular one is a disc. ``irregularity`` blends the two. Protrusions add
    narrow spikes on top.
    """
    n = len(radius)
    theta = np.linspace(0, 2 * np.pi, _N_ANGLES, endpoint=False)
    # polygon corners: evenly spread angles with jitter, radii stretched along the long axis
    m = rng.integers(4, _MAX_CORNERS + 1, n)
    slot = np.arange(_MAX_CORNERS)[None, :]
    used = slot < m[:, None]
    spacing = 2 * np.pi / m[:, None]
    corner = rng.uniform(0, 2 * np.pi, (n, 1)) + spacing * (
        slot + 0.2 * rng.uniform(-1, 1, (n, _MAX_CORNERS))
    )
    corner = np.where(used, corner % (2 * np.pi), 4 * np.pi)  # unused slots sort last
    corner.sort(axis=1)
    stretch = 1.0 + rng.uniform(0.1, 0.9, (n, 1)) * np.cos(2 * (corner - axis[:, None]))
    rho = radius[:, None] * np.exp(0.25 * rng.standard_normal((n, _MAX_CORNERS))) * stretch
    rho = np.where(used, rho, 0.0)
    vx, vy = rho * np.cos(corner), rho * np.sin(corner)
    # for every angle, the polygon side it crosses: from corner k to corner k + 1 (cyclic)
    k = (theta[None, :, None] >= corner[:, None, :]).sum(axis=2) - 1
    k = np.where(k < 0, m[:, None] - 1, k)
    k1 = (k + 1) % m[:, None]
    rows = np.arange(n)[:, None]
    ax_, ay_ = vx[rows, k], vy[rows, k]
    ex, ey = vx[rows, k1] - ax_, vy[rows, k1] - ay_
    dx, dy = np.cos(theta)[None, :], np.sin(theta)[None, :]
    denom = dx * ey - dy * ex
    denom = np.where(np.abs(denom) < 1e-9, 1e-9, denom)
    r_poly = (ax_ * ey - ay_ * ex) / denom
    t = np.clip((ay_ * dx - ax_ * dy) / -denom, 0.0, 1.0)  # position along the side
    r_poly *= 1.0 + rng.uniform(-0.05, 0.2, (n, 1)) * 4 * t * (1 - t)  # bulging sides
    beta = np.clip(irregularity, 0.0, 1.0)[:, None]
    r_poly = np.clip(r_poly, 0.3 * radius[:, None], 2.5 * radius[:, None])
    r = (1.0 - beta) * radius[:, None] + beta * r_poly
    r = _smooth_circular(r, _N_ANGLES / 45.0)  # round the corners (8 degrees)
    # protrusions: narrow spikes with concave flanks
    count = np.minimum(rng.poisson(protrusions), _MAX_SPIKES)
    spike_angle = rng.uniform(0, 2 * np.pi, (n, _MAX_SPIKES))
    height = radius[:, None] * rng.uniform(0.3, 1.0, (n, _MAX_SPIKES))
    width = rng.uniform(0.15, 0.35, (n, _MAX_SPIKES))
    for j in range(_MAX_SPIKES):
        has = count > j
        delta = (theta[None, :] - spike_angle[has, j : j + 1] + np.pi) % (2 * np.pi) - np.pi
        lobe = np.clip(1.0 - np.abs(delta) / width[has, j : j + 1], 0.0, None)
        r[has] += height[has, j : j + 1] * lobe * lobe
    return np.maximum(r, 1.15 * extent[:, None] + 3.0).astype(np.float32)


def _smooth_circular(r: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Gaussian smoothing of periodic rows (outlines sampled over a full turn)."""
    return ndi.gaussian_filter1d(r, sigma_bins, axis=1, mode="wrap")


@lru_cache(maxsize=4)
def _polar_template(reach: int) -> tuple[np.ndarray, np.ndarray]:
    """Distance and angle bin of every offset in ``[-reach, reach]^2`` (read-only arrays)."""
    off = np.arange(-reach, reach + 1, dtype=np.float32)
    dist = np.hypot(off[:, None], off[None, :])
    angle = np.arctan2(off[:, None], off[None, :])
    bins = np.rint(angle * (_N_ANGLES / (2 * np.pi))).astype(np.intp) % _N_ANGLES
    dist.flags.writeable = False
    bins.flags.writeable = False
    return dist, bins


def _territories(
    cells: _Cells, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted-Voronoi cell territories.

    Returns the label (0 where no cell reaches), the winning normalised distance ``d1`` (1 outside
    cells), the approximate distances in pixels to the cell's free outline and to the border with
    its nearest neighbour, and the distance to the cell centre.
    """
    h, w = shape
    d1 = np.full(shape, 10.0, dtype=np.float32)
    d2 = np.full(shape, 10.0, dtype=np.float32)
    label = np.zeros(shape, dtype=np.int32)
    r_win = np.ones(shape, dtype=np.float32)
    dist_win = np.zeros(shape, dtype=np.float32)
    if not len(cells.y):
        zero = np.zeros(shape, np.float32)
        return label, np.ones(shape, np.float32), zero, zero, dist_win
    # tight bounding boxes of the outlines, as offsets from the (rounded) centres
    theta = np.linspace(0, 2 * np.pi, _N_ANGLES, endpoint=False)
    oy, ox = cells.outline * np.sin(theta), cells.outline * np.cos(theta)
    lo_y, hi_y = np.floor(oy.min(axis=1)) - 1, np.ceil(oy.max(axis=1)) + 2
    lo_x, hi_x = np.floor(ox.min(axis=1)) - 1, np.ceil(ox.max(axis=1)) + 2
    t = 32 * int(np.ceil((cells.outline.max() + 2) / 32))  # few sizes: the cache hits
    tdist, tbins = _polar_template(t)
    for i in range(len(cells.y)):
        iy, ix = round(cells.y[i]), round(cells.x[i])
        y0, y1 = max(iy + int(lo_y[i]), 0), min(iy + int(hi_y[i]), h)
        x0, x1 = max(ix + int(lo_x[i]), 0), min(ix + int(hi_x[i]), w)
        if y0 >= y1 or x0 >= x1:
            continue
        window = (slice(y0 - iy + t, y1 - iy + t), slice(x0 - ix + t, x1 - ix + t))
        dist = tdist[window]
        r = cells.outline[i][tbins[window]]
        d = dist / r
        sl = (slice(y0, y1), slice(x0, x1))
        b1, b2 = d1[sl], d2[sl]
        win = d < b1
        np.minimum(b2, d, out=b2)
        np.copyto(b2, b1, where=win)
        np.copyto(b1, d, where=win)
        np.copyto(label[sl], i + 1, where=win)
        np.copyto(r_win[sl], r, where=win)
        np.copyto(dist_win[sl], dist, where=win)
    inside = d1 < 1.0
    label[~inside] = 0
    free = (1.0 - d1) * r_win
    free[~inside] = 0.0
    junction = np.minimum(0.5 * (d2 - d1) * r_win, 50.0)
    junction[~inside] = 0.0
    d1[~inside] = 1.0
    return label, d1, free, junction, dist_win


def _draw_nuclei(
    cells: _Cells, rng: np.random.Generator, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DAPI signal, nuclear coverage in [0, 1] and nuclear labels (owner cell + 1)."""
    h, w = shape
    signal = np.zeros(shape, dtype=np.float32)
    cover = np.zeros(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    # one chromatin texture per field; every nucleus reads its own random window of it
    bank = ndi.gaussian_filter(rng.standard_normal((256, 256)).astype(np.float32), 1.3, mode="wrap")
    bank /= bank.std()
    chromatin = cells.p["chromatin"]
    for owner, cy, cx, a, b, angle, irregular, bright in cells.nuclei:
        owner = int(owner)
        q = a * (1.0 + 2.0 * irregular) + 2.0
        y0, y1 = max(int(cy - q), 0), min(int(cy + q) + 2, h)
        x0, x1 = max(int(cx - q), 0), min(int(cx + q) + 2, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
        xx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
        c, s = np.cos(angle), np.sin(angle)
        u = (xx * c + yy * s) / a
        v = (yy * c - xx * s) / b
        rho = np.hypot(u, v)
        if irregular > 0:
            z = (u + 1j * v) / np.maximum(rho, 1e-6)
            coef = irregular * rng.standard_normal(3) * np.exp(-1j * rng.uniform(0, 2 * np.pi, 3))
            rho = rho / (1.0 + (coef[0] * z**2 + coef[1] * z**3 + 0.3 * coef[2] * z**4).real)
        edge = np.clip((1.0 - rho) * (b / 1.2) + 0.5, 0.0, 1.0)
        oy, ox = rng.integers(0, 256 - (y1 - y0)), rng.integers(0, 256 - (x1 - x0))
        tex = bank[oy : oy + y1 - y0, ox : ox + x1 - x0]
        prof = edge * (1.0 - 0.2 * np.minimum(rho, 1.0) ** 2)
        prof *= np.clip(1.0 + chromatin[owner] * tex, 0.15, None) * bright
        sl = (slice(y0, y1), slice(x0, x1))
        np.maximum(signal[sl], prof, out=signal[sl])
        np.maximum(cover[sl], edge, out=cover[sl])
        labels[sl][rho < 1.0] = owner + 1
    return signal, cover, labels


def _trace(
    owner: np.ndarray,
    start: tuple[np.ndarray, np.ndarray],
    heading: np.ndarray,
    turn: np.ndarray | float,
    wobble: float,
    length: np.ndarray,
    cell_labels: np.ndarray,
    rng: np.random.Generator,
    step: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trace curved paths that stop where they first leave their own cell.

    Each path starts at ``start`` with ``heading`` (radians), turns by ``turn`` plus Gaussian
    ``wobble`` per step and runs for at most ``length`` pixels. Returns the pixel coordinates
    ``(iy, ix)`` of every kept point and the path it belongs to.
    """
    h, w = cell_labels.shape
    n = len(owner)
    n_steps = int(np.ceil(length.max() / step)) if n else 0
    if n == 0 or n_steps == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, empty
    # uniform steps with the wobble's variance: a random walk of heading, cheaper than normal
    dtheta = rng.random((n, n_steps), dtype=np.float32)
    dtheta -= 0.5
    dtheta *= np.float32(wobble * np.sqrt(12.0))
    dtheta += np.asarray(turn, dtype=np.float32).reshape(-1, 1)
    dtheta[:, 0] += heading.astype(np.float32)
    theta = np.cumsum(dtheta, axis=1)
    py = np.cumsum(np.sin(theta), axis=1)
    py *= np.float32(step)
    py += start[0].astype(np.float32)[:, None]
    px = np.cumsum(np.cos(theta), axis=1)
    px *= np.float32(step)
    px += start[1].astype(np.float32)[:, None]
    iy = np.rint(py).astype(np.intp)
    ix = np.rint(px).astype(np.intp)
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    flat = iy * w + ix
    flat[~ok] = 0
    ok &= cell_labels.ravel()[flat] == (owner[:, None] + 1)  # inside its own cell
    ok &= (np.arange(1, n_steps + 1, dtype=np.float32) * step)[None, :] <= length[:, None]
    ok = np.logical_and.accumulate(ok, axis=1)  # a filament ends where it first leaves its cell
    path = np.broadcast_to(np.arange(n)[:, None], ok.shape)
    return iy[ok], ix[ok], path[ok]


def _random_points(
    cells: _Cells, owner: np.ndarray, r_min: float, r_max: float, rng: np.random.Generator
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Points uniform in an annulus ``[r_min, r_max] x radius`` around each owner's centre."""
    phi = rng.uniform(0, 2 * np.pi, len(owner))
    off = cells.radius[owner] * np.sqrt(rng.uniform(r_min**2, r_max**2, len(owner)))
    return (cells.y[owner] + off * np.sin(phi), cells.x[owner] + off * np.cos(phi)), phi


def _stencil(radius: float, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets ``(dy, dx)`` within ``radius`` and Gaussian weights summing to 1."""
    r = int(np.floor(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy**2 + dx**2 <= radius**2
    weight = np.exp(-(dy[keep] ** 2 + dx[keep] ** 2) / (2 * sigma**2))
    return dy[keep], dx[keep], weight / weight.sum()


# a filament one pixel wide; a bundle of filaments about 3 px wide; a punctum about 4 px across
_THIN = _stencil(0.0, 1.0)
_BUNDLE = _stencil(1.5, 1.0)
_PUNCTUM = _stencil(3.0, 1.4)


class _Canvas:
    """Accumulates weighted points for one channel, then rasterises them in one pass."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape
        self._flat: list[np.ndarray] = []
        self._weight: list[np.ndarray] = []

    def add(self, iy: np.ndarray, ix: np.ndarray, weight: np.ndarray, stencil=_THIN) -> None:
        h, w = self.shape
        for dy, dx, k in zip(*stencil):
            y, x = iy + dy, ix + dx
            ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            self._flat.append(y[ok] * w + x[ok])
            self._weight.append(weight[ok] * k)

    def render(self) -> np.ndarray:
        size = self.shape[0] * self.shape[1]
        if not self._flat:
            return np.zeros(self.shape, dtype=np.float32)
        flat, weight = np.concatenate(self._flat), np.concatenate(self._weight)
        return np.bincount(flat, weight, minlength=size).astype(np.float32).reshape(self.shape)


def _cytoskeleton(cells: _Cells, cell_labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Filament signal ``(2, H, W)``: tubulin and actin, before the point-spread function."""
    shape = cell_labels.shape
    p, n = cells.p, len(cells.y)
    radius = cells.radius
    area = np.square(radius / 40.0)  # filament counts scale with the cell's area
    tubulin, actin = _Canvas(shape), _Canvas(shape)

    def owners(key: str, per_cell: np.ndarray | float) -> np.ndarray:
        """Owner cell of every filament: ``per_cell`` of them in cells where ``key`` > 0."""
        count = np.broadcast_to(np.asarray(per_cell, dtype=np.intp), (n,))
        return np.repeat(np.arange(n), np.where(p[key] > 0, count, 0))

    # microtubules: most radiate from around the nucleus, the rest criss-cross the cytoplasm
    owner = owners("microtubules", np.minimum(np.rint(100 * area), 220))
    if len(owner):
        (sy, sx), phi = _random_points(cells, owner, 0.0, 1.0, rng)
        central = rng.random(len(owner)) < 0.6
        r0 = cells.extent[owner] * rng.uniform(0.8, 1.3, len(owner))
        sy = np.where(central, cells.y[owner] + r0 * np.sin(phi), sy)
        sx = np.where(central, cells.x[owner] + r0 * np.cos(phi), sx)
        heading = np.where(
            central,
            phi + 0.7 * rng.standard_normal(len(owner)),
            rng.uniform(0, 2 * np.pi, len(owner)),
        )
        length = radius[owner] * rng.uniform(0.3, 1.1, len(owner))
        iy, ix, path = _trace(owner, (sy, sx), heading, 0.0, 0.12, length, cell_labels, rng)
        tubulin.add(iy, ix, p["microtubules"][owner][path])

    # taxol-like bundles: long, thick, tangential, curling around the nucleus
    owner = owners("bundles", 10)
    if len(owner):
        phi = rng.uniform(0, 2 * np.pi, len(owner))
        r0 = cells.extent[owner] * rng.uniform(1.0, 1.7, len(owner))
        start = (cells.y[owner] + r0 * np.sin(phi), cells.x[owner] + r0 * np.cos(phi))
        sign = rng.choice([-1.0, 1.0], len(owner))
        heading = phi + sign * (np.pi / 2) * rng.uniform(0.5, 1.0, len(owner))
        # curvature: a fraction of that of the circle around the nucleus through the start
        turn = sign * rng.uniform(0.2, 0.9, len(owner)) * 2.0 / r0
        length = radius[owner] * rng.uniform(1.5, 3.5, len(owner))
        iy, ix, path = _trace(owner, start, heading, turn, 0.03, length, cell_labels, rng)
        tubulin.add(iy, ix, p["bundles"][owner][path], _BUNDLE)

    # actin: a meshwork of short filaments and a few straight, roughly parallel stress fibres
    owner = owners("actin", np.minimum(np.rint(50 * area), 120))
    if len(owner):
        start, _ = _random_points(cells, owner, 0.0, 0.95, rng)
        heading = rng.uniform(0, 2 * np.pi, len(owner))
        length = rng.uniform(5.0, 20.0, len(owner))
        iy, ix, path = _trace(owner, start, heading, 0.0, 0.15, length, cell_labels, rng)
        actin.add(iy, ix, p["actin"][owner][path])
    owner = owners("stress_fibres", 3)
    if len(owner):
        along = rng.uniform(0, np.pi, n)[owner] + 0.12 * rng.standard_normal(len(owner))
        start, _ = _random_points(cells, owner, 0.0, 0.6, rng)
        for flip in (0.0, np.pi):  # both ways from the start point
            length = radius[owner] * rng.uniform(0.3, 1.2, len(owner))
            iy, ix, path = _trace(owner, start, along + flip, 0.0, 0.01, length, cell_labels, rng)
            actin.add(iy, ix, p["stress_fibres"][owner][path])

    # actin aggregates: bright puncta in the cytoplasm
    owner = np.repeat(np.arange(n), rng.poisson(p["aggregates"]))
    if len(owner):
        (py, px), _ = _random_points(cells, owner, 0.3, 0.85, rng)
        iy, ix = np.rint(py).astype(np.intp), np.rint(px).astype(np.intp)
        ok = (iy >= 0) & (iy < shape[0]) & (ix >= 0) & (ix < shape[1])
        iy, ix, owner = iy[ok], ix[ok], owner[ok]
        mine = cell_labels[iy, ix] == owner + 1
        weight = 9.0e4 * rng.uniform(0.5, 1.5, int(mine.sum()))  # ~5x the actin level at peak
        actin.add(iy[mine], ix[mine], weight, _PUNCTUM)

    return np.stack([tubulin.render(), actin.render()])


def _camera(signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Illumination, optics and camera: float32 signal ``(3, H, W)`` -> uint16 raw counts."""
    h, w = signal.shape[1:]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    gy = np.square((np.arange(h) - cy) / h)
    gx = np.square((np.arange(w) - cx) / w)
    illum = (1.0 - _VIGNETTE * (gy[:, None] + gx[None, :]) / 0.5).astype(np.float32)
    s = ndi.gaussian_filter(signal, (0, _PSF_SIGMA, _PSF_SIGMA), truncate=2.0)
    _add_haze(s)
    s += np.asarray(_AUTOFLUORESCENCE, dtype=np.float32)[:, None, None]
    s *= illum
    noise = np.sqrt(s * np.float32(_GAIN) + np.float32(_READ_NOISE**2))
    noise *= _standard_normal(rng, s.shape)
    s += noise
    s += np.float32(_CAMERA_OFFSET)
    s *= np.float32(1.0 / _QUANTUM)
    np.rint(s, out=s)
    np.clip(s, 0, 65535 // _QUANTUM, out=s)
    s *= np.float32(_QUANTUM)
    return s.astype(np.uint16)


def _standard_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 samples, fast: random draws from a fresh table of 65,536 normals.

    Four times faster than ``rng.standard_normal`` for a field; the table is large enough that
    the samples are indistinguishable from independent normals in an image.
    """
    size = math.prod(shape)
    if size <= 1 << 18:
        return rng.standard_normal(shape, dtype=np.float32)
    table = rng.standard_normal(1 << 16, dtype=np.float32)
    index = np.frombuffer(rng.bytes(2 * size), dtype=np.uint16)
    return table[index].reshape(shape)


def _add_haze(s: np.ndarray) -> None:
    """Add out-of-focus light in place: a broad blur of ``(C, H, W)``, at quarter resolution."""
    c, h, w = s.shape
    f = 4
    small = ndi.uniform_filter(s[:, ::f, ::f], (1, 9, 9))
    small *= np.float32(_HAZE)
    if h % f == 0 and w % f == 0:  # add through a blocked view: no full-size temporary
        s.reshape(c, h // f, f, w // f, f)[...] += small[:, :, None, :, None]
    else:
        s += np.repeat(np.repeat(small, f, axis=1), f, axis=2)[:, :h, :w]
