"""napari-phenossl: cell phenotypes from fluorescence microscopy with self-supervised learning.

The public API is function-first::

    import phenossl

    image = phenossl.read_field(dapi, tubulin, actin)  # float32 (3, H, W)
    seg = phenossl.segment(image)  # nuclei + cells labels, per-cell table
    crops = phenossl.crop_cells(image, seg)  # 196x196 crops centred on nuclei
    features = phenossl.embed(crops.images, model="vgg13_bn")  # (N, D) float32
    result = phenossl.cluster(features, labels=crops.table["treatment"], k=2)
    print(result.ami, result.ami_control_mean)

Real single-cell crops made elsewhere, evaluated the way biologists do (MOA profiles)::

    cs = phenossl.import_crops("crops.npz", "cells.csv", "real_crops/")  # a CropSet
    x = phenossl.embed(cs, model="phenossl-cells")  # or model="features"
    scores = phenossl.score_profiles(x, cs.table)  # DMSO-normalised; NSC, NSCB, AMI
    phenossl.write_profile_report("profiles/", scores)

Names resolve lazily, so ``import phenossl`` (and ``phenossl --help``) stays fast and does not
import torch until a function that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "read_field": "phenossl.data.fields",
    "load_image_table": "phenossl.data.bbbc021",
    "write_synthetic_plate": "phenossl.data.synthetic",
    "segment": "phenossl.cells.segment",
    "crop_cells": "phenossl.cells.crops",
    "CropSet": "phenossl.data.cropset",
    "import_crops": "phenossl.cells.import_crops",
    "cell_features": "phenossl.cells.features",
    "embed": "phenossl.embedding",
    "cluster": "phenossl.clustering",
    "score_profiles": "phenossl.profiles",
    "write_profile_report": "phenossl.profile_report",
    "Progress": "phenossl._progress",
}

__all__ = [
    "CropSet",
    "Progress",
    "__version__",
    "cell_features",
    "cluster",
    "crop_cells",
    "embed",
    "import_crops",
    "load_image_table",
    "read_field",
    "score_profiles",
    "segment",
    "write_profile_report",
    "write_synthetic_plate",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'phenossl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from phenossl._progress import Progress
    from phenossl.cells.crops import crop_cells
    from phenossl.cells.features import cell_features
    from phenossl.cells.import_crops import import_crops
    from phenossl.cells.segment import segment
    from phenossl.clustering import cluster
    from phenossl.data.bbbc021 import load_image_table
    from phenossl.data.cropset import CropSet
    from phenossl.data.fields import read_field
    from phenossl.data.synthetic import write_synthetic_plate
    from phenossl.embedding import embed
    from phenossl.profile_report import write_profile_report
    from phenossl.profiles import score_profiles
