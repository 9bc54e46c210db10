"""A small synthetic BBBC021-like plate whose treatments have distinct, known morphologies.

The plate is written in the official BBBC021 layout, so that everything reading real BBBC021
reads it unchanged::

    root/
      BBBC021_v1_image.csv        official columns, one row per field
      BBBC021_v1_moa.csv          "compound",concentration,"moa"
      Week1/Week1_90001/Week1_010124_B02_s1_w1<UUID>.tif   DAPI   (w2 Tubulin, w4 Actin)
      synthetic_plate.json        how the plate was made (not part of the official layout)
      ground_truth/Week1_90001/B02_s1_nuclei.tif, B02_s1_cells.tif     (optional)

The default treatments mimic the paper's compounds at their four highest concentrations:
DMSO (spread cells, filamentous microtubules, cortical actin), nocodazole (rounded, smaller
cells, diffuse tubulin, condensed bright nuclei), taxol (thick microtubule bundles, large or
fragmented nuclei) and cytochalasin B (binucleate cells, actin aggregates). The phenotype's
strength follows a Hill dose-response curve, so the lowest concentration is visibly weaker.

Example
-------
>>> root = write_synthetic_plate("plate", shape=(512, 640), ground_truth=True)  # doctest: +SKIP
>>> field = render_field(default_treatments()[-1], np.random.default_rng(0))  # doctest: +SKIP
>>> field.image.shape, field.image.dtype  # doctest: +SKIP
((3, 1024, 1280), dtype('uint16'))
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import uuid
from collections.abc import Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from numbers import Real
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import tifffile

from phenossl._progress import Progress, ProgressCallback, drives
from phenossl.data._synthetic_render import Phenotype, RenderedField, render_cells
from phenossl.data.bbbc021 import IMAGE_COLUMNS as IMAGE_CSV_COLUMNS
from phenossl.data.bbbc021 import IMAGE_CSV, MOA_CSV
from phenossl.data.bbbc021 import MOA_COLUMNS as MOA_CSV_COLUMNS

__all__ = [
    "CONTROL",
    "IMAGE_CSV_COLUMNS",
    "MOA_CSV_COLUMNS",
    "PHENOTYPES",
    "Phenotype",
    "RenderedField",
    "Treatment",
    "default_treatments",
    "dose_response",
    "ground_truth_paths",
    "iter_write_synthetic_plate",
    "render_field",
    "write_synthetic_plate",
]

# The plate is written in BBBC021's own CSV layout (IMAGE_CSV_COLUMNS, MOA_CSV_COLUMNS are that
# module's IMAGE_COLUMNS and MOA_COLUMNS, under the names this module has always exported).
MANIFEST = "synthetic_plate.json"
GROUND_TRUTH_DIR = "ground_truth"

# Plate naming: a real-looking week and plate number that no real BBBC021 plate uses.
_WEEK = 1
_PLATE_NUMBER = 90001
_DATE = "010124"  # DDMMYY, as in the per-week file names
_ROWS = "BCDEFG"  # the wells BBBC021 uses: rows B-G, columns 02-11
_COLUMNS = range(2, 12)
_CHANNEL_TAGS = (("DAPI", "w1"), ("Tubulin", "w2"), ("Actin", "w4"))

#: Morphology of each default compound at full effect (pixels at BBBC021's scale, raw counts).
# fmt: off
PHENOTYPES: Mapping[str, Phenotype] = MappingProxyType({
    "DMSO": Phenotype(
        density=140, cell_radius=40, irregularity=0.8, protrusions=1.2,
        nucleus_radius=16.5, nucleus_aspect=1.3, nucleus_irregularity=0.04,
        dapi=2600, chromatin=0.12, binucleate=0.02, fragmented=0.01,
        tubulin=1500, perinuclear=1000, microtubules=1100, bundles=0,
        actin=2200, cortex=6000, stress_fibres=1500, aggregates=0,
    ),
    "nocodazole": Phenotype(  # mitotic arrest: rounded, small, condensed bright chromatin
        density=140, cell_radius=24, irregularity=0.1, protrusions=0.1,
        nucleus_radius=12.5, nucleus_aspect=1.1, nucleus_irregularity=0.12,
        dapi=5200, chromatin=0.35, binucleate=0.02, fragmented=0.03,
        tubulin=4000, perinuclear=200, microtubules=0, bundles=0,
        actin=3500, cortex=7000, stress_fibres=0, aggregates=0,
    ),
    "taxol": Phenotype(  # stabilised microtubule bundles; large, lobed, micronucleated nuclei
        density=120, cell_radius=44, irregularity=0.6, protrusions=0.8,
        nucleus_radius=19, nucleus_aspect=1.2, nucleus_irregularity=0.08,
        dapi=2700, chromatin=0.2, binucleate=0.05, fragmented=0.6,
        tubulin=1200, perinuclear=300, microtubules=400, bundles=14000,
        actin=2200, cortex=5000, stress_fibres=800, aggregates=0,
    ),
    "cytochalasin B": Phenotype(  # failed cytokinesis: binucleate; actin collapsed into dots
        density=120, cell_radius=46, irregularity=0.9, protrusions=2.5,
        nucleus_radius=16, nucleus_aspect=1.25, nucleus_irregularity=0.04,
        dapi=2500, chromatin=0.12, binucleate=0.8, fragmented=0.02,
        tubulin=1500, perinuclear=1000, microtubules=1100, bundles=0,
        actin=1400, cortex=1200, stress_fibres=0, aggregates=8,
    ),
})
# fmt: on
#: The untreated morphology every treatment starts from.
CONTROL: Phenotype = PHENOTYPES["DMSO"]

# Official MOA names, the paper's four highest concentrations (uM) and the half-effect
# concentration of the Hill curve (chosen so the lowest concentration gives about 0.35).
_COMPOUNDS: dict[str, tuple[str, tuple[float, ...], float]] = {
    "nocodazole": ("Microtubule destabilizers", (0.1, 0.3, 1.0, 3.0), 0.15),
    "taxol": ("Microtubule stabilizers", (0.1, 0.3, 1.0, 3.0), 0.15),
    "cytochalasin B": ("Actin disruptors", (1.0, 3.0, 10.0, 30.0), 1.5),
}


@dataclass(frozen=True)
class Treatment:
    """One compound at one concentration and the morphology it induces.

    Attributes
    ----------
    compound
        Compound name as written to the CSVs (``"DMSO"`` for the control).
    concentration
        Concentration in uM (0 for the control).
    moa
        Mechanism of action for ``BBBC021_v1_moa.csv``; ``None`` leaves the treatment out of it,
        like the real table does for concentrations without a clear phenotype.
    phenotype
        Morphology of a fully responding cell.
    strength
        Mean response in [0, 1]: 0 renders the control morphology, 1 the full ``phenotype``;
        cells respond individually around it.
    """

    compound: str
    concentration: float
    moa: str | None
    phenotype: Phenotype = field(repr=False)
    strength: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.compound, str) or not self.compound.strip():
            raise ValueError(
                f"Treatment.compound must be a non-empty string, got {self.compound!r}"
            )
        if (
            not isinstance(self.concentration, Real)
            or not math.isfinite(self.concentration)
            or self.concentration < 0
        ):
            raise ValueError(
                f"Treatment.concentration of {self.compound!r} must be a finite number >= 0 (uM), "
                f"got {self.concentration!r}"
            )
        if not isinstance(self.strength, Real) or not 0.0 <= self.strength <= 1.0:
            raise ValueError(
                f"Treatment.strength of {self.compound!r} must be in [0, 1], got {self.strength!r}"
            )
        if not isinstance(self.phenotype, Phenotype):
            raise ValueError(
                f"Treatment.phenotype of {self.compound!r} must be a Phenotype, "
                f"got {type(self.phenotype).__name__}"
            )

    @property
    def name(self) -> str:
        """``compound@concentration`` (``%g``), the field table's ``treatment`` value."""
        return f"{self.compound}@{self.concentration:g}"


