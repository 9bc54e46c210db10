"""Training configuration: pydantic models loaded from YAML.

::

    data:                      # what to train on (phenossl.data.datasets.build_dataset)
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
    run: {seed: 0, device: auto, amp: true, cpu_amp: false, channels_last: true,
          checkpoint_every: 1, log_every: 50, num_threads: null,
          eval: {knn: false, split: test, ...}}
    smoke:                     # applied on top of the rest with smoke=True (--smoke)
      data: {limit: 512}
      optim: {epochs: 1, batch_size: 32}

Defaults of ``optim`` and of the method's hyperparameters come from the preset; the YAML
overrides them, and a loaded :class:`TrainConfig` holds the resolved values, so its YAML
(:meth:`TrainConfig.to_yaml`, saved in each run folder) is complete and loads back to an equal
config. Unknown keys anywhere are a :class:`ConfigError` naming the full dotted key
(``optim.lrr``, ``augmentation.1.hue``) and the valid ones. ``overrides`` (the CLI's
``--set a.b=value``, parsed by :func:`parse_overrides`) set dotted keys to values before
anything is resolved.

Note: YAML 1.1 (PyYAML) reads ``1e-3`` as a string; float fields accept such strings.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import to_jsonable_python

#: method hyperparameters the trainer sets itself (from the data and run.seed)
TRAINER_HPARAMS = ("dataset_size", "seed")

#: ``(dotted key, value)`` pairs, or a mapping of them: what overrides travel as
Overrides = Mapping[str, Any] | Iterable[tuple[str, Any]]


class ConfigError(ValueError):
    """An invalid configuration; ``key`` is the dotted key at fault (or "").

    ``valid`` lists the valid keys where ``key`` is unknown.
    """

    def __init__(self, key: str, message: str, valid: Iterable[str] | None = None) -> None:
        self.key, self.detail, self.valid = key, message, valid
        super().__init__(f"{key}: {message}" if key else message)


# --- value types --------------------------------------------------------------------------------


def _yaml_float(value: Any) -> Any:
    try:
        return float(value) if isinstance(value, str) else value  # YAML 1.1 reads 1e-3 as text
    except ValueError:
        return value


Float = Annotated[float, BeforeValidator(_yaml_float)]
Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegative = Annotated[Float, Field(ge=0)]
#: a free mapping (``null`` reads as empty)
Dict = Annotated[dict[str, Any], BeforeValidator(lambda v: {} if v is None else v)]


class Section(BaseModel):
    """A config section: strict types, unknown keys named with the valid ones.

    Fields with ``exclude=True`` are neither read from nor written to the YAML. A section with
    ``extra="allow"`` keeps further keys next to its fields (a method's hyperparameters) and
    checks them itself.
    """

    model_config = ConfigDict(
        extra="forbid", strict=True, validate_assignment=True, ser_json_inf_nan="constants"
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, Mapping) and cls.model_config.get("extra") == "forbid":
            valid = [f.alias or name for name, f in cls.model_fields.items() if not f.exclude]
            for key in data:
                if key not in valid:
                    raise ConfigError(str(key), "unknown key", valid)
        return data

    def to_dict(self) -> dict[str, Any]:
        """Plain (YAML-able) mapping in the YAML layout; :func:`validate` of it gives ``self``."""
        return self.model_dump(mode="json")


Model = TypeVar("Model")


def validate(schema: type[Model] | TypeAdapter, data: Any, where: str = "") -> Model:
    """``data`` validated (strictly) against a :class:`Section` class or a ``TypeAdapter``.

    Raises
    ------
    ConfigError
        The first problem, named with its dotted key under ``where``.
    """
    try:
        if isinstance(schema, TypeAdapter):
            return schema.validate_python(data, strict=True)
        return cast(Any, schema).model_validate(data)
    except ValidationError as err:
        error = err.errors()[0]
    loc = [str(part) for part in error["loc"] if part != "[key]"]
    cause = (error.get("ctx") or {}).get("error")
    if not isinstance(cause, ConfigError):
        raise ConfigError(join_key(where, *loc), _message(error)) from None
    key = join_key(where, *loc, cause.key)  # a validator's key is relative to loc
    if cause.valid is None:
        raise ConfigError(key, cause.detail) from None
    section = key.rpartition(".")[0]
    of = f"of {section!r}" if section else "at the top level"
    raise ConfigError(key, f"unknown key; valid keys {of}: {', '.join(cause.valid)}") from None


def _message(error: Mapping[str, Any]) -> str:
    """Our wording of pydantic's error types (its own message for the rest)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    gt = ctx.get("gt")
    expected = {
        "bool_type": "true or false",
        "int_type": "an integer",
        "float_type": "a number",
        "string_type": "a string",
        "literal_error": f"one of {ctx.get('expected')}",
        "model_type": "a mapping",
        "dict_type": "a mapping",
        "list_type": "a list",
        "tuple_type": "a list",
        "too_short": "a non-empty list",
        "greater_than": "a positive value" if gt == 0 else f"a value > {gt}",
        "greater_than_equal": f"at least {ctx.get('ge')}",
        "finite_number": "a finite number",
        "string_pattern_mismatch": f"a name matching {ctx.get('pattern')}",
    }.get(kind)
    if expected is None:
        return error["msg"]
    return f"expected {expected}, got {error.get('input')!r}"


def join_key(*parts: str) -> str:
    """Dotted key of the non-empty parts."""
    return ".".join(part for part in parts if part)


def differing_keys(a: Any, b: Any, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """The dotted keys whose values differ between two nested mappings, except those starting
    with a prefix in ``ignore``. Lists are compared item by item; an empty mapping or list
    counts as absent (an older run's config that lacks it describes the same run).

    Examples
    --------
    >>> differing_keys({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 2, "c": [1, 3]}, "d": {}})
    ['a.b', 'a.c.1']
    """
    ours, theirs = _flat(a), _flat(b)
    keys = ours.keys() | theirs.keys()
    return sorted(k for k in keys if ours.get(k) != theirs.get(k) and not k.startswith(ignore))


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping | list):
        items = tree.items() if isinstance(tree, Mapping) else enumerate(tree)
        return {
            k: v
            for key, value in items
            for k, v in _flat(value, join_key(prefix, str(key))).items()
        }
    return {prefix: tree}


# --- the sections -------------------------------------------------------------------------------


class DataConfig(Section):
    """The training data: ``build_dataset(dataset, root, split=split, **options)``.

    ``split`` None takes every crop of a CropSet. ``limit`` keeps the first ``limit`` samples.
    ``preload``: ``"always"`` holds the whole set as one uint8 tensor on the training device and
    indexes batches there; ``"never"`` reads every batch with ``get_batch`` in a background
    thread; ``"auto"`` preloads sets of at most 1 GiB (CIFAR, MNIST, small CropSets).
    """

    dataset: str = "cifar10"
    root: str = "data"
    split: str | None = "train"
    limit: Positive | None = None
    preload: Literal["auto", "always", "never"] = "auto"
    options: Dict = {}


def _one_of(name: str, valid: Iterable[str], what: str) -> str:
    if name not in valid:
        raise ValueError(f"unknown {what} {name!r}; expected one of {', '.join(valid)}")
    return name


def _backbone(name: str) -> str:
    from phenossl.models.backbones import available_backbones

    return _one_of(name, available_backbones(), "backbone")


Backbone = Annotated[str, AfterValidator(_backbone)]


class ModelConfig(Section):
    """The backbone: ``build_backbone(backbone, in_channels=..., cifar_stem=...)``.

    ``in_channels`` None takes the dataset's channel count; a number must match it. ``init``
    starts from trained weights instead of a random init (fine-tuning): a shipped model's name
    (``phenossl-cells``) or a phenossl checkpoint file of the same architecture.
    ``zero_init_residual`` (default: the preset's) zero-initialises the last BatchNorm of each
    ResNet block (``phenossl.models.backbones.zero_init_residual_``; no effect on others).
    """

    backbone: Backbone = "resnet18"
    cifar_stem: bool = False
    in_channels: Positive | None = None
    init: str | None = None
    zero_init_residual: bool = False


def _method(name: str) -> str:
    from phenossl.ssl.methods import METHODS

    return _one_of(name, sorted(METHODS), "method")


class MethodConfig(Section):
    """The SSL method ``name``, built from ``PRESETS[preset]`` with its hyperparameters merged on
    top.

    In YAML the hyperparameters sit next to ``name`` and ``preset`` (``method.temperature``).
    After loading, :attr:`hparams` holds the preset's values with the overrides applied.
    """

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, AfterValidator(_method)] = "simclr"
    preset: str | None = None

    @property
    def hparams(self) -> dict[str, Any]:
        """The hyperparameters of ``build_method`` (the keys next to ``name`` and ``preset``)."""
        return self.model_extra or {}

    @model_validator(mode="after")
    def _fits_the_method(self) -> MethodConfig:
        from phenossl.ssl.methods import method_hparams
        from phenossl.ssl.presets import get_preset

        try:
            preset = get_preset(self.preset or self.name)
        except ValueError as err:
            raise ConfigError("preset", str(err)) from None
        if preset.method != self.name:
            raise ConfigError(
                "preset",
                f"preset {self.preset!r} is for method {preset.method!r}, not {self.name!r}",
            )
        accepted = [k for k in method_hparams(self.name) if k not in TRAINER_HPARAMS]
        for key in self.hparams:
            if key in TRAINER_HPARAMS:
                raise ConfigError(key, "is set by the trainer (from the dataset and run.seed)")
            if key not in accepted:
                raise ConfigError(key, "unknown key", ["name", "preset", *accepted])
        return self


