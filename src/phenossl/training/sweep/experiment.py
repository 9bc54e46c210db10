"""One run of a sweep: train and evaluate (or embed with a pretrained backbone) in a folder.

:func:`iter_execute` does all the work of one :class:`~phenossl.training.sweep.config.RunSpec`
inside its run folder and returns a :class:`RunResult`; it never touches the result store, so
it runs the same in the sweep's own process, a GPU worker process or a dask worker.

``kind="train"``: :func:`~phenossl.training.train.trainer.iter_train` (which resumes from
``checkpoints/last.pt`` and returns at once when ``final.pt`` exists), then
:func:`iter_evaluate` of ``final.pt``: frozen features of the evaluation splits (computed once),
linear probe, kNN, fine-tuning and KMeans clusterings as the run's ``evaluate`` settings ask.
``kind="embed"``: the backbone-size study (:func:`iter_embed_study`), no training.

Files added to the run folder: ``evaluation.json`` (every score with its details, the worker
that ran it), ``montage*.png`` (centroid-nearest images of each cluster, one row per cluster)
and ``embeddings*.npz`` (the clustered embeddings, :func:`phenossl.embedding.save_embeddings`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phenossl._json import write_json
from phenossl._progress import Progress, ProgressGenerator, Stages, run, stage
from phenossl.training.sweep.config import (
    ClusterSettings,
    EmbedStudyConfig,
    EvaluateConfig,
    RunSpec,
)

__all__ = ["RunResult", "execute", "iter_embed_study", "iter_evaluate", "iter_execute"]

EVALUATION_FILE = "evaluation.json"


@dataclass
class RunResult:
    """What a run hands to the result store.

    ``artifacts`` are paths relative to the run folder; ``per_class`` maps a protocol to
    ``{"class_names": [...], "accuracy": [...]}``; ``info`` describes the attempt (host, pid,
    ``CUDA_VISIBLE_DEVICES``, the epoch training resumed from).
    """

    metrics: dict[str, float | None] = field(default_factory=dict)
    per_class: dict[str, dict[str, list]] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "per_class": self.per_class,
            "artifacts": self.artifacts,
            "info": self.info,
        }


def iter_execute(
    spec: RunSpec, run_dir: str | os.PathLike, *, device: str | None = None
) -> ProgressGenerator[RunResult]:
    """Run one grid cell in ``run_dir``; yields progress, returns its :class:`RunResult`.

    Parameters
    ----------
    spec
        The resolved run.
    run_dir
        Its folder (created); a second call continues an interrupted run.
    device
        Replaces the config's device (``"cpu"``, ``"cuda"``...) when given.
    """
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if spec.kind == "embed":
        config = EmbedStudyConfig.model_validate(spec.config)
        if device is not None:
            config.device = device
        result, details = yield from iter_embed_study(config, out)
    else:
        result, details = yield from _iter_train_and_evaluate(spec, out, device, info)
    result.info = info
    result.artifacts[EVALUATION_FILE.split(".")[0]] = EVALUATION_FILE
    record = {"run_id": spec.run_id, **result.to_dict(), **details}
    write_json(out / EVALUATION_FILE, record, strict=True)
    return result


def execute(spec: RunSpec | dict, run_dir: str | os.PathLike, device: str | None = None) -> dict:
    """:func:`iter_execute` to completion, for worker processes; returns ``RunResult.to_dict()``."""
    spec = spec if isinstance(spec, RunSpec) else RunSpec.from_json(spec)
    return run(iter_execute(spec, run_dir, device=device)).to_dict()


# --- training runs ------------------------------------------------------------------------------


def _iter_train_and_evaluate(
    spec: RunSpec, out: Path, device: str | None, info: dict[str, Any]
) -> ProgressGenerator[tuple[RunResult, dict]]:
    from phenossl.training.train.trainer import FINAL_CHECKPOINT, LAST_CHECKPOINT, iter_train

    config = spec.train_config(device)
    settings = EvaluateConfig.model_validate(spec.evaluate)
    if device is not None:
        settings.device = device
    info["resumed_from_epoch"] = (
        None if (out / FINAL_CHECKPOINT).is_file() else _checkpoint_epoch(out / LAST_CHECKPOINT)
    )
    evaluates = bool(settings.linear or settings.knn or settings.finetune or settings.cluster)
    n_stages = 2 if evaluates else 1
    final = yield from stage(iter_train(config, out), 0, n_stages, "train")
    summary = _training_summary(out)
    if evaluates:
        gen = iter_evaluate(final, config, settings, out, seed=spec.seed)
        with _torch_threads(config.run.num_threads):  # the run's threads for its evaluation too
            result, details = yield from stage(gen, 1, n_stages, "evaluate")
    else:
        result, details = RunResult(), {}
    result.metrics.update(summary)
    result.artifacts["checkpoint"] = FINAL_CHECKPOINT
    return result, details


def iter_evaluate(
    checkpoint: str | os.PathLike,
    config: Any,
    settings: EvaluateConfig,
    out: str | os.PathLike,
    *,
    seed: int = 0,
) -> ProgressGenerator[tuple[RunResult, dict[str, Any]]]:
    """Evaluate a trained checkpoint as ``settings`` ask; yields progress per stage.

    Parameters
    ----------
    checkpoint
        The run's ``final.pt``.
    config
        The run's :class:`~phenossl.training.train.config.TrainConfig` (its dataset, root, options
        and the view size of its first composition, at which the images are evaluated).
    settings
        Protocols and data of the evaluation.
    out
        Folder for montages and embeddings.
    seed
        Seeds the data limits, the probe, fine-tuning and KMeans.

    Returns
    -------
    (RunResult, dict)
        The scores and the details written to ``evaluation.json`` (per protocol: the
        :meth:`~phenossl.training.evaluate.metrics.ClassificationResult.to_dict`; per clustering: the
        :meth:`~phenossl.clustering.ClusterResult.to_dict` without assignments).
    """
    from phenossl.models.checkpoint import load_backbone
    from phenossl.training.evaluate import protocols as ev

    out = Path(out)
    started = time.perf_counter()
    backbone, _ = load_backbone(checkpoint)
    data = settings.data
    options = {**config.data.options, **data.options}
    size = _view_size(config)

    def dataset(split: str | None, limit: int | None, **extra: Any):
        return _build(config.data, split, limit, seed, {**options, **extra})

    test = dataset(data.test_split, data.test_limit)
    train: Any = None
    if settings.linear or settings.knn or settings.finetune:
        train = dataset(data.train_split, data.train_limit)
        _check_labelled(train, test)
    protocols = {
        name: None if value is None else vars(value)
        for name, value in (
            ("linear", settings.linear),
            ("knn", settings.knn),
            ("finetune", settings.finetune),
        )
    }
    clusters = bool(settings.cluster)
    stages = Stages(ev.protocol_stages(**protocols, test_features=clusters) + len(settings.cluster))
    result = RunResult()
    details: dict[str, Any] = {"protocols": {}, "clusters": []}
    details.update(dataset=config.data.dataset, n_test=len(test), classes=list(test.classes))
    done = yield from ev.iter_protocols(
        backbone,
        train,
        test,
        **protocols,
        test_features=clusters,
        batch_size=data.batch_size,
        device=settings.device,
        input_size=size,
        amp=settings.amp,
        seed=seed,
        stages=stages,
    )
    for name, scores in done.scores.items():
        _record(result, details, name, _METRIC_PREFIXES[name], scores, test)
    if settings.cluster:
        assert done.test_features is not None  # asked for with test_features=clusters
        embeddings = done.test_features[0].numpy()
        if any(c.save_embeddings for c in settings.cluster):
            path = out / "embeddings_test.npz"
            result.artifacts["embeddings"] = _save_embeddings(path, embeddings, test)
        suffixes = settings.cluster_metric_suffixes()
        for where, (suffix, cluster) in enumerate(zip(suffixes, settings.cluster)):
            labels = _cluster_labels(cluster, test, dataset, data, where)
            report = _cluster(embeddings, labels, cluster, seed, suffix, result, out, test)
            details["clusters"].append(report)
            yield stages.done(f"KMeans k={cluster.k}")
    result.metrics["eval_seconds"] = time.perf_counter() - started
    return result, details


#: metric names of each protocol's scores: ``top1`` (linear), ``knn_top1``, ``finetune_top1``
_METRIC_PREFIXES = {"linear": "", "knn": "knn_", "finetune": "finetune_"}


def _record(
    result: RunResult, details: dict, protocol: str, prefix: str, scores: Any, test: Any
) -> None:
    classes = list(test.classes)
    result.metrics[f"{prefix}top1"] = scores.top1
    if scores.top5 is not None:
        result.metrics[f"{prefix}top5"] = scores.top5
    result.per_class[protocol] = {
        "class_names": classes,
        "accuracy": [None if np.isnan(a) else float(a) for a in scores.per_class],
    }
    details["protocols"][protocol] = scores.to_dict(classes)


def _cluster_labels(
    cluster: ClusterSettings, test: Any, dataset: Any, data: Any, where: int
) -> np.ndarray:
    """Class names of the test images: the dataset's classes, or a CropSet column."""
    labelled = test
    if cluster.label_column is not None:
        labelled = dataset(data.test_split, data.test_limit, label_column=cluster.label_column)
    if not labelled.classes:
        raise ValueError(
            f"evaluate.cluster.{where}.label_column: the test data has no labels; name the "
            "CropSet column to score the clusters against (e.g. is_treated)"
        )
    return np.asarray(labelled.classes, dtype=object)[labelled.targets.numpy()]


