"""Sweep configs: grids of methods x parameter values x seeds over the trainer's configs.

A sweep config is a YAML file in ``training/`` with a top-level ``experiment`` key::

    experiment: table2_hue_p           # the experiment's name: first part of every run id
    description: Table 2 ...           # free text
    kind: train                        # train: SSL training + evaluation; embed: pretrained
                                       # backbones on a CropSet, no training
    train: cifar10_{method}.yaml       # each run's trainer config (TrainConfig YAML), relative
                                       # to this file; {method} is the method's name
    methods: [simclr, byol]            # or a mapping name -> settings (see below)
    grid:                              # the swept axes, in run-id order
      hue_p:
        values: {linspace: [0.0, 1.0, 20]}         # or a list of numbers / strings
        set: {train.augmentation.0.hue_p: "{value}"}
      loss:                            # or named levels: label -> settings
        levels:
          single: {train: bbbc021_mocov2plus_vgg13.yaml}
          mix: {train: bbbc021_mocov2plus_vgg13_lossmix.yaml}
    seeds: [5, 6, 7, 8, 9]
    set: {train.augmentation.0.hue: 0.5}           # settings of every run
    evaluate: {linear: {epochs: 100}}              # EvaluateConfig (kind train)
    embed: {cropset: data/crops/noc, ...}          # EmbedStudyConfig (kind embed)
    smoke: {methods: [simclr], seeds: [5], ...}    # deep-merged over the rest with smoke=True

**Settings** are flat mappings of dotted keys, used by ``set``, method entries, levels and the
CLI's ``--set``: ``train`` (the trainer config file), ``train.<key>`` (any trainer config key, as
``phenossl train --set``; applied after the trainer config's own ``smoke`` section),
``evaluate.<key>`` and ``embed.<key>``. A value that is exactly ``"{value}"`` becomes the axis
value itself; other strings have ``{value}`` replaced by it (``"data/crops/{value}_dmso"``).
Later settings win: ``set`` < the method's < each axis's (grid order) < the seed < the CLI's.
The seed sets ``train.run.seed`` (or ``embed.seed``); the evaluation is seeded with it too.

A **run id** joins the experiment, the method, ``axis=value`` per axis and ``seed=N`` with
``/`` (``table2_hue_p/simclr/hue_p=0.263/seed=5``); float values are written with the fewest
significant digits (at least 3) that keep an axis's values apart.

With ``smoke=True`` the ``smoke`` mapping is deep-merged over the file
(:func:`~phenossl.training.train.config.merge`: mappings key by key, except ``methods`` and an axis's
``levels``, which are replaced like lists and values), and every trainer config is loaded with
its own smoke section. Unknown keys anywhere are a :class:`~phenossl.training.train.config.ConfigError` naming the
dotted key; a bad key in the ``smoke`` section is reported as ``smoke.<key>`` in both scales.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    SkipValidation,
    TypeAdapter,
    model_validator,
)

from phenossl.training.train.config import (
    Backbone,
    Bool,
    ConfigError,
    Dict,
    Float,
    Int,
    KnnSettings,
    Overrides,
    Positive,
    PositiveFloat,
    Section,
    Str,
    TrainConfig,
    apply_overrides,
    as_dict,
    join_key,
    load_config,
    override_pairs,
    read_yaml,
    validate,
    with_smoke,
)

__all__ = [
    "Axis",
    "ClusterSettings",
    "EmbedStudyConfig",
    "EvalDataSettings",
    "EvaluateConfig",
    "FinetuneSettings",
    "KnnSettings",
    "Level",
    "LinearSettings",
    "RunSpec",
    "SweepConfig",
    "is_sweep_config",
    "load_sweep",
]

SETTING_SECTIONS = ("train", "evaluate", "embed")
VALUE = "{value}"
_REPLACED = ("methods", "levels")  # mappings the smoke section replaces instead of merging
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
_AXIS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- evaluation of a trained run ----------------------------------------------------------------


class LinearSettings(Section):
    """Linear probe on frozen features (:func:`phenossl.training.evaluate.protocols.linear_eval`)."""

    epochs: Positive = 100
    lr: PositiveFloat = 0.1
    weight_decay: Float = 0.0
    batch_size: Positive = 256


class FinetuneSettings(Section):
    """Fine-tuning of the whole backbone (:func:`phenossl.training.evaluate.protocols.finetune`)."""

    epochs: Positive = 30
    lr: PositiveFloat = 0.01
    weight_decay: Float = 5.0e-4
    batch_size: Positive = 128
    augmentation: Str | None = None


class ClusterSettings(Section):
    """KMeans on the test-split embeddings, AMI against a label (:func:`phenossl.cluster`).

    ``label_column``: a CropSet column (``is_treated``, ``treatment``...); None takes the
    dataset's classes (MNIST digits). Metrics are ``ami``, ``ami_control_mean`` and
    ``ami_control_std`` for the first clustering and carry ``_<name>`` (default ``_k<k>``) for
    the others. ``montage`` writes the centroid-nearest images as a PNG, ``save_embeddings``
    the clustered embeddings (``phenossl.embedding.save_embeddings``).
    """

    k: Annotated[Int, Field(gt=1)] = 10
    label_column: Str | None = None
    name: Str | None = None
    n_init: Int = 10
    n_permutations: Int = 10
    n_nearest: Int = 8
    montage: Bool = True
    save_embeddings: Bool = True


class EvalDataSettings(Section):
    """The evaluation data: the training config's dataset with these splits and options.

    ``options`` are added to the training data's ``build_dataset`` options (e.g.
    ``label_column: treatment`` for a CropSet); limits keep a seeded random subset.
    """

    train_split: Str | None = "train"
    test_split: Str | None = "test"
    train_limit: Positive | None = None
    test_limit: Positive | None = None
    options: Dict = Field(default_factory=dict)
    batch_size: Positive = 256


def _protocol(value: Any) -> Any:
    """``true`` or ``{}``: run with defaults; ``false`` or ``null``: off."""
    return {} if value is True else None if value is False else value


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, Mapping) else value or []


class EvaluateConfig(Section):
    """What a trained run is evaluated with; a protocol given as ``{}`` runs with defaults."""

    linear: Annotated[LinearSettings | None, BeforeValidator(_protocol)] = None
    knn: Annotated[KnnSettings | None, BeforeValidator(_protocol)] = None
    finetune: Annotated[FinetuneSettings | None, BeforeValidator(_protocol)] = None
    cluster: Annotated[list[ClusterSettings], BeforeValidator(_listed)] = Field(
        default_factory=list
    )
    data: EvalDataSettings = EvalDataSettings()
    device: Str = "auto"
    amp: Bool = True

    @model_validator(mode="after")
    def _distinct_metrics(self) -> EvaluateConfig:
        names = self.cluster_metric_suffixes()
        if len(set(names)) != len(names):
            raise ConfigError(
                "cluster", f"two clusterings share a metric name {names}; give each a name"
            )
        return self

    def cluster_metric_suffixes(self) -> list[str]:
        """The metric-name suffix of each clustering: ``""``, then ``_<name>`` / ``_k<k>``."""
        return [
            f"_{c.name}" if c.name else ("" if i == 0 else f"_k{c.k}")
            for i, c in enumerate(self.cluster)
        ]


# --- the backbone-size study: pretrained backbones, no training -------------------------------


class EmbedStudyConfig(Section):
    """One run of the backbone-size study (App. Fig. 1-2), without training.

    The CropSet's cells of ``compound`` at ``concentration`` (None: all its concentrations) and
    as many ``control`` cells (``n_per_group`` of each at most, drawn with ``seed``) are embedded
    with ``backbone`` (``weights``: ``imagenet`` from the local torch cache, or ``random``),
    clustered with KMeans (``k``) and scored with AMI against treated-vs-control, with the
    randomised-label control.
    """

    cropset: Str = "data/crops/nocodazole_dmso"
    compound: Str = "nocodazole"
    concentration: Float | None = None
    control: Str = "DMSO"
    backbone: Backbone = "resnet18"
    weights: Literal["imagenet", "random"] = "imagenet"
    n_per_group: Positive | None = None
    input_size: Positive | None = None
    batch_size: Positive = 64
    k: Annotated[Int, Field(ge=2)] = 2
    n_init: Positive = 10
    n_permutations: Int = 10
    n_nearest: Int = 8
    montage: Bool = True
    save_embeddings: Bool = True
    seed: Int = 0
    device: Str = "auto"


# --- runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid, fully resolved: what the store records as the run's ``spec``.

    ``config`` is the resolved :class:`TrainConfig` (``to_dict``) for ``kind="train"`` and the
    :class:`EmbedStudyConfig` for ``kind="embed"``; ``evaluate`` the :class:`EvaluateConfig`.
    """

    run_id: str
    experiment: str
    kind: str
    method: str | None
    params: dict[str, Any]
    seed: int
    config: dict[str, Any]
    evaluate: dict[str, Any]
    train_file: str | None = None
    smoke: bool = False

    @property
    def backbone(self) -> str:
        return self.config["model"]["backbone"] if self.kind == "train" else self.config["backbone"]

    @property
    def dataset(self) -> str:
        return self.config["data"]["dataset"] if self.kind == "train" else "cropset"

    def to_json(self) -> dict[str, Any]:
        """The JSON ``spec`` of the result store (with ``backbone`` and ``dataset``)."""
        return {**asdict(self), "backbone": self.backbone, "dataset": self.dataset}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSpec:
        """Inverse of :meth:`to_json`."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def train_config(self, device: str | None = None) -> TrainConfig:
        """The run's :class:`TrainConfig` (``run.device`` replaced by ``device`` if given)."""
        return TrainConfig.from_dict(
            self.config, overrides={"run.device": device} if device else {}
        )


