"""Checkpoints: round trip, safe loading, bad files, architecture mismatches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from phenossl.models.backbones import build_backbone
from phenossl.models.checkpoint import load_backbone, load_checkpoint, save_checkpoint


@pytest.fixture
def trained() -> torch.nn.Module:
    """A small backbone whose BatchNorm statistics differ from a fresh one's."""
    backbone = build_backbone("resnet18", in_channels=1, cifar_stem=True, seed=1)
    with torch.no_grad():
        backbone.train()(torch.rand(4, 1, 16, 16) * 3)  # updates the running statistics
    return backbone.eval()


def test_round_trip_gives_equal_outputs_and_metadata(tmp_path, trained):
    optimiser = torch.optim.Adam(trained.parameters())
    trained(torch.rand(2, 1, 16, 16)).sum().backward()
    optimiser.step()
    path = save_checkpoint(
        tmp_path / "runs" / "model.pt",
        backbone=trained,
        metadata={"method": "mocov2plus", "epoch": 3, "seed": np.int64(5), "config": {"lr": 1e-3}},
        state={"optimizer": optimiser.state_dict(), "rng": torch.random.get_rng_state()},
    )
    loaded, meta = load_backbone(path)
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained.eval()(x), rtol=0, atol=0)
    assert not loaded.training
    assert (loaded.name, loaded.in_channels, loaded.cifar_stem) == ("resnet18", 1, True)
    assert meta["method"] == "mocov2plus"
    assert meta["seed"] == 5
    assert type(meta["seed"]) is int
    assert meta["config"] == {"lr": 1e-3}
    assert meta["input_mean"] == [0.5]
    data = load_checkpoint(path)
    saved = data["state"]["optimizer"]["state"][0]["exp_avg"]
    torch.testing.assert_close(saved, optimiser.state_dict()["state"][0]["exp_avg"])
    assert data["format"] == "phenossl-checkpoint"
    assert data["version"] == 1


def test_missing_metadata_keys_are_stored_as_none(tmp_path, trained):
    path = save_checkpoint(tmp_path / "m.pt", backbone=trained, metadata={})
    meta = load_checkpoint(path)["metadata"]
    assert meta["method"] is None
    assert meta["epoch"] is None
    assert meta["config"] == {}


def test_checkpoint_input_statistics_reach_the_backbone(tmp_path, trained):
    path = save_checkpoint(
        tmp_path / "m.pt", backbone=trained, metadata={"input_mean": [0.1], "input_std": 0.3}
    )
    loaded, _ = load_backbone(path)
    assert loaded.input_mean == (0.1,)
    assert loaded.input_std == (0.3,)


def test_save_is_atomic_and_overwrites(tmp_path, trained):
    path = tmp_path / "m.pt"
    save_checkpoint(path, backbone=trained, metadata={"epoch": 1})
    save_checkpoint(path, backbone=trained, metadata={"epoch": 2})
    assert load_checkpoint(path)["metadata"]["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary files left


def test_unloadable_state_is_refused_before_writing(tmp_path, trained):
    path = tmp_path / "m.pt"
    with pytest.raises(ValueError, match=r"state\['queue'\] is a ndarray.*weights_only"):
        save_checkpoint(path, backbone=trained, metadata={}, state={"queue": np.zeros(3)})
    with pytest.raises(ValueError, match=r"metadata\['config'\]\['steps'\] is a set"):
        save_checkpoint(path, backbone=trained, metadata={"config": {"steps": {1, 2}}})
    assert list(tmp_path.iterdir()) == []


def test_metadata_contradicting_the_backbone(tmp_path, trained):
    with pytest.raises(ValueError, match=r"metadata\['in_channels'\]=3 contradicts"):
        save_checkpoint(tmp_path / "m.pt", backbone=trained, metadata={"in_channels": 3})


def test_plain_module_needs_its_architecture_in_metadata(tmp_path):
    with pytest.raises(ValueError, match=r"\['backbone', 'in_channels', 'cifar_stem'\]"):
        save_checkpoint(tmp_path / "m.pt", backbone=torch.nn.Linear(2, 2), metadata={})


class _Touch:
    """Unpickling this creates a file: proof that arbitrary code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_loading_never_unpickles_arbitrary_objects(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "phenossl-checkpoint", "version": 1, "metadata": _Touch(marker)}, path)
    with pytest.raises(ValueError, match=r"evil\.pt is not a phenossl checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_wrong_files_are_named(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes.txt is not a phenossl checkpoint.*expected"):
        load_checkpoint(text)
    plain = tmp_path / "resnet18.pth"
    torch.save(build_backbone("resnet18").state_dict(), plain)
    with pytest.raises(
        ValueError, match=r"resnet18.pth is not a phenossl checkpoint \(format None\)"
    ):
        load_backbone(plain)
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_newer_version_is_refused(tmp_path, trained):
    path = save_checkpoint(tmp_path / "m.pt", backbone=trained, metadata={})
    data = torch.load(path, weights_only=True)
    data["version"] = 2
    torch.save(data, path)
    with pytest.raises(ValueError, match="version 2"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_architecture(tmp_path, trained):
    path = save_checkpoint(tmp_path / "m.pt", backbone=trained, metadata={})
    data = torch.load(path, weights_only=True)
    data["metadata"]["backbone"] = "resnet34"
    torch.save(data, path)
    with pytest.raises(
        ValueError, match=r"m.pt: the saved weights do not match.*'resnet34'"
    ) as info:
        load_backbone(path)
    assert "layer1.2" in str(info.value)  # resnet34 has more blocks than the saved resnet18


def test_unknown_backbone_in_metadata(tmp_path, trained):
    path = save_checkpoint(tmp_path / "m.pt", backbone=trained, metadata={})
    data = torch.load(path, weights_only=True)
    data["metadata"]["backbone"] = "alexnet"
    torch.save(data, path)
    with pytest.raises(ValueError, match=r"m.pt: cannot rebuild.*unknown backbone 'alexnet'"):
        load_backbone(path)