def _cluster(
    x: np.ndarray,
    labels: np.ndarray,
    settings: ClusterSettings,
    seed: int,
    suffix: str,
    result: RunResult,
    out: Path,
    test: Any,
) -> dict[str, Any]:
    from phenossl.clustering import cluster
    from phenossl.clustering_report import report_dict

    clustered = cluster(
        x,
        labels,
        k=settings.k,
        seed=seed,
        n_init=settings.n_init,
        n_permutations=settings.n_permutations,
        n_nearest=settings.n_nearest,
    )
    for name in ("ami", "ami_control_mean", "ami_control_std"):
        value = getattr(clustered, name)
        if value is not None:
            result.metrics[f"ami{suffix}{name[3:]}"] = value
    if settings.montage and settings.n_nearest:
        name = f"montage{suffix}"
        result.artifacts[name] = _save_gallery(out / f"{name}.png", test, clustered.nearest)
    return report_dict(
        clustered, label_column=settings.label_column, extra={"metric_suffix": suffix}
    )


# --- the backbone-size study --------------------------------------------------------------------


def iter_embed_study(
    config: EmbedStudyConfig, out: str | os.PathLike
) -> ProgressGenerator[tuple[RunResult, dict[str, Any]]]:
    """Embed treated and control cells with a pretrained backbone, cluster, score with AMI.

    See :class:`~phenossl.training.sweep.config.EmbedStudyConfig`. Returns the
    :class:`RunResult` (metrics ``ami``, ``ami_control_mean``, ``ami_control_std``,
    ``n_cells``, ``embed_seconds``) and the details for ``evaluation.json``.

    Raises
    ------
    ValueError
        The CropSet lacks ``compound``/``concentration``, or has no cells of the compound at
        that concentration or of the control (the message lists what it has).
    """
    from phenossl.clustering import cluster
    from phenossl.data.cropset import CropSet
    from phenossl.embedding import iter_embed

    out = Path(out)
    crops = CropSet(config.cropset)
    subset = crops.subset(_study_rows(crops.table, config))
    labels = subset.table["compound"].astype(str).to_numpy()
    started = time.perf_counter()
    features = yield from iter_embed(
        subset,
        config.backbone,
        weights=None if config.weights == "random" else config.weights,
        device=config.device,
        batch_size=config.batch_size,
        input_size=config.input_size,
        seed=config.seed,
    )
    seconds = time.perf_counter() - started
    clustered = cluster(
        features,
        labels,
        k=config.k,
        seed=config.seed,
        n_init=config.n_init,
        n_permutations=config.n_permutations,
        n_nearest=config.n_nearest,
    )
    result = RunResult(
        metrics={
            "ami": clustered.ami,
            "ami_control_mean": clustered.ami_control_mean,
            "ami_control_std": clustered.ami_control_std,
            "n_cells": len(subset),
            "embed_seconds": seconds,
        }
    )
    if config.montage and config.n_nearest:
        result.artifacts["montage"] = _save_gallery(out / "montage.png", subset, clustered.nearest)
    if config.save_embeddings:
        from phenossl.embedding import save_embeddings

        save_embeddings(
            out / "embeddings.npz",
            features,
            subset.table["cell_id"].to_numpy(),
            {"backbone": config.backbone, "weights": config.weights, "cropset": config.cropset},
        )
        result.artifacts["embeddings"] = "embeddings.npz"
    yield Progress(len(subset), len(subset), f"AMI {clustered.ami:.3f}")
    return result, {"clusters": [clustered.to_dict(arrays=False)], "n_cells": len(subset)}