def _composition(name: str) -> str:
    from phenossl.augment import COMPOSITIONS

    return _one_of(name, COMPOSITIONS, "composition")


class AugmentationConfig(Section):
    """One composition ``build_augmentation(name, **params)``; its method loss has ``weight``.

    In YAML the parameters sit next to ``name`` and ``weight``. They are checked against the
    composition's parameters without building it.
    """

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, AfterValidator(_composition)] = "cifar"
    weight: Annotated[Float, Field(gt=0, allow_inf_nan=False)] = 1.0

    @property
    def params(self) -> dict[str, Any]:
        """The composition's parameters (the keys next to ``name`` and ``weight``)."""
        return self.model_extra or {}

    @model_validator(mode="after")
    def _known_params(self) -> AugmentationConfig:
        from phenossl.augment import check_param, describe

        valid = list(describe(self.name))
        for key, value in self.params.items():
            if key not in valid:
                raise ConfigError(key, "unknown key", ["name", "weight", *valid])
            try:
                check_param(key, value)
            except ValueError as err:
                raise ConfigError(key, str(err)) from None
        return self


def _compositions(value: Any) -> Any:
    value = [value] if isinstance(value, Mapping) else value
    if value == []:
        raise ValueError("expected a non-empty list of compositions ({name, weight, ...})")
    return value


