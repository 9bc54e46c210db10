"""The SSL trainer: plain PyTorch, exactly resumable, one run folder per run.

::

    from phenossl.training.train.config import load_config
    from phenossl.training.train.trainer import train

    final = train(load_config("training/cifar10_simclr.yaml", smoke=True), "runs/simclr")
    features = phenossl.embed(images, model=final)

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON object
per line: ``{"kind": "start", ...}`` first, with the optimiser and its effective learning
rate (:func:`~phenossl.training.train.optim.optimizer_summary`); ``{"kind": "step", ...}`` every ``run.log_every`` steps with the mean loss since the
previous one and the learning rate; ``{"kind": "epoch", ...}`` with the epoch's mean loss, time,
images/s, views/s and the optional kNN accuracy), ``checkpoints/last.pt`` (written atomically
after every ``run.checkpoint_every`` epochs and the last one) and ``final.pt``.

One optimiser step (:class:`TrainStep`): the uint8 batch, already on the device, is scaled to
[0, 1]; each augmentation composition makes two views of it on the device; the views are
normalised with the dataset's mean/std; the method's loss of each composition is weighted and
summed (the paper's loss mix; queue and memory-bank updates wait until every composition's loss is
computed, so no composition is contrasted against keys of the batch's own images); backward, optimiser step at the scheduled rate, and the method's
gradient-free momentum updates. On CUDA the forward runs under autocast (bf16 where supported)
with channels_last inputs; on the CPU under bf16 autocast with ``run.cpu_amp`` on a CPU with
bf16 instructions. The last partial batch of every epoch is dropped.

Exact resume: ``last.pt`` holds the backbone, the method's complete state (heads, momentum
networks, queues), the optimiser, the AMP scaler, the epoch and step counters (the schedule is
a function of the step) and the random states of the run (:class:`~phenossl._rng.RunRng`
and the data-order generator). A run interrupted at any point and started again with the same
config and folder continues from its last checkpoint and ends with the same weights, bit for
bit on the CPU, as an uninterrupted run; ``metrics.jsonl`` is cut back to the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor
from torch.optim import Optimizer

from phenossl._device import amp_dtype, autocast, resolve_device
from phenossl._lock import folder_lock
from phenossl._progress import Progress, ProgressCallback, ProgressGenerator, drives
from phenossl._rng import RunRng
from phenossl._scaling import InputScaler, per_channel
from phenossl.augment import Augmentation, weak_view
from phenossl.data.image_dataset import ImageDataset
from phenossl.training.train.batches import make_feeder
from phenossl.training.train.config import TrainConfig, differing_keys, load_config
from phenossl.training.train.monitor import KnnMonitor
from phenossl.training.train.optim import (
    build_optimizer,
    optimizer_summary,
    scheduled_lr,
    set_learning_rates,
)

if TYPE_CHECKING:
    from phenossl.models.backbones import Backbone
    from phenossl.ssl.base import Method

__all__ = [
    "TrainStep",
    "build_method_for",
    "cropset_train_config",
    "describe_precision",
    "iter_train",
    "run_seeds",
    "train",
]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
LAST_CHECKPOINT = Path("checkpoints") / "last.pt"
FINAL_CHECKPOINT = "final.pt"
# config keys that may change between an interrupted run and its resumption
# where the data lies is not the run: data.root may change (a fixed path, a symlink); the data
# itself is checked by content (ImageDataset.fingerprint)
_RESUMABLE_CHANGES = ("run.", "data.preload", "data.root", "smoke")


class TrainStep:
    """One optimiser step of an SSL method on a uint8 batch that is already on the device.

    Parameters
    ----------
    method
        The SSL method (on ``device``).
    optimizer
        Over ``method.parameter_groups()`` (:func:`~phenossl.training.train.optim.build_optimizer`).
    augmentations
        ``(composition, weight)`` pairs; each composition makes two views per step (the
        views in ``method.weak_views`` with :func:`~phenossl.augment.weak_view` of it).
    mean, std
        Per-channel normalisation applied to the views (the dataset's statistics).
    config
        The run's config (schedule, AMP, channels_last).
    total_steps, warmup_steps
        Length of training and of the warm-up, in optimiser steps.
    """

    def __init__(
        self,
        method: Method,
        optimizer: Optimizer,
        augmentations: Sequence[tuple[Augmentation, float]],
        mean: Sequence[float],
        std: Sequence[float],
        config: TrainConfig,
        *,
        device: torch.device,
        total_steps: int,
        warmup_steps: int,
    ) -> None:
        self.method = method
        self.optimizer = optimizer
        self.augmentations = list(augmentations)
        self.names = _unique_names([aug.name for aug, _ in self.augmentations])
        # the two views' compositions; the method names the views it wants weak (ReSSL's key)
        weak = getattr(method, "weak_views", ())
        self.view_augmentations = [
            [weak_view(aug) if v in weak else aug for v in range(2)] for aug, _ in augmentations
        ]
        self.device = device
        self.optim = config.optim
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.base_lr = config.optim.effective_lr()
        self.cpu_amp = config.run.cpu_amp
        dtype = run_dtype(config, device)
        self.amp = dtype is not None
        cuda = device.type == "cuda"
        self.memory_format = (
            torch.channels_last if cuda and config.run.channels_last else torch.contiguous_format
        )
        self.scale = InputScaler(mean, std, device, memory_format=self.memory_format)
        fp16 = dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device.type) if fp16 else None

    def lr(self, step: int) -> float:
        """Scheduled learning rate of step ``step`` (0-based)."""
        return scheduled_lr(step, self.total_steps, self.warmup_steps, self.optim)

    def views(self, images: Tensor) -> list[list[Tensor]]:
        """Two normalised views per composition of a uint8 batch (no gradient)."""
        with torch.no_grad():
            x = images.float().div_(255.0)
            out = []
            for augs in self.view_augmentations:
                pair = []
                for aug in augs:
                    pair.append(self.scale(aug(x)))
                out.append(pair)
        return out

    def __call__(self, images: Tensor, indices: Tensor, step: int) -> dict[str, Tensor]:
        """Train on one batch; returns detached logs (``loss`` = the weighted sum)."""
        set_learning_rates(self.optimizer, self.lr(step), self.base_lr)
        views = self.views(images)
        logs: dict[str, Tensor] = {}
        loss: Tensor | None = None
        # every composition sees the queues of earlier steps; this step's keys go in at the end
        with (
            autocast(self.device, enabled=self.amp, cpu=self.cpu_amp),
            self.method.deferred_enqueues(),
        ):
            for name, (_, weight), pair in zip(self.names, self.augmentations, views):
                out = self.method.training_step(pair, indices)
                part = out["loss"]
                loss = weight * part if loss is None else loss + weight * part
                prefix = f"{name}/" if len(views) > 1 else ""
                logs.update({f"{prefix}{k}": v.detach() for k, v in out.items()})
        assert loss is not None  # there is at least one composition
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.method.after_optimizer_step(step)
        logs["loss"] = loss.detach()
        return logs


def build_method_for(
    config: TrainConfig, dataset: ImageDataset, rng: RunRng | None = None
) -> Method:
    """The backbone and SSL method of ``config`` for ``dataset``, on the CPU.

    Initialised from ``rng`` (default: the run's stream for ``run.seed``, so the weights are
    those a run of ``config`` starts from).

    The backbone's ``input_mean``/``input_std`` are set to the dataset's statistics, so a
    checkpoint of it (and ``phenossl.embed`` of the live module) normalises like training.
    """
    from phenossl.models.backbones import build_backbone, zero_init_residual_
    from phenossl.ssl.methods import build_method, method_hparams

    channels = int(dataset.channels)
    if config.model.in_channels is not None and config.model.in_channels != channels:
        raise ValueError(
            f"model.in_channels={config.model.in_channels} but the dataset "
            f"{config.data.dataset!r} has {channels} channels"
        )
    mean = per_channel(dataset.mean, channels, "dataset mean")
    std = per_channel(dataset.std, channels, "dataset std", positive=True)
    if rng is None:
        rng = RunRng(run_seeds(config.run.seed)[0], torch.device("cpu"))
    hparams = dict(config.method.hparams)
    accepted = method_hparams(config.method.name)
    if "dataset_size" in accepted:
        hparams["dataset_size"] = len(dataset)
    if "seed" in accepted:
        hparams["seed"] = config.run.seed
    with rng:
        backbone = build_backbone(
            config.model.backbone, in_channels=channels, cifar_stem=config.model.cifar_stem
        )
        if config.model.zero_init_residual:
            zero_init_residual_(backbone)
        if config.model.init is not None:
            _load_init(backbone, config.model.init)
        backbone.input_mean, backbone.input_std = tuple(mean), tuple(std)
        try:
            return build_method(config.method.name, backbone, **hparams)
        except ValueError as err:
            raise ValueError(f"method: {err}") from err


def _load_init(backbone: Backbone, init: str) -> None:
    """Copy the weights of a shipped model or checkpoint into ``backbone`` (same architecture)."""
    from phenossl.models.checkpoint import load_backbone
    from phenossl.models.pretrained import PRETRAINED, load_pretrained

    if init in PRETRAINED:
        source, _ = load_pretrained(init)
    elif Path(init).is_file():
        source, _ = load_backbone(init)
    else:
        raise ValueError(
            f"model.init={init!r} is neither a shipped model ({', '.join(PRETRAINED)}) nor a "
            "checkpoint file"
        )
    try:
        backbone.load_state_dict(source.float().state_dict(), strict=True)
    except RuntimeError as err:
        raise ValueError(f"model.init={init!r} does not fit model.backbone: {err}") from err
    # a fine-tune is compared the way its starting model is (phenossl-cells: by cosine)
    backbone.embedding_norm = source.embedding_norm


def iter_train(
    config: TrainConfig | str | os.PathLike, out_dir: str | os.PathLike, *, resume: bool = True
) -> ProgressGenerator[Path]:
    """Train an SSL method; yields :class:`~phenossl.Progress` per step, returns ``final.pt``.

    Parameters
    ----------
    config
        A :class:`~phenossl.training.train.config.TrainConfig` or a YAML file to load.
    out_dir
        The run folder (created). See the module docstring for its contents.
    resume
        Continue from ``out_dir``'s last checkpoint when there is one (the config must match
        the saved one, except for ``run`` settings); a finished run returns its ``final.pt``
        at once. ``False`` starts over, deleting the folder's previous checkpoints and metrics.

    Raises
    ------
    ValueError
        Invalid config, data smaller than one batch, a checkpoint from a different config, or a
        non-finite loss (the message names the step).
    """
    if not isinstance(config, TrainConfig):
        config = load_config(Path(config))
    out = Path(out_dir)
    device = resolve_device(config.run.device)
    threads = torch.get_num_threads()
    if config.run.num_threads is not None:
        torch.set_num_threads(config.run.num_threads)
    try:
        with folder_lock(out, "run folder"):  # a second process on it would double every line
            return (yield from _train(config, out, device, resume))
    finally:
        torch.set_num_threads(threads)


@drives(iter_train)
def train(*, progress: ProgressCallback | None = None) -> Path:
    """Train an SSL method and return the path of ``final.pt``; see :func:`iter_train`."""


def run_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``config``'s training steps on ``device`` (None: float32)."""
    return amp_dtype(device, cpu=config.run.cpu_amp) if config.run.amp else None


