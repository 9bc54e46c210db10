"""Render the user guide's screenshots (docs/images/*.png): each widget on the sample plate.

    xvfb-run -a python docs/make_screenshots.py              # a few minutes on 2 CPU cores
    xvfb-run -a python docs/make_screenshots.py --only embed

It clicks through the plugin as a user would: opens the sample plate (File > Open Sample), selects
fields, segments the field on screen, embeds and clusters the loaded fields, exports the result
and, when the real data is present (../shared/data/bbbc021), opens the BBBC021 folder and its
real field. napari needs a display: on a machine without one, run it under ``xvfb-run``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
IMAGES = DOCS / "images"
REAL_DATA = DOCS.parent.parent / "shared" / "data" / "bbbc021"
WINDOW = (1500, 960)
STEPS = ("fields", "segment", "embed", "export", "train", "real", "plate")
LAPTOP = (1366, 768)
# a short training run for the screenshot: the shipped model trained further on the sample
# plate's cells (start first: it brings its own settings, then fewer epochs)
TRAIN = {"start": "phenossl-cells", "epochs": 2}


class Session:
    """One napari window, the plugin's docks, and helpers to wait and shoot."""

    def __init__(self) -> None:
        import napari
        from qtpy.QtWidgets import QApplication

        self.viewer = napari.Viewer(show=True, title="napari-phenossl")
        self.viewer.window.resize(*WINDOW)
        self.app = QApplication.instance()

    def widget(self, name: str, *, alone: bool = True):
        """Open the dock ``name``; with ``alone`` the plugin's other docks are closed."""
        if alone:
            for title, dock in list(self.viewer.window._dock_widgets.items()):
                if title.endswith("(napari-phenossl)") and not title.startswith(f"{name} ("):
                    self.viewer.window.remove_dock_widget(dock)
        _, widget = self.viewer.window.add_plugin_dock_widget("napari-phenossl", name)
        self.settle()
        return widget

    def wait(self, panel, timeout: float = 1800) -> None:
        start = time.perf_counter()
        while panel.running:
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"{panel.title} did not finish in {timeout} s")
            self.app.processEvents()
            time.sleep(0.01)
        self.settle()
        if "failed" in panel.status.value:
            raise RuntimeError(panel.status.value)

    def settle(self, seconds: float = 0.3) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.app.processEvents()
            time.sleep(0.01)

    def shoot(self, name: str) -> Path:
        self.viewer.window.resize(*WINDOW)
        self.settle()
        path = IMAGES / f"{name}.png"
        self.viewer.screenshot(str(path), canvas_only=False, flash=False)
        return compact(path)

    def close_notifications(self) -> None:
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in self.viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        self.settle()