@dataclass(frozen=True)
class Level:
    """One value of an axis: its ``label`` (in the run id and ``param.<axis>``) and settings."""

    label: str | int | float | bool
    settings: dict[str, Any]


@dataclass(frozen=True)
class Axis:
    """A swept parameter: its name and levels, with the run-id text of each level."""

    name: str
    levels: tuple[Level, ...]

    @cached_property
    def texts(self) -> tuple[str, ...]:
        return _value_texts([level.label for level in self.levels])


# --- the sweep file -----------------------------------------------------------------------------


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"expected a name of letters, digits, _.+-, got {value!r}")
    return value


def _check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    for key in settings:
        section, dot, rest = key.partition(".")
        if (
            section not in SETTING_SECTIONS
            or (section != "train" and not dot)
            or (dot and not rest)
        ):
            raise ConfigError(
                key,
                "expected `train` (a trainer config file) or a dotted key under train., "
                "evaluate. or embed.",
            )
    return settings


def _distinct(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate values in {values}")
    return values


#: flat mappings of dotted keys (module docstring)
Settings = Annotated[Dict, AfterValidator(_check_settings)]
Name = Annotated[Str, AfterValidator(_name)]
_NAMES: TypeAdapter[list[str]] = TypeAdapter(
    Annotated[list[Name], Field(min_length=1), AfterValidator(_distinct)]
)
Seeds = Annotated[list[Annotated[Int, Field(ge=0)]], Field(min_length=1), AfterValidator(_distinct)]
_SETTINGS = TypeAdapter(Settings)
_SEEDS = TypeAdapter(Seeds)


class _Linspace(Section):
    linspace: tuple[Float, Float, Annotated[Int, Field(ge=1)]]


def _linspace(values: Any) -> Any:
    """``{linspace: [start, stop, count]}`` -> the list of values."""
    if not isinstance(values, Mapping):
        return values
    start, stop, count = _Linspace.model_validate(values).linspace
    if count == 1:
        return [start]
    return [round(start + (stop - start) * i / (count - 1), 10) for i in range(count)]


def _scalar(value: Any) -> Any:
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"expected a number or a name, got {value!r}")
    return value


