"""What a MoCoV2+ training state's loss is made of, on fresh views of its own training cells.

Loads a trainer checkpoint that holds the whole method (``last.pt`` or ``checkpoints/last.pt`` of
a ``phenossl train`` run: online and momentum encoders, queues), draws ``--cells`` training cells,
makes two views of each with the run's first composition, scaled exactly as the trainer scales
them, and prints (and writes as JSON):

- ``positive_cos``: mean cosine of a query with its own key (the other view, momentum encoder);
- ``hardest_queued_cos``: mean over queries of the largest cosine with the queued keys;
- ``loss_queue`` / ``loss_in_batch``: the MoCo loss against the queue, and against the other
  cells' keys of the same batch;
- ``online_vs_momentum_cos``: the two encoders' projections of the same view;
- ``effective_rank_backbone`` / ``effective_rank_projector``: the effective rank of the
  centred features (:func:`phenossl.training.evaluate.collapse.effective_rank`: how many
  directions they use).

Example::

    python benchmarks/moco_state.py runs/phenossl_cells/checkpoints/last.pt \\
        --cropset data/crops/bbbc021_crops --out /tmp/moco_state.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def moco_state(
    checkpoint: str | Path, cropset: str | Path, *, cells: int = 256, batch: int = 64, seed: int = 0
) -> dict[str, Any]:
    """The measures of the module docstring for one checkpoint."""
    from phenossl._scaling import InputScaler
    from phenossl.augment import build_augmentation
    from phenossl.data.cropset import CropSet
    from phenossl.models.backbones import build_backbone
    from phenossl.ssl.losses import moco_loss
    from phenossl.ssl.methods import build_method
    from phenossl.training.evaluate.collapse import effective_rank
    from phenossl.training.train.config import TrainConfig

    torch.manual_seed(seed)
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    meta = ck["metadata"]
    if meta.get("method") != "mocov2plus" or "method" not in ck.get("state", {}):
        raise SystemExit(f"{checkpoint}: expected a MoCoV2+ trainer checkpoint with its state")
    config = TrainConfig.from_dict(meta["config"])
    backbone = build_backbone(
        config.model.backbone, in_channels=meta["in_channels"], cifar_stem=meta["cifar_stem"]
    )
    method = build_method(config.method.name, backbone, **config.method.hparams)
    method.load_state_dict(ck["state"]["method"], strict=False)
    method.backbone.load_state_dict(ck["backbone"])
    method.train()  # as in training: BatchNorm on the batch's statistics
    first = config.augmentation[0]
    augment = build_augmentation(first.name, **first.params)
    scale = InputScaler(meta["input_mean"], meta["input_std"], torch.device("cpu"))

    crops = CropSet(cropset)
    split = config.data.split
    train = crops if split is None else crops.subset((crops.table["split"] == split).to_numpy())
    rows = np.sort(np.random.default_rng(seed).choice(len(train.table), cells, replace=False))
    x = torch.as_tensor(train.images(rows)).float() / 255
    temperature = float(method.temperature)
    queue = method.queues[1].values()
    out: dict[str, list[float]] = {}
    with torch.no_grad():
        v1, v2 = scale(augment(x)), scale(augment(x))
        for start in range(0, cells - batch + 1, batch):
            a, b = v1[start : start + batch], v2[start : start + batch]
            q = F.normalize(method.projector(method.backbone(a)), dim=1)
            k = F.normalize(method.momentum_projector(method.momentum_backbone(b)), dim=1)
            online = F.normalize(method.projector(method.backbone(b)), dim=1)
            positive = (q * k).sum(1)
            queued = q @ queue.T
            in_batch = q @ k.T
            in_batch.fill_diagonal_(float("-inf"))
            target = torch.zeros(len(q), dtype=torch.long)
            values = {
                "positive_cos": positive.mean(),
                "hardest_queued_cos": queued.max(1).values.mean(),
                "mean_queued_cos": queued.mean(),
                "loss_queue": moco_loss(q, k, queue, temperature),
                "loss_in_batch": F.cross_entropy(
                    torch.cat([positive[:, None], in_batch], 1) / temperature, target
                ),
                "online_vs_momentum_cos": (online * k).sum(1).mean(),
            }
            for key, value in values.items():
                out.setdefault(key, []).append(float(value))
        features = method.backbone(v1)
        projections = method.projector(features)
    result: dict[str, Any] = {key: float(np.mean(v)) for key, v in out.items()}
    result["effective_rank_backbone"] = effective_rank(features)
    result["effective_rank_projector"] = effective_rank(projections)
    result.update(
        checkpoint=str(checkpoint),
        epoch=meta.get("epoch"),
        cells=cells,
        batch=batch,
        queue=len(queue),
        feature_dim=int(features.shape[1]),
        temperature=temperature,
    )
    return result


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="trainer checkpoints with the method state")
    parser.add_argument("--cropset", required=True, help="the CropSet the run trained on")
    parser.add_argument("--cells", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64, help="in-batch negatives per query + 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for path in args.checkpoints:
        result = moco_state(path, args.cropset, cells=args.cells, batch=args.batch, seed=args.seed)
        results.append(result)
        print(path)
        for key, value in result.items():
            if isinstance(value, float):
                print(f"  {key:26s} {value:.3f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