def describe_precision(config: TrainConfig) -> str:
    """The precision a run of ``config`` trains in on this machine; on a CPU with bf16
    instructions that trains in float32, how to make it faster.

    Examples
    --------
    >>> describe_precision(TrainConfig.from_dict({"run": {"device": "cpu"}}))  # doctest: +ELLIPSIS
    'precision: float32 on cpu...'
    """
    from phenossl import _device

    device = resolve_device(config.run.device)
    dtype = run_dtype(config, device)
    if dtype is not None:
        return f"precision: {str(dtype).removeprefix('torch.')} autocast on {device.type}"
    text = f"precision: float32 on {device.type}"
    if device.type == "cpu" and _device.cpu_has_native_bf16():
        text += (
            " (this CPU has bf16 instructions: run.cpu_amp=true trains about 1.8x faster, at a"
            " small cost to treatment profiles on real cells: docs/cell-model.md)"
        )
    return text


#: the cellular preset of a method, where the paper has one (others use their CIFAR preset)
CELL_PRESETS = {"mocov2plus": "mocov2plus_cells"}


def cropset_train_config(
    cropset: str | os.PathLike,
    *,
    method: str = "mocov2plus",
    backbone: str = "vgg13_bn",
    augmentation: str = "cell_affine_crop",
    view_size: int = 196,
    epochs: int = 100,
    batch_size: int = 256,
    seed: int = 0,
    device: str = "auto",
    split: str | None = None,
    init: str | None = None,
    optim: dict[str, Any] | None = None,
    log_every: int = 1,
    cpu_amp: bool = False,
) -> TrainConfig:
    """The :class:`~phenossl.training.train.config.TrainConfig` of a run on a CropSet's crops.

    Used by the napari Train widget and the demo. The method runs with its cellular preset
    (:data:`CELL_PRESETS`) where there is one, else with its own; one augmentation composition
    at ``view_size`` px.

    Parameters
    ----------
    cropset
        The CropSet folder.
    split
        The CropSet split to train on; None trains on every crop.
    init
        A shipped model or checkpoint to start from (fine-tuning); None: random init.
    optim
        Further ``optim`` settings (scheduler, warm-up...), on top of ``epochs`` and
        ``batch_size``.
    log_every
        Steps between two logged losses.
    cpu_amp
        Train in bf16 on a CPU with bf16 instructions (``run.cpu_amp``).

    Examples
    --------
    >>> config = cropset_train_config("crops/", epochs=2, batch_size=32)  # doctest: +SKIP
    >>> config.method.preset, config.data.dataset  # doctest: +SKIP
    ('mocov2plus_cells', 'cropset')
    """
    return TrainConfig.from_dict(
        {
            "data": {"dataset": "cropset", "root": str(cropset), "split": split},
            "model": {"backbone": backbone, "init": init},
            "method": {"name": method, "preset": CELL_PRESETS.get(method, method)},
            "augmentation": [{"name": augmentation, "size": view_size}],
            "optim": {**(optim or {}), "epochs": epochs, "batch_size": batch_size},
            "run": {"seed": seed, "device": device, "log_every": log_every, "cpu_amp": cpu_amp},
        }
    )


