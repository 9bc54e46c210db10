"""`phenossl embed` and `phenossl cluster`: from crops to embeddings to clusters."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from phenossl.cli._common import (
    CLIError,
    add_command,
    add_embeddings_input,
    embeddings_cropset,
    nonnegative_int,
    positive_int,
    run_with_progress,
    writable_file,
    writable_folder,
)
from phenossl.models import NORMALIZE_CHOICES

#: cells per cluster in a montage (100 crops of 196 px make a 19,600 px wide PNG)
MAX_NEAREST = 100


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="phenossl-cells",
        help="phenossl-cells (default: the shipped cell model, MoCoV2+ VGG13-BN trained on real "
        "BBBC021 single-cell crops of 68 px; for 3-channel DAPI/Tubulin/Actin cells), a backbone "
        "name (vgg11..vgg19[_bn], resnet18..152, convnext_tiny; random init or --weights "
        "imagenet), a phenossl checkpoint file, or 'features' (hand-crafted measurements, embed "
        "only)",
    )
    p.add_argument(
        "--weights",
        choices=["random", "imagenet"],
        default="random",
        help="for a backbone name: random init, or ImageNet weights from the local torch cache",
    )
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument(
        "--input-size",
        type=positive_int,
        default=None,
        help="resize crops to this size before the model (default: the crop size)",
    )
    p.add_argument(
        "--normalize",
        choices=list(NORMALIZE_CHOICES),
        default="auto",
        help="embeddings: auto (default: what the model records; l2 for phenossl-cells), none "
        "(the network's output) or l2 (each embedding scaled to unit length, so KMeans compares "
        "cells by cosine)",
    )
    p.add_argument(
        "--cpu-amp",
        action="store_true",
        help="on a CPU with bf16 instructions (AVX512-BF16 or AMX), embed in bf16: about 1.8x "
        "faster, features at bf16 precision (ignored on other CPUs)",
    )


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "embed", _cmd_embed)
    p.add_argument("cropset", type=Path, help="CropSet folder (from `phenossl crops`)")
    p.add_argument("--out", required=True, type=Path, help="embeddings file to write (.npz)")
    _add_model_options(p)


def _cmd_embed(args: argparse.Namespace) -> int:
    """CropSet -> embeddings file (.npz)

    Embed every crop of a CropSet with a backbone or a phenossl checkpoint.
    """

    from phenossl.data.cropset import CropSet
    from phenossl.embedding import iter_embed, save_embeddings

    crops = CropSet(args.cropset)
    writable_file(args.out, "--out")
    weights = None if args.weights == "random" else args.weights
    if args.model == "features":
        return _embed_features(args, crops, weights)
    _warn_crop_size(args.model, crops)
    features = run_with_progress(
        iter_embed(
            crops,
            args.model,
            weights=weights,
            device=args.device,
            batch_size=args.batch_size,
            input_size=args.input_size,
            normalize=args.normalize,
            cpu_amp=args.cpu_amp,
        ),
        args,
        "embed",
        "cell",
    )
    meta = {
        "cropset": str(args.cropset.resolve()),
        "cropset_fingerprint": crops.fingerprint,
        "model": str(args.model),
        "weights": weights,
        "input_size": args.input_size,
        "normalize": args.normalize,
        "cpu_amp": args.cpu_amp,
    }
    save_embeddings(args.out, features, crops.table["cell_id"].to_numpy(), meta)
    print(f"{features.shape[0]} embeddings of dimension {features.shape[1]} -> {args.out}")
    return 0


def _embed_features(args: argparse.Namespace, crops: Any, weights: str | None) -> int:
    """`embed --model features`: hand-crafted measurements, their names and z-score statistics."""
    from phenossl.cells.features import iter_feature_embedding
    from phenossl.embedding import save_embeddings

    if weights is not None:
        raise CLIError("--weights applies to a backbone name, not to --model features")
    result = run_with_progress(
        iter_feature_embedding(crops.iter_batches(args.batch_size), len(crops)),
        args,
        "features",
        "cell",
    )
    meta = {"cropset": str(args.cropset.resolve()), "model": "features", **result.metadata()}
    save_embeddings(args.out, result.features, crops.table["cell_id"].to_numpy(), meta)
    print(f"{len(result.features)} cells x {len(result.names)} hand-crafted features -> {args.out}")
    return 0


def _warn_crop_size(model: str, crops: Any) -> None:
    """Say so when the crops are not cut the way the model was trained."""
    import sys

    from phenossl.models.pretrained import model_crop_size

    expected, size = model_crop_size(model), getattr(crops, "size", None)
    if expected is not None and size is not None and int(size) != expected:
        print(
            f"note: {model} was trained on {expected}-px single-cell crops; these crops are "
            f"{size} px (re-crop with `phenossl crops --size {expected}`)",
            file=sys.stderr,
        )


def _add_cluster(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "cluster", _cmd_cluster)
    add_embeddings_input(p)
    p.add_argument("-k", "--k", type=positive_int, default=2, help="number of clusters (default 2)")
    p.add_argument(
        "--label",
        default="treatment",
        help="column to score against: compound, concentration, treatment, moa, ... (default "
        "treatment)",
    )
    p.add_argument("--split", default=None, help="only cells of this split (train/val/test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-init", type=positive_int, default=10, help="KMeans restarts")
    p.add_argument(
        "--permutations", type=positive_int, default=10, help="label permutations for control"
    )
    p.add_argument(
        "--nearest",
        type=nonnegative_int,
        default=8,
        help=f"cells per cluster in the montage (at most {MAX_NEAREST})",
    )


def _cmd_cluster(args: argparse.Namespace) -> int:
    """embeddings -> KMeans report (AMI, randomised-label control, composition, montage)

    Cluster embeddings with KMeans and score the clusters against a label column with the adjusted
    mutual information; writes report.json, composition.csv, clusters.csv and montage.png into
    --out.
    """

    from phenossl.clustering_report import format_ami, write_cluster_report
    from phenossl.data.cropset import CropSet
    from phenossl.embedding import load_embeddings

    if args.nearest > MAX_NEAREST:  # the montage is nearest x crop size pixels wide
        raise CLIError(f"--nearest {args.nearest}: at most {MAX_NEAREST} cells per cluster")
    features, cell_ids, meta = load_embeddings(args.embeddings)
    cropset_path = embeddings_cropset(args, meta)
    crops = CropSet(cropset_path)
    _check_same_cropset(args.embeddings, meta, cell_ids, crops)
    writable_folder(args.out, "--out")
    report = write_cluster_report(
        args.out,
        features,
        crops,
        cell_ids=cell_ids,
        k=args.k,
        label_column=args.label,
        split=args.split,
        seed=args.seed,
        n_init=args.n_init,
        n_permutations=args.permutations,
        n_nearest=args.nearest,
        extra={"embeddings": str(args.embeddings), **meta},
    )
    print(format_ami(report))
    print(f"report -> {args.out / 'report.json'}")
    return 0


def _check_same_cropset(path: Path, meta: dict[str, Any], cell_ids, crops) -> None:
    """Refuse to score embeddings against a CropSet they were not computed from."""
    import numpy as np

    recorded = meta.get("cropset_fingerprint")
    if recorded is not None and recorded != crops.fingerprint:
        raise CLIError(
            f"{path} was computed from the CropSet {meta.get('cropset')} ({recorded}), not from "
            f"{crops.path} ({crops.fingerprint}); embed that CropSet first"
        )
    ids = crops.table["cell_id"].to_numpy()
    if len(cell_ids) != len(ids) or not np.array_equal(np.sort(cell_ids), np.sort(ids)):
        raise CLIError(
            f"{path} holds {len(cell_ids)} embeddings whose cell ids do not match the "
            f"{len(ids)} cells of {crops.path}; embed that CropSet first"
        )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `embed` and `cluster`."""
    _add_embed(sub)
    _add_cluster(sub)
