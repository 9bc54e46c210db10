"""phenossl checkpoints: a backbone's state dict, JSON-compatible metadata and trainer state.

A checkpoint is a ``torch.save``d dict (see docs/architecture.md)::

    {"format": "phenossl-checkpoint", "version": 1,
     "metadata": {"method", "backbone", "in_channels", "cifar_stem", "epoch", "seed",
                  "input_mean", "input_std", "config"},
     "backbone": backbone.state_dict(),
     "state": {...}}

Everything in it loads with ``torch.load(path, weights_only=True)``: files are never unpickled
into arbitrary objects, so a checkpoint a user hands us cannot run code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from phenossl._atomic import atomic_open
from phenossl._scaling import per_channel
from phenossl.models import EMBEDDING_NORMS
from phenossl.models.backbones import Backbone, build_backbone

FORMAT = "phenossl-checkpoint"
VERSION = 1
METADATA_KEYS = (
    "method",
    "backbone",
    "in_channels",
    "cifar_stem",
    "epoch",
    "seed",
    "input_mean",
    "input_std",
    "config",
)
# what the backbone itself knows; recorded from it and checked against ``metadata``
_ARCHITECTURE_KEYS = ("backbone", "in_channels", "cifar_stem")
# leaves torch.load(weights_only=True) accepts besides tensors and JSON-like values
_STATE_LEAVES: tuple[type, ...] = (Tensor, str, bytes, int, float, complex, bool, type(None))
_STATE_LEAVES += (torch.Size, torch.dtype, torch.device)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    backbone: nn.Module,
    metadata: Mapping[str, Any],
    state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (a crash never leaves a half-written file at ``path``).

    Parameters
    ----------
    path
        Destination file; parent folders are created.
    backbone
        The backbone whose ``state_dict()`` is saved. For a :class:`Backbone` the architecture
        keys (``backbone``, ``in_channels``, ``cifar_stem``) and, unless given in ``metadata``,
        ``input_mean``/``input_std`` are taken from it; any other module must have them in
        ``metadata``.
    metadata
        JSON-compatible values (numpy scalars are converted). Keys of :data:`METADATA_KEYS` that
        are missing are stored as None (``config`` as ``{}``); extra keys are kept.
    state
        Trainer state (heads, optimiser, scheduler, queues, RNG): tensors and plain values only.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    meta = _plain(dict(metadata), "metadata")
    _merge_architecture(meta, backbone)
    for key in METADATA_KEYS:
        meta.setdefault(key, {} if key == "config" else None)
    state = {} if state is None else dict(state)
    _check_state(state, "state")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "metadata": meta,
        "backbone": backbone.state_dict(),
        "state": state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb", fsync=True) as handle:
        torch.save(payload, handle)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(..., weights_only=True)`` and check its format.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a phenossl checkpoint (or is from a newer version); the message names
        the file and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    expected = f"a torch.save'd dict with format {FORMAT!r} (written by save_checkpoint)"
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{path} is not a phenossl checkpoint; expected {expected}: {_load_reason(err)}"
        ) from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = f"format {data.get('format')!r}" if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} is not a phenossl checkpoint ({found}); expected {expected}")
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(
            f"{path} has checkpoint version {version!r}; this phenossl reads versions <= {VERSION}"
        )
    for key, kind in (("metadata", dict), ("backbone", dict), ("state", dict)):
        if not isinstance(data.get(key), kind):
            raise ValueError(f"{path}: entry {key!r} is missing or not a dict; expected {expected}")
    missing = [k for k in _ARCHITECTURE_KEYS if data["metadata"].get(k) is None]
    if missing:
        raise ValueError(f"{path}: metadata lacks {missing}, needed to rebuild the backbone")
    return data


def load_backbone(
    path: str | os.PathLike, map_location: Any = "cpu"
) -> tuple[Backbone, dict[str, Any]]:
    """Rebuild the backbone saved in a checkpoint.

    Returns
    -------
    (Backbone, dict)
        The backbone in eval mode, on ``map_location`` when that names a device, with
        ``input_mean``/``input_std`` and ``embedding_norm`` from the metadata when recorded
        there; and the metadata.
    """
    data = load_checkpoint(path, map_location=map_location)
    meta = data["metadata"]
    try:
        backbone = build_backbone(
            meta["backbone"],
            in_channels=int(meta["in_channels"]),
            cifar_stem=bool(meta["cifar_stem"]),
        )
    except ValueError as err:
        raise ValueError(f"{path}: cannot rebuild the backbone from its metadata: {err}") from err
    try:
        backbone.load_state_dict(data["backbone"], strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{path}: the saved weights do not match the architecture {meta['backbone']!r} "
            f"(in_channels={meta['in_channels']}, cifar_stem={meta['cifar_stem']}): "
            f"{_mismatch_summary(backbone, data['backbone'])}"
        ) from err
    for key in ("input_mean", "input_std"):
        if meta.get(key) is not None:
            value = per_channel(meta[key], backbone.in_channels, f"{path}: {key}")
            setattr(backbone, key, value)
    norm = meta.get("embedding_norm")
    if norm is not None and norm not in EMBEDDING_NORMS:
        expected = " or ".join(map(repr, EMBEDDING_NORMS))
        raise ValueError(f"{path}: metadata embedding_norm={norm!r}; expected {expected}")
    backbone.embedding_norm = norm
    if isinstance(map_location, str | torch.device):
        backbone = backbone.to(map_location)
    return backbone.eval(), meta


def _load_reason(err: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words: never torch's advice to unpickle the file."""
    import pickle
    import zipfile

    if isinstance(err, pickle.UnpicklingError) or "weights_only" in str(err).lower():
        return "it holds Python objects other than tensors, which phenossl never unpickles"
    if isinstance(err, zipfile.BadZipFile | EOFError) or "zip archive" in str(err):
        return "the file is truncated or not a torch file"
    return str(err).splitlines()[0][:200] if str(err) else type(err).__name__


