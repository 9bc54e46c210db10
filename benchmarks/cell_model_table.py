"""Collect the cell-model recipe experiments into one JSON and a Markdown table.

Input: real-cell benchmark JSONs (``bench_real_cells.py --checkpoint RUN/epochN.pt=NAME_eN``) and the
run folders (``metrics.jsonl``: epoch times, views/s). For each run: the learning curve (every
scored epoch: NSC, NSCB, mean AMI K=2 vs DMSO over the contrasts, mean linear probe) and the
mean ± std over its last ``--last`` epochs.

    python benchmarks/cell_model_table.py --bench /tmp/b1/real_cells.json /tmp/b2/real_cells.json \\
        --run paper=/tmp/runs/moco_paper_s0 --run fluorescence=/tmp/runs/moco_fluo_s0 \\
        --out benchmarks/results/cell_model.json --figure docs/images/cell_model_curves.png

``--figure`` draws the learning curves (NSC and mean AMI against the epoch, one line a run) with
the rows that are not epochs of a run (hand-crafted features, random init) as dashed levels.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

METRICS = ("nsc", "nscb", "ami", "probe")


def _row_scores(scores: dict) -> dict[str, float]:
    contrasts = scores.get("contrasts", {})
    ami = [c["ami"] for c in contrasts.values()]
    probe = [c["probe"] for c in contrasts.values() if c.get("probe") is not None]
    return {
        "nsc": scores["nsc"]["mean"],
        "nscb": scores["nscb"]["mean"],
        "ami": float(np.mean(ami)) if ami else float("nan"),
        "probe": float(np.mean(probe)) if probe else float("nan"),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", nargs="+", type=Path, required=True)
    p.add_argument("--run", action="append", default=[], help="NAME=RUN_FOLDER")
    p.add_argument("--last", type=int, default=2, help="last epochs averaged (default 2)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--figure", type=Path, help="PNG of the learning curves")
    args = p.parse_args(argv)

    rows: dict[str, dict] = {}
    for path in args.bench:
        for entry in json.loads(path.read_text())["embeddings"]:
            if "scores" in entry:
                rows[entry["name"]] = {**_row_scores(entry["scores"]), "bench": str(path)}
    runs = {}
    for spec in args.run:
        name, _, folder = spec.partition("=")
        folder = Path(folder)
        epochs = [
            json.loads(line)
            for line in (folder / "metrics.jsonl").read_text().splitlines()
            if '"kind": "epoch"' in line
        ]
        curve = {}
        for row_name, row in rows.items():
            m = re.fullmatch(rf"{re.escape(name)}_e(\d+)", row_name)
            if m:
                curve[int(m.group(1))] = row
        last = [curve[e] for e in sorted(curve)[-args.last :] if e > 0]
        runs[name] = {
            "folder": str(folder),
            "train_seconds": float(sum(e["time_s"] for e in epochs)),
            "views_per_s": [float(e["views_per_s"]) for e in epochs],
            "loss": [float(e["loss"]) for e in epochs],
            "curve": {str(k): curve[k] for k in sorted(curve)},
            "last_epochs": {
                metric: {
                    "mean": float(np.mean([r[metric] for r in last])),
                    "std": float(np.std([r[metric] for r in last])),
                    "epochs": sorted(curve)[-args.last :],
                }
                for metric in METRICS
            }
            if last
            else {},
        }
    report = {"rows": rows, "runs": runs, "last": args.last}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "| run | epoch | NSC | NSCB | mean AMI (K=2 vs DMSO) | mean probe |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        for epoch, r in run["curve"].items():
            lines.append(
                f"| {name} | {epoch} | {r['nsc']:.3f} | {r['nscb']:.3f} | {r['ami']:.3f} | "
                f"{r['probe']:.3f} |"
            )
    print("\n".join(lines))
    if args.figure:
        plot_curves(report, args.figure)
        print(f"wrote {args.figure}")
    return report


def plot_curves(report: dict, path: Path) -> None:
    """NSC and mean AMI against the epoch for every run; the other rows as dashed levels."""
    from matplotlib.figure import Figure

    from phenossl.training.analysis.figures import save_png

    in_runs = {f"{name}_e{epoch}" for name, run in report["runs"].items() for epoch in run["curve"]}
    levels = {name: row for name, row in report["rows"].items() if name not in in_runs}
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, metric, label in zip(
        axes, ("nsc", "ami"), ("NSC (1-NN MOA accuracy)", "mean AMI, K=2 vs DMSO"), strict=True
    ):
        for name, run in report["runs"].items():
            epochs = [int(e) for e in run["curve"]]
            ax.plot(epochs, [run["curve"][str(e)][metric] for e in epochs], "o-", label=name)
        for i, (name, row) in enumerate(levels.items()):
            ax.axhline(row[metric], ls="--", lw=1, color=f"C{7 + i % 3}", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    save_png(path, fig, dpi=110)


if __name__ == "__main__":
    main()
