"""Training configs: YAML loading, preset defaults, unknown keys, overrides, smoke, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from phenossl.ssl.methods import METHODS
from phenossl.ssl.presets import PRESETS
from phenossl.training.sweep.config import is_sweep_config
from phenossl.training.train.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    has_key,
    load_config,
    merge,
    parse_override,
    parse_overrides,
)

TRAINING = Path(__file__).resolve().parents[1] / "training"
# single-run configs; the sweep configs (an `experiment:` key) are tested in test_experiment_configs
CONFIGS = sorted(p for p in TRAINING.glob("*.yaml") if not is_sweep_config(p))

CELLS = {
    "data": {"dataset": "cropset", "root": "crops"},
    "model": {"backbone": "vgg13_bn"},
    "method": {"name": "mocov2plus", "preset": "mocov2plus_cells", "queue_size": 512},
    "augmentation": [
        {"name": "cell_fig6_left", "weight": 0.4},
        {"name": "cell_fig6_right", "weight": 1.0, "degrees": 90},
    ],
    "optim": {"lr": "2e-3", "epochs": 3},
    "smoke": {
        "data": {"limit": 32},
        "optim": {"epochs": 1},
        "augmentation": {1: {"size": 48}},
    },
}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_config_in_training_loads_with_and_without_smoke():
    assert len(CONFIGS) >= 17
    names = {path.stem for path in CONFIGS}
    assert {f"cifar10_{m}" for m in METHODS} <= names
    for path in CONFIGS:
        config = load_config(path)
        smoke = load_config(path, smoke=True)
        assert config.smoke, f"{path.name} has no smoke section"
        assert smoke.optim.epochs <= 2 < config.optim.epochs, path.name
        assert smoke.data.limit is not None, path.name
        assert config.data.limit is None, path.name


def test_paper_settings_of_the_cell_and_mnist_configs():
    cells = load_config(TRAINING / "bbbc021_mocov2plus_vgg13.yaml")
    assert (cells.model.backbone, cells.method.name) == ("vgg13_bn", "mocov2plus")
    assert (cells.optim.optimizer, cells.optim.lr, cells.optim.weight_decay) == ("adam", 1e-3, 1e-4)
    assert (cells.optim.batch_size, cells.optim.epochs) == (128, 400)
    assert cells.method.hparams["queue_size"] == 1024
    assert cells.method.hparams["temperature"] == 0.07
    assert cells.method.hparams["proj_output_dim"] == 128
    assert [a.name for a in cells.augmentation] == ["cell_affine_crop"]
    mix = load_config(TRAINING / "bbbc021_mocov2plus_vgg13_lossmix.yaml")
    assert [(a.name, a.weight) for a in mix.augmentation] == [
        ("cell_fig6_left", 0.4),
        ("cell_fig6_right", 1.0),
    ]
    digit = load_config(TRAINING / "mnist_mocov2plus_vgg11_digit.yaml")
    assert (digit.model.backbone, digit.optim.batch_size, digit.optim.epochs) == (
        "vgg11_bn",
        32,
        250,
    )
    assert digit.augmentation[0].name == "mnist_digit"
    hand = load_config(TRAINING / "mnist_mocov2plus_vgg11_handwriting.yaml")
    assert hand.augmentation[0].name == "mnist_handwriting"
    for method in METHODS:
        cifar = load_config(TRAINING / f"cifar10_{method}.yaml")
        assert (cifar.model.backbone, cifar.model.cifar_stem) == ("resnet18", True)
        assert cifar.optim.epochs == 1000
        assert cifar.augmentation[0].name == "cifar"
        assert cifar.method.hparams == dict(PRESETS[method].method_kwargs)
        assert cifar.optim.lr == PRESETS[method].lr


def test_defaults_come_from_the_preset_and_yaml_overrides_them(tmp_path):
    config = load_config(_write(tmp_path, CELLS))
    preset = PRESETS["mocov2plus_cells"]
    assert config.optim.optimizer == "adam"
    assert config.optim.batch_size == preset.batch_size
    assert config.optim.lr == 2e-3  # YAML 1.1 reads 2e-3 as a string: still a float here
    assert config.optim.epochs == 3
    assert config.method.hparams["queue_size"] == 512
    assert config.method.hparams["temperature"] == preset.method_kwargs["temperature"]
    assert config.augmentation[1].params == {"degrees": 90}
    assert config.augmentation[0].weight == 0.4


def test_effective_lr_scales_linearly_per_256_images():
    config = TrainConfig.from_dict({"method": {"name": "simclr"}, "optim": {"batch_size": 128}})
    assert config.optim.lr_scaling == "linear"
    assert config.optim.effective_lr() == pytest.approx(0.4 * 128 / 256)
    adam = TrainConfig.from_dict({"method": {"name": "mocov2plus", "preset": "mocov2plus_mnist"}})
    assert adam.optim.effective_lr() == 1e-3


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"optim": {"lrr": 0.1}}, "optim.lrr"),
        ({"dataa": {}}, "dataa"),
        ({"run": {"eval": {"knnn": True}}}, "run.eval.knnn"),
        ({"method": {"name": "simclr", "queue_size": 10}}, "method.queue_size"),
        (
            {"augmentation": [{"name": "cifar"}, {"name": "cifar", "hue_pp": 0.1}]},
            "augmentation.1.hue_pp",
        ),
        ({"smoke": {"optim": {"epochz": 1}}}, "smoke.optim.epochz"),
        ({"smoke": {"model": {"backbone": "vgg99"}}}, "smoke.model.backbone"),
    ],
)
def test_unknown_keys_name_the_dotted_path_and_the_valid_ones(data, key):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}:")


def test_unknown_key_message_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"optim.lrr: unknown key; valid keys of 'optim': .*lr,"):
        TrainConfig.from_dict({"optim": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"valid keys of 'method': name, preset, .*temperature"):
        TrainConfig.from_dict({"method": {"name": "simclr", "tau": 0.1}})


@pytest.mark.parametrize(
    ("data", "key", "match"),
    [
        ({"optim": {"lr": "fast"}}, "optim.lr", "expected a number"),
        ({"optim": {"batch_size": 1}}, "optim.batch_size", "at least 2"),
        ({"optim": {"optimizer": "rmsprop"}}, "optim.optimizer", "expected one of"),
        ({"run": {"amp": "yes"}}, "run.amp", "true or false"),
        ({"method": {"name": "moco"}}, "method.name", "unknown method"),
        ({"method": {"name": "byol", "preset": "simclr"}}, "method.preset", "for method 'simclr'"),
        (
            {"method": {"name": "deepclusterv2", "dataset_size": 9}},
            "method.dataset_size",
            "trainer",
        ),
        ({"augmentation": [{"name": "cifar", "hue": 0.9}]}, "augmentation.0.hue", "hue"),
        ({"augmentation": [{"name": "cifar", "weight": 0}]}, "augmentation.0.weight", "positive"),
        ({"augmentation": [{"name": "blur"}]}, "augmentation.0.name", "unknown composition"),
        ({"augmentation": []}, "augmentation", "non-empty"),
        ({"model": {"backbone": "resnet9"}}, "model.backbone", "unknown backbone"),
        ({"data": {"limit": 0}}, "data.limit", "positive"),
    ],
)
def test_bad_values_name_the_key(data, key, match):
    with pytest.raises(ConfigError, match=match) as info:
        TrainConfig.from_dict(data)
    assert info.value.key == key


def test_overrides_set_dotted_keys_with_yaml_values(tmp_path):
    path = _write(tmp_path, CELLS)
    config = load_config(
        path,
        overrides=parse_overrides(
            [
                "optim.lr=0.5",
                "augmentation.1.weight=2",
                "method.temperature=0.2",
                "run.eval.knn=true",
                "data.options={label_column: compound}",
            ]
        ),
    )
    assert config.optim.lr == 0.5
    assert config.augmentation[1].weight == 2.0
    assert config.method.hparams["temperature"] == 0.2
    assert config.run.eval.knn is True
    assert config.data.options == {"label_column": "compound"}
    with pytest.raises(ConfigError, match=r"optim\.lrr: unknown key"):
        load_config(path, overrides=[parse_override("optim.lrr=0.5")])
    with pytest.raises(ConfigError, match=r"augmentation.5: expected a list index in \[0, 2\)"):
        load_config(path, overrides=[parse_override("augmentation.5.weight=1")])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("optim.lr")
    assert parse_override("data.limit=null") == ("data.limit", None)
    assert apply_overrides({"a": {"b": 1}}, [parse_override("a.c.d=[1, 2]")]) == {
        "a": {"b": 1, "c": {"d": [1, 2]}}
    }


def test_smoke_section_applies_only_with_smoke_and_overrides_win(tmp_path):
    path = _write(tmp_path, CELLS)
    normal = load_config(path)
    smoke = load_config(path, smoke=True)
    assert (normal.optim.epochs, normal.data.limit) == (3, None)
    assert (smoke.optim.epochs, smoke.data.limit) == (1, 32)
    assert smoke.augmentation[1].params == {"degrees": 90, "size": 48}  # merged element-wise
    assert smoke.augmentation[0].weight == 0.4
    both = load_config(path, smoke=True, overrides={"optim.epochs": 2, "smoke.data.limit": 8})
    assert (both.optim.epochs, both.data.limit) == (2, 8)


def test_config_round_trips_through_yaml(tmp_path):
    config = load_config(_write(tmp_path, CELLS), overrides={"run.seed": 7})
    saved = config.save(tmp_path / "run" / "config.yaml")
    again = load_config(saved)
    assert again == config
    assert TrainConfig.from_dict(yaml.safe_load(config.to_yaml()), smoke=True) == load_config(
        _write(tmp_path, CELLS), overrides={"run.seed": 7}, smoke=True
    )
    text = saved.read_text()
    assert text.index("data:") < text.index("method:") < text.index("optim:")


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.yaml"):
        load_config(tmp_path / "nothing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML"):
        load_config(bad)
    bad.write_text("optim: {lrr: 1}\n")
    with pytest.raises(ConfigError, match=r"optim.lrr: .*\(in .*bad.yaml\)"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)


def test_loading_checks_composition_parameters_without_building_them(monkeypatch):
    from phenossl.augment import views

    def no_build(*args, **kwargs):
        raise AssertionError("a config load built an augmentation")

    monkeypatch.setattr(views.Augmentation, "__init__", no_build)
    config = TrainConfig.from_dict({"augmentation": [{"name": "cifar", "hue": 0.3, "size": 16}]})
    assert config.augmentation[0].params == {"hue": 0.3, "size": 16}
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"augmentation": [{"name": "cifar", "crop_scale": [0.9, 0.1]}]})
    assert info.value.key == "augmentation.0.crop_scale"


def test_overrides_are_key_value_pairs_or_a_mapping():
    data = {"method": {"name": "simclr"}, "augmentation": [{"name": "cifar"}]}
    pairs = [("optim.lr", 0.5), ("augmentation.0.hue", 0.2)]
    assert TrainConfig.from_dict(data, overrides=pairs) == TrainConfig.from_dict(
        data, overrides=dict(pairs)
    )
    assert parse_overrides(["optim.lr=0.5", "augmentation.0.hue=0.2"]) == pairs
    with pytest.raises(ConfigError, match=r"optim\.lr: expected a number, got 'fast'"):
        TrainConfig.from_dict(data, overrides={"optim.lr": "fast"})


def test_one_merge_and_has_key_serve_both_smoke_sections():
    base = {"methods": {"a": {}, "b": {}}, "augmentation": [{"x": 1}, {"x": 2}], "o": {"p": 1}}
    update = {"methods": {"a": {}}, "augmentation": {1: {"x": 3}}, "o": {"q": 2}}
    assert merge(base, update, replace=["methods"]) == {
        "methods": {"a": {}},
        "augmentation": [{"x": 1}, {"x": 3}],
        "o": {"p": 1, "q": 2},
    }
    assert base["augmentation"][1] == {"x": 2}  # inputs untouched
    with pytest.raises(ConfigError, match=r"smoke\.augmentation\.5: expected a list index"):
        merge(base, {"augmentation": {5: {}}}, where="smoke")
    assert has_key({"set": {"train.optim.lr": 1}}, "set.train.optim.lr")
    assert has_key({"augmentation": {1: {"size": 48}}}, "augmentation.1.size")
    assert has_key({"seeds": [6]}, "seeds.0")  # set by the section as a whole
    assert not has_key({"augmentation": {1: {"size": 48}}}, "augmentation.1.degrees")


def test_overrides_replace_and_smoke_sections_merge():
    base = {"run": {"seed": 1}, "data": {"options": {"a": 1}}, "optim": {"lr": 0.1}}
    # an override sets its value as it is, and replaces a value in its way by a mapping
    assert apply_overrides(base, {"data.options": {}, "optim.lr.x": 1}) == {
        "run": {"seed": 1},
        "data": {"options": {}},
        "optim": {"lr": {"x": 1}},
    }
    # a smoke section's empty mapping keeps what is there and adds what is not
    assert merge(base, {"run": {}, "evaluate": {"knn": {}}}) == {**base, "evaluate": {"knn": {}}}
    with pytest.raises(ConfigError, match=r"optim\.lr: expected a number, got \{'x': 1\}"):
        TrainConfig.from_dict({}, overrides={"optim.lr.x": 1})
