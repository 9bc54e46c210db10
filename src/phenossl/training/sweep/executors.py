"""Where a sweep's runs execute: in the sweep's process, one process per GPU, or on dask.

- :class:`LocalExecutor`: one run after the other in the calling process (progress per step).
- :class:`GpuExecutor`: a pool of spawned worker processes, one per GPU, each pinned to its
  GPU with ``CUDA_VISIBLE_DEVICES`` before torch starts; a machine without CUDA falls back to
  :class:`LocalExecutor` with a warning (:func:`make_executor`).
- :class:`DaskExecutor`: tasks on a ``dask.distributed`` cluster: a ``LocalCluster``, the
  scheduler at ``address``, or any ``Client`` (e.g. of a dask-jobqueue ``SLURMCluster``).

Pooled executors only compute: the sweep's process claims each run in the result store before
submitting it and records its outcome, so the SQLite store has a single writer even when the
workers run on other hosts (they write only their run folders, which must be on a shared
filesystem). Each task calls :func:`phenossl.training.sweep.experiment.execute`.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from typing import Any

__all__ = [
    "EXECUTORS",
    "DaskExecutor",
    "GpuExecutor",
    "LocalExecutor",
    "PoolExecutor",
    "make_executor",
]

EXECUTORS = ("local", "gpus", "dask")


class LocalExecutor:
    """Run the runs one after the other in this process."""

    name = "local"


class PoolExecutor(ABC):
    """An executor that runs :func:`~phenossl.training.sweep.experiment.execute` as remote tasks.

    Use as a context manager; :meth:`submit` returns a future whose ``result()`` is the run's
    ``RunResult.to_dict()`` (or raises the run's exception).
    """

    name = "pool"

    def __enter__(self) -> PoolExecutor:
        self.open()
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self.close(cancel=exc_type is not None)

    @abstractmethod
    def open(self) -> None:
        """Start the workers."""

    @abstractmethod
    def close(self, cancel: bool = False) -> None:
        """Stop the workers (``cancel``: drop queued tasks instead of waiting for them)."""

    @abstractmethod
    def capacity(self) -> int:
        """How many runs may be in flight now."""

    @abstractmethod
    def submit(self, spec: dict[str, Any], run_dir: str, device: str | None) -> Any:
        """Start one run; returns a future."""

    @abstractmethod
    def wait(self, futures: Collection[Any], timeout: float) -> set[Any]:
        """The futures among ``futures`` that finished within ``timeout`` seconds."""

    def describe(self) -> str:
        """One line for the user."""
        return self.name


class GpuExecutor(PoolExecutor):
    """One spawned worker process per GPU, pinned with ``CUDA_VISIBLE_DEVICES``.

    Parameters
    ----------
    gpus
        Device ids (default: every visible CUDA device). Each worker sees only its own, as
        ``cuda:0``.
    """

    name = "gpus"

    def __init__(self, gpus: Sequence[int | str] | None = None) -> None:
        if gpus is None:
            gpus = list(range(cuda_device_count()))
        if not gpus:
            raise ValueError("GpuExecutor needs at least one GPU id")
        self.gpus = [str(g) for g in gpus]
        self._pool: cf.ProcessPoolExecutor | None = None

    def open(self) -> None:
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        for gpu in self.gpus:
            queue.put(gpu)
        self._pool = cf.ProcessPoolExecutor(
            max_workers=len(self.gpus),
            mp_context=context,
            initializer=_pin_gpu,
            initargs=(queue,),
        )

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
            self._pool = None

    def capacity(self) -> int:
        return len(self.gpus)

    def submit(self, spec: dict[str, Any], run_dir: str, device: str | None) -> cf.Future:
        from phenossl.training.sweep.experiment import execute

        if self._pool is None:
            raise RuntimeError("GpuExecutor.submit before open()")
        return self._pool.submit(execute, spec, run_dir, device)

    def wait(self, futures: Collection[cf.Future], timeout: float) -> set[cf.Future]:
        done, _ = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return done

    def describe(self) -> str:
        return f"one process per GPU ({', '.join(self.gpus)})"


def _pin_gpu(queue: Any) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = queue.get()


class DaskExecutor(PoolExecutor):
    """Runs as ``dask.distributed`` tasks.

    Parameters
    ----------
    client
        A connected ``distributed.Client`` (left open on close), e.g. of a dask-jobqueue
        ``SLURMCluster``.
    address
        Or the address of a running scheduler (``tcp://host:8786``).
    n_workers, threads_per_worker, processes
        Otherwise a ``LocalCluster`` with these settings (closed on close).
    max_in_flight
        Runs submitted at once (default: the cluster's worker threads, at least 1, re-read as
        workers join or leave).
    """

    name = "dask"

    def __init__(
        self,
        client: Any = None,
        *,
        address: str | None = None,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
        processes: bool = True,
        max_in_flight: int | None = None,
    ) -> None:
        if client is not None and address is not None:
            raise ValueError("give either a dask client or a scheduler address, not both")
        self.client = client
        self.address = address
        self.cluster_options = {
            "n_workers": n_workers,
            "threads_per_worker": threads_per_worker,
            "processes": processes,
        }
        self.max_in_flight = max_in_flight
        self._owned: list[Any] = []

    def open(self) -> None:
        from distributed import Client, LocalCluster

        if self.client is None:
            if self.address is None:
                cluster = LocalCluster(dashboard_address=None, **self.cluster_options)
                self._owned.append(cluster)
                self.client = Client(cluster)
            else:
                self.client = Client(self.address)
            self._owned.insert(0, self.client)

    def close(self, cancel: bool = False) -> None:
        for resource in self._owned:
            resource.close()
        if self._owned:
            self.client = None
        self._owned = []

    def capacity(self) -> int:
        if self.max_in_flight is not None:
            return self.max_in_flight
        return max(1, sum(self.client.nthreads().values()))

    def submit(self, spec: dict[str, Any], run_dir: str, device: str | None) -> Any:
        from phenossl.training.sweep.experiment import execute

        key = f"phenossl-run-{spec['run_id']}-{uuid.uuid4().hex[:8]}"  # unique per attempt
        return self.client.submit(execute, spec, run_dir, device, pure=False, key=key)

    def wait(self, futures: Collection[Any], timeout: float) -> set[Any]:
        from distributed import wait

        try:
            done, _ = wait(list(futures), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set()
        return set(done)

    def describe(self) -> str:
        return f"dask ({self.client.scheduler.address if self.client else 'not started'})"


def cuda_device_count() -> int:
    """Visible CUDA devices (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def make_executor(
    name: str,
    *,
    gpus: Sequence[int | str] | None = None,
    address: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    processes: bool = True,
) -> LocalExecutor | PoolExecutor:
    """The executor called ``name`` (``local``, ``gpus`` or ``dask``).

    ``gpus`` on a machine without CUDA warns and returns a :class:`LocalExecutor`.
    """
    if name == "local":
        return LocalExecutor()
    if name == "gpus":
        if gpus is None and cuda_device_count() == 0:
            warnings.warn(
                "executor 'gpus': no CUDA GPU found; running the runs one after the other in "
                "this process",
                RuntimeWarning,
                stacklevel=2,
            )
            return LocalExecutor()
        return GpuExecutor(gpus)
    if name == "dask":
        return DaskExecutor(
            address=address,
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
        )
    raise ValueError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")
