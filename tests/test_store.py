"""The result store: claims, leases, closing runs, refused definitions, crash safety."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from phenossl.training.sweep.store import ResultStore, SpecMismatchError, worker_name


def _add(store: ResultStore, n: int, experiment: str = "e") -> list[str]:
    ids = [f"{experiment}/m/p={i}/seed=0" for i in range(n)]
    store.add_runs(
        (run_id, experiment, {"method": "m", "params": {"p": i}, "seed": 0, "config": {"a": i}})
        for i, run_id in enumerate(ids)
    )
    return ids


def test_store_round_trip_and_frame(tmp_path):
    with ResultStore(tmp_path / "s") as store:
        ids = _add(store, 3)
        mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        assert store.counts() == {"pending": 3, "running": 0, "done": 0, "failed": 0}
        record = store.claim()
        assert (record.run_id, record.status, record.attempts) == (ids[0], "running", 1)
        assert record.worker == worker_name()
        assert store.finish(
            ids[0],
            metrics={"top1": 0.5, "nan_metric": float("nan")},
            per_class={"linear": {"class_names": ["a", "b"], "accuracy": [1.0, float("nan")]}},
            artifacts={"checkpoint": "runs/x/final.pt"},
        )
        second = store.claim()
        store.fail(second.run_id, "Traceback...\nValueError: boom")
        frame = store.frame()
        assert list(frame["run_id"]) == [ids[0]]
        row = frame.iloc[0]
        assert (row["method"], row["seed"], row["param.p"], row["metric.top1"]) == ("m", 0, 0, 0.5)
        assert np.isnan(row["metric.nan_metric"])
        np.testing.assert_array_equal(row["per_class.linear"], [1.0, np.nan])
        assert row["class_names.linear"] == ["a", "b"]
        assert row["artifact.checkpoint"] == str(tmp_path / "s" / "runs/x/final.pt")
        everything = store.frame(status=None)
        assert list(everything["status"]) == ["done", "failed", "pending"]
        assert store.get(ids[1]).error.endswith("ValueError: boom")
        with pytest.raises(ValueError, match="status 'finished'"):
            store.frame(status="finished")
    # a second connection (another process) sees the committed state
    with ResultStore(tmp_path / "s", create=False) as again:
        assert again.counts()["done"] == 1
    with pytest.raises(FileNotFoundError, match="no result store"):
        ResultStore(tmp_path / "missing", create=False)


def test_claims_are_atomic_across_connections(tmp_path):
    with ResultStore(tmp_path) as store:
        ids = _add(store, 60)
    claimed: dict[str, list[str]] = {}

    def work(name: str) -> None:
        with ResultStore(tmp_path) as own:
            mine = claimed.setdefault(name, [])
            while (record := own.claim(worker=name)) is not None:
                mine.append(record.run_id)
                own.finish(record.run_id, metrics={"w": len(mine)}, worker=name)

    threads = [threading.Thread(target=work, args=(f"host:worker{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [run_id for runs in claimed.values() for run_id in runs]
    assert sorted(every) == sorted(ids)  # each run claimed once, none lost
    with ResultStore(tmp_path) as store:
        assert {r.attempts for r in store.records()} == {1}
        assert store.counts()["done"] == 60


def test_abandoned_claims_are_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host = worker_name().rpartition(":")[0]
    try:
        with ResultStore(tmp_path) as store:
            ids = _add(store, 3)
            store.claim([ids[0]], worker=f"{host}:{dead.pid}")  # its process is gone
            store.claim([ids[1]], worker=f"{host}:{alive.pid}")  # alive on this host
            store.claim([ids[2]], worker="elsewhere:1")  # another host: only the lease tells
            taken = store.claim(ids[:2])
            assert taken.run_id == ids[0] and taken.attempts == 2
            assert store.claim(ids[1:]) is None  # a live claim is respected
            assert store.claim(ids[2:], lease_s=0.0).run_id == ids[2]  # stale heartbeat
    finally:
        alive.kill()
        alive.wait()


def test_only_the_claimer_closes_a_run(tmp_path):
    with ResultStore(tmp_path) as store:
        (run_id,) = _add(store, 1)
        store.claim(worker="a:1")
        assert not store.finish(run_id, metrics={}, worker="b:2")
        assert not store.release(run_id, worker="b:2")
        assert store.get(run_id).status == "running"
        assert store.release(run_id, worker="a:1")
        assert (store.get(run_id).status, store.get(run_id).attempts) == ("pending", 0)


def test_changed_definitions_are_refused(tmp_path):
    with ResultStore(tmp_path) as store:
        spec = {"params": {"p": 1}, "config": {"optim": {"lr": 0.1}, "run": {"device": "cpu"}}}
        store.add_runs([("e/r", "e", spec)])
        device = {**spec, "config": {**spec["config"], "run": {"device": "cuda"}}}
        assert store.add_runs([("e/r", "e", device)]) == 0  # the device may change
        assert store.get("e/r").spec["config"]["run"]["device"] == "cuda"
        other = {**spec, "config": {**spec["config"], "optim": {"lr": 0.2}}}
        with pytest.raises(SpecMismatchError, match=r"e/r \(config\.optim\.lr\)"):
            store.add_runs([("e/r", "e", other)])


def test_the_database_survives_a_writer_killed_mid_transaction(tmp_path):
    with ResultStore(tmp_path) as store:
        _add(store, 5)
    database = str(tmp_path / "results.sqlite")
    code = (
        f"import os, sqlite3; db = sqlite3.connect({database!r}, isolation_level=None); "
        "db.execute('BEGIN IMMEDIATE'); "
        "db.execute(\"UPDATE runs SET status='done'\"); os._exit(9)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    with ResultStore(tmp_path) as store:
        assert store.counts()["pending"] == 5  # the uncommitted change is gone
        check = store._db.execute("PRAGMA integrity_check").fetchone()[0]
        assert check == "ok"
