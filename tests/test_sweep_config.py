"""The sweep config: errors name the dotted key, settings merge in order, value texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from phenossl.training.sweep.config import load_sweep
from phenossl.training.train.config import ConfigError

TRAINING = Path(__file__).resolve().parents[1] / "training"


# --- errors name the key ------------------------------------------------------------------------

BASE = {
    "experiment": "t",
    "train": str(TRAINING / "cifar10_simclr.yaml"),
    "methods": ["simclr"],
    "grid": {"hue_p": {"values": [0.0, 1.0], "set": {"train.augmentation.0.hue_p": "{value}"}}},
    "seeds": [5],
    "evaluate": {"linear": {"epochs": 3}},
    "smoke": {"seeds": [6]},
}


def _with(**changes):
    data = {**BASE, **changes}
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (_with(experimnt="x"), "experimnt"),
        (_with(grid={"hue_p": {"vales": [1], "set": {}}}), "grid.hue_p.vales"),
        (_with(evaluate={"linear": {"epochz": 3}}), "evaluate.linear.epochz"),
        (_with(evaluate={"cluster": [{"k": 2, "labels": "x"}]}), "evaluate.cluster.0.labels"),
        (_with(smoke={"evaluate": {"linear": {"epochz": 3}}}), "smoke.evaluate.linear.epochz"),
        (_with(smoke={"seedz": [1]}), "smoke.seedz"),
        (_with(set={"trian.optim.lr": 1}), "set.trian.optim.lr"),
        (_with(seeds=[5, "six"]), "seeds.1"),
        (_with(methods=["sim clr"]), "methods.0"),
        (
            _with(grid={"hue_p": {"values": [0.0], "set": {"train.x": 1}, "levels": {}}}),
            "grid.hue_p",
        ),
        (_with(kind="evaluate"), "kind"),
    ],
)
def test_unknown_or_bad_keys_are_named(data, key):
    with pytest.raises(ConfigError) as info:
        load_sweep(data, smoke=False)
    assert info.value.key == key
    assert key in str(info.value)


def test_bad_trainer_keys_are_named_with_the_run():
    sweep = load_sweep(_with(set={"train.optim.lrr": 0.1}))
    with pytest.raises(ConfigError) as info:
        list(sweep.runs())
    assert info.value.key == "train.optim.lrr"
    assert "t/simclr/hue_p=0/seed=5" in str(info.value)
    bad_value = load_sweep(
        _with(grid={"hue_p": {"values": [2.0], "set": BASE["grid"]["hue_p"]["set"]}})
    )
    with pytest.raises(ConfigError) as info:
        list(bad_value.runs())
    assert info.value.key == "train.augmentation.0.hue_p"


def test_smoke_section_and_cli_settings_merge_in_order():
    data = _with(
        set={"train.optim.epochs": 7, "evaluate.linear.epochs": 5},
        smoke={"set": {"train.optim.epochs": 2}, "grid": {"hue_p": {"values": [0.5]}}},
    )
    full = load_sweep(data)
    smoke = load_sweep(data, smoke=True, overrides={"evaluate.linear.epochs": 9})
    assert full.n_runs == 2 and smoke.n_runs == 1
    (run,) = smoke.runs()
    assert run.params == {"hue_p": 0.5} and run.config["augmentation"][0]["hue_p"] == 0.5
    assert run.config["optim"]["epochs"] == 2  # sweep setting wins over the trainer's smoke
    assert run.evaluate["linear"]["epochs"] == 9  # the CLI's --set wins over everything
    assert run.config["data"]["limit"] == 256  # the trainer config's own smoke section
    assert [r.config["optim"]["epochs"] for r in full.runs()] == [7, 7]


def test_value_texts_keep_values_apart_and_templates_substitute():
    sweep = load_sweep(
        _with(
            grid={
                "crop": {
                    "values": [0.2, 0.2001, 1],
                    "set": {"train.augmentation.0.crop_scale": ["{value}", 1.0]},
                },
                "root": {"values": ["a"], "set": {"train.data.root": "data/{value}_x"}},
            }
        )
    )
    runs = list(sweep.runs())
    assert [r.run_id.split("/")[2] for r in runs] == ["crop=0.2", "crop=0.2001", "crop=1"]
    assert runs[1].config["augmentation"][0]["crop_scale"] == [0.2001, 1.0]
    assert runs[0].config["data"]["root"] == "data/a_x"
