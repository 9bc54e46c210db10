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

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from itertools import product
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

from phenossl.training.train.config import (
    Backbone,
    ConfigError,
    Dict,
    Float,
    KnnSettings,
    Overrides,
    Positive,
    PositiveFloat,
    Section,
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

VALUE = "{value}"
_NAME = r"^[A-Za-z0-9_.+-]+$"


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
    augmentation: str | None = None


class ClusterSettings(Section):
    """KMeans on the test-split embeddings, AMI against a label (:func:`phenossl.cluster`).

    ``label_column``: a CropSet column (``is_treated``, ``treatment``...); None takes the
    dataset's classes (MNIST digits). Metrics are ``ami``, ``ami_control_mean`` and
    ``ami_control_std`` for the first clustering and carry ``_<name>`` (default ``_k<k>``) for
    the others. ``montage`` writes the centroid-nearest images as a PNG, ``save_embeddings``
    the clustered embeddings (``phenossl.embedding.save_embeddings``).
    """

    k: Annotated[int, Field(gt=1)] = 10
    label_column: str | None = None
    name: str | None = None
    n_init: int = 10
    n_permutations: int = 10
    n_nearest: int = 8
    montage: bool = True
    save_embeddings: bool = True


class EvalDataSettings(Section):
    """The evaluation data: the training config's dataset with these splits and options.

    ``options`` are added to the training data's ``build_dataset`` options (e.g.
    ``label_column: treatment`` for a CropSet); limits keep a seeded random subset.
    """

    train_split: str | None = "train"
    test_split: str | None = "test"
    train_limit: Positive | None = None
    test_limit: Positive | None = None
    options: Dict = Field(default_factory=dict)
    batch_size: Positive = 256


def _protocol(value: Any) -> Any:
    """``true`` or ``{}``: run with defaults; ``false`` or ``null``: off."""
    return {} if value is True else None if value is False else value


class EvaluateConfig(Section):
    """What a trained run is evaluated with; a protocol given as ``{}`` runs with defaults."""

    linear: Annotated[LinearSettings | None, BeforeValidator(_protocol)] = None
    knn: Annotated[KnnSettings | None, BeforeValidator(_protocol)] = None
    finetune: Annotated[FinetuneSettings | None, BeforeValidator(_protocol)] = None
    cluster: Annotated[
        list[ClusterSettings], BeforeValidator(lambda v: [v] if isinstance(v, Mapping) else v or [])
    ] = Field(default_factory=list)
    data: EvalDataSettings = EvalDataSettings()
    device: str = "auto"
    amp: bool = True

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

    cropset: str = "data/crops/nocodazole_dmso"
    compound: str = "nocodazole"
    concentration: Float | None = None
    control: str = "DMSO"
    backbone: Backbone = "resnet18"
    weights: Literal["imagenet", "random"] = "imagenet"
    n_per_group: Positive | None = None
    input_size: Positive | None = None
    batch_size: Positive = 64
    k: Annotated[int, Field(ge=2)] = 2
    n_init: Positive = 10
    n_permutations: int = 10
    n_nearest: int = 8
    montage: bool = True
    save_embeddings: bool = True
    seed: int = 0
    device: str = "auto"


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
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def train_config(self, device: str | None = None) -> TrainConfig:
        """The run's :class:`TrainConfig` (``run.device`` replaced by ``device`` if given)."""
        return TrainConfig.from_dict(
            self.config, overrides={"run.device": device} if device else {}
        )


# --- the sweep file -----------------------------------------------------------------------------


def _distinct(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate values in {values}")
    return values


def _settings(settings: dict[str, Any]) -> dict[str, Any]:
    for key in settings:
        if not re.fullmatch(r"train|(train|evaluate|embed)\..+", key):
            raise ConfigError(
                key,
                "expected `train` (a trainer config file) or a dotted key under train., "
                "evaluate. or embed.",
            )
    return settings


#: flat mappings of dotted keys (module docstring)
Settings = Annotated[Dict, AfterValidator(_settings)]
Name = Annotated[str, Field(pattern=_NAME)]
Seeds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1), AfterValidator(_distinct)]
_NAMES: TypeAdapter[list[str]] = TypeAdapter(
    Annotated[list[Name], Field(min_length=1), AfterValidator(_distinct)]
)
_SEEDS = TypeAdapter(Seeds)
_SETTINGS = TypeAdapter(Settings)


class _Linspace(Section):
    linspace: Annotated[tuple[Float, Float, Annotated[int, Field(ge=1)]], Field(strict=False)]


