"""Cell models shipped inside the package, by name: ``phenossl.embed(x, model="phenossl-cells")``.

A shipped model is a phenossl checkpoint (:mod:`phenossl.models.checkpoint`) stored in
``phenossl/models/weights/`` in half precision, loaded with ``torch.load(..., weights_only=True)``
and rebuilt in float32. Its metadata says what it is: the data and plates it was trained on, the
composition, method and epochs, its scores on the held-out plates, and the crop it expects
(``crop_size``: the side of the single-cell crops it was trained on, in field pixels;
``input_size``: the side those crops are resized to before the network) and how its embeddings
are compared (``embedding_norm``: ``"l2"``, unit length). The pipeline and the GUI read
``crop_size`` to cut fields the way the model was trained, and :func:`phenossl.embed` resizes to
``input_size`` and normalises as ``embedding_norm`` says.

::

    from phenossl.models.pretrained import load_pretrained, pretrained_metadata

    pretrained_metadata("phenossl-cells")["crop_size"]  # 68
    backbone, meta = load_pretrained("phenossl-cells")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from phenossl.models.backbones import Backbone

__all__ = [
    "DEFAULT_MODEL",
    "PRETRAINED",
    "PretrainedModel",
    "available_pretrained",
    "expected_sizes",
    "export_pretrained",
    "load_pretrained",
    "model_crop_size",
    "pretrained_metadata",
    "pretrained_path",
]

#: metadata every shipped model carries besides the checkpoint's own keys
REQUIRED_KEYS = ("data", "plates", "composition", "crop_size", "input_size", "scores")


@dataclass(frozen=True)
class PretrainedModel:
    """A shipped model: its weights file (in ``phenossl/models/weights``) and what it is for."""

    filename: str
    summary: str


#: name -> shipped model
PRETRAINED: dict[str, PretrainedModel] = {
    "phenossl-cells": PretrainedModel(
        filename="phenossl_cells.pt",
        summary=(
            "MoCoV2+ VGG13-BN trained on real BBBC021 single-cell crops (68 px, DAPI/Tubulin/"
            "Actin) with the fluorescence composition: unit-length embeddings (compared by cosine) "
            "of 3-channel stained cells for clustering and treatment profiles"
        ),
    ),
}


#: the default model of ``phenossl embed`` and of the napari *Embed and cluster* widget
DEFAULT_MODEL = "phenossl-cells"


def available_pretrained() -> tuple[str, ...]:
    """Names of the shipped models whose weights are installed."""
    return tuple(name for name in PRETRAINED if pretrained_path(name, check=False).is_file())


def pretrained_path(name: str, *, check: bool = True) -> Path:
    """The weights file of shipped model ``name`` (raises when unknown or not installed)."""
    if name not in PRETRAINED:
        raise ValueError(
            f"unknown pretrained model {name!r}; expected one of {', '.join(PRETRAINED)}"
        )
    path = Path(str(resources.files("phenossl.models") / "weights" / PRETRAINED[name].filename))
    if check and not path.is_file():
        raise FileNotFoundError(
            f"the weights of {name!r} are missing from the installation ({path}); reinstall "
            "napari-phenossl"
        )
    return path


def pretrained_metadata(name: str) -> dict[str, Any]:
    """The metadata of shipped model ``name`` (data, plates, scores, crop and input size...)."""
    from phenossl.models.checkpoint import load_checkpoint

    meta = dict(load_checkpoint(pretrained_path(name))["metadata"])
    meta["name"] = name
    meta["summary"] = PRETRAINED[name].summary
    return meta


def load_pretrained(name: str, map_location: Any = "cpu") -> tuple[Backbone, dict[str, Any]]:
    """The backbone of shipped model ``name`` in float32 eval mode, and its metadata.

    The backbone carries ``input_size``, ``crop_size`` and ``embedding_norm`` attributes from the
    metadata, which :func:`phenossl.embed` and the pipeline use.

    Examples
    --------
    >>> backbone, meta = load_pretrained("phenossl-cells")  # doctest: +SKIP
    >>> meta["crop_size"], meta["input_size"]  # doctest: +SKIP
    (68, 48)
    """
    from phenossl.models.checkpoint import load_backbone

    backbone, meta = load_backbone(pretrained_path(name), map_location=map_location)
    backbone = backbone.float()
    backbone.name = name
    backbone.input_size = int(meta["input_size"])
    backbone.crop_size = int(meta["crop_size"])
    return backbone, {**meta, "name": name, "summary": PRETRAINED[name].summary}


def model_crop_size(model: Any) -> int | None:
    """The crop side a model expects: a shipped model's or checkpoint's ``crop_size``, else None.

    None means the model does not say (a backbone name, ImageNet weights, a plain module); the
    caller keeps its own default.
    """
    if isinstance(model, torch.nn.Module):
        size = getattr(model, "crop_size", None)
        return None if size is None else int(size)
    if not isinstance(model, str | os.PathLike):
        return None
    text = os.fspath(model)
    if text in PRETRAINED:
        return int(pretrained_metadata(text)["crop_size"])
    if Path(text).is_file():
        from phenossl.models.checkpoint import load_checkpoint

        size = load_checkpoint(text)["metadata"].get("crop_size")
        return None if size is None else int(size)
    return None


def expected_sizes(model: Any, default: int) -> tuple[int, int]:
    """``(crop_size, input_size)`` a model expects; ``(default, default)`` when it does not say."""
    crop = model_crop_size(model)
    if crop is None:
        return default, default
    if isinstance(model, str) and model in PRETRAINED:
        return crop, int(pretrained_metadata(model)["input_size"])
    return crop, int(getattr(model, "input_size", None) or crop)


def finetune_settings(name: str) -> dict[str, Any]:
    """How to go on training shipped model ``name`` on other cells: what it was trained with.

    Returns the ``backbone``, the augmentation ``composition`` and the ``crop_size`` and
    ``view_size`` (the size of the training views, the model's input size) of its training,
    and the ``optim`` schedule of a short fine-tune: a one-epoch warm-up then cosine decay, so
    that the first steps' full-size updates do not undo the trained features.

    Examples
    --------
    >>> settings = finetune_settings("phenossl-cells")
    >>> settings["backbone"], settings["composition"], settings["crop_size"], settings["view_size"]
    ('vgg13_bn', 'fluorescence', 68, 48)
    """
    meta = pretrained_metadata(name)
    return {
        "backbone": str(meta["backbone"]),
        "composition": str(meta["composition"]),
        "crop_size": int(meta["crop_size"]),
        "view_size": int(meta["input_size"]),
        "optim": {"scheduler": "warmup_cosine", "warmup_epochs": 1},
    }


def export_pretrained(
    checkpoint: str | os.PathLike, out: str | os.PathLike, **metadata: Any
) -> Path:
    """Write a training checkpoint's backbone as a shippable half-precision model file.

    Parameters
    ----------
    checkpoint
        A phenossl checkpoint (``final.pt`` or an epoch's ``last.pt``).
    out
        The file to write (e.g. ``src/phenossl/models/weights/phenossl_cells.pt``).
    **metadata
        Must include :data:`REQUIRED_KEYS`; added to the checkpoint's metadata (its training
        ``config`` is kept). The trainer state is dropped.

    Examples
    --------
    >>> export_pretrained("runs/cells/final.pt", "cells.pt", data="BBBC021", plates=[...],
    ...                   composition="fluorescence", crop_size=68, input_size=48,
    ...                   scores={...})  # doctest: +SKIP
    """
    from phenossl.models.checkpoint import load_backbone, save_checkpoint

    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"export_pretrained: metadata lacks {', '.join(missing)}")
    backbone, meta = load_backbone(checkpoint)
    return save_checkpoint(out, backbone=backbone.half(), metadata={**meta, **metadata})