def dose_response(concentration: float, ec50: float, hill: float = 1.5) -> float:
    """Fraction of the full effect at ``concentration`` (Hill curve, 0.5 at ``ec50``)."""
    if concentration <= 0:
        return 0.0
    return 1.0 / (1.0 + (ec50 / concentration) ** hill)


def default_treatments() -> tuple[Treatment, ...]:
    """DMSO plus nocodazole, taxol and cytochalasin B at the paper's four highest concentrations."""
    out = [Treatment("DMSO", 0.0, "DMSO", CONTROL, strength=0.0)]
    for compound, (moa, concentrations, ec50) in _COMPOUNDS.items():
        out += [
            Treatment(compound, c, moa, PHENOTYPES[compound], round(dose_response(c, ec50), 3))
            for c in concentrations
        ]
    return tuple(out)


def render_field(
    treatment: Treatment,
    rng: np.random.Generator,
    shape: tuple[int, int] = (1024, 1280),
    *,
    baseline: Phenotype = CONTROL,
) -> RenderedField:
    """Render one field of ``treatment`` with its ground truth.

    Parameters
    ----------
    treatment
        What the cells were treated with.
    rng
        Source of all randomness: the same generator state gives the same field.
    shape
        ``(H, W)``. The number of cells scales with the area (about 180 in a full
        1024 x 1280 field); cell and nucleus sizes do not change.
    baseline
        Morphology of untreated cells (``CONTROL``).

    Returns
    -------
    RenderedField
        ``image`` ``uint16 (3, H, W)`` raw counts (DAPI, Tubulin, Actin), ``nuclei`` and
        ``cells`` ``int32 (H, W)`` labels; every nucleus or fragment of cell ``i`` is labelled
        ``i`` in ``nuclei``.
    """
    shape = _check_shape(shape)
    return render_cells(baseline, treatment.phenotype, treatment.strength, rng, shape)


