"""Small synthetic plates shared by the pipeline, CLI and GUI tests."""

from __future__ import annotations

from pathlib import Path

from phenossl.data.synthetic import default_treatments, write_synthetic_plate

#: small fields keep the tests fast; crops of 64 px still fit several cells per field
TINY_SHAPE = (320, 400)
TINY_CROP = 64


def write_tiny_plate(
    root: Path, *, compounds=("DMSO", "nocodazole"), sites=1, seed=0, **kwargs
) -> Path:
    """A plate with only ``compounds`` (all their concentrations), small fields."""
    treatments = [t for t in default_treatments() if t.compound in compounds]
    return write_synthetic_plate(
        root, seed=seed, treatments=treatments, sites=sites, shape=TINY_SHAPE, **kwargs
    )
