"""How well do embeddings separate treatments and group compounds by mechanism, on real cells?

The instrument of issue #8: real BBBC021 single-cell crops (``../shared/data/bbbc021_crops``,
5,759 cells from 27 plates), split by plate: replicate 1 plates are for training, the 17 plates
of replicates 2 and 3 (2,701 cells) are held out, and every score here uses only the held-out
(``split == "test"``) cells. For each embedding:

- **AMI contrasts**: for each compound with at least ``--min-cells`` held-out cells, KMeans K=2
  on its cells plus as many DMSO cells (balanced sample), AMI against compound-vs-DMSO, and the
  randomised-label control (:func:`phenossl.profiles.compound_contrasts`);
- **linear probe**: a 5-fold logistic regression on the same balanced cells (balanced accuracy);
- **NSC / NSCB**: 1-nearest-neighbour MOA accuracy of DMSO-normalised treatment profiles by cosine
  similarity (:func:`phenossl.profiles.moa_accuracy`);

each as mean ± std over ``--seeds`` KMeans/sampling/fold seeds (NSC and NSCB are deterministic
given the embedding: their std is 0 unless the embedding itself is re-drawn, see
``--init-seeds``), and the seconds of each step.

Embeddings: random-init VGG13-BN; hand-crafted features (``model="features"``); ImageNet VGG13-BN
and ResNet50 when their weights are in the local torch hub cache (skipped with the reason
otherwise); and every ``--checkpoint PATH[=NAME]``. Crops are embedded at their own size (68 px)
unless a checkpoint records another input size (``metadata.input_size``, or the ``size`` of its
first augmentation). ``--embedding-norm`` sets how the network embeddings are normalised
(:func:`phenossl.embed`'s ``normalize``; by default what each model records).

    python benchmarks/bench_real_cells.py --data ../shared/data/bbbc021_crops
    python benchmarks/bench_real_cells.py --cropset CS --checkpoint run/final.pt=mocov2 \\
        --only random,features
    python benchmarks/bench_real_cells.py --data ../shared/data/bbbc021_crops --limit 400 \\
        --only features --out-dir /tmp/quick       # a quick look

Writes ``real_cells.json`` and ``real_cells.md`` into ``--out-dir`` (default
``benchmarks/results``). Embeddings are cached in ``--cache`` (keyed by the model, the CropSet
and its held-out cells), so re-scoring or adding a checkpoint does not re-embed the rest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phenossl.models import NORMALIZE_CHOICES
from phenossl.profiles import CONTRAST_NORMALIZATIONS, NORMALIZATIONS

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "phenossl"
HOLDOUT = "replicate != 1"
BUILTIN = ("random", "features", "imagenet_vgg13_bn", "imagenet_resnet50")


def evaluate_embedding(
    features: np.ndarray,
    table: pd.DataFrame,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    min_cells: int = 20,
    max_cells: int | None = None,
    how: str = "mean",
    normalization: str = "zscore",
    contrast_normalization: str = "none",
) -> dict[str, Any]:
    """Every score of one embedding on the cells of ``table`` (rows match ``features``).

    Returns a JSON-ready dict: ``nsc``/``nscb`` ({mean, std, n_queries}), ``contrasts`` (compound
    -> ami, ami_std, control, probe, probe_std, n_cells, n_per_side), ``seconds``.
    """
    from phenossl.profiles import score_profiles

    start = time.perf_counter()
    scores = score_profiles(
        features,
        table,
        how=how,
        normalization=normalization,
        min_cells=min_cells,
        max_cells=max_cells,
        seeds=seeds,
        probe=True,
        contrast_normalization=contrast_normalization,
    )
    out = scores.scores()
    result = {
        protocol: {
            "mean": out[protocol],
            "std": 0.0 if out[protocol] is not None else None,
            "n_queries": out["n_queries"][protocol],
            "n_correct": out["n_correct"][protocol],
        }
        for protocol in ("nsc", "nscb")
    }
    result["contrasts"] = {
        name: {k: v[k] for k in ("ami", "ami_std", "control", "probe", "probe_std", "n_cells")}
        | {"n_per_side": v["n_per_side"]}
        for name, v in out["ami"].items()
    }
    result["n_cells"] = out["n_cells"]
    result["n_treatments"] = out["n_treatments"]
    result["normalization_references"] = scores.references["reference"].value_counts().to_dict()
    result["seconds"] = time.perf_counter() - start
    return result


def combine_draws(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several draws of one embedding (e.g. random-init seeds) -> one result, mean ± std."""
    if len(results) == 1:
        return results[0]
    first = results[0]
    combined = dict(first)
    for protocol in ("nsc", "nscb"):
        values = [r[protocol]["mean"] for r in results if r[protocol]["mean"] is not None]
        combined[protocol] = dict(first[protocol])
        combined[protocol]["mean"] = float(np.mean(values)) if values else None
        combined[protocol]["std"] = float(np.std(values)) if values else None
    combined["contrasts"] = {}
    for name in first["contrasts"]:
        entries = [r["contrasts"][name] for r in results if name in r["contrasts"]]
        merged = dict(entries[0])
        for key in ("ami", "probe", "control"):
            merged[key] = float(np.mean([e[key] for e in entries]))
        # std over every (draw, seed): the spread of the per-draw means plus the mean spread
        for key in ("ami", "probe"):
            merged[f"{key}_std"] = float(
                np.sqrt(
                    np.var([e[key] for e in entries])
                    + np.mean([e[f"{key}_std"] ** 2 for e in entries])
                )
            )
        combined["contrasts"][name] = merged
    combined["seconds"] = float(sum(r["seconds"] for r in results))
    combined["draws"] = len(results)
    return combined