def _linspace(values: Any) -> Any:
    """``{linspace: [start, stop, count]}`` -> the list of values."""
    if not isinstance(values, Mapping):
        return values
    start, stop, count = _Linspace.model_validate(values).linspace
    return [round(start + (stop - start) * i / max(count - 1, 1), 10) for i in range(count)]


def _scalar(value: Any) -> Any:
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"expected a number or a name, got {value!r}")
    return value


class Axis(Section):
    """One axis of ``grid``: ``values`` with the settings they go to (``set``), or ``levels``."""

    values: Annotated[
        list[Annotated[Any, AfterValidator(_scalar)]] | None,
        BeforeValidator(_linspace),
        Field(min_length=1),
    ] = None
    set: Settings | None = None
    levels: dict[str, Settings] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Axis:
        if (self.levels is None) == (self.values is None):
            raise ConfigError("", "give either `values` (with `set`) or `levels`")
        if self.levels is not None and self.set is not None:
            raise ConfigError("set", "levels carry their own settings")
        if self.levels == {}:
            raise ConfigError("levels", "expected at least one level")
        if self.values is not None and self.set is None:
            raise ConfigError("set", "missing: which settings the values go to")
        self.cells()  # the run-id texts keep the labels apart
        return self

    def cells(self) -> list[tuple[Any, str, dict[str, Any]]]:
        """``(label, run-id text, settings)`` of each level."""
        if self.levels is not None:
            labels, settings = list(self.levels), list(self.levels.values())
        else:
            labels = self.values or []
            settings = [_substitute(self.set, value) for value in labels]
        return list(zip(labels, _value_texts(labels), settings))


def _axis_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in ("seed", "method"):
        raise ValueError("an axis name is an identifier other than seed and method")
    return name


def _methods(raw: Any) -> Any:
    if isinstance(raw, list):
        return {name: {} for name in _NAMES.validate_python(raw, strict=True)}
    return {} if raw is None else raw


class SweepConfig(Section):
    """A loaded sweep config (see the module docstring); :meth:`runs` expands the grid.

    ``smoke``, ``overrides`` (the CLI's settings) and ``path`` are set by :func:`load_sweep`,
    not read from the file.
    """

    model_config = ConfigDict(validate_assignment=False)  # load_sweep completes it

    experiment: Name
    description: str = ""
    kind: Literal["train", "embed"] = "train"
    train: str | None = None
    methods: Annotated[dict[Name | None, Settings], BeforeValidator(_methods)] = Field(
        default_factory=dict
    )
    grid: dict[Annotated[str, AfterValidator(_axis_name)], Axis] = Field(default_factory=dict)
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
        validate(EvaluateConfig, self.evaluate, "evaluate")  # a bad key once, not per run
        return self

    @property
    def n_runs(self) -> int:
        """Number of runs in the grid."""
        return len(self.run_ids())

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
        cache: dict[str, Any] = {}
        for run_id, method, params, seed, settings in self._cells():
            try:
                resolved = self._resolve(method, seed, settings, cache)
            except ConfigError as err:
                raise ConfigError(err.key, f"{err.detail} (run {run_id})") from None
            yield RunSpec(
                run_id,
                self.experiment,
                self.kind,
                method,
                params,
                seed,
                *resolved,
                smoke=self.smoke,
            )

    def _cells(self) -> Iterator[tuple[str, str | None, dict[str, Any], int, dict[str, Any]]]:
        """``(run id, method, params, seed, settings)`` of each run, in grid order.

        Later settings win: ``set``, the method's, each axis's, the seed, the CLI's.
        """
        axes = [[(name, *cell) for cell in axis.cells()] for name, axis in self.grid.items()]
        seed_key = "train.run.seed" if self.kind == "train" else "embed.seed"
        for method, levels, seed in product(self.methods, product(*axes), self.seeds):
            settings = {**self.settings, **self.methods[method]}
            for *_, level in levels:
                settings.update(level)
            settings.update({seed_key: seed, **self.overrides})
            texts = [f"{name}={text}" for name, _, text, _ in levels]
            run_id = "/".join([self.experiment, *([method] if method else []), *texts])
            params = {name: label for name, label, *_ in levels}
            yield f"{run_id}/seed={seed}", method, params, seed, settings

    def _resolve(
        self, method: str | None, seed: int, settings: dict[str, Any], cache: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], str | None]:
        """The run's config, evaluation settings and trainer config file."""
        parts: dict[str, dict[str, Any]] = {"train": {}, "evaluate": {}, "embed": {}}
        for key, value in settings.items():
            section, _, rest = key.partition(".")
            parts[section][rest] = value  # "train" alone (the file) under ""
        if self.kind == "embed":
            embed = apply_overrides(self.embed, parts["embed"])
            return validate(EmbedStudyConfig, embed, "embed").to_dict(), {}, None
        name = parts["train"].pop("", None) or self.train
        if name is None:
            raise ConfigError("train", "no trainer config: set `train` (a file)")
        path = Path(str(name).format(method=method))
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path
        parts["train"].pop("run.seed", None)  # one resolution serves every seed
        key = json.dumps([str(path), parts["train"]], sort_keys=True, default=str)
        if key not in cache:
            try:
                cache[key] = load_config(path, overrides=parts["train"], smoke=self.smoke)
            except ConfigError as err:
                raise ConfigError(join_key("train", err.key), err.detail) from None
        config = cache[key].to_dict()
        config["run"]["seed"] = seed
        trains = config["method"]["name"]
        if method is not None and trains != method:
            # a run recorded as one method must not train another (a `train` file without
            # {method}, or a method the file was not written for)
            raise ConfigError(
                "methods",
                f"method {method!r} cannot run here: its trainer config {path} trains "
                f"{trains!r}; this config's `train` file does not depend on {{method}}",
            )
        evaluate = apply_overrides(self.evaluate, parts["evaluate"])
        return config, validate(EvaluateConfig, evaluate, "evaluate").to_dict(), str(path)


