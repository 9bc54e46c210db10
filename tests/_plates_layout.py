"""A synthetic plate rewritten in another layout than BBBC021's (Opera Phenix / Harmony names)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from phenossl.data.bbbc021 import load_image_table

#: the model's channels -> the Phenix channel numbers used for them (Actin on ch3, not w4)
PHENIX_CHANNELS = {"dapi": 1, "tubulin": 2, "actin": 3}


def write_phenix_plate(bbbc021_root: Path, out: Path) -> tuple[Path, Path]:
    """Copy a BBBC021-layout plate's images into Harmony names; returns (plate, metadata CSV).

    ``out/Images/r02c03f01p01-ch1sk1fk1fl1.tiff``: no CSV of file names, treatments only in a
    separate metadata CSV keyed by well (as a biologist keeps them).
    """
    table = load_image_table(bbbc021_root)
    images = out / "Images"
    images.mkdir(parents=True, exist_ok=True)
    wells = []
    for _, row in table.iterrows():
        r = ord(row["well"][0]) - ord("A") + 1
        c = int(row["well"][1:])
        for key, ch in PHENIX_CHANNELS.items():
            name = f"r{r:02d}c{c:02d}f{int(row['site']):02d}p01-ch{ch}sk1fk1fl1.tiff"
            shutil.copyfile(row[key], images / name)
        wells.append(
            {
                "well": row["well"],
                "compound": row["compound"],
                "concentration": row["concentration"],
            }
        )
    (out / "Images" / "notes.txt").write_text("not an image")
    meta = out / "treatments.csv"
    pd.DataFrame(wells).drop_duplicates("well").to_csv(meta, index=False)
    return out, meta
