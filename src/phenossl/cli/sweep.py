"""`phenossl sweep`: run an experiment's grid of trainings into a resumable result store."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from phenossl.cli._common import (
    CLIError,
    add_command,
    add_overrides,
    positive_float,
    positive_int,
    run_with_progress,
    writable_folder,
)

_EXECUTORS = ("local", "gpus", "dask")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `sweep`."""
    p = add_command(sub, "sweep", _cmd_sweep)
    p.add_argument("config", type=Path, help="sweep config (YAML with an `experiment` key)")
    p.add_argument("--smoke", action="store_true", help="the config's tiny CPU-sized scale")
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        help="store folder (default results/<experiment>, with _smoke for --smoke)",
    )
    p.add_argument(
        "--executor",
        choices=_EXECUTORS,
        default="local",
        help="local: one run after the other here; gpus: one process per GPU; dask: a dask "
        "cluster (a LocalCluster, or --scheduler)",
    )
    p.add_argument("--scheduler", default=None, help="dask scheduler address (tcp://host:8786)")
    p.add_argument("--workers", type=positive_int, default=None, help="LocalCluster workers (dask)")
    p.add_argument(
        "--threads-per-worker", type=positive_int, default=1, help="LocalCluster threads per worker"
    )
    p.add_argument("--gpus", default=None, help="GPU ids for --executor gpus (e.g. 0,1)")
    add_overrides(
        p,
        "setting of every run, value parsed as YAML (repeat): train.<key> (a trainer config "
        "key), evaluate.<key> or embed.<key>, e.g. --set train.data.root=/data/cifar10",
    )
    p.add_argument(
        "--methods", default=None, help="comma-separated methods instead of the config's"
    )
    p.add_argument("--seeds", default=None, help="comma-separated seeds instead of the config's")
    p.add_argument("--device", default=None, help="device of every run (cpu, cuda, cuda:N...)")
    p.add_argument(
        "--no-retry-failed",
        dest="retry_failed",
        action="store_false",
        help="leave failed runs failed instead of running them again",
    )
    p.add_argument(
        "--lease",
        type=positive_float,
        default=None,
        help="seconds without a heartbeat after which a running run is taken over (default 900)",
    )
    p.add_argument(
        "--list", action="store_true", help="list the runs and their status, run nothing"
    )


def _cmd_sweep(args: argparse.Namespace) -> int:
    """run a paper experiment's grid (training/<experiment>.yaml) into a result store

    Train and evaluate every run of a sweep config (methods x swept values x seeds) and record each
    in the store (--store: results.sqlite + runs/<run_id>/). Running the same command again resumes:
    finished runs are skipped, interrupted ones continue from their last checkpoint, failed ones are
    retried.
    """

    from phenossl.training.sweep.config import load_sweep
    from phenossl.training.sweep.executors import make_executor
    from phenossl.training.sweep.runner import default_store, iter_sweep
    from phenossl.training.train.config import parse_overrides

    config = load_sweep(
        args.config,
        smoke=args.smoke,
        overrides=parse_overrides(args.overrides),
        methods=_items(args.methods, str, "--methods"),
        seeds=_items(args.seeds, int, "--seeds"),
    )
    store = args.store or default_store(config)
    if args.list:
        return _list(config, store)
    for _ in config.runs():  # every run's trainer config is valid before anything is created
        pass
    writable_folder(store, "--store")
    executor = make_executor(
        args.executor,
        gpus=_items(args.gpus, str, "--gpus"),
        address=args.scheduler,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
    )
    scale = " (smoke)" if config.smoke else ""
    print(f"sweep {config.experiment}{scale}: {config.n_runs} runs -> {store}")
    options = {} if args.lease is None else {"lease_s": args.lease}
    gen = iter_sweep(
        config,
        store,
        executor=executor,
        device=args.device,
        retry_failed=args.retry_failed,
        **options,
    )
    try:
        summary = run_with_progress(gen, args, "runs", "run")
    except sqlite3.DatabaseError as err:  # e.g. a truncated copy: name the file
        raise CLIError(f"{store / 'results.sqlite'}: {err}") from None
    print(
        f"{summary.done}/{summary.total} done ({summary.ran} now, {summary.skipped} before), "
        f"{summary.failed} failed, {summary.running} running elsewhere, {summary.pending} pending"
    )
    for run_id, error in list(summary.failures.items())[:10]:
        print(f"  failed {run_id}: {error}", file=sys.stderr)
    print(f"results -> {store / 'results.sqlite'}")
    return 0 if summary.complete else 1


def _list(config, store: Path) -> int:
    from phenossl.training.sweep.store import ResultStore

    status = {}
    if (store / "results.sqlite").is_file():
        with ResultStore(store, create=False) as results:
            status = {r.run_id: r.status for r in results.records(config.experiment)}
    for run_id in config.run_ids():
        print(f"{status.get(run_id, 'new'):8s} {run_id}")
    return 0


def _items(text: str | None, kind: type, flag: str) -> list | None:
    if text is None:
        return None
    try:
        return [kind(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError as err:
        raise CLIError(f"{flag} {text!r}: {err}") from None
