"""Train: a short run on the crops of the loaded fields; its checkpoint embeds right away."""

from __future__ import annotations

import json

import pytest
import torch
from _helpers import open_fields, wait_for
from _plates import TINY_CROP

from phenossl.napari._widgets._common import open_widget


def _fast_train(widget, folder) -> None:
    widget.method.value = "mocov2plus"
    widget.backbone.value = "resnet18"
    widget.augmentation.value = "cell_affine_crop"
    widget.epochs.value = 1
    widget.batch_size.value = 32
    widget.device.value = "cpu"
    widget.crop_size.value = TINY_CROP
    widget.view_size.value = 32
    widget.folder.value = folder


def test_train_then_embed_with_the_checkpoint(make_napari_viewer, qtbot, tiny_plate, tmp_path):
    viewer = make_napari_viewer()
    open_fields(viewer, tiny_plate, preset="nocodazole")
    train = open_widget(viewer, "Train")
    _fast_train(train, tmp_path / "runs")
    train.panel.run_button.native.click()
    steps = []
    train.panel.worker.yielded.connect(steps.append)
    wait_for(qtbot, train.panel, timeout=300)

    (run,) = (tmp_path / "runs").iterdir()
    final = run / "run" / "final.pt"
    assert final.is_file() and train.session.checkpoints == [final]
    meta = torch.load(final, weights_only=True)["metadata"]
    assert meta["method"] == "mocov2plus" and meta["backbone"] == "resnet18"
    config = meta["config"]
    assert config["augmentation"][0]["name"] == "cell_affine_crop"
    assert config["augmentation"][0]["size"] == 32 and config["optim"]["epochs"] == 1
    n_cells = json.loads((run / "crops" / "cropset.json").read_text())["n_cells"]
    metrics = [
        json.loads(line) for line in (run / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    n_steps = n_cells // 32
    assert sum(m["kind"] == "step" for m in metrics) == n_steps  # every step reported
    assert train.loss.value.startswith("Last step: epoch 1/1 loss")
    assert train.panel.bar.value == train.panel.bar.max == n_steps
    assert str(final) in train.panel.status.value

    embed = open_widget(viewer, "Embed and cluster")  # selected there already
    assert embed.source.value == "checkpoint" and embed.checkpoint.value == final
    assert embed.crop_size.value == TINY_CROP and embed.input_size.value == 32
    embed.device.value = "cpu"
    embed.panel.run_button.native.click()
    wait_for(qtbot, embed.panel)
    assert embed.session.run.model_label == "checkpoint final.pt"
    assert embed.session.run.result.embeddings.shape[1] == 512
    assert "cell centres" in viewer.layers


def test_go_on_training_the_shipped_model(make_napari_viewer, qtbot, tiny_plate, tmp_path):
    viewer = make_napari_viewer()
    open_fields(viewer, tiny_plate, preset="nocodazole")
    train = open_widget(viewer, "Train")
    assert train.start.value == "random" and train.backbone.enabled  # random init by default
    train.start.value = "phenossl-cells"
    # the shipped model's own settings: its architecture is fixed, the rest can change
    assert train.backbone.value == "vgg13_bn" and not train.backbone.enabled
    assert train.augmentation.value == "fluorescence"
    assert (train.crop_size.value, train.view_size.value) == (68, 48)
    assert (train.epochs.value, train.batch_size.value) == (3, 64)
    train.epochs.value, train.batch_size.value, train.device.value = 1, 32, "cpu"
    train.folder.value = tmp_path / "runs"
    train.panel.run_button.native.click()
    wait_for(qtbot, train.panel, timeout=300)

    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("mocov2plus_phenossl-cells_")
    config = torch.load(run / "run" / "final.pt", weights_only=True)["metadata"]["config"]
    assert config["model"] == {**config["model"], "init": "phenossl-cells", "backbone": "vgg13_bn"}
    assert config["optim"]["scheduler"] == "warmup_cosine" and config["optim"]["warmup_epochs"] == 1
    assert config["augmentation"][0]["name"] == "fluorescence"
    embed = open_widget(viewer, "Embed and cluster")
    assert (embed.crop_size.value, embed.input_size.value) == (68, 48)

    train.start.value = "random"
    assert train.backbone.enabled


@pytest.mark.parametrize("native", [False, True])
def test_bf16_is_offered_where_the_cpu_has_it_and_reaches_the_run(
    make_napari_viewer, qtbot, tiny_plate, tmp_path, monkeypatch, native
):
    import phenossl._device

    monkeypatch.setattr(phenossl._device, "cpu_has_native_bf16", lambda: native)
    viewer = make_napari_viewer()
    train = open_widget(viewer, "Train")
    embed = open_widget(viewer, "Embed and cluster")
    for widget in (train, embed):
        assert widget.cpu_amp.native.isHidden() is not native  # hidden, not just collapsed
    # measured on real cells: bf16 training costs treatment-profile quality, embedding does not
    assert "train a model to keep in float32" in train.cpu_amp.tooltip
    assert "float32" not in embed.cpu_amp.tooltip
    if not native:
        return
    embed.cpu_amp.value = True
    assert embed.options().cpu_amp is True
    open_fields(viewer, tiny_plate, preset="nocodazole")
    _fast_train(train, tmp_path / "runs")
    train.cpu_amp.value = True
    train.panel.run_button.native.click()
    wait_for(qtbot, train.panel, timeout=300)
    (run,) = (tmp_path / "runs").iterdir()
    config = torch.load(run / "run" / "final.pt", weights_only=True)["metadata"]["config"]
    assert config["run"]["cpu_amp"] is True


def test_cancel_training_leaves_no_checkpoint(
    make_napari_viewer, qtbot, tiny_plate, tmp_path, notifications
):
    viewer = make_napari_viewer()
    open_fields(viewer, tiny_plate, preset="nocodazole")
    train = open_widget(viewer, "Train")
    _fast_train(train, tmp_path / "runs")
    train.epochs.value = 50
    train.panel.run_button.native.click()
    events = []
    train.panel.worker.yielded.connect(events.append)
    qtbot.waitUntil(
        lambda: any("step" in getattr(e, "message", "") for e in events), timeout=120000
    )
    train.panel.cancel_button.native.click()
    wait_for(qtbot, train.panel)
    infos = [text for severity, text in notifications if severity == "info"]
    assert any(text.startswith("Train cancelled: no checkpoint was selected") for text in infos)
    (run,) = (tmp_path / "runs").iterdir()
    assert not (run / "run" / "final.pt").exists()
    assert not (run / "crops").exists()  # the cancelled run's crops are removed
    assert train.session.checkpoints == [] and len(viewer.layers) == 3
    assert train.panel.run_button.enabled


def test_train_without_fields_or_with_too_few_cells(
    make_napari_viewer, qtbot, tiny_plate, tmp_path, notifications
):
    viewer = make_napari_viewer()
    train = open_widget(viewer, "Train")
    train.run()
    errors = [text for severity, text in notifications if severity == "error"]
    assert errors[-1] == "Train: no fields loaded; load fields with 'Select fields' first"
    fields = open_fields(viewer, tiny_plate, load=False)
    fields.compound.value = "nocodazole"
    fields.concentration.value = 3.0
    fields.load()
    _fast_train(train, tmp_path / "runs")
    train.batch_size.value = 4096
    train.panel.run_button.native.click()
    wait_for(qtbot, train.panel)
    errors = [text for severity, text in notifications if severity == "error"]
    assert "fewer than the batch size (4096)" in errors[-1]
