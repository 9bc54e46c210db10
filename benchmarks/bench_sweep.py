"""Per-run overhead of the sweep machinery against the run's own training and evaluation time.

Three measurements:

1. **In a real sweep**: Table 2's smoke grid (SimCLR, BYOL x hue probability 0, 1) with
   ``--seeds`` on a small CIFAR-10-like set (``write_cifar_like``), run by :func:`sweep` with the
   local executor. Each run's own work, :func:`phenossl.training.sweep.experiment.iter_execute`
   (training + evaluation in its folder), is timed from inside; everything else in the
   :func:`sweep` call is the machinery: loading and expanding the config, registering the runs,
   claiming, recording results, the heartbeat thread, progress. Overhead per run =
   (sweep wall time - sum of the runs' own times) / runs, as a fraction of the mean run time.
2. **Bare training** of the same run: ``trainer.train`` + ``iter_evaluate`` called directly on
   one run's config, against ``iter_execute`` of that run (the wrapper's own cost: reading the
   spec back, ``evaluation.json``...). Smoke runs last seconds on a busy CPU, so this difference
   is within noise; it is reported, not used for the target.
3. **Store at the paper's scale**: register Table 2's 1200 runs, then claim and finish every
   one of them (each claim scans the unfinished runs): milliseconds per run.

Target: overhead < 2 % of a run's time. The paper's runs last hours (1000 epochs), so the
fraction printed for smoke runs (seconds) is an upper bound.

    python benchmarks/bench_sweep.py                 # ~3 min on 2 busy CPU cores
    python benchmarks/bench_sweep.py --seeds 5,6,7 --epochs 3

Writes ``benchmarks/results/sweep.json`` (``--out``) and prints a summary.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import write_json

from phenossl.data.cifar import write_cifar_like
from phenossl.training.sweep import experiment
from phenossl.training.sweep import runner as sweep_module
from phenossl.training.sweep.config import EvaluateConfig, load_sweep
from phenossl.training.sweep.runner import sweep
from phenossl.training.sweep.store import ResultStore

RESULTS = Path(__file__).resolve().parent / "results" / "sweep.json"
TABLE2 = Path(__file__).resolve().parents[1] / "training" / "table2_hue_probability.yaml"


def settings(cifar: Path, epochs: int, limit: int) -> dict[str, object]:
    return {
        "train.data.root": str(cifar),
        "train.data.limit": limit,
        "train.optim.batch_size": 32,
        "train.optim.epochs": epochs,
        "train.run.num_threads": 1,
        "train.run.device": "cpu",
        "evaluate.device": "cpu",
        "evaluate.data.train_limit": 256,
        "evaluate.data.test_limit": 128,
    }


def timed_sweep(config, store: Path) -> tuple[float, list[float]]:
    """Wall time of :func:`sweep` and of each run's own ``iter_execute``."""
    inside: list[float] = []
    original = sweep_module.iter_execute

    def measured(*args, **kwargs):
        started = time.perf_counter()
        try:
            return (yield from original(*args, **kwargs))
        finally:
            inside.append(time.perf_counter() - started)

    sweep_module.iter_execute = measured
    try:
        started = time.perf_counter()
        summary = sweep(config, store)
        total = time.perf_counter() - started
    finally:
        sweep_module.iter_execute = original
    if not summary.complete:
        raise RuntimeError(f"the benchmark sweep failed: {summary.failures}")
    return total, inside


def bare_run(spec, out: Path) -> float:
    """``train`` + ``iter_evaluate`` of one run, without the sweep's wrapper."""
    from phenossl._progress import run
    from phenossl.training.train.trainer import train

    config = spec.train_config()
    started = time.perf_counter()
    final = train(config, out)
    run(experiment.iter_evaluate(final, config, EvaluateConfig.model_validate(spec.evaluate), out))
    return time.perf_counter() - started


def wrapped_run(spec, out: Path) -> float:
    started = time.perf_counter()
    experiment.execute(spec, out)
    return time.perf_counter() - started


def store_at_scale(work: Path) -> dict:
    config = load_sweep(TABLE2)
    specs = list(config.runs())
    with ResultStore(work / "store") as store:
        started = time.perf_counter()
        store.add_runs((s.run_id, s.experiment, s.to_json()) for s in specs)
        added = time.perf_counter() - started
        ids = {s.run_id for s in specs}
        started = time.perf_counter()
        while (record := store.claim(ids)) is not None:
            store.finish(record.run_id, metrics={"top1": 0.5}, per_class={}, artifacts={})
            ids.discard(record.run_id)
        cycled = time.perf_counter() - started
    return {
        "runs": len(specs),
        "add_ms_per_run": 1000 * added / len(specs),
        "claim_finish_ms_per_run": 1000 * cycled / len(specs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="5,6", help="seeds of the smoke grid (4 runs each)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=256, help="training images per run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    try:
        cifar = write_cifar_like(work / "cifar", n_train=512, n_test=256, seed=0).parent
        config = load_sweep(
            TABLE2, smoke=True, seeds=seeds, overrides=settings(cifar, args.epochs, args.limit)
        )
        total, inside = timed_sweep(config, work / "sweep")
        n = len(inside)
        overhead = (total - sum(inside)) / n
        mean_run = statistics.mean(inside)
        spec = next(config.runs())
        bare = bare_run(spec, work / "bare")
        wrapped = wrapped_run(spec, work / "wrapped")
        scale = store_at_scale(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "machine": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "grid": {
            "config": TABLE2.name,
            "runs": n,
            "seeds": seeds,
            "epochs": args.epochs,
            "images": args.limit,
            "backbone": spec.backbone,
        },
        "sweep_seconds": total,
        "run_seconds": inside,
        "mean_run_seconds": mean_run,
        "overhead_seconds_per_run": overhead,
        "overhead_fraction": overhead / mean_run,
        "bare_run_seconds": bare,
        "wrapped_run_seconds": wrapped,
        "store_at_table2_scale": scale,
    }
    write_json(args.out, results)
    print(f"{n} runs of {mean_run:.1f} s on average; sweep total {total:.1f} s")
    print(
        f"machinery overhead: {1000 * overhead:.0f} ms per run = "
        f"{100 * overhead / mean_run:.2f} % of a run (target < 2 %)"
    )
    print(f"one run bare {bare:.1f} s vs through execute() {wrapped:.1f} s (noise-level)")
    print(
        f"store with Table 2's {scale['runs']} runs: add {scale['add_ms_per_run']:.2f} ms/run, "
        f"claim + finish {scale['claim_finish_ms_per_run']:.2f} ms/run"
    )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
