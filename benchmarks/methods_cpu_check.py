"""Per-method table of a smoke sweep: loss at start and end, kNN against random init, rank.

Reads the run folders of a sweep store (``phenossl sweep ... --store STORE``; each run has
``config.yaml``, ``metrics.jsonl``, ``final.pt`` and ``evaluation.json``) and, for every run,
embeds the first ``--bank`` training and ``--queries`` test images of the run's dataset (no
augmentation) twice: with the trained backbone (``final.pt``) and with the backbone the run
started from (``build_method_for`` of its config: the same seed, hence the same weights). Both
are scored with the same weighted kNN (k 20, T 0.07) and
:func:`~phenossl.training.evaluate.collapse.collapse_stats`. The sweep's own linear and kNN scores
(``evaluation.json``) are copied alongside.

    python benchmarks/methods_cpu_check.py /tmp/smoke13 --out benchmarks/results/methods_cpu_check.json

Writes the JSON rows and prints a Markdown table (one row per method, runs averaged).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import write_json

import phenossl
from phenossl.training.evaluate.collapse import collapse_stats
from phenossl.training.evaluate.protocols import knn_accuracy
from phenossl.training.train.config import TrainConfig
from phenossl.training.train.trainer import _dataset, build_method_for

RESULTS = Path(__file__).resolve().parent / "results" / "methods_cpu_check.json"


def run_row(run_dir: Path, bank: int, queries: int) -> dict:
    """The figures of one run folder."""
    import yaml

    config = TrainConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["loss"] for r in records if r["kind"] == "step"]
    start = next((r for r in records if r["kind"] == "start"), {})
    scores = json.loads((run_dir / "evaluation.json").read_text())["metrics"]
    train_set = _dataset(config, split="train", limit=bank)
    test_set = _dataset(config, split="test", limit=queries)
    x_bank, y_bank = train_set.get_batch(torch.arange(len(train_set)))
    x_query, y_query = test_set.get_batch(torch.arange(len(test_set)))
    initial = build_method_for(config, _dataset(config)).backbone
    row = {
        "run": str(run_dir),
        "method": config.method.name,
        "optimizer": start.get("optimizer"),
        "effective_lr": start.get("effective_lr"),
        "steps": len(steps),
        "loss_start": steps[0],
        "loss_end": steps[-1],
        "sweep_linear_top1": scores.get("top1"),
        "sweep_knn_top1": scores.get("knn_top1"),
    }
    for label, model in (("init", initial), ("trained", run_dir / "final.pt")):
        f_bank = phenossl.embed(x_bank.numpy(), model=model, device="cpu")
        f_query = phenossl.embed(x_query.numpy(), model=model, device="cpu")
        row[f"knn_{label}"] = knn_accuracy(
            torch.from_numpy(f_bank), y_bank, torch.from_numpy(f_query), y_query, device="cpu"
        )
        stats = collapse_stats(f_query)
        row[f"rank_{label}"] = stats["effective_rank"]
        row[f"std_{label}"] = stats["std_normalised"]
    return row


def summary(rows: list[dict]) -> pd.DataFrame:
    """One row per method: means over its runs."""
    frame = pd.DataFrame(rows)
    numeric = [c for c in frame.columns if c not in ("run", "method", "optimizer")]
    table = frame.groupby("method")[numeric].mean()
    table.insert(0, "optimizer", frame.groupby("method")["optimizer"].first())
    table.insert(1, "runs", frame.groupby("method").size())
    return table


def to_markdown(table: pd.DataFrame) -> str:
    header = (
        "| method | optimizer (lr) | runs | steps | loss start -> end | kNN init -> trained | "
        "linear (sweep) | eff. rank init -> trained | std x sqrt(D) trained |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name, r in table.iterrows():
        lines.append(
            f"| {name} | {r['optimizer']} ({r['effective_lr']:.3g}) | {r['runs']} | "
            f"{r['steps']:.0f} | {r['loss_start']:.4g} -> {r['loss_end']:.4g} | "
            f"{100 * r['knn_init']:.1f} -> {100 * r['knn_trained']:.1f} % | "
            f"{100 * r['sweep_linear_top1']:.1f} % | "
            f"{r['rank_init']:.1f} -> {r['rank_trained']:.1f} | {r['std_trained']:.2f} |"
        )
    return header + "\n".join(lines)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path, help="sweep store (its runs/ folder is read)")
    parser.add_argument("--bank", type=int, default=512, help="training images (kNN bank)")
    parser.add_argument("--queries", type=int, default=256, help="test images (kNN queries)")
    parser.add_argument("--methods", default=None, help="comma-separated subset (default all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    runs = sorted(p.parent for p in args.store.glob("runs/**/evaluation.json"))
    if args.methods:
        wanted = args.methods.split(",")
        runs = [r for r in runs if any(f"/{m}/" in f"{r}/" for m in wanted)]
    if not runs:
        raise FileNotFoundError(f"no evaluated runs under {args.store / 'runs'}")
    rows = [run_row(run, args.bank, args.queries) for run in runs]
    table = summary(rows)
    write_json(args.out, {"runs": rows, "bank": args.bank, "queries": args.queries})
    print(to_markdown(table))
    print(f"wrote {args.out}")
    return table


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