def _study_rows(table: Any, config: EmbedStudyConfig) -> np.ndarray:
    """Row positions: the treated cells and as many control cells (seeded draws)."""
    missing = [c for c in ("compound", "concentration") if c not in table.columns]
    if missing:
        raise ValueError(f"{config.cropset}: cells.csv lacks column(s) {missing}")
    compound = table["compound"].astype(str).to_numpy()
    treated = compound == config.compound
    if config.concentration is not None:
        concentration = table["concentration"].to_numpy(dtype=float)
        treated &= np.isclose(concentration, config.concentration, rtol=1e-6, atol=0.0)
    control = np.flatnonzero(compound == config.control)
    treated = np.flatnonzero(treated)
    if not len(treated) or not len(control):
        have = table.loc[table["compound"].astype(str) == config.compound, "concentration"]
        raise ValueError(
            f"{config.cropset}: {len(treated)} cells of {config.compound!r} at concentration "
            f"{config.concentration} and {len(control)} of {config.control!r}; the CropSet has "
            f"{config.compound!r} at {sorted(set(have.tolist()))}"
        )
    n = min(len(treated), len(control), config.n_per_group or len(treated))
    rng = np.random.default_rng(config.seed)
    picks = [np.sort(rng.choice(rows, size=n, replace=False)) for rows in (treated, control)]
    return np.concatenate(picks)