# --- loading ------------------------------------------------------------------------------------


def is_sweep_config(path: str | Path) -> bool:
    """Whether a YAML file is a sweep config (has a top-level ``experiment`` key)."""
    data = yaml.safe_load(Path(path).read_text())
    return isinstance(data, Mapping) and "experiment" in data


def load_sweep(
    source: str | Path | Mapping[str, Any],
    *,
    smoke: bool = False,
    overrides: Overrides = (),
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> SweepConfig:
    """Load a sweep config.

    Parameters
    ----------
    source
        The YAML file, or its mapping (then ``train`` files are relative to the working
        directory).
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
        No file at ``source``.
    ConfigError
        Invalid YAML or an invalid key or value, named with its dotted key (and the file).

    Examples
    --------
    >>> sweep = load_sweep("training/table2_hue_probability.yaml", smoke=True)  # doctest: +SKIP
    >>> sweep.run_ids()[0]  # doctest: +SKIP
    'table2_hue_p/simclr/hue_p=0/seed=5'
    """
    path = None if isinstance(source, Mapping) else Path(source)
    data = source if path is None else read_yaml(path, "sweep config")
    try:
        raw = as_dict(data)
        if "experiment" not in raw:
            raise ConfigError(
                "experiment",
                "missing: a sweep config names its experiment (this may be a trainer config)",
            )
        section = as_dict(raw.pop("smoke", None), "smoke")
        config = with_smoke(SweepConfig, raw, section, smoke, replace=("methods", "levels"))
        config.smoke, config.path = smoke, path
        config.overrides = validate(_SETTINGS, dict(override_pairs(overrides)))
        if methods is not None:
            names: list[str] = validate(_NAMES, list(methods), "methods")
            config.methods = {m: config.methods.get(m, {}) for m in names}
        if seeds is not None:
            config.seeds = validate(_SEEDS, list(seeds), "seeds")
        return config
    except ConfigError as err:
        where = "" if path is None else f" (in {path})"
        raise ConfigError(err.key, f"{err.detail}{where}") from None


# --- settings -----------------------------------------------------------------------------------


def _substitute(template: Any, value: Any) -> Any:
    """``template`` with ``"{value}"`` replaced by ``value`` (inside strings: by its text)."""
    if isinstance(template, Mapping):
        return {k: _substitute(v, value) for k, v in template.items()}
    if isinstance(template, list):
        return [_substitute(v, value) for v in template]
    if template == VALUE:
        return value
    if isinstance(template, str):
        return template.replace(VALUE, str(value))
    return template


def _value_texts(values: Sequence[Any]) -> list[str]:
    """Run-id text of each value: names as they are, floats with >= 3 significant digits."""
    for value in values:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"non-finite value {value}")
        if isinstance(value, str) and not re.match(_NAME, value):
            raise ValueError(f"value {value!r}: a run-id name has only letters, digits, _.+-")
    for digits in range(3, 18):
        texts = [_text(value, digits) for value in values]
        if len(set(texts)) == len(texts):
            return texts
    raise ValueError(f"duplicate values {list(values)}")


def _text(value: Any, digits: int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return format(value, f".{digits}g") if isinstance(value, float) else str(value)