class _AxisSpec(Section):
    """One axis of ``grid`` in YAML: ``values`` with ``set``, or ``levels``."""

    values: Annotated[
        list[Annotated[Any, AfterValidator(_scalar)]] | None,
        BeforeValidator(_linspace),
        Field(min_length=1),
    ] = None
    set: Settings | None = None
    levels: dict[Str, Settings] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> _AxisSpec:
        if (self.levels is None) == (self.values is None):
            raise ConfigError("", "give either `values` (with `set`) or `levels`")
        if self.levels is not None and self.set is not None:
            raise ConfigError("set", "levels carry their own settings")
        if self.levels == {}:
            raise ConfigError("levels", "expected at least one level")
        if self.values is not None and self.set is None:
            raise ConfigError("set", "missing: which settings the values go to")
        return self

    def axis(self, name: str) -> Axis:
        if self.levels is not None:
            return Axis(name, tuple(Level(k, v) for k, v in self.levels.items()))
        assert self.values is not None  # checked above: values or levels
        return Axis(name, tuple(Level(v, _substitute(self.set, v)) for v in self.values))


def _axis_name(name: str) -> str:
    if not _AXIS.match(name) or name in ("seed", "method"):
        raise ValueError("an axis name is an identifier other than seed and method")
    return name


_GRID = TypeAdapter(dict[Annotated[Str, AfterValidator(_axis_name)], _AxisSpec])