class OptimConfig(Section):
    """Optimiser and schedule; every field defaults to the method preset's value.

    ``lr``, ``warmup_start_lr`` and ``min_lr`` are base rates: with ``lr_scaling="linear"``
    the optimiser uses ``rate * batch_size / 256`` (see :meth:`effective_lr`). ``lars_*``
    configure LARS (solo-learn's: trust coefficient ``eta``, rate clipping, no adaptation and
    no weight decay for biases and normalisation weights).
    """

    optimizer: Literal["sgd", "adam", "lars"] | None = None
    lr: PositiveFloat | None = None
    lr_scaling: Literal["linear", "none"] | None = None
    weight_decay: NonNegative | None = None
    momentum: NonNegative | None = None
    batch_size: Annotated[int, Field(ge=2)] | None = None  # SSL losses compare images
    epochs: Positive | None = None
    scheduler: Literal["warmup_cosine", "constant"] | None = None
    warmup_epochs: Annotated[int, Field(ge=0)] | None = None
    warmup_start_lr: NonNegative | None = None
    min_lr: NonNegative | None = None
    lars_eta: PositiveFloat = 0.02
    lars_clip_lr: bool = True
    lars_exclude_bias_n_norm: bool = True

    def effective_lr(self, rate: float | None = None) -> float:
        """``rate`` (default ``lr``) as handed to the optimiser for ``batch_size``."""
        from phenossl.ssl.presets import scaled_lr

        # the method's preset fills these in before anyone asks
        lr = self.lr if rate is None else rate
        assert lr is not None
        assert self.batch_size is not None
        assert self.lr_scaling is not None
        return scaled_lr(lr, self.batch_size, self.lr_scaling)


