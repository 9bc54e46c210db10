"""`phenossl profile`: embeddings -> well/treatment profiles, NSC/NSCB MOA accuracy, AMI."""

from __future__ import annotations

import argparse
from pathlib import Path

from phenossl.cli._common import (
    CLIError,
    add_command,
    add_embeddings_input,
    embeddings_cropset,
    run_with_progress,
)
from phenossl.profiles import CONTRAST_NORMALIZATIONS, NORMALIZATIONS


def _add_profile(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "profile", _cmd_profile)
    add_embeddings_input(p)
    p.add_argument("--split", default=None, help="only cells of this split (e.g. test)")
    p.add_argument(
        "--aggregate",
        choices=["mean", "median"],
        default="mean",
        help="default mean (see docs/real-cells.md)",
    )
    p.add_argument(
        "--normalization",
        choices=list(NORMALIZATIONS),
        default="zscore",
        help="against the plate's DMSO cells: z-score (default), z-score + DMSO whitening "
        "(typical variation normalisation), or none",
    )
    p.add_argument(
        "--contrast-normalization",
        choices=list(CONTRAST_NORMALIZATIONS),
        default="none",
        help="what the AMI contrasts cluster: the embeddings as they are (none, default, the "
        "paper's), z-scored over all cells (global, as the hand-crafted features are) or over "
        "each contrast's own cells (contrast, as a standardised selection), or normalised to "
        "their plate's DMSO cells (zscore, whiten)",
    )
    p.add_argument(
        "--min-controls",
        type=int,
        default=10,
        help="a plate with fewer DMSO cells is normalised with its week's DMSO cells (default 10)",
    )
    p.add_argument(
        "--min-cells", type=int, default=20, help="cells a compound needs for its AMI (default 20)"
    )
    p.add_argument("--seeds", type=int, default=3, help="KMeans/sampling seeds (default 3)")
    p.add_argument("--probe", action="store_true", help="also a 5-fold linear probe per compound")


def _cmd_profile(args: argparse.Namespace) -> int:
    """embeddings -> phenotype profiles, NSC/NSCB MOA accuracy, compound-vs-DMSO AMI

    Aggregate cell embeddings into DMSO-normalised well and treatment profiles, score
    1-nearest-neighbour MOA accuracy (cosine; NSC and NSCB) and the KMeans K=2 AMI of each compound
    against DMSO; writes profiles.csv, scores.json, similarity.png, cells_pca.png and summary.md
    into --out.
    """

    from phenossl.clustering_report import align_to_cells
    from phenossl.data.cropset import CropSet
    from phenossl.embedding import load_embeddings
    from phenossl.profile_report import write_profile_report
    from phenossl.profiles import iter_score_profiles

    if args.seeds < 1:
        raise CLIError(f"--seeds {args.seeds}; expected at least 1")
    features, cell_ids, meta = load_embeddings(args.embeddings)
    cropset_path = embeddings_cropset(args, meta)
    if not (Path(cropset_path) / "cells.csv").is_file():
        raise CLIError(f"{cropset_path} is not a CropSet (no cells.csv); pass --cropset")
    table = CropSet(cropset_path).table
    if args.split is not None:
        if "split" not in table.columns:
            raise CLIError(f"--split {args.split}: the CropSet {cropset_path} has no split column")
        table = table[table["split"].astype(str) == args.split]
        if table.empty:
            raise CLIError(f"--split {args.split}: no cell of {cropset_path} is in that split")
    features = align_to_cells(features, cell_ids, table["cell_id"].to_numpy())
    scores = run_with_progress(
        iter_score_profiles(
            features,
            table,
            how=args.aggregate,
            normalization=args.normalization,
            min_controls=args.min_controls,
            min_cells=args.min_cells,
            seeds=range(args.seeds),
            probe=args.probe,
            contrast_normalization=args.contrast_normalization,
        ),
        args,
        "profile",
        percent=True,
    )
    extra = {"embeddings": str(args.embeddings), "cropset": str(cropset_path), "split": args.split}
    content = write_profile_report(args.out, scores, extra={**extra, "embedding": meta})
    for protocol in ("nsc", "nscb"):
        value = content[protocol]
        shown = "n/a" if value is None else f"{value:.3f}"
        print(f"{protocol.upper()}: {shown} ({content['n_queries'][protocol]} queries)")
    for name, v in content["ami"].items():
        print(
            f"AMI {name} vs DMSO: {v['ami']:.3f} ± {v['ami_std']:.3f} (control {v['control']:.3f})"
        )
    print(f"report -> {args.out}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `profile`."""
    _add_profile(sub)