def _axes(raw: Any) -> list[Axis]:
    if isinstance(raw, list):  # already axes
        return raw
    axes = []
    for name, spec in _GRID.validate_python({} if raw is None else raw).items():
        axis = spec.axis(name)
        try:
            axis.texts  # noqa: B018 - checks the labels now
        except ValueError as err:
            raise ConfigError(name, str(err)) from None
        axes.append(axis)
    return axes


def _methods(raw: Any) -> Any:
    if isinstance(raw, list):
        return {name: {} for name in _NAMES.validate_python(raw)}
    return {} if raw is None else raw


class SweepConfig(Section):
    """A loaded sweep config (see the module docstring); :meth:`runs` expands the grid.

    ``smoke``, ``overrides`` (the CLI's settings) and ``path`` are set by :func:`load_sweep`,
    not read from the file.
    """

    model_config = ConfigDict(validate_assignment=False)  # load_sweep completes it

    experiment: Name
    description: Str = ""
    kind: Literal["train", "embed"] = "train"
    train: Str | None = None
    methods: Annotated[dict[Name | None, Settings], BeforeValidator(_methods)] = Field(
        default_factory=dict
    )
    grid: Annotated[list[Axis], SkipValidation, BeforeValidator(_axes)] = Field(
        default_factory=list
    )
    seeds: Seeds = Field(default_factory=lambda: [0])
    settings: Settings = Field(default_factory=dict, alias="set")
    evaluate: Dict = Field(default_factory=dict)
    embed: Dict = Field(default_factory=dict)
    smoke: bool = Field(False, exclude=True)
    overrides: dict[str, Any] = Field(default_factory=dict, exclude=True)
    path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _fits_the_kind(self) -> SweepConfig:
        if self.kind == "embed":
            if self.train is not None:
                raise ConfigError("train", "an embed sweep does not train; remove `train`")
            if self.evaluate:
                raise ConfigError("evaluate", "an embed sweep is scored by its `embed` settings")
        if not self.methods:
            if self.kind == "train":
                raise ConfigError("methods", "missing: list the SSL methods to train")
            self.methods = {None: {}}
        EvaluateConfig.from_dict(self.evaluate, "evaluate")  # a bad key once, not per run
        return self

    @property
    def n_runs(self) -> int:
        """Number of runs in the grid."""
        return len(self.methods) * math.prod(len(a.levels) for a in self.grid) * len(self.seeds)

    def run_ids(self) -> list[str]:
        """Every run id, in grid order (methods, then axes, then seeds), without resolving."""
        return [run_id for run_id, *_ in self._cells()]

    def runs(self) -> Iterator[RunSpec]:
        """Resolve every run of the grid, in grid order.

        Raises
        ------
        ConfigError
            A bad setting; the message names the run id and the dotted key.
        FileNotFoundError
            A trainer config file that does not exist (named with the run id).
        """
        cache: dict[Any, Any] = {}
        for run_id, method, levels, seed in self._cells():
            settings: dict[str, Any] = {**self.settings, **self.methods[method]}
            for level in levels:
                settings.update(level.settings)
            seed_key = "train.run.seed" if self.kind == "train" else "embed.seed"
            settings[seed_key] = seed
            settings.update(self.overrides)
            params = {axis.name: level.label for axis, level in zip(self.grid, levels)}
            try:
                yield self._resolve(run_id, method, params, seed, settings, cache)
            except ConfigError as err:
                raise ConfigError(err.key, f"{err.detail} (run {run_id})") from None

    def _cells(self) -> Iterator[tuple[str, str | None, tuple[Level, ...], int]]:
        def combos(i: int) -> Iterator[tuple[tuple[str, ...], tuple[Level, ...]]]:
            if i == len(self.grid):
                yield (), ()
                return
            axis = self.grid[i]
            for text, level in zip(axis.texts, axis.levels):
                for texts, levels in combos(i + 1):
                    yield (f"{axis.name}={text}", *texts), (level, *levels)

        for method in self.methods:
            head = [self.experiment] + ([method] if method is not None else [])
            for texts, levels in combos(0):
                for seed in self.seeds:
                    yield "/".join([*head, *texts, f"seed={seed}"]), method, levels, seed

    def _resolve(
        self,
        run_id: str,
        method: str | None,
        params: dict[str, Any],
        seed: int,
        settings: dict[str, Any],
        cache: dict[Any, Any],
    ) -> RunSpec:
        parts = split_settings(settings)
        evaluate: dict[str, Any] = {}
        train_file = None
        if self.kind == "train":
            train_file = parts["train_file"] or self.train
            if train_file is None:
                raise ConfigError("train", "no trainer config: set `train` (a file)")
            train_file = self._train_path(str(train_file).format(method=method))
            overrides = dict(parts["train"])
            overrides.pop("run.seed", None)  # one resolution serves every seed
            key: tuple[Any, str] = (train_file, json.dumps(overrides, sort_keys=True, default=str))
            if key not in cache:
                cache[key] = _load_train(train_file, overrides, self.smoke).to_dict()
            resolved = copy.deepcopy(cache[key])
            trains = resolved["method"]["name"]
            if method is not None and trains != method:
                # a run recorded as one method must not train another (a `train` file without
                # {method}, or a method the file was not written for)
                raise ConfigError(
                    "methods",
                    f"method {method!r} cannot run here: its trainer config {train_file} trains "
                    f"{trains!r}; this config's `train` file does not depend on {{method}}",
                )
            resolved["run"]["seed"] = seed
            key = ("evaluate", json.dumps(parts["evaluate"], sort_keys=True, default=str))
            if key not in cache:
                raw_eval = apply_overrides(self.evaluate, parts["evaluate"])
                cache[key] = EvaluateConfig.from_dict(raw_eval, "evaluate").to_dict()
            evaluate = copy.deepcopy(cache[key])
            train_file = str(train_file)
        else:
            raw = apply_overrides(self.embed, parts["embed"])
            resolved = EmbedStudyConfig.from_dict(raw, "embed").to_dict()
        return RunSpec(
            run_id=run_id,
            experiment=self.experiment,
            kind=self.kind,
            method=method,
            params=params,
            seed=seed,
            config=resolved,
            evaluate=evaluate,
            train_file=train_file,
            smoke=self.smoke,
        )

    def _train_path(self, name: str) -> Path:
        path = Path(name)
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path
        return path