def markdown_table(report: dict[str, Any]) -> str:
    """The results as Markdown: a summary table and a per-contrast table."""
    rows = [e for e in report["embeddings"] if "skipped" not in e]
    compounds = sorted({c for e in rows for c in e["scores"]["contrasts"]})
    lines = [
        "| embedding | dim | NSC | NSCB | mean AMI K=2 vs DMSO | mean probe | embed s | score s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in rows:
        s = e["scores"]
        amis = [c["ami"] for c in s["contrasts"].values()]
        probes = [c["probe"] for c in s["contrasts"].values()]
        lines.append(
            f"| {e['name']} | {e['dim']} | {_acc(s['nsc'])} | {_acc(s['nscb'])} | "
            f"{_mean(amis)} | {_mean(probes)} | {e['embed_seconds']:.0f} | {s['seconds']:.0f} |"
        )
    for e in report["embeddings"]:
        if "skipped" in e:
            lines.append(f"| {e['name']} | skipped: {e['skipped']} | | | | | | |")
    if compounds and rows:
        first = rows[0]["scores"]["contrasts"]
        lines += [
            "",
            "Per contrast (held-out cells; AMI K=2 / 5-fold linear probe balanced accuracy, "
            "mean ± std over seeds; control = AMI with permuted labels; contrast normalization "
            f"{report.get('contrast_normalization', 'none')}):",
            "",
            "| embedding | "
            + " | ".join(
                f"{c} ({first[c]['n_per_side'] if c in first else '?'} + DMSO)" for c in compounds
            )
            + " |",
            "|---|" + "---|" * len(compounds),
        ]
        for e in rows:
            cells = []
            for c in compounds:
                v = e["scores"]["contrasts"].get(c)
                cells.append(
                    "–"
                    if v is None
                    else f"{v['ami']:.3f} ± {v['ami_std']:.3f} (ctl {v['control']:.3f}) / "
                    f"{v['probe']:.3f} ± {v['probe_std']:.3f}"
                )
            lines.append(f"| {e['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _acc(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        return f"n/a ({entry['n_queries']} q)"
    return f"{entry['mean']:.3f} ± {entry['std']:.3f} ({entry['n_queries']} q)"


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.3f}" if values else "–"


# -- the real path: data, models, cache -------------------------------------------------------


def open_cropset(args: argparse.Namespace):
    """The CropSet to evaluate: ``--cropset``, or ``--data`` imported once into the cache."""
    from phenossl.data.cropset import CropSet

    if args.cropset is not None:
        return CropSet(args.cropset), 0.0
    data = Path(args.data)
    if not (data / "crops.npz").is_file() or not (data / "cells.csv").is_file():
        raise SystemExit(f"--data {data}: expected crops.npz and cells.csv (the shared crops)")
    from phenossl.cells.import_crops import import_crops

    target = Path(args.cache) / "bbbc021_crops_cropset"
    if (target / "cropset.json").is_file():
        return CropSet(target), 0.0
    start = time.perf_counter()
    cs = import_crops(
        data / "crops.npz", data / "cells.csv", target, holdout=HOLDOUT, overwrite=True
    )
    return cs, time.perf_counter() - start


def held_out(cs, split: str, limit: int | None, seed: int = 0):
    """The CropSet view of the evaluated cells (``split``; ``limit`` draws a stratified sample)."""
    table = cs.table
    if "split" not in table.columns:
        raise SystemExit(f"{cs.path}: no split column; import with --holdout '{HOLDOUT}'")
    mask = (table["split"].astype(str) == split).to_numpy()
    if limit is not None and limit < mask.sum():
        rows = np.flatnonzero(mask)
        # keep every compound represented: sample within compounds, proportionally
        rng = np.random.default_rng(seed)
        keep = []
        for _, group in table.iloc[rows].groupby("compound"):
            n = max(1, round(limit * len(group) / len(rows)))
            keep.extend(rng.choice(group.index.to_numpy(), min(n, len(group)), replace=False))
        mask = np.zeros(len(table), dtype=bool)
        mask[keep] = True
    return cs.subset(mask)


def checkpoint_input_size(path: str | os.PathLike) -> int | None:
    """The input size a checkpoint was trained at, when its metadata records one."""
    import torch

    meta = torch.load(path, map_location="cpu", weights_only=True).get("metadata", {})
    if meta.get("input_size"):
        return int(meta["input_size"])
    augmentation = (meta.get("config") or {}).get("augmentation") or []
    if augmentation and isinstance(augmentation[0], dict) and augmentation[0].get("size"):
        return int(augmentation[0]["size"])
    return None


def model_specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The embeddings to run, each ``{name, model, weights, input_size}`` or ``{name, skipped}``."""
    from phenossl.models.backbones import imagenet_weights_path

    only = set(args.only.split(",")) if args.only else set(BUILTIN)
    specs: list[dict[str, Any]] = []
    if "random" in only:
        specs.append({"name": "random-init VGG13-BN", "model": "vgg13_bn", "weights": None})
    if "features" in only:
        import importlib.util

        if importlib.util.find_spec("phenossl.cells.features") is None:
            specs.append({"name": "hand-crafted features", "skipped": "phenossl.cells.features "
                          "is not in this checkout"})  # fmt: skip
        else:
            specs.append({"name": "hand-crafted features", "model": "features", "weights": None})
    for key, arch, label in (
        ("imagenet_vgg13_bn", "vgg13_bn", "ImageNet VGG13-BN"),
        ("imagenet_resnet50", "resnet50", "ImageNet ResNet50"),
    ):
        if key not in only:
            continue
        path, _ = imagenet_weights_path(arch)
        if path.is_file():
            specs.append({"name": label, "model": arch, "weights": "imagenet"})
        else:
            specs.append({"name": label, "skipped": f"weights not in the torch hub cache ({path})"})
    for text in args.checkpoint or []:
        path, _, name = text.partition("=")
        if not Path(path).is_file():
            raise SystemExit(f"--checkpoint {path}: no such file")
        specs.append(
            {
                "name": name or Path(path).stem,
                "model": str(Path(path).resolve()),
                "weights": None,
                "input_size": checkpoint_input_size(path),
            }
        )
    return specs


def embed_cached(spec: dict[str, Any], view, args: argparse.Namespace, seed: int) -> tuple:
    """(features, seconds, cached) for one model on the evaluated cells, through the cache."""
    from phenossl.embedding import embed, load_embeddings, save_embeddings

    model = spec["model"]
    stamp = ""
    if Path(model).is_file():
        st = Path(model).stat()
        stamp = f"{st.st_size}-{st.st_mtime_ns}"
    ids = view.table["cell_id"].to_numpy()
    normalize = "auto" if model == "features" else args.embedding_norm
    key_text = json.dumps(
        [str(view.path.resolve()), model, spec.get("weights"), spec.get("input_size"), seed,
         stamp, hashlib.sha1(ids.tobytes()).hexdigest()]
        + ([] if normalize == "auto" else [normalize])  # earlier keys stay valid
        + (["cpu_amp"] if args.cpu_amp else [])
    )  # fmt: skip
    key = hashlib.sha1(key_text.encode()).hexdigest()[:16]
    path = Path(args.cache) / "real_cells_embeddings" / f"{key}.npz"
    if path.is_file() and not args.no_cache:
        features, cell_ids, meta = load_embeddings(path)
        if np.array_equal(cell_ids, ids):
            return features, meta.get("seconds", float("nan")), True
    start = time.perf_counter()
    features = embed(
        view,
        model,
        weights=spec.get("weights"),
        device=args.device,
        batch_size=args.batch_size,
        input_size=spec.get("input_size"),
        seed=seed,
        normalize=normalize,
        cpu_amp=args.cpu_amp,
    )
    seconds = time.perf_counter() - start
    save_embeddings(path, features, ids, {"key": key_text, "seconds": seconds})
    return features, seconds, False


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="the shared crops folder (crops.npz, cells.csv)")
    source.add_argument("--cropset", type=Path, help="an existing CropSet with a split column")
    parser.add_argument(
        "--checkpoint", action="append", help="PATH[=NAME] of a phenossl checkpoint (repeatable)"
    )
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {BUILTIN}")
    parser.add_argument("--seeds", type=int, default=3, help="KMeans/sampling/fold seeds")
    parser.add_argument(
        "--init-seeds", type=int, default=1, help="random-init draws (each re-embeds; default 1)"
    )
    parser.add_argument("--split", default="test", help="the evaluated split (default test)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate a sample of N cells")
    parser.add_argument("--min-cells", type=int, default=20, help="cells a contrast needs")
    parser.add_argument("--aggregate", choices=["mean", "median"], default="mean")
    parser.add_argument("--normalization", choices=list(NORMALIZATIONS), default="zscore")
    parser.add_argument(
        "--contrast-normalization",
        choices=list(CONTRAST_NORMALIZATIONS),
        default="none",
        help="what the AMI contrasts and probes see: raw embeddings (none, the paper's), "
        "z-scored over the held-out cells (global: the scale the hand-crafted features have) "
        "or over each contrast's own cells (contrast), or normalised to each plate's DMSO "
        "cells (zscore, whiten)",
    )
    parser.add_argument(
        "--embedding-norm",
        choices=list(NORMALIZE_CHOICES),
        default="auto",
        help="normalisation of the network embeddings (phenossl.embed's normalize): auto (what "
        "each model records: l2 for phenossl-cells, none for the rest), none, or l2 (unit "
        "length) for every network embedding; the hand-crafted features keep their z-scores",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--cpu-amp", action="store_true", help="embed in bf16 on a CPU with bf16 instructions"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="import/embedding cache")
    parser.add_argument("--no-cache", action="store_true", help="re-embed everything")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    cs, import_seconds = open_cropset(args)
    view = held_out(cs, args.split, args.limit)
    table = view.table
    seeds = list(range(args.seeds))
    print(f"{len(view)} {args.split} cells of {table['plate'].nunique()} plates from {cs.path}")
    entries = []
    for spec in model_specs(args):
        if "skipped" in spec:
            print(f"{spec['name']}: skipped ({spec['skipped']})")
            entries.append(spec)
            continue
        draws = (
            range(args.init_seeds) if spec["model"] == "vgg13_bn" and not spec["weights"] else [0]
        )
        results, embed_seconds, dim, cached = [], 0.0, 0, []
        for seed in draws:
            features, seconds, hit = embed_cached(spec, view, args, seed)
            embed_seconds += seconds
            cached.append(hit)
            dim = features.shape[1]
            results.append(
                evaluate_embedding(
                    features, table, seeds=seeds, min_cells=args.min_cells,
                    how=args.aggregate, normalization=args.normalization,
                    contrast_normalization=args.contrast_normalization,
                )
            )  # fmt: skip
        scores = combine_draws(results)
        entries.append(
            {
                "name": spec["name"],
                "model": spec["model"],
                "weights": spec.get("weights"),
                "input_size": spec.get("input_size") or int(view.size),
                "dim": int(dim),
                "embed_seconds": float(embed_seconds),
                "embed_cached": all(cached),
                "scores": scores,
            }
        )
        print(f"{spec['name']}: NSC {_acc(scores['nsc'])}  NSCB {_acc(scores['nscb'])}")
    report = {
        "benchmark": "real_cells",
        "command": "python benchmarks/bench_real_cells.py " + " ".join(argv or []),
        "cropset": str(cs.path),
        "holdout": HOLDOUT,
        "split": args.split,
        "n_cells": len(view),
        "n_plates": int(table["plate"].nunique()),
        "seeds": seeds,
        "aggregation": args.aggregate,
        "normalization": args.normalization,
        "contrast_normalization": args.contrast_normalization,
        "embedding_norm": args.embedding_norm,
        "cpu_amp": args.cpu_amp,
        "import_seconds": import_seconds,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "embeddings": entries,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "real_cells.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "real_cells.md").write_text(markdown_table(report))
    print(markdown_table(report))
    return report


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