def compact(path: Path) -> Path:
    """Rewrite a PNG with a 256-colour palette: a third of the size, same look at doc scale."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    palette = rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    palette.save(path, optimize=True)
    print(f"wrote {path.relative_to(DOCS.parent)}", flush=True)
    return path


def focus(viewer, field_index: int, *, magnify: float = 1.0, center=None) -> None:
    """Show field ``field_index`` fitted to the canvas, magnified around ``center`` (y, x)."""
    viewer.dims.set_point(0, field_index)
    height, width = viewer.layers["DAPI"].data.shape[-2:]
    canvas = viewer.window._qt_viewer.canvas.native
    camera = viewer.scene.camera
    camera.center = (field_index, *(center or (height / 2, width / 2)))
    camera.zoom = magnify * min(canvas.width() / width, canvas.height() / height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS))
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(
        "PHENOSSL_SAMPLE_DIR", str(Path(tempfile.gettempdir()) / "phenossl-docs-sample")
    )
    s = Session()
    viewer = s.viewer

    # 1. File > Open Sample > PhenoSSL: the nocodazole subset of the sample plate, browsed
    viewer.open_sample("napari-phenossl", "synthetic_plate")
    s.widget("Select fields")
    focus(viewer, 4)
    if "fields" in args.only:
        s.shoot("select_fields")

    # 2. Segment the field on screen
    segment = s.widget("Segment")
    focus(viewer, 7, magnify=2.0, center=(400, 300))
    segment.panel.run_button.native.click()
    s.wait(segment.panel)
    if "segment" in args.only:
        viewer.layers.selection.active = viewer.layers["cells"]
        s.shoot("segment")

    # 3. Embed and cluster every loaded field
    if {"embed", "export"} & set(args.only):
        for layer in ("nuclei", "cells"):
            viewer.layers[layer].visible = False
        embed = s.widget("Embed and cluster")
        # the widget's default model (the shipped phenossl-cells, 68-px crops), as a user sees it
        embed.device.value = "cpu"
        embed.panel.run_button.native.click()
        s.wait(embed.panel)
        print(embed.panel.status.value, embed.ami.value, embed.summary.value, flush=True)
        focus(viewer, 7, magnify=2.0, center=(400, 300))
        viewer.layers.selection.active = viewer.layers["cell centres"]
        s.shoot("embed_cluster")

    # 4. Export the run on screen
    if "export" in args.only:
        export = s.widget("Export")
        export.folder.value = Path(tempfile.mkdtemp(prefix="phenossl-export-"))
        export.name_edit.value = "nocodazole_vs_dmso"
        export.panel.run_button.native.click()
        s.wait(export.panel)
        focus(viewer, 7)
        s.shoot("export")
        # the gallery exactly as exported (one row per cluster)
        shutil.copyfile(
            export.folder.value / "nocodazole_vs_dmso_gallery.png", IMAGES / "gallery.png"
        )
        print("wrote docs/images/gallery.png", flush=True)
        s.close_notifications()

    # 5. Train: the shipped MoCoV2+ model, further on the loaded fields' crops
    if "train" in args.only:
        train = s.widget("Train")
        train.folder.value = Path(tempfile.mkdtemp(prefix="phenossl-runs-"))
        for name, value in TRAIN.items():
            getattr(train, name).value = value
        train.device.value = "cpu"
        train.panel.run_button.native.click()
        s.wait(train.panel)
        s.close_notifications()
        s.widget("Train")  # the run selected its checkpoint in Embed and cluster: back to Train
        focus(viewer, 7, magnify=2.0, center=(400, 300))
        s.shoot("train")

    # 6. The real BBBC021 folder and its one real field, when present
    if "real" in args.only and (REAL_DATA / "BBBC021_v1_image.csv").is_file():
        viewer.layers.clear()
        viewer.open(str(REAL_DATA), plugin="napari-phenossl")
        s.widget("Select fields")
        files = sorted((REAL_DATA / "Week2" / "Week2_24381").glob("*_B02_s1_w*.tif"))
        viewer.open([str(f) for f in files], plugin="napari-phenossl")
        viewer.reset_view()
        s.shoot("bbbc021_folder")

    # 7. A plate in another layout (Opera Phenix names + a metadata CSV), on a laptop screen
    if "plate" in args.only:
        from phenossl.napari._sample_data import ensure_sample_plate

        plate, metadata = write_phenix_plate(ensure_sample_plate(), Path(tempfile.mkdtemp()))
        viewer.layers.clear()
        for name in ("Segment", "Embed and cluster", "Train", "Export"):
            s.widget(name, alone=False)
        fields = s.widget("Select fields", alone=False)
        fields.plate_section.set_expanded(True)
        fields.plate_panel.metadata.value = metadata
        fields.open_root(plate)
        fields.apply_preset("nocodazole")
        fields.load()
        focus(viewer, 4)
        viewer.window.resize(*LAPTOP)
        s.settle(1.0)
        path = IMAGES / "own_plate_laptop.png"
        viewer.screenshot(str(path), canvas_only=False, flash=False)
        print(f"wrote {compact(path)}", flush=True)
    viewer.close()


def write_phenix_plate(bbbc021_root: Path, out: Path) -> tuple[Path, Path]:
    """The sample plate's images under Harmony names, treatments in a separate CSV by well."""
    import pandas as pd

    from phenossl.data.bbbc021 import load_image_table

    table = load_image_table(bbbc021_root)
    table = table[table["exists"].astype(bool)]
    plate, rows = out / "MyScreen_plate1", []
    (plate / "Images").mkdir(parents=True)
    for _, row in table.iterrows():
        r, c = ord(row["well"][0]) - ord("A") + 1, int(row["well"][1:])
        for ch, key in enumerate(("dapi", "tubulin", "actin"), start=1):
            name = f"r{r:02d}c{c:02d}f{int(row['site']):02d}p01-ch{ch}sk1fk1fl1.tiff"
            shutil.copyfile(row[key], plate / "Images" / name)
        rows.append(
            {
                "well": row["well"],
                "compound": row["compound"],
                "concentration": row["concentration"],
            }
        )
    metadata = out / "treatments.csv"
    pd.DataFrame(rows).drop_duplicates("well").to_csv(metadata, index=False)
    return plate, metadata


if __name__ == "__main__":
    main()
