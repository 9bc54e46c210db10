"""Train: an SSL method (MoCoV2+ / VGG13 by default) on the crops of the loaded fields.

Two library steps in one worker: :func:`phenossl.pipeline.iter_make_cropset` writes the crops of
the loaded fields (segmented with the Segment widget's settings) as a CropSet, then
:func:`phenossl.training.train.trainer.iter_train` trains on it with a named augmentation composition,
yielding progress per optimiser step. The final checkpoint is selected in "Embed and cluster"
right away (with the crop and input sizes it was trained at). *Start from* a shipped model
trains it further (``model.init``) with the settings it was trained with
(:func:`phenossl.models.pretrained.finetune_settings`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, FileEdit, SpinBox
from napari.utils.notifications import show_error, show_info

from phenossl._progress import Progress
from phenossl.napari._preload import preload_training
from phenossl.napari._session import session_for
from phenossl.napari._widgets._panels import (
    collapsible,
    cpu_precision_box,
    form,
    hint,
    pack_top,
)
from phenossl.napari._widgets._runner import RunPanel

PAPER_METHOD, PAPER_BACKBONE, PAPER_AUGMENTATION = "mocov2plus", "vgg13_bn", "cell_affine_crop"
PAPER_CROP = 196
RANDOM_INIT = "random"
#: a short run on top of a shipped model: the shipped recipe's epochs and batch size
FINETUNE_EPOCHS, FINETUNE_BATCH = 3, 64
_CELL_COMPOSITIONS = ("cell_affine_crop", "cell_affine_rot360", "cell_fig6_left", "cell_fig6_right")


class TrainWidget(Container):
    """Train a self-supervised model on the crops of the loaded fields."""

    def __init__(self, napari_viewer: Any) -> None:
        preload_training()  # first: before anything imports torchvision
        from phenossl._device import available_devices
        from phenossl.augment import COMPOSITIONS
        from phenossl.models.backbones import available_backbones
        from phenossl.models.pretrained import available_pretrained
        from phenossl.ssl.methods import METHODS

        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.scope = hint()
        compositions = [c for c in _CELL_COMPOSITIONS if c in COMPOSITIONS] + [
            c for c in COMPOSITIONS if c not in _CELL_COMPOSITIONS
        ]
        self.method = ComboBox(
            choices=sorted(METHODS), value=PAPER_METHOD, label="Method",
            tooltip="Self-supervised method; the paper's cellular experiments use MoCoV2+",
        )  # fmt: skip
        self.start = ComboBox(
            choices=[("random init", RANDOM_INIT)]
            + [
                (f"{name} (go on training the shipped model)", name)
                for name in available_pretrained()
            ],
            value=RANDOM_INIT,
            label="Start from",
            tooltip="Random init, or a shipped model trained on real BBBC021 cells, trained "
            "further on your cells: its backbone, augmentation, crop and view sizes, 3 epochs "
            "of batch 64 with a one-epoch warm-up (change them under Advanced)",
        )
        self.backbone = ComboBox(
            choices=available_backbones(), value=PAPER_BACKBONE, label="Backbone"
        )
        self.augmentation = ComboBox(
            choices=compositions, value=PAPER_AUGMENTATION, label="Augmentation",
            tooltip="Named composition of phenossl.augment (cell_affine_crop: the paper's "
            "Table 3, row 1)",
        )  # fmt: skip
        self.epochs = SpinBox(
            value=10, min=1, max=10_000, label="Epochs", tooltip="400 in the paper"
        )
        self.batch_size = SpinBox(value=128, min=2, max=4096, label="Batch size")
        self.device = ComboBox(choices=available_devices(), value="auto", label="Device")
        self.folder = FileEdit(
            mode="d", value=Path.home() / "phenossl-runs", label="Runs folder",
            tooltip="Each run writes its crops, config, metrics and checkpoints in a new "
            "subfolder here",
        )  # fmt: skip
        self.crop_size = SpinBox(
            value=PAPER_CROP, min=16, max=1024, step=2, label="Crop size (px)",
            tooltip="Side of the crop centred on each nucleus (the paper's 196 px)",
        )  # fmt: skip
        self.view_size = SpinBox(
            value=PAPER_CROP, min=16, max=1024, step=2, label="View size (px)",
            tooltip="Side of the augmented views the model trains on; smaller is faster",
        )  # fmt: skip
        self.seed = SpinBox(value=0, min=0, max=2**31 - 1, label="Seed")
        self.cpu_amp = cpu_precision_box(
            "Train",
            "On real BBBC021 cells a bf16-trained model separated treatments from DMSO as well "
            "but grouped compounds by mechanism somewhat less well (docs/cell-model.md): good "
            "for a quick look; train a model to keep in float32",
        )
        self.loss = hint(muted=False)
        self.panel = RunPanel(
            "Train",
            "Train",
            "Crop the loaded fields' cells and train the model on them",
            cancelled="Train cancelled: no checkpoint was selected, and the run's crops were "
            "removed (its folder keeps the training's resume point, if one was written).",
        )
        super().__init__(
            labels=False,
            widgets=[
                self.scope,
                form(
                    self.start,
                    self.method,
                    self.backbone,
                    self.augmentation,
                    self.epochs,
                    self.batch_size,
                    self.device,
                    self.folder,
                ),
                collapsible(
                    "Advanced", form(self.crop_size, self.view_size, self.seed, self.cpu_amp)
                ),
                self.panel,
                self.loss,
            ],
        )
        pack_top(self)
        self.panel.run_button.changed.connect(self.run)
        self.start.changed.connect(self._on_start)
        self.session.fields_loaded.connect(self._on_fields)
        self._on_fields()

    def _on_start(self, *_: Any) -> None:
        """A shipped model to start from brings the settings it was trained with."""
        from phenossl.models.pretrained import finetune_settings

        name = self.start.value
        self.backbone.enabled = name == RANDOM_INIT  # the weights fix the architecture
        if name == RANDOM_INIT:
            return
        settings = finetune_settings(name)
        self.backbone.value = settings["backbone"]
        self.augmentation.value = settings["composition"]
        self.crop_size.value = settings["crop_size"]
        self.view_size.value = settings["view_size"]
        self.epochs.value, self.batch_size.value = FINETUNE_EPOCHS, FINETUNE_BATCH

    def _on_fields(self, *_: Any) -> None:
        fields = self.session.fields
        if fields is None or fields.empty:
            self.scope.value = "Load fields with 'Select fields': the model trains on their cells."
        else:
            self.scope.value = (
                f"Trains on the cells of the {len(fields):,} loaded field(s), segmented with the "
                "Segment widget's settings. The checkpoint goes to 'Embed and cluster'."
            )

    def run(self, *_: Any) -> Any:
        """Crop the loaded fields and train in a worker; returns the worker (None if not)."""
        from phenossl.pipeline import iter_make_cropset
        from phenossl.training.train.trainer import cropset_train_config, iter_train

        fields = self.session.fields
        if fields is None or fields.empty:
            show_error("Train: no fields loaded; load fields with 'Select fields' first")
            return None
        from phenossl.models.pretrained import finetune_settings

        init = None if self.start.value == RANDOM_INIT else self.start.value
        start = init or self.backbone.value
        name = f"{self.method.value}_{start}_{time.strftime('%Y%m%d-%H%M%S')}"
        out = Path(self.folder.value) / name
        settings = {
            "method": self.method.value,
            "backbone": self.backbone.value,
            "augmentation": self.augmentation.value,
            "view_size": self.view_size.value,
            "epochs": self.epochs.value,
            "batch_size": self.batch_size.value,
            "device": self.device.value,
            "seed": self.seed.value,
            "cpu_amp": self.cpu_amp.value,
            "init": init,
            "optim": finetune_settings(init)["optim"] if init else None,
        }
        crop_size = self.crop_size.value
        segment_params = dict(self.session.segment_params)
        self.loss.value = ""

        def job():
            try:
                return (yield from train_job())
            except GeneratorExit:  # cancelled: the crops are only a means to the model
                shutil.rmtree(out / "crops", ignore_errors=True)
                raise

        def train_job():
            summary = yield from iter_make_cropset(
                fields, out / "crops", crop_size=crop_size, segment_params=segment_params
            )
            if summary["cells"] < settings["batch_size"]:
                raise ValueError(
                    f"the loaded fields hold {summary['cells']} cells, fewer than the batch size "
                    f"({settings['batch_size']}); lower it or load more fields"
                )
            config = cropset_train_config(out / "crops", **settings)
            yield Progress(0, 1, f"training on {summary['cells']:,} cells")
            final = yield from _with_loss(iter_train(config, out / "run"), self.loss)
            return final

        def done(final: Path) -> None:
            self.session.add_checkpoint(final)
            self.panel.set_status(
                f"Saved {final}. It is selected in 'Embed and cluster' (crops {crop_size} px, "
                f"input {settings['view_size']} px)."
            )
            show_info(f"Train: checkpoint saved to {final}")
            self._select_in_embed(final, crop_size, settings["view_size"])

        return self.panel.start(job, done)

    def _select_in_embed(self, checkpoint: Path, crop_size: int, input_size: int) -> None:
        from phenossl.napari._widgets._common import open_widget

        embed = open_widget(self.viewer, "Embed and cluster")
        embed.use_checkpoint(checkpoint, crop_size=crop_size, input_size=input_size)


def _with_loss(gen: Any, label: Any) -> Any:
    """Pass the trainer's progress on, showing its loss messages in ``label`` (GUI thread)."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if event.message.startswith("epoch") and "loss" in event.message:
            text = f"Last step: {event.message}"
            yield lambda text=text: setattr(label, "value", text)
        yield Progress(event.done, event.total, f"step {event.done}/{event.total} {event.message}")