# --- the loop -----------------------------------------------------------------------------------


def _train(
    config: TrainConfig, out: Path, device: torch.device, resume: bool
) -> ProgressGenerator[Path]:
    from phenossl.augment import build_augmentation

    optim = config.optim
    # a loaded config has every optimiser field (the method preset's value where not set)
    assert optim.batch_size is not None
    assert optim.epochs is not None
    assert optim.warmup_epochs is not None
    dataset = _dataset(config)
    batch = optim.batch_size
    steps_per_epoch = len(dataset) // batch
    if steps_per_epoch == 0:
        raise ValueError(
            f"data: the dataset has {len(dataset)} samples, fewer than optim.batch_size={batch}"
        )
    total_steps = steps_per_epoch * optim.epochs
    final_path = out / FINAL_CHECKPOINT
    if resume and final_path.is_file():
        _check_resumable(config, dataset, _saved_metadata(final_path), final_path)
        yield Progress(total_steps, total_steps, f"already trained: {final_path}")
        return final_path
    if not resume:
        _clear(out)

    model_seed, order_seed = run_seeds(config.run.seed)
    rng = RunRng(model_seed, device)
    method = build_method_for(config, dataset, rng)
    method.to(device)
    step_fn = TrainStep(
        method,
        build_optimizer(method.parameter_groups(), optim),
        [(build_augmentation(a.name, **a.params), a.weight) for a in config.augmentation],
        cast("Backbone", method.backbone).input_mean,
        cast("Backbone", method.backbone).input_std,
        config,
        device=device,
        total_steps=total_steps,
        warmup_steps=optim.warmup_epochs * steps_per_epoch,
    )
    method.to(memory_format=step_fn.memory_format)
    method.on_train_start(total_steps)
    order_rng = torch.Generator().manual_seed(order_seed)

    start_epoch, metrics_bytes = 0, 0
    last_path = out / LAST_CHECKPOINT
    if resume and last_path.is_file():
        start_epoch, metrics_bytes = _restore(last_path, config, dataset, step_fn, rng, order_rng)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / CONFIG_FILE)
    log = _MetricsLog(out / METRICS_FILE, truncate_to=metrics_bytes)
    if start_epoch == 0:  # a resumed run keeps this record (it precedes every checkpoint)
        log.write({"kind": "start", **optimizer_summary(optim)})
    monitor = _knn_monitor(config, dataset, device, step_fn.augmentations[0][0].size)
    feeder = make_feeder(dataset, device, config.data.preload)
    step = start_epoch * steps_per_epoch
    yield Progress(step, total_steps, f"epoch {start_epoch + 1}/{optim.epochs} on {device}")
    try:
        for epoch in range(start_epoch, optim.epochs):
            with rng:
                method.on_epoch_start(epoch)
            method.train()
            order = torch.randperm(len(dataset), generator=order_rng)
            order = order[: steps_per_epoch * batch].view(steps_per_epoch, batch)
            window, whole = _Mean(), _Mean()
            started = time.perf_counter()
            for images, indices in feeder.batches(order):
                with rng:
                    logs = step_fn(images, indices, step)
                window.add(logs)
                whole.add({"loss": logs["loss"]})
                step += 1
                message = ""
                if step % config.run.log_every == 0:
                    record: dict[str, Any] = window.pop(step)
                    lr = step_fn.lr(step - 1)
                    log.write({"kind": "step", "epoch": epoch, "step": step, "lr": lr, **record})
                    message = f"epoch {epoch + 1}/{optim.epochs} loss {record['loss']:.4f}"
                yield Progress(step, total_steps, message)
            _synchronize(device)
            seconds = time.perf_counter() - started
            record = {"kind": "epoch", "epoch": epoch, "step": step, **whole.pop(step)}
            images_per_s = steps_per_epoch * batch / seconds
            record.update(
                time_s=seconds,
                images_per_s=images_per_s,
                views_per_s=images_per_s * 2 * len(config.augmentation),
                lr=step_fn.lr(step - 1),
            )
            if monitor is not None and (epoch + 1) % config.run.eval.every == 0:
                record.update(monitor(method.backbone))
            log.write(record)
            done = epoch + 1
            if done % config.run.checkpoint_every == 0 or done == optim.epochs:
                _save(last_path, config, dataset, step_fn, rng, order_rng, done, step, log.size())
                if config.run.keep_epochs:
                    snapshot = last_path.with_name(f"epoch{done}.pt")
                    _save(snapshot, config, dataset, step_fn, None, None, done, step, log.size())
            yield Progress(
                step, total_steps, f"epoch {done}/{optim.epochs} loss {record['loss']:.4f}"
            )
    finally:
        feeder.close()
        log.close()
    _save(final_path, config, dataset, step_fn, None, None, optim.epochs, step, log.size())
    return final_path