class KnnSettings(Section):
    """Weighted kNN on frozen features (:func:`phenossl.training.evaluate.protocols.knn_eval`)."""

    k: Positive = 20
    temperature: PositiveFloat = 0.07


class KnnMonitorConfig(KnnSettings):
    """Optional kNN accuracy each ``every`` epochs: training images (no augmentation) as the
    bank, the held-out ``split`` as queries (first ``limit`` of each when given)."""

    knn: bool = False
    split: str | None = "test"
    limit: Positive | None = None
    bank_limit: Positive | None = None
    every: Positive = 1


class RunConfig(Section):
    """Seed, device and bookkeeping of a run.

    ``amp`` and ``channels_last`` take effect on CUDA. ``cpu_amp`` extends ``amp`` to the CPU:
    bf16 autocast of the training steps on CPUs with bf16 instructions (AVX512-BF16 or AMX;
    1.6-1.9x faster, measured by ``benchmarks/bench_cpu_precision.py``), ignored on other CPUs,
    where bf16 is emulated and slower. Off by default: it changes the numbers a CPU run
    gives. ``checkpoint_every`` is in epochs
    (the last epoch is always saved); ``keep_epochs`` also keeps each of those saves as a small
    ``checkpoints/epoch<N>.pt`` (backbone and metadata, like ``final.pt``), for learning curves;
    ``log_every`` is in optimiser steps. ``num_threads`` sets torch's CPU threads for the run
    (None: unchanged).
    """

    seed: int = 0
    device: str = "auto"
    amp: bool = True
    cpu_amp: bool = False
    channels_last: bool = True
    checkpoint_every: Positive = 1
    keep_epochs: bool = False
    log_every: Positive = 50
    num_threads: Positive | None = None
    eval: KnnMonitorConfig = KnnMonitorConfig()


class TrainConfig(Section):
    """A complete, resolved training configuration (see the module docstring)."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    method: MethodConfig = MethodConfig()
    augmentation: Annotated[list[AugmentationConfig], BeforeValidator(_compositions)] = [
        AugmentationConfig()
    ]
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()
    smoke: Dict = {}

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        """Fill the preset's optimiser settings, hyperparameters and zero_init_residual in."""
        from phenossl.ssl.presets import get_preset

        data = {} if data is None else data
        method: Any = data.get("method", {}) if isinstance(data, Mapping) else None
        try:
            name = method.get("preset") or method.get("name", "simclr")
            preset = get_preset(name)
        except (AttributeError, ValueError, TypeError):
            return data  # reported by the sections
        defaults = {
            "method": {**preset.method_kwargs, **method, "preset": name},
            "model": {"zero_init_residual": preset.zero_init_residual},
            "optim": {
                k: getattr(preset, k) for k in OptimConfig.model_fields if hasattr(preset, k)
            },
        }
        data = dict(data)
        for section, values in defaults.items():
            given = data.get(section) or {}
            if isinstance(given, Mapping):
                data[section] = {**values, **given}
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, overrides: Overrides = (), smoke: bool = False
    ) -> TrainConfig:
        """Build and resolve a config from a (YAML) mapping.

        Parameters
        ----------
        data
            The YAML layout of the module docstring.
        overrides
            ``(dotted key, value)`` pairs (see :func:`apply_overrides`); they win over the
            smoke section.
        smoke
            Apply the ``smoke`` section.

        Raises
        ------
        ConfigError
            Unknown key (named with its dotted path and the valid keys), bad value, unknown
            method / preset / composition. Errors inside the ``smoke`` section are reported
            even when ``smoke`` is False.

        Examples
        --------
        >>> config = TrainConfig.from_dict({"method": {"name": "byol"}}, overrides={"optim.lr": 2})
        >>> config.optim.lr, config.optim.batch_size
        (2.0, 512)
        """
        pairs = override_pairs(overrides)
        raw = apply_overrides(data, pairs)
        section = raw["smoke"] = to_jsonable_python(as_dict(raw.pop("smoke", None), "smoke"))
        later = [(k, v) for k, v in pairs if k.split(".")[0] != "smoke"]  # win over smoke
        return with_smoke(cls, raw, section, smoke, later=later)

    def to_yaml(self) -> str:
        """The config as YAML text (sections in the documented order)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_yaml` to ``path`` atomically."""
        from phenossl._atomic import write_text

        return write_text(path, self.to_yaml(), parents=True)


