"""Sweeps: every run of a grid trained, evaluated and recorded in a durable, resumable store.

::

    from phenossl.training.sweep.runner import sweep
    from phenossl.training.sweep.store import ResultStore

    summary = sweep("training/table2_hue_probability.yaml", "results/table2", smoke=True)
    frame = ResultStore("results/table2").frame()      # one row per finished run

:func:`iter_sweep` loads the sweep config (:mod:`phenossl.training.sweep.config`), resolves
every run, registers them in the :class:`~phenossl.training.sweep.store.ResultStore` and executes the
ones not yet done (:mod:`phenossl.training.sweep.executors`), each with
:func:`phenossl.training.sweep.experiment.iter_execute` in ``<store>/runs/<run_id>/``.

Resuming: running the same sweep on the same store again skips the finished runs, retries the
failed ones (unless ``retry_failed=False``) and takes over the runs whose worker died; the
trainer continues an interrupted run from its ``checkpoints/last.pt``. Claims are atomic, so
several sweeps (or SLURM jobs) may work through one store at the same time.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phenossl._progress import Progress, ProgressCallback, ProgressGenerator, drives
from phenossl.training.sweep.config import RunSpec, SweepConfig, load_sweep
from phenossl.training.sweep.executors import LocalExecutor, PoolExecutor, make_executor
from phenossl.training.sweep.experiment import RunResult, iter_execute
from phenossl.training.sweep.store import (
    DEFAULT_LEASE_S,
    Heartbeat,
    ResultStore,
    RunRecord,
    worker_name,
)
from phenossl.training.train.config import Overrides

__all__ = ["ResultStore", "SweepSummary", "default_store", "iter_sweep", "sweep"]

_POLL_S = 1.0  # how often a pooled sweep checks on its runs
_ERROR_LINES = 40  # traceback lines kept in the store's error column


@dataclass
class SweepSummary:
    """The state of a sweep's runs after :func:`iter_sweep`.

    ``ran`` runs finished in this call, ``skipped`` were done before it; ``running`` are held by
    another live worker; ``failures`` maps the failed run ids to their error's last line.
    """

    experiment: str
    store: Path
    total: int
    done: int = 0
    failed: int = 0
    pending: int = 0
    running: int = 0
    ran: int = 0
    skipped: int = 0
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every run of the grid is done."""
        return self.done == self.total


def default_store(config: SweepConfig) -> Path:
    """``results/<experiment>`` (``results/<experiment>_smoke`` at smoke scale)."""
    return Path("results") / (config.experiment + ("_smoke" if config.smoke else ""))


def iter_sweep(
    config: SweepConfig | str | os.PathLike,
    store: str | os.PathLike | ResultStore | None = None,
    *,
    smoke: bool = False,
    overrides: Overrides = (),
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    executor: str | LocalExecutor | PoolExecutor = "local",
    device: str | None = None,
    retry_failed: bool = True,
    lease_s: float = DEFAULT_LEASE_S,
    heartbeat_s: float = 30.0,
) -> ProgressGenerator[SweepSummary]:
    """Run a sweep; yields :class:`~phenossl.Progress` in runs, returns a :class:`SweepSummary`.

    Parameters
    ----------
    config
        A :class:`SweepConfig` or a sweep YAML file (then ``smoke``, ``overrides``, ``methods``
        and ``seeds`` are passed to :func:`~phenossl.training.sweep.config.load_sweep`).
    store
        The store folder (default :func:`default_store`) or an open store.
    executor
        ``"local"``, ``"gpus"``, ``"dask"`` (a ``LocalCluster``) or an executor object
        (e.g. ``DaskExecutor(client)``).
    device
        Replaces every run's device (training and evaluation).
    retry_failed
        Run the failed runs again.
    lease_s, heartbeat_s
        A running run whose worker has not shown a sign of life for ``lease_s`` seconds is taken
        over; live workers refresh their runs every ``heartbeat_s`` seconds.

    Raises
    ------
    ConfigError, FileNotFoundError
        The config or a trainer config it names is invalid (before anything runs).
    SpecMismatchError
        The store holds runs of the same ids with another definition.
    """
    if not isinstance(config, SweepConfig):
        config = load_sweep(
            Path(config), smoke=smoke, overrides=overrides, methods=methods, seeds=seeds
        )
    specs = {spec.run_id: spec for spec in config.runs()}
    if isinstance(store, ResultStore):
        results, own_store = store, False
    else:
        results, own_store = ResultStore(default_store(config) if store is None else store), True
    try:
        results.add_runs((s.run_id, s.experiment, s.to_json()) for s in specs.values())
        if isinstance(executor, str):
            executor = make_executor(executor)
        summary = SweepSummary(config.experiment, results.path, len(specs))
        summary.skipped = results.counts(run_ids=specs)["done"]
        options = {"retry_failed": retry_failed, "lease_s": lease_s, "heartbeat_s": heartbeat_s}
        yield Progress(summary.skipped, len(specs), f"{summary.skipped} runs already done")
        if isinstance(executor, PoolExecutor):
            loop = _pooled(results, specs, executor, device, summary, options)
        else:
            loop = _inline(results, specs, device, summary, options)
        yield from loop
        _tally(results, specs, summary)
        return summary
    finally:
        if own_store:
            results.close()