# --- loading ------------------------------------------------------------------------------------


def is_sweep_config(path: str | Path) -> bool:
    """Whether a YAML file is a sweep config (has a top-level ``experiment`` key)."""
    data = yaml.safe_load(Path(path).read_text())
    return isinstance(data, Mapping) and "experiment" in data


def load_sweep(
    path: str | Path,
    *,
    smoke: bool = False,
    overrides: Overrides = (),
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> SweepConfig:
    """Load a sweep config.

    Parameters
    ----------
    path
        The YAML file.
    smoke
        Merge the ``smoke`` section (and load the trainer configs with theirs).
    overrides
        Settings of every run (the CLI's ``--set``): ``(dotted key, value)`` pairs or a mapping,
        e.g. ``{"train.data.root": "/scratch/cifar100"}``.
    methods, seeds
        Replace the config's method list / seeds (any method whose trainer config exists).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ConfigError
        Invalid YAML or an invalid key or value, named with its dotted key and the file.

    Examples
    --------
    >>> sweep = load_sweep("training/table2_hue_probability.yaml", smoke=True)  # doctest: +SKIP
    >>> sweep.run_ids()[0]  # doctest: +SKIP
    'table2_hue_p/simclr/hue_p=0/seed=5'
    """
    data = read_yaml(path, "sweep config")
    try:
        return sweep_from_dict(
            data, path=Path(path), smoke=smoke, overrides=overrides, methods=methods, seeds=seeds
        )
    except ConfigError as err:
        raise ConfigError(err.key, f"{err.detail} (in {path})") from None


def sweep_from_dict(
    data: Any,
    *,
    path: Path | None = None,
    smoke: bool = False,
    overrides: Overrides = (),
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> SweepConfig:
    """Build a :class:`SweepConfig` from its YAML mapping; see :func:`load_sweep`."""
    raw = as_dict(data)
    if "experiment" not in raw:
        raise ConfigError(
            "experiment",
            "missing: a sweep config names its experiment (this may be a trainer config)",
        )
    section = as_dict(raw.pop("smoke", None), "smoke")
    config = with_smoke(SweepConfig, raw, section, smoke, replace=_REPLACED)
    config.smoke, config.path = smoke, path
    config.overrides = validate(_SETTINGS, dict(override_pairs(overrides)))
    if methods is not None:
        names: list[str] = validate(_NAMES, list(methods), "methods")
        config.methods = {m: config.methods.get(m, {}) for m in names}
    if seeds is not None:
        config.seeds = validate(_SEEDS, list(seeds), "seeds")
    return config


# --- settings -----------------------------------------------------------------------------------


def split_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings by section: ``train_file`` and the ``train``/``evaluate``/``embed`` key maps."""
    out: dict[str, Any] = {"train_file": None, "train": {}, "evaluate": {}, "embed": {}}
    for key, value in settings.items():
        section, _, rest = key.partition(".")
        if not rest:
            out["train_file"] = value
        else:
            out[section][rest] = value
    return out


def _substitute(template: Any, value: Any) -> Any:
    """``template`` with ``"{value}"`` replaced by ``value`` (inside strings: by its text)."""
    if isinstance(template, Mapping):
        return {k: _substitute(v, value) for k, v in template.items()}
    if isinstance(template, list):
        return [_substitute(v, value) for v in template]
    if template == VALUE:
        return value
    if isinstance(template, str) and VALUE in template:
        return template.replace(VALUE, str(value))
    return template


def _value_texts(values: Sequence[Any]) -> tuple[str, ...]:
    """Run-id text of each value: names as they are, floats with >= 3 significant digits."""
    for digits in range(3, 18):
        texts = [_text(v, digits) for v in values]
        if len(set(texts)) == len(texts):
            return tuple(texts)
    raise ValueError(f"duplicate values {list(values)}")


def _text(value: Any, digits: int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite value {value}")
        return format(value, f".{digits}g")
    if not _NAME.match(str(value)):
        raise ValueError(f"value {value!r}: a run-id name has only letters, digits, _.+-")
    return str(value)


def _load_train(path: Path, overrides: Overrides, smoke: bool) -> TrainConfig:
    try:
        return load_config(path, overrides=overrides, smoke=smoke)
    except ConfigError as err:
        raise ConfigError(join_key("train", err.key), err.detail) from None