def _mismatch_summary(module: nn.Module, state: Mapping[str, Any]) -> str:
    """Counts of missing, unexpected and reshaped keys (a few named), not the whole key list."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shaped = [
        k
        for k in own
        if k in state and getattr(state[k], "shape", None) != getattr(own[k], "shape", None)
    ]
    parts = [
        f"{len(keys)} {what} key(s) (e.g. {', '.join(keys[:2])})"
        for what, keys in (("missing", missing), ("unexpected", extra), ("reshaped", shaped))
        if keys
    ]
    return "; ".join(parts) or "incompatible weights"


def _merge_architecture(meta: dict[str, Any], backbone: nn.Module) -> None:
    """Fill/check the architecture keys of ``meta`` from a :class:`Backbone`."""
    if isinstance(backbone, Backbone):
        own = {
            "backbone": backbone.name,
            "in_channels": backbone.in_channels,
            "cifar_stem": backbone.cifar_stem,
        }
        for key, value in own.items():
            if meta.get(key) is not None and meta[key] != value:
                raise ValueError(
                    f"metadata[{key!r}]={meta[key]!r} contradicts the backbone ({key}={value!r})"
                )
            meta[key] = value
        meta.setdefault("input_mean", list(backbone.input_mean))
        meta.setdefault("input_std", list(backbone.input_std))
        return
    missing = [k for k in _ARCHITECTURE_KEYS if meta.get(k) is None]
    if missing:
        raise ValueError(
            f"backbone is a {type(backbone).__name__}, not a phenossl Backbone, so metadata must "
            f"give {missing} to rebuild it"
        )


def _plain(obj: Any, where: str) -> Any:
    """A JSON-compatible copy of ``obj`` (tuples become lists, numpy scalars Python numbers)."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, str | bool | int | float):
        return obj
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a non-string key {key!r}; expected JSON-compatible")
            out[key] = _plain(value, f"{where}[{key!r}]")
        return out
    if isinstance(obj, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise ValueError(
        f"{where} is a {type(obj).__name__}; expected JSON-compatible values "
        "(str, int, float, bool, None, lists and dicts of them)"
    )


def _check_state(obj: Any, where: str) -> None:
    """Raise unless ``obj`` loads with ``torch.load(weights_only=True)``."""
    if isinstance(obj, _STATE_LEAVES):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_state(key, f"{where} key {key!r}")
            _check_state(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, list | tuple | set):
        for i, value in enumerate(obj):
            _check_state(value, f"{where}[{i}]")
        return
    raise ValueError(
        f"{where} is a {type(obj).__name__}, which torch.load(weights_only=True) refuses; "
        "expected tensors, plain Python values and dicts/lists of them (numpy arrays: "
        "torch.from_numpy)"
    )