_TRAIN_SPLIT = object()


def _dataset(config: TrainConfig, split: Any = _TRAIN_SPLIT, limit: int | None = None):
    """``data``'s training dataset, or its ``split`` (first ``limit`` images)."""
    from phenossl.data.datasets import build_dataset

    data = config.data
    options = dict(data.options)
    if split is _TRAIN_SPLIT:
        split, limit = data.split, data.limit
    if limit is not None:
        options["limit"] = limit
    return build_dataset(data.dataset, data.root, split=split, **options)


def run_seeds(seed: int) -> tuple[int, int]:
    """Independent seeds of a run's model/augmentation stream and of its data order."""
    model, order = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
    return int(model), int(order)


def _unique_names(names: list[str]) -> list[str]:
    return [name if names.count(name) == 1 else f"{name}{i}" for i, name in enumerate(names)]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- metrics ------------------------------------------------------------------------------------


class _Mean:
    """Running means of detached scalar tensors, read (one device sync) only when popped."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, logs: dict[str, Tensor]) -> None:
        for key, value in logs.items():
            value = value.detach().float()
            if value.ndim == 0:
                self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def pop(self, step: int) -> dict[str, float]:
        values = {key: float(total) / self.count for key, total in self.sums.items()}
        self.sums, self.count = {}, 0
        if not math.isfinite(values.get("loss", 0.0)):
            raise ValueError(
                f"the loss became non-finite ({values['loss']}) by step {step}; lower optim.lr "
                "or set run.amp=false"
            )
        return values


class _MetricsLog:
    """Append-only JSON lines, cut back to ``truncate_to`` bytes (the checkpoint's size)."""

    def __init__(self, path: Path, truncate_to: int) -> None:
        self.path = path
        with open(path, "a+b") as f:
            f.truncate(min(truncate_to, f.seek(0, os.SEEK_END)))
        self._file = open(path, "a")  # noqa: SIM115 - closed by close()

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def size(self) -> int:
        return self.path.stat().st_size  # every write is flushed

    def close(self) -> None:
        self._file.close()


# --- checkpoints --------------------------------------------------------------------------------


def _save(
    path: Path,
    config: TrainConfig,
    dataset: ImageDataset,
    step_fn: TrainStep,
    rng: RunRng | None,
    order_rng: torch.Generator | None,
    epoch: int,
    step: int,
    metrics_bytes: int,
) -> None:
    """Write a checkpoint.

    With ``rng``, ``last.pt``: everything a bit-exact resume needs (backbone, the method's
    heads, momentum encoders and queues, optimiser, scaler, RNG). Without, ``final.pt``: the
    backbone and the metadata only, what embedding, evaluation and ``model.init`` read (for a
    MoCoV2+/VGG13-BN run, about a fifth of ``last.pt``).
    """
    from phenossl.models.checkpoint import save_checkpoint

    method = step_fn.method
    state: dict[str, Any] = {"epoch": epoch, "step": step}
    if rng is not None and order_rng is not None:
        heads = {k: v for k, v in method.state_dict().items() if not k.startswith("backbone.")}
        state.update(
            method=heads,
            optimizer=step_fn.optimizer.state_dict(),
            scaler=step_fn.scaler.state_dict() if step_fn.scaler is not None else {},
            rng=rng.state_dict(),
            order_rng=order_rng.get_state(),
            metrics_bytes=metrics_bytes,
        )
    metadata = {
        "method": config.method.name,
        "epoch": epoch,
        "seed": config.run.seed,
        "config": config.to_dict(),
        "data_fingerprint": dataset.fingerprint,
    }
    norm = getattr(method.backbone, "embedding_norm", None)
    if norm is not None:  # inherited from model.init
        metadata["embedding_norm"] = norm
    save_checkpoint(path, backbone=method.backbone, metadata=metadata, state=state)


def _restore(
    path: Path,
    config: TrainConfig,
    dataset: ImageDataset,
    step_fn: TrainStep,
    rng: RunRng,
    order_rng: torch.Generator,
) -> tuple[int, int]:
    """Load ``last.pt`` into the run; returns (epochs done, metrics bytes at that point)."""
    from phenossl.models.checkpoint import load_checkpoint

    data = load_checkpoint(path, map_location=step_fn.device)
    _check_resumable(config, dataset, data["metadata"], path)
    try:
        state = data["state"]
        method = step_fn.method
        weights = {f"backbone.{k}": v for k, v in data["backbone"].items()}
        method.load_state_dict({**weights, **state["method"]}, strict=True)
        step_fn.optimizer.load_state_dict(state["optimizer"])
        if step_fn.scaler is not None and state.get("scaler"):
            step_fn.scaler.load_state_dict(state["scaler"])
        rng.load_state_dict({k: None if v is None else v.cpu() for k, v in state["rng"].items()})
        order_rng.set_state(state["order_rng"].cpu())
        return int(state["epoch"]), int(state["metrics_bytes"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        # name what is missing, never torch's list of every state-dict key
        what = f"no {err.args[0]!r}" if isinstance(err, KeyError) else type(err).__name__
        raise ValueError(
            f"{path} cannot resume this run ({what}: not a complete training checkpoint); "
            "start over with --no-resume"
        ) from err


def _saved_metadata(path: Path) -> dict[str, Any]:
    from phenossl.models.checkpoint import load_checkpoint

    return load_checkpoint(path)["metadata"]


def _check_resumable(
    config: TrainConfig, dataset: ImageDataset, metadata: dict[str, Any], path: Path
) -> None:
    """Refuse to continue a run from ``path`` with another config or on other data.

    Checkpoints older than the data fingerprint are trusted on the data.
    """
    _check_same_config(config, metadata.get("config") or {}, path)
    saved = metadata.get("data_fingerprint")
    if saved is not None and saved != dataset.fingerprint:
        raise ValueError(
            f"{path} was trained on other data than {dataset.name!r} holds now (content "
            f"fingerprint {saved} vs {dataset.fingerprint}: other images, labels or size); "
            "point data.root at the data it was trained on, use another output folder, or "
            "start over (resume=False / --no-resume)"
        )


def _check_same_config(config: TrainConfig, saved: dict[str, Any], path: Path) -> None:
    differ = differing_keys(config.to_dict(), saved, ignore=_RESUMABLE_CHANGES)
    if differ:
        raise ValueError(
            f"{path} was written by a run with a different config ({', '.join(differ[:8])} "
            "differ); resume with the same config, use another output folder, or start over "
            "(resume=False / --no-resume)"
        )


def _clear(out: Path) -> None:
    for name in (METRICS_FILE, FINAL_CHECKPOINT, CONFIG_FILE):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / LAST_CHECKPOINT.parent, ignore_errors=True)


def _knn_monitor(
    config: TrainConfig, dataset: ImageDataset, device: torch.device, size: int | None
) -> KnnMonitor | None:
    """The kNN monitor of ``run.eval``, or None when it is off."""
    settings = config.run.eval
    if not settings.knn:
        return None
    from phenossl.data.datasets import limit_dataset

    bank = dataset if settings.bank_limit is None else limit_dataset(dataset, settings.bank_limit)
    queries = _dataset(config, split=settings.split, limit=settings.limit)
    return KnnMonitor(bank, queries, settings, device=device, amp=config.run.amp, input_size=size)
