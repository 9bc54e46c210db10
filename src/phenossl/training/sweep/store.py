"""The durable result store of sweeps: one SQLite row per run, one folder per run.

Layout of a store folder (the "Result store" contract in docs/architecture.md)::

    results.sqlite        SQLite in WAL mode; every state change is one transaction
    runs/<run_id>/        the run's folder: the trainer's files, evaluation.json, montages

A run's row goes ``pending`` -> ``running`` (claimed) -> ``done`` or ``failed``. A claim is one
``BEGIN IMMEDIATE`` transaction that reads the candidates and marks one ``running`` under the
claimer's name (``host:pid``), so two workers never take the same run. A ``running`` row whose
claimer is gone is taken again: at once when the claimer ran on this host and its process no
longer exists (a ``kill -9``), otherwise once its heartbeat is older than the lease. A ``done``
row is never claimed again.

SQLite's WAL needs one host's shared memory: keep the store on a local disk of the host that
runs the sweep's coordinator (workers elsewhere write only their run folders).
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phenossl._json import to_json
from phenossl.training.train.config import differing_keys

__all__ = [
    "STATUSES",
    "Heartbeat",
    "ResultStore",
    "RunRecord",
    "SpecMismatchError",
    "json_safe",
    "worker_name",
]

DB_FILE = "results.sqlite"
RUNS_DIR = "runs"
STATUSES = ("pending", "running", "done", "failed")
SCHEMA_VERSION = 1
DEFAULT_LEASE_S = 900.0
# spec keys that may change between invocations without making a run a different run
VOLATILE_SPEC_KEYS = (
    "config.run.",
    "config.data.preload",
    "config.smoke",
    "config.device",
    "evaluate.device",
    "smoke",
    "train_file",  # where the trainer config was read from: the resolved config is what counts
    # where the data lies is not the experiment (a fixed path, a symlink): the dataset's name,
    # split, limits and options identify it
    "config.data.root",
    "config.cropset",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id     TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    spec       TEXT NOT NULL,
    metrics    TEXT,
    per_class  TEXT,
    artifacts  TEXT,
    error      TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    started    REAL,
    finished   REAL,
    worker     TEXT,
    heartbeat  REAL
);
CREATE INDEX IF NOT EXISTS runs_experiment_status ON runs (experiment, status);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SpecMismatchError(ValueError):
    """Runs already in the store were defined differently (another config under the same ids)."""


@dataclass(frozen=True)
class RunRecord:
    """One row of the store, JSON columns decoded."""

    run_id: str
    experiment: str
    status: str
    spec: dict[str, Any]
    metrics: dict[str, Any] | None
    per_class: dict[str, Any] | None
    artifacts: dict[str, Any] | None
    error: str | None
    attempts: int
    started: float | None
    finished: float | None
    worker: str | None
    heartbeat: float | None


def worker_name() -> str:
    """This process's claim name, ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ResultStore:
    """A sweep's result store (see the module docstring).

    Parameters
    ----------
    path
        The store folder (created unless ``create`` is False).
    create
        Create a missing store; False raises :class:`FileNotFoundError` instead.
    timeout
        Seconds to wait for another writer's lock.

    One object holds one SQLite connection: use it from the thread that made it (open another
    ``ResultStore`` on the same path per thread or process).
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True, timeout: float = 60.0):
        self.path = Path(path)
        self.db_path = self.path / DB_FILE
        if not self.db_path.is_file():
            if not create:
                raise FileNotFoundError(f"no result store at {self.path} ({DB_FILE} is missing)")
            (self.path / RUNS_DIR).mkdir(parents=True, exist_ok=True)
        elif self.db_path.stat().st_size == 0:  # never write a fresh schema into a damaged store
            raise ValueError(
                f"{self.db_path} is empty (0 bytes), not a result store; restore it from a "
                "backup or use another --store"
            )
        self._db = sqlite3.connect(self.db_path, timeout=timeout, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            version = self._db.execute(
                "SELECT value FROM meta WHERE key='schema_version'"
            ).fetchone()
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise ValueError(
                f"{self.db_path} is not a readable result store ({err}); restore it from a "
                "backup or use another --store"
            ) from None
        if int(version[0]) != SCHEMA_VERSION:
            raise ValueError(
                f"{self.db_path}: store schema version {version[0]}, this phenossl reads "
                f"{SCHEMA_VERSION}"
            )

    # -- life cycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    def run_dir(self, run_id: str) -> Path:
        """The folder of run ``run_id``: ``<store>/runs/<run_id>``."""
        return self.path / RUNS_DIR / run_id

    # -- writing ---------------------------------------------------------------------------

    def add_runs(self, runs: Iterable[tuple[str, str, Mapping[str, Any]]]) -> int:
        """Register ``(run_id, experiment, spec)`` runs as ``pending``; returns how many are new.

        A run already in the store keeps its status; its spec must describe the same run
        (keys in ``VOLATILE_SPEC_KEYS``, such as the device, may differ and are updated unless
        the run is done).

        Raises
        ------
        SpecMismatchError
            Some runs exist with a different definition (the first are named with the keys
            that differ): the config changed; use another store.
        """
        runs = [(run_id, experiment, dict(spec)) for run_id, experiment, spec in runs]
        mismatches: list[str] = []
        added = 0
        with self._transaction():
            for run_id, experiment, spec in runs:
                row = self._db.execute(
                    "SELECT experiment, status, spec FROM runs WHERE run_id=?", (run_id,)
                ).fetchone()
                text = json.dumps(spec, sort_keys=True)
                if row is None:
                    self._db.execute(
                        "INSERT INTO runs (run_id, experiment, status, spec) "
                        "VALUES (?, ?, 'pending', ?)",
                        (run_id, experiment, text),
                    )
                    added += 1
                    continue
                differ = _spec_differences(json.loads(row[2]), spec)
                if row[0] != experiment:
                    differ.insert(0, "experiment")
                if differ:
                    mismatches.append(f"{run_id} ({', '.join(differ[:6])})")
                elif row[1] != "done" and row[2] != text:
                    self._db.execute("UPDATE runs SET spec=? WHERE run_id=?", (text, run_id))
            if mismatches:
                raise SpecMismatchError(
                    f"{len(mismatches)} run(s) in {self.path} were defined differently: "
                    f"{'; '.join(mismatches[:3])}. The config changed since they were "
                    "recorded: use another --store (or delete this one to start over)"
                )
        return added

    def claim(
        self,
        run_ids: Iterable[str] | None = None,
        *,
        worker: str | None = None,
        retry_failed: bool = True,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> RunRecord | None:
        """Atomically take the first claimable run (in insertion order) and mark it ``running``.

        Parameters
        ----------
        run_ids
            Only these runs (default: any in the store).
        worker
            The claimer's name (default :func:`worker_name`).
        retry_failed
            Whether ``failed`` runs are claimable.
        lease_s
            A ``running`` run whose heartbeat is older than this is taken over.

        Returns
        -------
        RunRecord or None
            The claimed run (``attempts`` already counted), or None when nothing is left.
        """
        worker = worker or worker_name()
        wanted = None if run_ids is None else set(run_ids)
        statuses = ("pending", "running", "failed") if retry_failed else ("pending", "running")
        now = time.time()
        with self._transaction():
            rows = self._db.execute(
                f"SELECT run_id, status, worker, heartbeat FROM runs WHERE status IN "
                f"({','.join('?' * len(statuses))}) ORDER BY rowid",
                statuses,
            ).fetchall()
            for run_id, status, owner, heartbeat in rows:
                if wanted is not None and run_id not in wanted:
                    continue
                if status == "running" and not _abandoned(owner, heartbeat, now, lease_s):
                    continue
                self._db.execute(
                    "UPDATE runs SET status='running', worker=?, heartbeat=?, started=?, "
                    "finished=NULL, attempts=attempts+1 WHERE run_id=?",
                    (worker, now, now, run_id),
                )
                return self.get(run_id)
        return None

    def heartbeat(self, run_ids: Iterable[str], *, worker: str | None = None) -> None:
        """Mark ``worker``'s running runs as alive now."""
        worker = worker or worker_name()
        ids = list(run_ids)
        if ids:
            with self._transaction():
                self._db.executemany(
                    "UPDATE runs SET heartbeat=? WHERE run_id=? AND worker=? AND status='running'",
                    [(time.time(), run_id, worker) for run_id in ids],
                )

    def finish(
        self,
        run_id: str,
        *,
        metrics: Mapping[str, Any],
        per_class: Mapping[str, Any] | None = None,
        artifacts: Mapping[str, Any] | None = None,
        worker: str | None = None,
    ) -> bool:
        """Record a run's results and mark it ``done``; False when ``worker`` no longer holds it."""
        return self._close_run(
            run_id,
            "done",
            worker,
            metrics=_dumps(metrics),
            per_class=_dumps(per_class or {}),
            artifacts=_dumps(artifacts or {}),
            error=None,
        )

    def fail(self, run_id: str, error: str, *, worker: str | None = None) -> bool:
        """Mark a run ``failed`` with its error text; False when ``worker`` no longer holds it."""
        return self._close_run(run_id, "failed", worker, error=error)

    def release(self, run_id: str, *, worker: str | None = None) -> bool:
        """Give a claimed run back (``pending``), e.g. on Ctrl-C; its attempt is not counted."""
        worker = worker or worker_name()
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE runs SET status='pending', worker=NULL, heartbeat=NULL, "
                "attempts=MAX(attempts-1, 0) WHERE run_id=? AND worker=? AND status='running'",
                (run_id, worker),
            )
        return cursor.rowcount == 1

    def _close_run(self, run_id: str, status: str, worker: str | None, **columns: Any) -> bool:
        worker = worker or worker_name()
        assignments = ", ".join(f"{name}=?" for name in columns)
        with self._transaction():
            cursor = self._db.execute(
                f"UPDATE runs SET status=?, finished=?, heartbeat=NULL, {assignments} "
                "WHERE run_id=? AND worker=? AND status='running'",
                (status, time.time(), *columns.values(), run_id, worker),
            )
        return cursor.rowcount == 1

    # -- reading ---------------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        """The run's record.

        Raises
        ------
        KeyError
            No such run.
        """
        row = self._db.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no run {run_id!r} in {self.path}")
        return _record(row)

    def records(
        self, experiment: str | None = None, status: str | Sequence[str] | None = None
    ) -> list[RunRecord]:
        """Runs in insertion order, optionally of one experiment and status (or statuses)."""
        where, args = _filters(experiment, status)
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM runs{where} ORDER BY rowid", args)
        return [_record(row) for row in rows]

    def counts(
        self, experiment: str | None = None, run_ids: Iterable[str] | None = None
    ) -> dict[str, int]:
        """Number of runs per status (every status present as a key)."""
        where, args = _filters(experiment, None)
        out = dict.fromkeys(STATUSES, 0)
        if run_ids is None:
            query = f"SELECT status, COUNT(*) FROM runs{where} GROUP BY status"
            for status, n in self._db.execute(query, args):
                out[status] = n
            return out
        wanted = set(run_ids)
        for run_id, status in self._db.execute(f"SELECT run_id, status FROM runs{where}", args):
            if run_id in wanted:
                out[status] += 1
        return out

    def frame(self, experiment: str | None = None, status: str | None = "done") -> pd.DataFrame:
        """The runs as a flat table for analysis.

        Columns: ``run_id, experiment, status, method, backbone, dataset, seed``,
        ``param.<axis>`` per swept parameter, ``metric.<name>`` per metric (NaN when not
        finite or missing),
        ``per_class.<protocol>`` (a float numpy array per row, NaN for a class absent from the
        test set) with ``class_names.<protocol>`` (a list), and ``artifact.<name>`` (absolute
        paths). ``status=None`` returns every run.
        """
        rows = []
        for record in self.records(experiment, status):
            spec = record.spec
            row: dict[str, Any] = {
                "run_id": record.run_id,
                "experiment": record.experiment,
                "status": record.status,
                "method": spec.get("method"),
                "backbone": spec.get("backbone"),
                "dataset": spec.get("dataset"),
                "seed": spec.get("seed"),
            }
            row.update({f"param.{k}": v for k, v in (spec.get("params") or {}).items()})
            metrics = (record.metrics or {}).items()
            row.update({f"metric.{k}": math.nan if v is None else v for k, v in metrics})
            for protocol, entry in (record.per_class or {}).items():
                accuracy = [math.nan if a is None else a for a in entry["accuracy"]]
                row[f"per_class.{protocol}"] = np.asarray(accuracy, dtype=float)
                row[f"class_names.{protocol}"] = list(entry["class_names"])
            for name, rel in (record.artifacts or {}).items():
                row[f"artifact.{name}"] = str(self.path.absolute() / rel)
            rows.append(row)
        base = ["run_id", "experiment", "status", "method", "backbone", "dataset", "seed"]
        return pd.DataFrame(rows, columns=_ordered_columns(rows, base))

    # -- helpers ---------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


class Heartbeat:
    """A background thread that keeps ``worker``'s running runs alive in the store.

    Use as a context manager; :meth:`add` / :meth:`discard` the run ids in flight. It opens
    its own connection, so the lease holds while the caller is busy (a long epoch).
    """

    def __init__(self, store_path: Path, worker: str, interval: float = 30.0) -> None:
        self.store_path, self.worker, self.interval = store_path, worker, interval
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="phenossl-heartbeat", daemon=True)

    def add(self, run_id: str) -> None:
        with self._lock:
            self._ids.add(run_id)

    def discard(self, run_id: str) -> None:
        with self._lock:
            self._ids.discard(run_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        store = ResultStore(self.store_path)
        try:
            while not self._stop.wait(self.interval):
                with self._lock:
                    ids = list(self._ids)
                store.heartbeat(ids, worker=self.worker)
        finally:
            store.close()


# --- module helpers -----------------------------------------------------------------------------

_COLUMNS = (
    "run_id, experiment, status, spec, metrics, per_class, artifacts, error, attempts, "
    "started, finished, worker, heartbeat"
)


def _record(row: tuple) -> RunRecord:
    values = list(row)
    for i in (3, 4, 5, 6):
        values[i] = None if values[i] is None else json.loads(values[i])
    return RunRecord(*values)


def _filters(experiment: str | None, status: str | Sequence[str] | None) -> tuple[str, list]:
    clauses, args = [], []
    if experiment is not None:
        clauses.append("experiment=?")
        args.append(experiment)
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        unknown = [s for s in statuses if s not in STATUSES]
        if unknown:
            raise ValueError(f"status {unknown[0]!r}; expected one of {STATUSES}")
        clauses.append(f"status IN ({','.join('?' * len(statuses))})")
        args.extend(statuses)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _abandoned(owner: str | None, heartbeat: float | None, now: float, lease_s: float) -> bool:
    """Whether a running row's claimer is gone: dead process on this host, or a stale lease."""
    if heartbeat is None or now - heartbeat > lease_s:
        return True
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def _dumps(value: Any) -> str:
    return json.dumps(json_safe(value), sort_keys=True, allow_nan=False)


def json_safe(value: Any) -> Any:
    """Plain JSON values; NaN/inf become None; an unknown type is a TypeError (see ``to_json``)."""
    return to_json(value, strict=True)


def _spec_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return differing_keys(old, new, ignore=VOLATILE_SPEC_KEYS)


def _ordered_columns(rows: list[dict[str, Any]], base: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    prefixes = ("param.", "metric.", "per_class.", "class_names.", "artifact.")

    def group(column: str) -> int:
        return next((i for i, p in enumerate(prefixes) if column.startswith(p)), len(prefixes))

    return base + sorted((c for c in seen if c not in base), key=group)  # stable: first seen
