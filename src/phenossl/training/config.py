"""Training configuration: a tree of dataclasses loaded from YAML.

::

    data:                      # what to train on (phenossl.data.benchmarks.build_dataset)
      dataset: cifar10         # cifar10 | cifar100 | mnist | imagenet100 | cropset
      root: data/cifar10       # relative paths are relative to the working directory
      split: train
      limit: null              # first N samples only (smoke runs)
      preload: auto            # auto | always | never: hold the whole set on the device
      options: {}              # further build_dataset options (e.g. label_column for cropset)
    model: {backbone: resnet18, cifar_stem: true, in_channels: null,   # null: the data's
            init: null}        # or phenossl-cells / a checkpoint: fine-tune from its weights
                               # (zero_init_residual: default from the preset)
    method:                    # name + hyperparameter overrides, merged onto the preset
      name: mocov2plus
      preset: mocov2plus       # a key of phenossl.ssl.presets.PRESETS; default: name
      queue_size: 1024         # any build_method hyperparameter
    augmentation:              # one or more compositions; loss = sum of weight * method loss
      - {name: cell_fig6_left, weight: 0.4}
      - {name: cell_fig6_right, weight: 1.0, degrees: 90}   # composition parameters, flat
    optim:                     # defaults from the preset
      optimizer: adam          # sgd | adam | lars (lars_eta, lars_clip_lr, ...)
      lr: 1.0e-3               # base rate, per 256 images when lr_scaling is linear
      ...
    run: {seed: 0, device: auto, amp: true, channels_last: true, checkpoint_every: 1,
          log_every: 50, num_threads: null, eval: {knn: false, split: test, ...}}
    smoke:                     # applied on top of the rest with smoke=True (--smoke)
      data: {limit: 512}
      optim: {epochs: 1, batch_size: 32}

Defaults of ``optim`` and of the method's hyperparameters come from the preset; the YAML
overrides them, and a loaded :class:`TrainConfig` holds the resolved values, so its YAML
(:meth:`TrainConfig.to_yaml`, saved in each run folder) is complete and loads back to an equal
config. Unknown keys anywhere are a :class:`ConfigError` naming the full dotted key
(``optim.lrr``, ``augmentation.1.hue``) and the valid ones. ``overrides`` (the CLI's
``--set a.b=value``) set a dotted key to a YAML-parsed value before anything is resolved.

Note: YAML 1.1 (PyYAML) reads ``1e-3`` as a string; float fields accept such strings.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "AugmentationConfig",
    "ConfigError",
    "DataConfig",
    "KnnMonitorConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "parse_override",
]

#: method hyperparameters the trainer sets itself (from the data and run.seed)
TRAINER_HPARAMS = ("dataset_size", "seed")


class ConfigError(ValueError):
    """An invalid training configuration; ``key`` is the dotted key at fault (or "")."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.detail = message
        super().__init__(f"{key}: {message}" if key else message)