@drives(iter_sweep)
def sweep(*, progress: ProgressCallback | None = None) -> SweepSummary:
    """Run a sweep to the end; see :func:`iter_sweep` for the parameters."""


# --- the two loops ------------------------------------------------------------------------------


def _inline(
    store: ResultStore,
    specs: dict[str, RunSpec],
    device: str | None,
    summary: SweepSummary,
    options: dict[str, Any],
) -> ProgressGenerator[None]:
    """Claim and run one run at a time in this process, with progress from inside each run."""
    worker = worker_name()
    total = len(specs)
    untried = set(specs)
    with Heartbeat(store.path, worker, options["heartbeat_s"]) as beat:
        while True:
            record = _claim(store, untried, worker, options)
            if record is None:
                return
            beat.add(record.run_id)
            done = summary.skipped + summary.ran
            gen = iter_execute(specs[record.run_id], store.run_dir(record.run_id), device=device)
            try:
                while True:
                    try:
                        event = next(gen)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    message = (
                        f"{record.run_id}: {event.message}" if event.message else record.run_id
                    )
                    yield Progress(done, total, message)
            except (KeyboardInterrupt, GeneratorExit):
                gen.close()
                store.release(record.run_id, worker=worker)
                raise
            except Exception as err:
                store.fail(record.run_id, _error_text(err), worker=worker)
                yield Progress(done, total, f"{record.run_id} failed: {err}")
                continue
            finally:
                beat.discard(record.run_id)
            _finish(store, record.run_id, result, worker)
            summary.ran += 1
            yield Progress(summary.skipped + summary.ran, total, f"{record.run_id} done")


def _pooled(
    store: ResultStore,
    specs: dict[str, RunSpec],
    executor: PoolExecutor,
    device: str | None,
    summary: SweepSummary,
    options: dict[str, Any],
) -> ProgressGenerator[None]:
    """Claim runs while the executor has room; record each outcome as it arrives."""
    worker = worker_name()
    total = len(specs)
    untried = set(specs)
    in_flight: dict[Any, str] = {}
    with executor, Heartbeat(store.path, worker, options["heartbeat_s"]) as beat:
        try:
            while True:
                while len(in_flight) < executor.capacity():
                    record = _claim(store, untried, worker, options)
                    if record is None:
                        break
                    spec = specs[record.run_id]
                    run_dir = str(store.run_dir(record.run_id))
                    in_flight[executor.submit(spec.to_json(), run_dir, device)] = record.run_id
                    beat.add(record.run_id)
                if not in_flight:
                    return
                message = f"{len(in_flight)} running on {executor.describe()}"
                yield Progress(summary.skipped + summary.ran, total, message)
                for future in executor.wait(list(in_flight), timeout=_POLL_S):
                    run_id = in_flight.pop(future)
                    beat.discard(run_id)
                    try:
                        result = RunResult(**future.result())
                    except Exception as err:
                        store.fail(run_id, _error_text(err), worker=worker)
                        continue
                    _finish(store, run_id, result, worker)
                    summary.ran += 1
        except BaseException:
            for run_id in in_flight.values():
                store.release(run_id, worker=worker)
            raise


# --- helpers ------------------------------------------------------------------------------------


def _claim(
    store: ResultStore, untried: set[str], worker: str, options: dict[str, Any]
) -> RunRecord | None:
    """Claim one of the runs not yet tried in this call (each is tried at most once)."""
    record = store.claim(
        untried, worker=worker, retry_failed=options["retry_failed"], lease_s=options["lease_s"]
    )
    if record is not None:
        untried.discard(record.run_id)
    return record


def _finish(store: ResultStore, run_id: str, result: RunResult, worker: str) -> None:
    prefix = Path("runs") / run_id
    store.finish(
        run_id,
        metrics=result.metrics,
        per_class=result.per_class,
        artifacts={name: (prefix / rel).as_posix() for name, rel in result.artifacts.items()},
        worker=worker,
    )


def _tally(store: ResultStore, specs: dict[str, RunSpec], summary: SweepSummary) -> None:
    counts = store.counts(run_ids=specs)
    summary.done, summary.failed = counts["done"], counts["failed"]
    summary.pending, summary.running = counts["pending"], counts["running"]
    for record in store.records(status="failed"):
        if record.run_id in specs:
            lines = (record.error or "").strip().splitlines()
            summary.failures[record.run_id] = lines[-1] if lines else ""


def _error_text(err: BaseException) -> str:
    text = "".join(traceback.format_exception(err)).splitlines()
    return "\n".join(text[-_ERROR_LINES:])