# --- loading ------------------------------------------------------------------------------------


def read_yaml(path: str | Path, what: str) -> Any:
    """The YAML document at ``path``.

    Raises
    ------
    FileNotFoundError
        No file at ``path`` (named as ``what``).
    ConfigError
        Invalid YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError("", f"{path} is not valid YAML: {err}") from err


def load_config(path: str | Path, *, overrides: Overrides = (), smoke: bool = False) -> TrainConfig:
    """Load a training config from YAML, apply overrides, resolve defaults.

    Parameters
    ----------
    path
        YAML file (see the module docstring).
    overrides
        ``(dotted key, value)`` pairs or a mapping of them (``{"optim.lr": 0.1}``,
        ``{"augmentation.0.hue": 0.5}``); :func:`parse_overrides` reads the CLI's text.
    smoke
        Apply the file's ``smoke`` section.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ConfigError
        Invalid YAML or config; the message names the file and the dotted key.

    Examples
    --------
    >>> config = load_config("training/cifar10_simclr.yaml", smoke=True)  # doctest: +SKIP
    """
    data = read_yaml(path, "training config")
    try:
        if data is None or data == {}:  # defaults alone would train SimCLR on CIFAR-10
            raise ConfigError("", "the file is empty; expected a trainer config (method, data...)")
        return TrainConfig.from_dict(data, overrides=overrides, smoke=smoke)
    except ConfigError as err:
        raise ConfigError(err.key, f"{err.detail} (in {path})") from None


# --- overrides and smoke sections ---------------------------------------------------------------


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> ``("a.b", yaml.safe_load("value"))``: the CLI's ``--set``.

    Examples
    --------
    >>> parse_override("optim.lr=0.1")
    ('optim.lr', 0.1)
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or "" in key.split("."):
        raise ConfigError("", f"override {text!r}: expected KEY=VALUE with a dotted KEY")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(key, f"override value {value!r} is not valid YAML: {err}") from err


def parse_overrides(texts: Iterable[str]) -> list[tuple[str, Any]]:
    """:func:`parse_override` of each ``"a.b=value"`` text."""
    return [parse_override(text) for text in texts]


def as_dict(value: Any, where: str = "") -> dict[str, Any]:
    """``value`` checked as a mapping with string keys (``None``: empty)."""
    return validate(_DICT, value, where)


_DICT = TypeAdapter(Dict)


def override_pairs(overrides: Overrides) -> list[tuple[str, Any]]:
    """``overrides`` as a list of ``(dotted key, value)`` pairs."""
    pairs = list(overrides.items() if isinstance(overrides, Mapping) else overrides)
    if any(isinstance(pair, str) for pair in pairs):
        raise TypeError("overrides are (key, value) pairs; read 'a.b=value' with parse_overrides")
    return pairs


def apply_overrides(data: Any, overrides: Overrides) -> dict[str, Any]:
    """A copy of the mapping ``data`` with each dotted key set (missing mappings created).

    Examples
    --------
    >>> apply_overrides({"a": {"b": 1}}, {"a.c.d": [1, 2], "e": None})
    {'a': {'b': 1, 'c': {'d': [1, 2]}}, 'e': None}
    """
    return _set_all(data, [(key.split("."), value) for key, value in override_pairs(overrides)])


def merge(base: Any, update: Any, *, replace: Iterable[str] = (), where: str = "") -> Any:
    """``update`` deep-merged onto the mapping ``base`` (the smoke sections).

    Mappings merge key by key, except the keys in ``replace``; a mapping of indices onto a list
    merges element by element (``augmentation: {1: {size: 48}}``); anything else is replaced.

    Examples
    --------
    >>> merge({"a": {"b": 1, "c": 2}, "l": [{"x": 1}, {"x": 2}]}, {"a": {"c": 3}, "l": {1: {"x": 0}}})
    {'a': {'b': 1, 'c': 3}, 'l': [{'x': 1}, {'x': 0}]}
    """
    return _set_all(base, _leaves(update, tuple(replace)), where, merging=True)


def _leaves(node: Any, replace: tuple[str, ...] = (), path: tuple[str, ...] = ()) -> list:
    """``(path, value)`` of each value the mapping ``node`` sets, in a walk of its mappings that
    stops at empty ones and at the keys in ``replace``."""
    if not isinstance(node, Mapping) or (path and (not node or path[-1] in replace)):
        return [(path, node)]
    return [leaf for k, v in node.items() for leaf in _leaves(v, replace, (*path, str(k)))]


def _set_all(
    data: Any, leaves: Iterable[tuple[Sequence[str], Any]], where: str = "", merging: bool = False
) -> Any:
    """A copy of the mapping ``data`` with the value of each leaf set at its path; a value on
    the way that is neither a mapping nor a list is replaced by a mapping. ``merging`` keeps a
    mapping or list where a leaf sets ``{}``."""
    out = copy.deepcopy(as_dict(data))
    for path, value in leaves:
        node: Any = out
        for depth, part in enumerate(path):
            key: Any = part
            if isinstance(node, list):
                key = _list_index(part, len(node), join_key(where, *path[: depth + 1]))
            current = node[key] if isinstance(node, list) else node.get(key)
            if depth == len(path) - 1:
                if not (merging and value == {} and isinstance(current, dict | list)):
                    node[key] = copy.deepcopy(value)
            elif isinstance(current, dict | list):
                node = current
            else:
                node[key] = node = {}
    return out


def _list_index(part: Any, length: int, where: str) -> int:
    index = int(part) if str(part).isdigit() else -1
    if not 0 <= index < length:
        raise ConfigError(where, f"expected a list index in [0, {length})")
    return index


def with_smoke(
    schema: type[Model],
    raw: dict[str, Any],
    section: dict[str, Any],
    smoke: bool,
    *,
    replace: Iterable[str] = (),
    later: Overrides = (),
) -> Model:
    """``raw``, or with ``smoke`` ``raw`` with the smoke ``section`` merged on top (and the
    ``later`` overrides applied after it), validated against ``schema``.

    Both scales are validated, so that a typo in the smoke section shows in a normal run too;
    an error the section causes is keyed ``smoke.<key>``.
    """
    normal = None if smoke else validate(schema, raw)
    try:
        merged = merge(raw, section, replace=tuple(replace), where="smoke")
        smoked = validate(schema, apply_overrides(merged, later))
    except ConfigError as err:
        key = join_key("smoke", err.key) if has_key(section, err.key) else err.key
        raise ConfigError(key, f"{err.detail} (with the smoke section applied)") from None
    return smoked if normal is None else normal


def has_key(node: Any, dotted: str) -> bool:
    """Whether the mapping ``node`` sets the dotted key or a key above or below it.

    Examples
    --------
    >>> has_key({"set": {"train.optim.lr": 1}}, "set.train.optim.lr"), has_key({"a": 1}, "b")
    (True, False)
    """
    keys = [".".join(path) + "." for path, _ in _leaves(node)]
    return bool(dotted) and any(k.startswith(f"{dotted}.") or dotted.startswith(k) for k in keys)