# --- the sections -------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """The training data: ``build_dataset(dataset, root, split=split, **options)``.

    ``split`` None takes every crop of a CropSet. ``limit`` keeps the first ``limit`` samples. ``preload``: ``"always"`` holds the whole set
    as one uint8 tensor on the training device and indexes batches there; ``"never"`` reads
    every batch with ``get_batch`` in a background thread; ``"auto"`` preloads sets of at most
    1 GiB (CIFAR, MNIST, small CropSets).
    """

    dataset: str = "cifar10"
    root: str = "data"
    split: str | None = "train"
    limit: int | None = None
    preload: Literal["auto", "always", "never"] = "auto"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """The backbone: ``build_backbone(backbone, in_channels=..., cifar_stem=...)``.

    ``in_channels`` None takes the dataset's channel count; a number must match it. ``init``
    starts from trained weights instead of a random init (fine-tuning): a shipped model's name
    (``phenossl-cells``) or a phenossl checkpoint file of the same architecture.
    ``zero_init_residual`` (default: the preset's) zero-initialises the last BatchNorm of each
    ResNet block (``phenossl.models.backbones.zero_init_residual_``; no effect on others).
    """

    backbone: str = "resnet18"
    cifar_stem: bool = False
    in_channels: int | None = None
    init: str | None = None
    zero_init_residual: bool = False


@dataclass
class MethodConfig:
    """The SSL method ``name``, built from ``PRESETS[preset]`` with ``hparams`` merged on top.

    In YAML the hyperparameters sit next to ``name`` and ``preset`` (``method.temperature``).
    After loading, ``hparams`` holds the preset's values with the overrides applied.
    """

    name: str = "simclr"
    preset: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)


@dataclass
class AugmentationConfig:
    """One composition ``build_augmentation(name, **params)``; its method loss has ``weight``.

    In YAML the parameters sit next to ``name`` and ``weight``.
    """

    name: str = "cifar"
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Optimiser and schedule; every field defaults to the method preset's value.

    ``lr``, ``warmup_start_lr`` and ``min_lr`` are base rates: with ``lr_scaling="linear"``
    the optimiser uses ``rate * batch_size / 256`` (see :meth:`effective_lr`). ``lars_*``
    configure LARS (solo-learn's: trust coefficient ``eta``, rate clipping, no adaptation and
    no weight decay for biases and normalisation weights).
    """

    optimizer: Literal["sgd", "adam", "lars"] | None = None
    lr: float | None = None
    lr_scaling: Literal["linear", "none"] | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    scheduler: Literal["warmup_cosine", "constant"] | None = None
    warmup_epochs: int | None = None
    warmup_start_lr: float | None = None
    min_lr: float | None = None
    lars_eta: float = 0.02
    lars_clip_lr: bool = True
    lars_exclude_bias_n_norm: bool = True

    def effective_lr(self, rate: float | None = None) -> float:
        """``rate`` (default ``lr``) as handed to the optimiser for ``batch_size``."""
        base = self.lr if rate is None else rate
        assert base is not None  # lr is the preset's where not set
        if self.lr_scaling == "linear":
            assert self.batch_size is not None
            return base * self.batch_size / 256
        return base


@dataclass
class KnnMonitorConfig:
    """Optional kNN accuracy each ``every`` epochs: training images (no augmentation) as the
    bank, the held-out ``split`` as queries (first ``limit`` of each when given)."""

    knn: bool = False
    split: str | None = "test"
    limit: int | None = None
    bank_limit: int | None = None
    k: int = 20
    temperature: float = 0.07
    every: int = 1


@dataclass
class RunConfig:
    """Seed, device and bookkeeping of a run.

    ``amp`` and ``channels_last`` take effect on CUDA only. ``checkpoint_every`` is in epochs
    (the last epoch is always saved); ``keep_epochs`` also keeps each of those saves as a small
    ``checkpoints/epoch<N>.pt`` (backbone and metadata, like ``final.pt``), for learning curves;
    ``log_every`` is in optimiser steps. ``num_threads`` sets torch's CPU threads for the run
    (None: unchanged).
    """

    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    checkpoint_every: int = 1
    keep_epochs: bool = False
    log_every: int = 50
    num_threads: int | None = None
    eval: KnnMonitorConfig = field(default_factory=KnnMonitorConfig)


@dataclass
class TrainConfig:
    """A complete, resolved training configuration (see the module docstring)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    augmentation: list[AugmentationConfig] = field(default_factory=lambda: [AugmentationConfig()])
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    smoke: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, overrides: Iterable[str] = (), smoke: bool = False
    ) -> TrainConfig:
        """Build and resolve a config from a (YAML) mapping.

        Parameters
        ----------
        data
            The YAML layout of the module docstring.
        overrides
            ``"a.b=value"`` strings (see :func:`apply_overrides`); they win over the smoke
            section.
        smoke
            Apply the ``smoke`` section.

        Raises
        ------
        ConfigError
            Unknown key (named with its dotted path and the valid keys), bad value, unknown
            method / preset / composition. Errors inside the ``smoke`` section are reported
            even when ``smoke`` is False.
        """
        overrides = list(overrides)
        raw = apply_overrides(_mapping(data, ""), overrides)
        smoke_section = _mapping(raw.pop("smoke", {}), "smoke")
        # re-applied so that they win over the smoke section
        others = [o for o in overrides if not parse_override(o)[0].startswith("smoke.")]
        with_smoke = apply_overrides(_merge(raw, smoke_section, "smoke"), others)
        if smoke:
            config = _checked_with_smoke(with_smoke, smoke_section)
        else:
            config = _resolve(raw)
            _checked_with_smoke(with_smoke, smoke_section)  # catch typos in the smoke section
        config.smoke = _plain(smoke_section)
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain (YAML-able) mapping in the YAML layout; ``from_dict`` of it gives ``self``."""
        out = dataclasses.asdict(self)
        method = out["method"]
        out["method"] = {"name": method["name"], "preset": method["preset"], **method["hparams"]}
        out["augmentation"] = [
            {"name": a["name"], "weight": a["weight"], **a["params"]} for a in out["augmentation"]
        ]
        return _plain(out)

    def to_yaml(self) -> str:
        """The config as YAML text (sections in the documented order)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_yaml` to ``path`` atomically."""
        from phenossl._atomic import write_text

        return write_text(path, self.to_yaml(), parents=True)


# --- loading ------------------------------------------------------------------------------------


def load_config(
    path: str | Path, *, overrides: Iterable[str] = (), smoke: bool = False
) -> TrainConfig:
    """Load a training config from YAML, apply ``--set`` style overrides, resolve defaults.

    Parameters
    ----------
    path
        YAML file (see the module docstring).
    overrides
        ``"a.b=value"`` strings; ``value`` is parsed as YAML (``--set optim.lr=0.1``,
        ``--set augmentation.0.hue=0.5``, ``--set data.limit=null``).
    smoke
        Apply the file's ``smoke`` section.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ConfigError
        Invalid YAML or config; the message names the file and the dotted key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError("", f"{path} is not valid YAML: {err}") from err
    try:
        if data is None or data == {}:  # defaults alone would train SimCLR on CIFAR-10
            raise ConfigError("", "the file is empty; expected a trainer config (method, data...)")
        return TrainConfig.from_dict(data, overrides=overrides, smoke=smoke)
    except ConfigError as err:
        raise ConfigError(err.key, f"{err.detail} (in {path})") from None


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> ``("a.b", yaml.safe_load("value"))``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError("", f"override {text!r}: expected KEY=VALUE with a dotted KEY")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(key, f"override value {value!r} is not valid YAML: {err}") from err


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``"a.b=value"`` override set (missing mappings created)."""
    out = copy.deepcopy(_mapping(data, ""))
    for text in overrides:
        key, value = parse_override(text)
        node: Any = out
        parts = key.split(".")
        for depth, part in enumerate(parts):
            where = ".".join(parts[: depth + 1])
            last = depth == len(parts) - 1
            if isinstance(node, list):
                index = _list_index(part, len(node), where)
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                parent = ".".join(parts[:depth])
                raise ConfigError(where, f"cannot set it: {parent} is not a mapping or a list")
    return out


def _list_index(part: str, length: int, where: str) -> int:
    try:
        index = int(part)
    except ValueError:
        index = -1
    if not 0 <= index < length:
        raise ConfigError(where, f"expected a list index in [0, {length})")
    return index


def _merge(base: Any, update: Any, where: str) -> Any:
    """Deep merge: mappings recursively, a mapping of integer keys onto a list by element."""
    if isinstance(update, Mapping) and isinstance(base, Mapping):
        out: Any = dict(base)
        for key, value in update.items():
            out[key] = _merge(base[key], value, f"{where}.{key}") if key in base else value
        return copy.deepcopy(out)
    if isinstance(update, Mapping) and isinstance(base, list):
        out = copy.deepcopy(base)
        for key, value in update.items():
            index = _list_index(str(key), len(base), f"{where}.{key}")
            out[index] = _merge(base[index], value, f"{where}.{key}")
        return out
    return copy.deepcopy(update)


def _checked_with_smoke(data: dict[str, Any], smoke_section: Mapping[str, Any]) -> TrainConfig:
    try:
        return _resolve(data)
    except ConfigError as err:
        key = f"smoke.{err.key}" if _has_key(smoke_section, err.key) else err.key
        raise ConfigError(key, f"{err.detail} (with the smoke section applied)") from None


def _has_key(mapping: Any, dotted: str) -> bool:
    node = mapping
    for part in dotted.split(".") if dotted else []:
        if isinstance(node, Mapping) and (part in node or _int_key(part) in node):
            node = node[part] if part in node else node[_int_key(part)]
        else:
            return False
    return bool(dotted)


def _int_key(part: str) -> int | str:
    return int(part) if part.isdigit() else part


# --- resolution ---------------------------------------------------------------------------------


def _resolve(data: dict[str, Any]) -> TrainConfig:
    _check_keys(data, [f.name for f in dataclasses.fields(TrainConfig) if f.name != "smoke"], "")
    method = _method(_mapping(data.get("method", {}), "method"))
    preset = _preset(method)
    config = TrainConfig(
        data=_section(DataConfig, data.get("data", {}), "data"),
        model=_section(
            ModelConfig,
            {
                "zero_init_residual": preset.zero_init_residual,
                **_mapping(data.get("model", {}), "model"),
            },
            "model",
        ),
        method=method,
        augmentation=_augmentations(data.get("augmentation", [{"name": "cifar"}])),
        optim=_optim(data.get("optim", {}), preset),
        run=_run(data.get("run", {})),
    )
    _check_values(config)
    return config


def _preset(method: MethodConfig):
    from phenossl.ssl.presets import get_preset

    try:
        preset = get_preset(method.preset or method.name)  # _method sets preset (default: name)
    except ValueError as err:
        raise ConfigError("method.preset", str(err)) from None
    if preset.method != method.name:
        raise ConfigError(
            "method.preset",
            f"preset {method.preset!r} is for method {preset.method!r}, not {method.name!r}",
        )
    method.hparams = {**preset.method_kwargs, **method.hparams}
    return preset


def _method(raw: dict[str, Any]) -> MethodConfig:
    from phenossl.ssl.methods import METHODS, method_hparams

    name = _coerce(raw.get("name", MethodConfig.name), str, "method.name")
    if name not in METHODS:
        raise ConfigError(
            "method.name", f"unknown method {name!r}; expected one of {sorted(METHODS)}"
        )
    preset = _coerce(raw.get("preset"), str | None, "method.preset") or name
    accepted = [k for k in method_hparams(name) if k not in TRAINER_HPARAMS]
    hparams = {k: v for k, v in raw.items() if k not in ("name", "preset")}
    for key in hparams:
        if key in TRAINER_HPARAMS:
            raise ConfigError(
                f"method.{key}", "is set by the trainer (from the dataset and run.seed)"
            )
    _check_keys(hparams, accepted, "method", extra=("name", "preset"))
    return MethodConfig(name=name, preset=preset, hparams=hparams)


def _augmentations(raw: Any) -> list[AugmentationConfig]:
    from phenossl.augment import COMPOSITIONS, build_augmentation, describe

    items = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(items, list) or not items:
        raise ConfigError(
            "augmentation", "expected a non-empty list of compositions ({name, weight, ...})"
        )
    out = []
    for i, item in enumerate(items):
        where = f"augmentation.{i}"
        item = _mapping(item, where)
        name = _coerce(item.get("name"), str, f"{where}.name")
        if name not in COMPOSITIONS:
            raise ConfigError(
                f"{where}.name",
                f"unknown composition {name!r}; expected one of {list(COMPOSITIONS)}",
            )
        weight = _coerce(item.get("weight", 1.0), float, f"{where}.weight")
        if not math.isfinite(weight) or weight <= 0:
            raise ConfigError(f"{where}.weight", f"expected a positive number, got {weight}")
        params = {k: v for k, v in item.items() if k not in ("name", "weight")}
        _check_keys(params, list(describe(name)), where, extra=("name", "weight"))
        try:
            build_augmentation(name, **params)
        except ValueError as err:
            raise ConfigError(_bad_param(name, params, where), str(err)) from None
        out.append(AugmentationConfig(name=name, weight=weight, params=params))
    return out


def _bad_param(name: str, params: Mapping[str, Any], where: str) -> str:
    """The dotted key of the first parameter ``build_augmentation`` rejects on its own."""
    from phenossl.augment import build_augmentation

    for key, value in params.items():
        try:
            build_augmentation(name, **{key: value})
        except ValueError:
            return f"{where}.{key}"
    return where


def _optim(raw: Any, preset) -> OptimConfig:
    raw = _mapping(raw, "optim")
    from_preset = {
        f.name: getattr(preset, f.name)
        for f in dataclasses.fields(OptimConfig)
        if hasattr(preset, f.name)
    }
    return _section(OptimConfig, {**from_preset, **raw}, "optim")


def _run(raw: Any) -> RunConfig:
    raw = _mapping(raw, "run")
    monitor = _section(KnnMonitorConfig, raw.get("eval", {}), "run.eval")
    run = _section(RunConfig, {k: v for k, v in raw.items() if k != "eval"}, "run")
    run.eval = monitor
    return run


def _check_values(config: TrainConfig) -> None:
    from phenossl.models.backbones import available_backbones

    positive = {
        "optim.batch_size": config.optim.batch_size,
        "optim.epochs": config.optim.epochs,
        "run.checkpoint_every": config.run.checkpoint_every,
        "run.log_every": config.run.log_every,
        "run.eval.k": config.run.eval.k,
        "run.eval.every": config.run.eval.every,
        "data.limit": config.data.limit,
        "run.eval.limit": config.run.eval.limit,
        "run.eval.bank_limit": config.run.eval.bank_limit,
        "run.num_threads": config.run.num_threads,
        "model.in_channels": config.model.in_channels,
        "optim.lr": config.optim.lr,
        "run.eval.temperature": config.run.eval.temperature,
        "optim.lars_eta": config.optim.lars_eta,
    }
    for key, value in positive.items():
        if value is not None and not value > 0:
            raise ConfigError(key, f"expected a positive value, got {value}")
    for key in ("weight_decay", "momentum", "warmup_epochs", "warmup_start_lr", "min_lr"):
        value = getattr(config.optim, key)
        if value is not None and value < 0:
            raise ConfigError(f"optim.{key}", f"expected a value >= 0, got {value}")
    if config.optim.batch_size is not None and config.optim.batch_size < 2:
        raise ConfigError("optim.batch_size", "SSL losses need at least 2 images per batch")
    if config.model.backbone not in available_backbones():
        raise ConfigError(
            "model.backbone",
            f"unknown backbone {config.model.backbone!r}; expected one of "
            f"{', '.join(available_backbones())}",
        )


# --- generic helpers ----------------------------------------------------------------------------


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"expected a mapping, got {type(value).__name__} {value!r}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(where, f"keys must be strings, got {key!r}")
    return dict(value)


def _check_keys(
    raw: Mapping[str, Any], valid: list[str], where: str, extra: tuple[str, ...] = ()
) -> None:
    for key in raw:
        if key not in valid:
            dotted = f"{where}.{key}" if where else key
            allowed = ", ".join([*extra, *valid]) or "(none)"
            section = f"of {where!r}" if where else "at the top level"
            raise ConfigError(dotted, f"unknown key; valid keys {section}: {allowed}")


def _section(cls: type, raw: Any, where: str) -> Any:
    raw = _mapping(raw, where)
    names = [f.name for f in dataclasses.fields(cls)]
    _check_keys(raw, names, where)
    hints = typing.get_type_hints(cls)
    values = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in raw.items()}
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked (and, for floats written as strings, converted) against ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(err.detail)
        raise ConfigError(key, " or ".join(errors) + (" or null" if type(None) in options else ""))
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(key, f"expected one of {list(choices)}, got {value!r}")
        return value
    if origin is dict or hint is dict:
        return _mapping(value, key)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"no coercion for {hint!r} ({key})")  # a programming error


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
