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
        claims = _Claims(results, specs, summary, retry_failed, lease_s, heartbeat_s)
        yield Progress(summary.skipped, len(specs), f"{summary.skipped} runs already done")
        if isinstance(executor, PoolExecutor):
            yield from _pooled(claims, executor, device)
        else:
            yield from _inline(claims, device)
        _tally(results, specs, summary)
        return summary
    finally:
        if own_store:
            results.close()


@drives(iter_sweep)
def sweep(*, progress: ProgressCallback | None = None) -> SweepSummary:
    """Run a sweep to the end; see :func:`iter_sweep` for the parameters."""


# --- the two loops ------------------------------------------------------------------------------


@dataclass
class _Claims:
    """This call's work on the store: it claims the runs not yet tried (each at most once, as
    this process's worker) and records their outcomes in the store and the summary.
    """

    store: ResultStore
    specs: dict[str, RunSpec]
    summary: SweepSummary
    retry_failed: bool
    lease_s: float
    heartbeat_s: float
    worker: str = field(default_factory=worker_name)
    untried: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.untried = set(self.specs)

    @property
    def done(self) -> int:
        return self.summary.skipped + self.summary.ran

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(self.store.path, self.worker, self.heartbeat_s)

    def claim(self) -> RunRecord | None:
        record = self.store.claim(
            self.untried, worker=self.worker, retry_failed=self.retry_failed, lease_s=self.lease_s
        )
        if record is not None:
            self.untried.discard(record.run_id)
        return record

    def finish(self, run_id: str, result: RunResult) -> None:
        prefix = Path("runs") / run_id
        self.store.finish(
            run_id,
            metrics=result.metrics,
            per_class=result.per_class,
            artifacts={name: (prefix / rel).as_posix() for name, rel in result.artifacts.items()},
            worker=self.worker,
        )
        self.summary.ran += 1

    def fail(self, run_id: str, err: BaseException) -> None:
        self.store.fail(run_id, _error_text(err), worker=self.worker)

    def release(self, run_id: str) -> None:
        self.store.release(run_id, worker=self.worker)


def _inline(claims: _Claims, device: str | None) -> ProgressGenerator[None]:
    """Claim and run one run at a time in this process, with progress from inside each run."""
    total = len(claims.specs)
    with claims.heartbeat() as beat:
        while True:
            record = claims.claim()
            if record is None:
                return
            run_id = record.run_id
            beat.add(run_id)
            done = claims.done
            gen = iter_execute(claims.specs[run_id], claims.store.run_dir(run_id), device=device)
            try:
                while True:
                    try:
                        event = next(gen)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    message = f"{run_id}: {event.message}" if event.message else run_id
                    yield Progress(done, total, message)
            except (KeyboardInterrupt, GeneratorExit):
                gen.close()
                claims.release(run_id)
                raise
            except Exception as err:
                claims.fail(run_id, err)
                yield Progress(done, total, f"{run_id} failed: {err}")
                continue
            finally:
                beat.discard(run_id)
            claims.finish(run_id, result)
            yield Progress(claims.done, total, f"{run_id} done")


def _pooled(claims: _Claims, executor: PoolExecutor, device: str | None) -> ProgressGenerator[None]:
    """Claim runs while the executor has room; record each outcome as it arrives."""
    total = len(claims.specs)
    in_flight: dict[Any, str] = {}
    with executor, claims.heartbeat() as beat:
        try:
            while True:
                while len(in_flight) < executor.capacity():
                    record = claims.claim()
                    if record is None:
                        break
                    spec = claims.specs[record.run_id].to_json()
                    run_dir = str(claims.store.run_dir(record.run_id))
                    in_flight[executor.submit(spec, run_dir, device)] = record.run_id
                    beat.add(record.run_id)
                if not in_flight:
                    return
                message = f"{len(in_flight)} running on {executor.describe()}"
                yield Progress(claims.done, total, message)
                for future in executor.wait(list(in_flight), timeout=_POLL_S):
                    run_id = in_flight.pop(future)
                    beat.discard(run_id)
                    try:
                        result = RunResult(**future.result())
                    except Exception as err:
                        claims.fail(run_id, err)
                        continue
                    claims.finish(run_id, result)
        except BaseException:
            for run_id in in_flight.values():
                claims.release(run_id)
            raise


# --- helpers ------------------------------------------------------------------------------------


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
