"""Write a trained checkpoint as the shipped model ``phenossl-cells`` (half precision + metadata).

    python benchmarks/ship_cell_model.py runs/phenossl_cells/final.pt \\
        --cropset data/crops/bbbc021_crops --bench fluo/real_cells.json features/real_cells.json \\
        --row fluo_e3

The metadata records the data, the training and held-out plates (from the CropSet's ``split``
column), the composition, method, epochs, the crop and input size, how its embeddings are
compared (``embedding_norm``), and the held-out scores of the model and of the baselines (rows of
the real-cell benchmark JSON, scored with that normalisation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from phenossl.models import EMBEDDING_NORMS

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "phenossl" / "models" / "weights" / "phenossl_cells.pt"
# paper_e0: the untrained VGG13-BN the runs start from (seed 0, dataset statistics, 48 px)
BASELINES = ("paper_e0", "random-init VGG13-BN", "hand-crafted features")


def main(argv: list[str] | None = None) -> Path:
    from phenossl.data.cropset import CropSet
    from phenossl.models.checkpoint import load_checkpoint
    from phenossl.models.pretrained import export_pretrained

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--cropset", type=Path, required=True, help="the CropSet it was trained on")
    p.add_argument(
        "--bench", type=Path, nargs="+", required=True, help="real-cell benchmark JSON(s)"
    )
    p.add_argument("--row", required=True, help="the benchmark row of this checkpoint")
    p.add_argument(
        "--embedding-norm",
        choices=list(EMBEDDING_NORMS),
        default="l2",
        help="how the model's embeddings are compared, recorded for phenossl.embed's "
        "normalize='auto' (default l2: by cosine, docs/cell-model.md)",
    )
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    meta = load_checkpoint(args.checkpoint)["metadata"]
    config = meta["config"]
    table = CropSet(args.cropset).table
    plates = {
        "train": sorted(table.loc[table["split"] == "train", "plate"].unique()),
        "held_out": sorted(table.loc[table["split"] == "test", "plate"].unique()),
    }
    benches = [json.loads(path.read_text()) for path in args.bench]
    rows = {row["name"]: row for b in benches for row in b["embeddings"] if "scores" in row}
    if args.row not in rows:
        raise SystemExit(f"--row {args.row!r} not in {args.bench}; rows: {sorted(rows)}")
    scores = {name: rows[name]["scores"] for name in (args.row, *BASELINES) if name in rows}
    augmentation = config["augmentation"][0]
    return export_pretrained(
        args.checkpoint,
        args.out,
        data=(
            "BBBC021 single-cell crops (../shared/data/bbbc021_crops: 5,759 cells, 68 px, "
            "DAPI/Tubulin/Actin), imported with `phenossl import-crops ... --holdout "
            '"replicate != 1" --percentiles 0.5 99.9` (uint8 by plate and channel percentiles)'
        ),
        plates=plates,
        n_train_cells=int((table["split"] == "train").sum()),
        composition=augmentation["name"],
        epochs=int(meta["epoch"]),
        crop_size=int(CropSet(args.cropset).size),
        input_size=int(augmentation.get("size") or CropSet(args.cropset).size),
        scores={
            "benchmark": "benchmarks/bench_real_cells.py (held-out plates, seeds 0-2)",
            "held_out_cells": benches[0]["n_cells"],
            **scores,
        },
        training_command="phenossl train --config training/phenossl_cells.yaml",
        embedding_norm=args.embedding_norm,
    )


if __name__ == "__main__":
    print(main())
