"""Export: the per-cell table of the run on screen (clusters, embeddings) and its parameters.

Writes ``<name>.csv`` (and ``<name>.parquet`` when pyarrow is installed), ``<name>.json`` (the
run's parameters, seed and scores), ``<name>_composition.csv``, ``<name>_gallery.png`` and
``<name>_profiles.csv`` (DMSO-normalised well and treatment profiles, when the loaded fields hold
DMSO cells) through :func:`phenossl.export.iter_export_cells`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from magicgui.widgets import CheckBox, Container, FileEdit, LineEdit
from napari.utils.notifications import show_error, show_info

from phenossl._progress import Progress, stage
from phenossl.napari._session import EmbedRun, session_for
from phenossl.napari._widgets._common import layers_with_role, run_matches_screen
from phenossl.napari._widgets._panels import form, hint, pack_top
from phenossl.napari._widgets._runner import RunPanel


class ExportWidget(Container):
    """Save the run on screen: cells with clusters and embeddings, parameters, composition."""

    def __init__(self, napari_viewer: Any) -> None:
        from phenossl.export import has_parquet

        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.info = hint(muted=False)
        self.folder = FileEdit(mode="d", label="Folder", value=Path.home())
        self.name_edit = LineEdit(
            value="phenossl_cells", label="File name", tooltip="Base name of the exported files"
        )
        self.embeddings = CheckBox(
            value=True,
            text="include the embeddings",
            tooltip="One column per embedding dimension (emb_000, emb_001, ...)",
        )
        parquet = has_parquet()
        self.parquet = CheckBox(
            value=parquet,
            enabled=parquet,
            text="also write Parquet" if parquet else "Parquet needs pyarrow (not installed)",
        )
        self.panel = RunPanel("Export", "Export", "Write the files of the run on screen")
        super().__init__(
            labels=False,
            widgets=[
                hint(
                    "Saves the cells of the run on screen (clusters, embeddings, measurements) "
                    "with the run's parameters and seed, its composition and gallery."
                ),
                self.info,
                form(self.folder, self.name_edit, self.embeddings, self.parquet),
                self.panel,
            ],
        )
        pack_top(self)
        self.panel.run_button.changed.connect(self.run)
        self.session.run_changed.connect(self._on_run)
        self.session.fields_loaded.connect(lambda *_: self._on_run(self.session.run))
        self._on_run(self.session.run)

    def _on_run(self, run: EmbedRun | None) -> None:
        if run is None:
            self.info.value = "Nothing to export yet: run 'Embed and cluster' first."
            self.panel.run_button.enabled = False
            return
        if not run_matches_screen(self.viewer, self.session, run):
            self.info.value = _STALE
            self.panel.run_button.enabled = False
            return
        self.info.value = (
            f"{len(run.result.cells):,} cells from {len(run.fields):,} field(s), "
            f"K={run.options.k}, {run.model_label}."
        )
        self.panel.run_button.enabled = not self.panel.running

    def run(self, *_: Any) -> Any:
        """Write the files in a worker; returns the worker (None when there is nothing)."""
        from phenossl._json import to_json
        from phenossl.clustering_report import write_composition
        from phenossl.export import iter_export_cells
        from phenossl.montage import save_png

        run = self.session.run
        if run is None:
            show_error("Export: nothing to export yet; run 'Embed and cluster' first")
            return None
        if not run_matches_screen(self.viewer, self.session, run):
            show_error(f"Export: {_STALE}")
            return None
        folder, name = Path(self.folder.value), self.name_edit.value.strip()
        if not name:
            show_error("Export: enter a file name")
            return None
        cells = _cells_on_screen(self.viewer, run)
        embeddings = run.result.embeddings if self.embeddings.value else None
        params = {**run.params, "exported_columns": list(cells.columns)}
        parquet = bool(self.parquet.value)

        def job():
            paths = yield from stage(
                iter_export_cells(
                    folder, cells, embeddings, to_json(params), name=name, parquet=parquet
                ),
                0,
                2,
                "cells",
            )
            composition = folder / f"{name}_composition.csv"
            paths["composition"] = write_composition(composition, run.result.clustering)
            if run.gallery is not None:
                paths["gallery"] = save_png(folder / f"{name}_gallery.png", run.gallery)
            try:  # well and treatment profiles, DMSO-normalised (phenossl.profile_report)
                from phenossl.profile_report import write_profiles_csv

                out = folder / f"{name}_profiles.csv"
                paths["profiles"] = write_profiles_csv(out, run.result.embeddings, cells)
            except ValueError:  # e.g. no DMSO cell among the loaded fields: nothing to profile
                pass
            yield Progress(2000, 2000, "done")
            return paths

        def done(paths: dict[str, Path]) -> None:
            listed = ", ".join(p.name for p in paths.values())
            self.panel.set_status(f"Wrote {listed} to {folder}")
            show_info(f"Export: wrote {len(paths)} files to {folder}")

        return self.panel.start(job, done, on_end=lambda: self._on_run(self.session.run))


_STALE = (
    "the last 'Embed and cluster' run was computed on other fields than those on screen; "
    "run it again on these fields before exporting."
)


def _cells_on_screen(viewer: Any, run: EmbedRun) -> Any:
    """The run's cell table with ``cluster`` as the points layer on screen holds it."""
    table = run.result.cells.reset_index(drop=True)
    points = layers_with_role(viewer, "centres")
    if points and "cluster" in points[0].features and len(points[0].features) == len(table):
        features = points[0].features
        table = table.assign(cluster=features["cluster"].to_numpy())
        # the CSV holds every column of the points layer's table (pc1, pc2 too)
        extra = [c for c in features.columns if c not in table.columns]
        table = pd.concat([table, features[extra].reset_index(drop=True)], axis=1)
    return table
