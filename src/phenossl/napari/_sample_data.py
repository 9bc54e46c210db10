"""Sample data: a synthetic BBBC021-like plate, to try every widget without a download.

The plate (:func:`phenossl.data.synthetic.write_synthetic_plate`: DMSO, nocodazole, taxol and
cytochalasin B at the paper's four highest concentrations, one 768 x 1024 field per well) is
written once into the user cache folder (``$PHENOSSL_SAMPLE_DIR`` overrides it) and reused. Opening
the sample shows the "Select fields" widget on it with the paper's nocodazole subset (its four
concentrations and the DMSO controls) loaded as a stack of fields.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from phenossl.napari._layers import LayerData

SAMPLE_SHAPE = (768, 1024)
SAMPLE_SEED = 0
SAMPLE_COMPOUND = "nocodazole"
_VERSION = "v1"


def sample_dir() -> Path:
    """Where the sample plate lives: ``$PHENOSSL_SAMPLE_DIR`` or the user cache folder."""
    env = os.environ.get("PHENOSSL_SAMPLE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("phenossl")) / f"sample-plate-{_VERSION}"


def ensure_sample_plate(root: Path | None = None) -> Path:
    """The sample plate's folder, written on first use (a few seconds) and reused after."""
    from phenossl.data.synthetic import MANIFEST, write_synthetic_plate

    root = sample_dir() if root is None else Path(root)
    manifest = root / MANIFEST
    if manifest.is_file():
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        if meta.get("seed") == SAMPLE_SEED and meta.get("shape") == list(SAMPLE_SHAPE):
            return root
    root.parent.mkdir(parents=True, exist_ok=True)
    overwrite = manifest.is_file()  # an older sample: replace it
    return write_synthetic_plate(
        root, seed=SAMPLE_SEED, shape=SAMPLE_SHAPE, sites=1, overwrite=overwrite
    )


def sample_plate() -> list[LayerData]:
    """npe2 sample data: the nocodazole subset of the sample plate, as a stack of fields."""
    import napari

    from phenossl.napari._widgets._common import open_widget

    root = ensure_sample_plate()
    viewer = napari.current_viewer()
    if viewer is None:
        raise RuntimeError("the phenossl sample plate needs a napari viewer")
    widget = open_widget(viewer, "Select fields")
    if not widget.open_root(root):
        raise RuntimeError(f"could not open the sample plate at {root}")
    widget.apply_preset(SAMPLE_COMPOUND)
    return widget.prepare_load()