def ground_truth_paths(root: str | Path, field_id: str) -> dict[str, Path]:
    """Paths of the ground-truth ``nuclei`` and ``cells`` label TIFFs of one field.

    ``field_id`` is the field table's ``plate/well/s<site>`` (e.g. ``Week1_90001/B02/s1``).
    """
    parts = field_id.split("/")
    if len(parts) != 3 or not parts[2].startswith("s") or not parts[2][1:].isdigit():
        raise ValueError(f"field_id must look like 'Week1_90001/B02/s1', got {field_id!r}")
    plate, well, site = parts
    folder = Path(root) / GROUND_TRUTH_DIR / plate
    return {kind: folder / f"{well}_{site}_{kind}.tif" for kind in ("nuclei", "cells")}


def iter_write_synthetic_plate(
    root: str | Path,
    *,
    seed: int = 0,
    treatments: Sequence[Treatment] | None = None,
    n_wells_per_treatment: int = 1,
    n_control_wells: int | None = None,
    sites: int = 2,
    replicates: int = 1,
    shape: tuple[int, int] = (1024, 1280),
    ground_truth: bool = False,
    overwrite: bool = False,
) -> Generator[Progress, None, Path]:
    """Write a synthetic plate field by field, yielding progress; return ``root``.

    Parameters
    ----------
    root
        Folder to create. It must be absent or empty, unless ``overwrite`` is true and it holds
        a plate written by this function (its ``synthetic_plate.json``); then it is replaced.
    seed
        Everything (pixels, UUIDs in file names) follows from it: one seed, identical files.
    treatments
        What to put on the plate; :func:`default_treatments` when None.
    n_wells_per_treatment
        Wells per treatment, on every plate.
    n_control_wells
        Wells of the control (compound ``"DMSO"``); None gives it as many wells as the compound
        with the most concentrations has in total, so that an equal DMSO sample (the paper's
        subsets) is available.
    sites
        Fields per well (BBBC021 has 4).
    replicates
        Number of plates (``Replicate`` 1, 2, ...), each with the same layout.
    shape
        ``(H, W)`` of every field; smaller fields hold proportionally fewer cells.
    ground_truth
        Also write nuclei and cell label TIFFs under ``root/ground_truth`` (see
        :func:`ground_truth_paths`).
    overwrite
        Replace a plate previously written here.
    """
    root = Path(root)
    treatments = tuple(default_treatments() if treatments is None else treatments)
    shape = _check_shape(shape)
    layout = _layout(treatments, n_wells_per_treatment, n_control_wells)
    for name, value in (("sites", sites), ("replicates", replicates)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    _prepare_root(root, overwrite)

    manifest = {
        "format": "phenossl-synthetic-plate",
        "version": 1,
        "seed": int(seed),
        "shape": list(shape),
        "sites": int(sites),
        "replicates": int(replicates),
        "ground_truth": bool(ground_truth),
        "wells": {well: treatments[t].name for well, t in layout},
        "treatments": [
            {
                **{k: v for k, v in asdict(t).items() if k != "phenotype"},
                "phenotype": asdict(t.phenotype),
            }
            for t in treatments
        ],
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    rows: list[list[Any]] = []
    total = replicates * len(layout) * sites
    yield Progress(0, total, "writing synthetic plate")
    for rep in range(replicates):
        plate = f"Week{_WEEK}_{_PLATE_NUMBER + rep}"
        path_name = f"Week{_WEEK}/{plate}"
        folder = root / path_name
        folder.mkdir(parents=True, exist_ok=True)
        for well_index, (well, t) in enumerate(layout):
            treatment = treatments[t]
            for site in range(1, sites + 1):
                key = (int(seed), rep, well_index, site)
                field_ = render_field(treatment, np.random.default_rng([*key, 0]), shape)
                names = _file_names(well, site, np.random.default_rng([*key, 1]))
                for k, (channel, _) in enumerate(_CHANNEL_TAGS):
                    description = (
                        f"phenossl synthetic field: plate {plate}, well {well}, site {site}, "
                        f"{channel}, {treatment.name}, seed {seed}"
                    )
                    tifffile.imwrite(
                        folder / names[k], field_.image[k], description=description, metadata=None
                    )
                if ground_truth:
                    _write_ground_truth(root, f"{plate}/{well}/s{site}", field_)
                rows.append(
                    [_WEEK, len(rows) + 1]
                    + [part for name in names for part in (name, path_name)]
                    + [plate, well, rep + 1, treatment.compound, f"{treatment.concentration:g}"]
                )
                yield Progress(len(rows), total, f"{plate}/{well}/s{site}")
    _write_csvs(root, rows, treatments)
    return root


@drives(iter_write_synthetic_plate)
def write_synthetic_plate(*, progress: ProgressCallback | None = None) -> Path:
    """Write a synthetic plate in the official BBBC021 layout; return ``root``.

    See :func:`iter_write_synthetic_plate` for the parameters; ``progress`` receives one
    :class:`~phenossl.Progress` event per field written.

    Examples
    --------
    >>> root = write_synthetic_plate("plate", shape=(96, 128), sites=1)
    >>> sorted(p.name for p in root.iterdir())  # the BBBC021 layout, and what made it
    ['BBBC021_v1_image.csv', 'BBBC021_v1_moa.csv', 'Week1', 'synthetic_plate.json']
    """


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (height, width), got {shape!r}") from None
    if h < 32 or w < 32 or (h, w) != tuple(shape):
        raise ValueError(f"shape must be two integers >= 32, got {shape!r}")
    return h, w


def _layout(
    treatments: tuple[Treatment, ...], n_wells: int, n_control: int | None
) -> list[tuple[str, int]]:
    """Wells ``(name, treatment index)`` in row-major order: B02, B03, ..., G11."""
    if not treatments:
        raise ValueError("treatments must not be empty")
    names = [t.name for t in treatments]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"treatments must be unique per compound and concentration: {duplicates}")
    if not isinstance(n_wells, int | np.integer) or n_wells < 1:
        raise ValueError(f"n_wells_per_treatment must be an integer >= 1, got {n_wells!r}")
    if n_control is None:
        per_compound: dict[str, int] = {}
        for t in treatments:
            if t.compound != "DMSO":
                per_compound[t.compound] = per_compound.get(t.compound, 0) + 1
        n_control = n_wells * max(per_compound.values(), default=1)
    elif not isinstance(n_control, int | np.integer) or n_control < 1:
        raise ValueError(f"n_control_wells must be an integer >= 1 or None, got {n_control!r}")
    counts = [n_control if t.compound == "DMSO" else n_wells for t in treatments]
    wells = [f"{row}{col:02d}" for row in _ROWS for col in _COLUMNS]
    if sum(counts) > len(wells):
        raise ValueError(
            f"the plate has {len(wells)} wells (B02-G11) but the treatments need {sum(counts)}: "
            "lower n_wells_per_treatment / n_control_wells, or use fewer treatments"
        )
    order = [i for i, c in enumerate(counts) for _ in range(c)]
    return list(zip(wells, order))


def _prepare_root(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{root} is not empty; pass overwrite=True to replace a synthetic plate there"
            )
        if not (root / MANIFEST).is_file():
            raise FileExistsError(
                f"refusing to overwrite {root}: it holds no {MANIFEST}, so it is not a synthetic "
                "plate written by phenossl"
            )
        for child in root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _file_names(well: str, site: int, rng: np.random.Generator) -> list[str]:
    """Per-week style names ``WeekN_DDMMYY_<well>_s<site>_w<c><UUID>.tif`` (DAPI, Tub, Actin)."""
    stem = f"Week{_WEEK}_{_DATE}_{well}_s{site}"
    return [
        f"{stem}_{tag}{str(uuid.UUID(bytes=rng.bytes(16), version=4)).upper()}.tif"
        for _, tag in _CHANNEL_TAGS
    ]


def _write_ground_truth(root: Path, field_id: str, rendered: RenderedField) -> None:
    paths = ground_truth_paths(root, field_id)
    paths["nuclei"].parent.mkdir(parents=True, exist_ok=True)
    for kind in ("nuclei", "cells"):
        labels = getattr(rendered, kind)
        dtype = np.uint16 if labels.max(initial=0) < 2**16 else np.uint32
        tifffile.imwrite(paths[kind], labels.astype(dtype), compression="zlib", metadata=None)


def _write_csvs(root: Path, rows: list[list[object]], treatments: tuple[Treatment, ...]) -> None:
    with open(root / IMAGE_CSV, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(IMAGE_CSV_COLUMNS)
        writer.writerows(rows)
    # the real MOA table quotes its strings and writes concentrations with six decimals
    with open(root / MOA_CSV, "w", newline="", encoding="utf-8") as f:
        f.write('"compound",concentration,"moa"\n')
        for t in treatments:
            if t.moa is not None:
                f.write(f"{_quote(t.compound)},{t.concentration:.6f},{_quote(t.moa)}\n")


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'
