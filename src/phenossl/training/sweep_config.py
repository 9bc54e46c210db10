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

With ``smoke=True`` the ``smoke`` mapping is deep-merged over the file (mappings merge key by
key, except ``methods`` and an axis's ``levels``; lists, values and those two are replaced), and every trainer config is loaded with its own smoke
section. Unknown keys anywhere are a :class:`~phenossl.training.config.ConfigError` naming the
dotted key; a bad key in the ``smoke`` section is reported as ``smoke.<key>`` in both scales.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml

# the trainer's YAML section helpers (unknown keys named, values coerced to the field types)
from phenossl.training.config import (
    ConfigError,
    TrainConfig,
    _check_keys,
    _mapping,
    _section,
    apply_overrides,
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

KINDS = ("train", "embed")
TOP_KEYS = (
    "experiment",
    "description",
    "kind",
    "train",
    "methods",
    "grid",
    "seeds",
    "set",
    "evaluate",
    "embed",
    "smoke",
)
SETTING_SECTIONS = ("train", "evaluate", "embed")
VALUE = "{value}"
_REPLACED = ("methods", "levels")  # mappings the smoke section replaces instead of merging
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
_AXIS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- evaluation of a trained run ----------------------------------------------------------------


@dataclass
class LinearSettings:
    """Linear probe on frozen features (:func:`phenossl.training.evaluate.linear_eval`)."""

    epochs: int = 100
    lr: float = 0.1
    weight_decay: float = 0.0
    batch_size: int = 256


@dataclass
class KnnSettings:
    """Weighted kNN on frozen features (:func:`phenossl.training.evaluate.knn_eval`)."""

    k: int = 20
    temperature: float = 0.07


@dataclass
class FinetuneSettings:
    """Fine-tuning of the whole backbone (:func:`phenossl.training.evaluate.finetune`)."""

    epochs: int = 30
    lr: float = 0.01
    weight_decay: float = 5.0e-4
    batch_size: int = 128
    augmentation: str | None = None


@dataclass
class ClusterSettings:
    """KMeans on the test-split embeddings, AMI against a label (:func:`phenossl.cluster`).

    ``label_column``: a CropSet column (``is_treated``, ``treatment``...); None takes the
    dataset's classes (MNIST digits). Metrics are ``ami``, ``ami_control_mean`` and
    ``ami_control_std`` for the first clustering and carry ``_<name>`` (default ``_k<k>``) for
    the others. ``montage`` writes the centroid-nearest images as a PNG, ``save_embeddings``
    the clustered embeddings (``phenossl.embedding.save_embeddings``).
    """

    k: int = 10
    label_column: str | None = None
    name: str | None = None
    n_init: int = 10
    n_permutations: int = 10
    n_nearest: int = 8
    montage: bool = True
    save_embeddings: bool = True


@dataclass
class EvalDataSettings:
    """The evaluation data: the training config's dataset with these splits and options.

    ``options`` are added to the training data's ``build_dataset`` options (e.g.
    ``label_column: treatment`` for a CropSet); limits keep a seeded random subset.
    """

    train_split: str | None = "train"
    test_split: str | None = "test"
    train_limit: int | None = None
    test_limit: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 256


@dataclass
class EvaluateConfig:
    """What a trained run is evaluated with; a protocol given as ``{}`` runs with defaults."""

    linear: LinearSettings | None = None
    knn: KnnSettings | None = None
    finetune: FinetuneSettings | None = None
    cluster: list[ClusterSettings] = field(default_factory=list)
    data: EvalDataSettings = field(default_factory=EvalDataSettings)
    device: str = "auto"
    amp: bool = True

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, where: str = "evaluate") -> EvaluateConfig:
        """Parse the YAML mapping; unknown keys raise :class:`ConfigError` naming them."""
        raw = _mapping(raw, where)
        _check_keys(raw, [f.name for f in dataclasses.fields(cls)], where)
        protocols: dict[str, Any] = {}
        for name, kind in (
            ("linear", LinearSettings),
            ("knn", KnnSettings),
            ("finetune", FinetuneSettings),
        ):
            value = raw.get(name)
            if value is False or value is None:
                protocols[name] = None
            else:
                protocols[name] = _section(kind, {} if value is True else value, f"{where}.{name}")
        clusters = raw.get("cluster") or []
        clusters = [clusters] if isinstance(clusters, Mapping) else clusters
        if not isinstance(clusters, list):
            raise ConfigError(f"{where}.cluster", "expected a mapping or a list of mappings")
        config = cls(
            **protocols,
            cluster=[
                _section(ClusterSettings, c, f"{where}.cluster.{i}") for i, c in enumerate(clusters)
            ],
            data=_section(EvalDataSettings, raw.get("data", {}), f"{where}.data"),
            **vars(_section(_Placement, {k: raw[k] for k in ("device", "amp") if k in raw}, where)),
        )
        config._check(where)
        return config

    def _check(self, where: str) -> None:
        checks = [
            (f"{name}.{key}", getattr(getattr(self, name), key), 0)
            for name, keys in _POSITIVE.items()
            if getattr(self, name) is not None
            for key in keys
        ]
        checks += [(f"cluster.{i}.k", c.k, 1) for i, c in enumerate(self.cluster)]
        checks += [
            (f"data.{key}", getattr(self.data, key), 0)
            for key in ("train_limit", "test_limit", "batch_size")
            if getattr(self.data, key) is not None
        ]
        for key, value, floor in checks:
            if not value > floor:
                raise ConfigError(f"{where}.{key}", f"expected a value > {floor}, got {value}")
        names = self.cluster_metric_suffixes()
        if len(set(names)) != len(names):
            raise ConfigError(
                f"{where}.cluster", f"two clusterings share a metric name {names}; give each a name"
            )

    def cluster_metric_suffixes(self) -> list[str]:
        """The metric-name suffix of each clustering: ``""``, then ``_<name>`` / ``_k<k>``."""
        return [
            f"_{c.name}" if c.name else ("" if i == 0 else f"_k{c.k}")
            for i, c in enumerate(self.cluster)
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping; :meth:`from_dict` of it gives an equal config."""
        return dataclasses.asdict(self)


@dataclass
class _Placement:
    device: str = "auto"
    amp: bool = True


_POSITIVE = {
    "linear": ("epochs", "lr", "batch_size"),
    "knn": ("k", "temperature"),
    "finetune": ("epochs", "lr", "batch_size"),
}


# --- the backbone-size study: pretrained backbones, no training -------------------------------


@dataclass
class EmbedStudyConfig:
    """One run of the backbone-size study (App. Fig. 1-2), without training.

    The CropSet's cells of ``compound`` at ``concentration`` (None: all its concentrations) and
    as many ``control`` cells (``n_per_group`` of each at most, drawn with ``seed``) are embedded
    with ``backbone`` (``weights``: ``imagenet`` from the local torch cache, or ``random``),
    clustered with KMeans (``k``) and scored with AMI against treated-vs-control, with the
    randomised-label control.
    """

    cropset: str = "data/crops/nocodazole_dmso"
    compound: str = "nocodazole"
    concentration: float | None = None
    control: str = "DMSO"
    backbone: str = "resnet18"
    weights: Literal["imagenet", "random"] = "imagenet"
    n_per_group: int | None = None
    input_size: int | None = None
    batch_size: int = 64
    k: int = 2
    n_init: int = 10
    n_permutations: int = 10
    n_nearest: int = 8
    montage: bool = True
    save_embeddings: bool = True
    seed: int = 0
    device: str = "auto"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, where: str = "embed") -> EmbedStudyConfig:
        """Parse the YAML mapping; unknown keys raise :class:`ConfigError` naming them."""
        config = _section(cls, raw or {}, where)
        from phenossl.models.backbones import available_backbones

        if config.backbone not in available_backbones():
            raise ConfigError(
                f"{where}.backbone",
                f"unknown backbone {config.backbone!r}; expected one of "
                f"{', '.join(available_backbones())}",
            )
        for key in ("k", "batch_size", "n_init", "n_per_group", "input_size"):
            value = getattr(config, key)
            if value is not None and value < (2 if key == "k" else 1):
                raise ConfigError(f"{where}.{key}", f"expected a larger value, got {value}")
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping; :meth:`from_dict` of it gives an equal config."""
        return dataclasses.asdict(self)


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
        out = dataclasses.asdict(self)
        out.update(backbone=self.backbone, dataset=self.dataset)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSpec:
        """Inverse of :meth:`to_json`."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def train_config(self, device: str | None = None) -> TrainConfig:
        """The run's :class:`TrainConfig` (``run.device`` replaced by ``device`` if given)."""
        config = TrainConfig.from_dict(self.config)
        if device is not None:
            config.run.device = device
        return config


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
        return _value_texts([level.label for level in self.levels], self.name)


@dataclass
class SweepConfig:
    """A loaded sweep config (see the module docstring); :meth:`runs` expands the grid."""

    experiment: str
    description: str = ""
    kind: str = "train"
    train: str | None = None
    methods: dict[str | None, dict[str, Any]] = field(default_factory=dict)
    grid: list[Axis] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    settings: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    embed: dict[str, Any] = field(default_factory=dict)
    smoke: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

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
            key: tuple[Path | str, str] = (train_file, json.dumps(overrides, sort_keys=True))
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
                raw_eval = apply_overrides(self.evaluate, _as_overrides(parts["evaluate"]))
                cache[key] = EvaluateConfig.from_dict(raw_eval).to_dict()
            evaluate = copy.deepcopy(cache[key])
            train_file = str(train_file)
        else:
            raw = apply_overrides(self.embed, _as_overrides(parts["embed"]))
            resolved = EmbedStudyConfig.from_dict(raw).to_dict()
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
    overrides: Iterable[str] = (),
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
        ``KEY=VALUE`` settings of every run (the CLI's ``--set``), value parsed as YAML.
    methods, seeds
        Replace the config's method list / seeds (any method whose trainer config exists).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ConfigError
        Invalid YAML or an invalid key or value, named with its dotted key and the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError("", f"{path} is not valid YAML: {err}") from err
    try:
        return sweep_from_dict(
            data,
            path=path,
            smoke=smoke,
            overrides=overrides,
            methods=methods,
            seeds=seeds,
        )
    except ConfigError as err:
        raise ConfigError(err.key, f"{err.detail} (in {path})") from None


def sweep_from_dict(
    data: Any,
    *,
    path: Path | None = None,
    smoke: bool = False,
    overrides: Iterable[str] = (),
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> SweepConfig:
    """Build a :class:`SweepConfig` from its YAML mapping; see :func:`load_sweep`."""
    raw = _mapping(data, "")
    if "experiment" not in raw:
        raise ConfigError(
            "experiment",
            "missing: a sweep config names its experiment (this may be a trainer config)",
        )
    smoke_section = _mapping(raw.pop("smoke", {}), "smoke")
    merged = _merge(raw, smoke_section)
    try:
        with_smoke = _parse(merged, smoke=True)
    except ConfigError as err:
        key = f"smoke.{err.key}" if _has_key(smoke_section, err.key) else err.key
        raise ConfigError(key, f"{err.detail} (with the smoke section applied)") from None
    config = with_smoke if smoke else _parse(raw, smoke=False)
    config.path = path
    config.overrides = _parse_cli_settings(overrides)
    if methods is not None:
        config.methods = {m: config.methods.get(m, {}) for m in _names(list(methods), "methods")}
    if seeds is not None:
        config.seeds = _seeds(list(seeds))
    return config


def _parse(raw: dict[str, Any], *, smoke: bool) -> SweepConfig:
    _check_keys(raw, [k for k in TOP_KEYS if k != "smoke"], "")
    experiment = raw["experiment"]
    if not isinstance(experiment, str) or not _NAME.match(experiment):
        raise ConfigError(
            "experiment", f"expected a name of letters, digits, _.+-, got {experiment!r}"
        )
    kind = raw.get("kind", "train")
    if kind not in KINDS:
        raise ConfigError("kind", f"expected one of {list(KINDS)}, got {kind!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("description", "expected text")
    train = raw.get("train")
    if train is not None and not isinstance(train, str):
        raise ConfigError("train", f"expected a file name, got {train!r}")
    if kind == "embed" and train is not None:
        raise ConfigError("train", "an embed sweep does not train; remove `train`")
    config = SweepConfig(
        experiment=experiment,
        description=description,
        kind=kind,
        train=train,
        methods=_methods(raw.get("methods"), kind),
        grid=_grid(raw.get("grid")),
        seeds=_seeds(raw.get("seeds", [0])),
        settings=_settings(raw.get("set"), "set"),
        evaluate=_mapping(raw.get("evaluate"), "evaluate"),
        embed=_mapping(raw.get("embed"), "embed"),
        smoke=smoke,
    )
    if kind == "embed" and config.evaluate:
        raise ConfigError("evaluate", "an embed sweep is scored by its `embed` settings")
    EvaluateConfig.from_dict(config.evaluate)  # report a bad key once, not per run
    return config


def _methods(raw: Any, kind: str) -> dict[str | None, dict[str, Any]]:
    if raw is None:
        if kind == "train":
            raise ConfigError("methods", "missing: list the SSL methods to train")
        return {None: {}}
    if isinstance(raw, list):
        return {m: {} for m in _names(raw, "methods")}
    raw = _mapping(raw, "methods")
    _names(list(raw), "methods")
    return {name: _settings(value, f"methods.{name}") for name, value in raw.items()}


def _names(items: list[Any], where: str) -> list[str]:
    if not items:
        raise ConfigError(where, "expected at least one name")
    for i, name in enumerate(items):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(
                f"{where}.{i}", f"expected a name of letters, digits, _.+-, got {name!r}"
            )
    if len(set(items)) != len(items):
        raise ConfigError(where, f"duplicate names in {items}")
    return items


def _grid(raw: Any) -> list[Axis]:
    axes = []
    for name, spec in _mapping(raw, "grid").items():
        where = f"grid.{name}"
        if not _AXIS.match(name) or name in ("seed", "method"):
            raise ConfigError(where, "an axis name is an identifier other than seed and method")
        spec = _mapping(spec, where)
        _check_keys(spec, ["values", "set", "levels"], where)
        if ("levels" in spec) == ("values" in spec):
            raise ConfigError(where, "give either `values` (with `set`) or `levels`")
        if "levels" in spec:
            if "set" in spec:
                raise ConfigError(f"{where}.set", "levels carry their own settings")
            levels = _mapping(spec["levels"], f"{where}.levels")
            if not levels:
                raise ConfigError(f"{where}.levels", "expected at least one level")
            axis = Axis(
                name,
                tuple(
                    Level(label, _settings(value, f"{where}.levels.{label}"))
                    for label, value in levels.items()
                ),
            )
        else:
            if "set" not in spec:
                raise ConfigError(f"{where}.set", "missing: which settings the values go to")
            template = _settings(spec["set"], f"{where}.set")
            values = _values(spec["values"], f"{where}.values")
            axis = Axis(name, tuple(Level(v, _substitute(template, v)) for v in values))
        axis.texts  # noqa: B018 - checks the labels now
        axes.append(axis)
    return axes


def _values(raw: Any, where: str) -> list[Any]:
    if isinstance(raw, Mapping):
        _check_keys(raw, ["linspace"], where)
        spec = raw["linspace"]
        if (
            not isinstance(spec, list)
            or len(spec) != 3
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec)
            or not float(spec[2]).is_integer()
            or spec[2] < 1
        ):
            raise ConfigError(f"{where}.linspace", f"expected [start, stop, count], got {spec!r}")
        start, stop, count = float(spec[0]), float(spec[1]), int(spec[2])
        if count == 1:
            return [start]
        return [round(start + (stop - start) * i / (count - 1), 10) for i in range(count)]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(where, f"expected a non-empty list or {{linspace: [...]}}, got {raw!r}")
    for i, value in enumerate(raw):
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(f"{where}.{i}", f"expected a number or a name, got {value!r}")
    return list(raw)


def _seeds(raw: Any) -> list[int]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("seeds", f"expected a non-empty list of integers, got {raw!r}")
    for i, seed in enumerate(raw):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seeds.{i}", f"expected an integer >= 0, got {seed!r}")
    if len(set(raw)) != len(raw):
        raise ConfigError("seeds", f"duplicate seeds in {raw}")
    return list(raw)


def _settings(raw: Any, where: str) -> dict[str, Any]:
    settings = _mapping(raw, where)
    for key in settings:
        _check_setting_key(key, f"{where}.{key}")
    return settings


def _check_setting_key(key: str, where: str) -> None:
    section, dot, rest = key.partition(".")
    if section not in SETTING_SECTIONS or (section != "train" and not dot) or (dot and not rest):
        raise ConfigError(
            where,
            "expected `train` (a trainer config file) or a dotted key under train., "
            "evaluate. or embed.",
        )


def _parse_cli_settings(items: Iterable[str]) -> dict[str, Any]:
    from phenossl.training.config import parse_override

    out = {}
    for text in items:
        key, value = parse_override(text)
        _check_setting_key(key, key)
        out[key] = value
    return out


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


def _value_texts(values: Sequence[Any], axis: str) -> tuple[str, ...]:
    """Run-id text of each value: names as they are, floats with >= 3 significant digits."""
    texts = None
    for digits in range(3, 18):
        texts = [_text(v, digits, axis) for v in values]
        if len(set(texts)) == len(texts):
            return tuple(texts)
    raise ConfigError(f"grid.{axis}", f"duplicate values {list(values)}")


def _text(value: Any, digits: int, axis: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"grid.{axis}", f"non-finite value {value}")
        return format(value, f".{digits}g")
    if not _NAME.match(str(value)):
        raise ConfigError(
            f"grid.{axis}", f"value {value!r}: a run-id name has only letters, digits, _.+-"
        )
    return str(value)


def _as_overrides(settings: Mapping[str, Any]) -> list[str]:
    """``KEY=VALUE`` strings for the trainer's override parser (JSON is a subset of YAML)."""
    return [f"{key}={json.dumps(value)}" for key, value in settings.items()]


def _load_train(path: Path, overrides: Mapping[str, Any], smoke: bool) -> TrainConfig:
    if not path.is_file():
        raise FileNotFoundError(f"trainer config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError("train", f"{path} is not valid YAML: {err}") from None
    if raw is None or raw == {}:  # defaults alone would train SimCLR on CIFAR-10
        raise ConfigError("train", f"{path} is empty; expected a trainer config")
    try:
        return TrainConfig.from_dict(raw, overrides=_as_overrides(overrides), smoke=smoke)
    except ConfigError as err:
        raise ConfigError(f"train.{err.key}", f"{err.detail} (in {path})") from None


def _merge(base: Any, update: Any) -> Any:
    """Deep merge: mappings key by key (but ``methods`` and ``levels`` are replaced whole, so
    that the smoke scale can keep fewer); anything else is replaced."""
    if isinstance(base, Mapping) and isinstance(update, Mapping):
        out = dict(base)
        for key, value in update.items():
            merge = key in base and key not in _REPLACED
            out[key] = _merge(base[key], value) if merge else copy.deepcopy(value)
        return out
    return copy.deepcopy(update)


def _has_key(node: Any, dotted: str) -> bool:
    """Whether the dotted key lies in ``node`` (whose keys may hold dots: settings keys)."""
    if not dotted or not isinstance(node, Mapping):
        return bool(dotted) and not isinstance(node, Mapping)
    for key, value in node.items():
        if dotted == str(key):
            return True
        if dotted.startswith(f"{key}.") and _has_key(value, dotted[len(str(key)) + 1 :]):
            return True
    return False