# --- helpers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Torch's CPU threads set to ``n`` (None: unchanged) inside the block."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _build(data: Any, split: str | None, limit: int | None, seed: int, options: dict) -> Any:
    from phenossl.data.datasets import build_dataset

    if limit is not None:
        options = {**options, "limit": limit, "limit_seed": seed}
    return build_dataset(data.dataset, data.root, split=split, **options)


def _check_labelled(train: Any, test: Any) -> None:
    if not train.classes:
        raise ValueError(
            f"evaluate: dataset {train.name!r} has no labels for the linear probe / kNN / "
            "fine-tuning; for a CropSet set evaluate.data.options.label_column"
        )
    if list(train.classes) != list(test.classes):
        raise ValueError("evaluate: the train and test splits have different classes")


def _view_size(config: Any) -> int | None:
    from phenossl.augment import build_augmentation

    first = config.augmentation[0]
    return getattr(build_augmentation(first.name, **first.params), "size", None)


def _checkpoint_epoch(path: Path) -> int | None:
    if not path.is_file():
        return None
    from phenossl.models.checkpoint import load_checkpoint

    return int(load_checkpoint(path)["state"]["epoch"])


def _training_summary(out: Path) -> dict[str, float]:
    """``train_seconds`` (all attempts) and ``train_loss`` (last epoch) from metrics.jsonl."""
    epochs = []
    with open(out / "metrics.jsonl") as f:
        for line in f:
            record = json.loads(line)
            if record.get("kind") == "epoch":
                epochs.append(record)
    if not epochs:
        return {}
    return {
        "train_seconds": float(sum(e.get("time_s", 0.0) for e in epochs)),
        "train_loss": float(epochs[-1]["loss"]),
        "train_epochs": len(epochs),
    }


def _save_embeddings(path: Path, features: np.ndarray, dataset: Any) -> str:
    from phenossl.embedding import save_embeddings

    save_embeddings(path, features, np.arange(len(features)), {"dataset": dataset.name})
    return path.name


def _save_gallery(path: Path, images: Any, nearest: np.ndarray) -> str:
    from phenossl.montage import centroid_gallery, save_png

    save_png(path, centroid_gallery(_DisplayImages(images), nearest))
    return path.name


class _DisplayImages:
    """Images as :func:`phenossl.montage.centroid_gallery` wants them, in display colours.

    A CropSet (DAPI, Tubulin, Actin) is passed through; a dataset's grey images are repeated to
    three channels and its RGB images reversed, so the montage's crop-to-RGB mapping (Actin red,
    Tubulin green, DAPI blue) shows them in their own colours.
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self.is_dataset = hasattr(source, "get_batch")

    def __len__(self) -> int:
        return len(self.source)

    def images(self, indices: np.ndarray) -> np.ndarray:
        if not self.is_dataset:
            return self.source.images(indices)
        batch = self.source.get_batch(np.asarray(indices))[0].cpu().numpy()
        if batch.shape[1] == 1:
            return np.repeat(batch, 3, axis=1)
        return np.ascontiguousarray(batch[:, ::-1])
