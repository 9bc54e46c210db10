"""Sweeps: the result store, running a grid, resuming, failures, executors, MNIST clustering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from phenossl.cells.crops import CropSetWriter
from phenossl.data.cifar import write_cifar_like
from phenossl.training import executors
from phenossl.training.config import parse_overrides
from phenossl.training.executors import DaskExecutor, GpuExecutor, LocalExecutor, make_executor
from phenossl.training.store import ResultStore, SpecMismatchError, worker_name
from phenossl.training.sweep import sweep
from phenossl.training.sweep_config import load_sweep, sweep_from_dict

TRAINING = Path(__file__).resolve().parents[1] / "training"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One thread: faster than two on a busy 2-core CI machine, and the same numbers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_settings(cifar_root: Path) -> dict:
    """Settings that shrink a CIFAR run to seconds: 32 images of 16 px, VGG11, 2 epochs."""
    return {
        "train.data.root": str(cifar_root),
        "train.data.limit": 32,
        "train.optim.batch_size": 16,
        "train.optim.epochs": 2,
        "train.model.backbone": "vgg11",
        "train.augmentation.0.size": 16,
        "train.run.eval.knn": False,
        "train.run.device": "cpu",
        "train.run.num_threads": 1,
        "evaluate.linear.epochs": 2,
        "evaluate.data.train_limit": 64,
        "evaluate.data.test_limit": 32,
        "evaluate.device": "cpu",
    }


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_like(root, n_train=128, n_test=64, seed=0)
    return root


def tiny_sweep(cifar_root: Path, **changes) -> dict:
    """2 good runs (hue_p 0 and 1) and 2 that fail at once (missing data), interleaved."""
    data = {
        "experiment": "tiny",
        "train": str(TRAINING / "cifar10_{method}.yaml"),
        "methods": ["simclr"],
        "grid": {
            "hue_p": {"values": [0.0, 1.0], "set": {"train.augmentation.0.hue_p": "{value}"}},
            "data": {"levels": {"ok": {}, "missing": {"train.data.root": "/nonexistent/cifar"}}},
        },
        "seeds": [5],
        "set": tiny_settings(cifar_root),
        "evaluate": {"linear": {}, "knn": {"k": 5}},
    }
    return {**data, **changes}


@pytest.fixture(scope="module")
def local_store(tiny_cifar, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    config = sweep_from_dict(tiny_sweep(tiny_cifar))
    events = []
    summary = sweep(config, store, progress=events.append)
    return store, summary, events


# --- the store ----------------------------------------------------------------------------------


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


# --- running a sweep ----------------------------------------------------------------------------


def test_local_sweep_runs_and_records_every_run(local_store):
    store_path, summary, events = local_store
    assert (summary.total, summary.done, summary.failed, summary.ran) == (4, 2, 2, 2)
    assert summary.complete is False
    assert set(summary.failures) == {
        "tiny/simclr/hue_p=0/data=missing/seed=5",
        "tiny/simclr/hue_p=1/data=missing/seed=5",
    }
    assert all("/nonexistent/cifar" in e for e in summary.failures.values())
    # progress in runs, with messages from inside the running run
    assert events[-1].total == 4 and events[-1].done == 2
    assert any("train: epoch" in e.message for e in events)
    with ResultStore(store_path) as store:
        frame = store.frame("tiny")
        assert list(frame["param.hue_p"]) == [0.0, 1.0]
        assert set(frame["param.data"]) == {"ok"}
        for _, row in frame.iterrows():
            assert 0.0 <= row["metric.top1"] <= 1.0 and 0.0 <= row["metric.knn_top1"] <= 1.0
            assert row["metric.train_epochs"] == 2 and row["metric.train_seconds"] > 0
            assert len(row["per_class.linear"]) == 10 == len(row["class_names.linear"])
            assert row["class_names.linear"][0] == "airplane"
            run_dir = store.run_dir(row["run_id"])
            assert Path(row["artifact.checkpoint"]) == run_dir / "final.pt"
            assert (run_dir / "checkpoints" / "last.pt").is_file()
            details = json.loads((run_dir / "evaluation.json").read_text())
            assert details["metrics"]["top1"] == row["metric.top1"]
            assert details["protocols"]["linear"]["confusion_matrix"]
        spec = store.get("tiny/simclr/hue_p=1/data=ok/seed=5").spec
        assert spec["config"]["augmentation"][0]["hue_p"] == 1.0
        assert (spec["method"], spec["backbone"], spec["dataset"]) == ("simclr", "vgg11", "cifar10")
        failed = store.get("tiny/simclr/hue_p=0/data=missing/seed=5")
        assert failed.status == "failed" and "FileNotFoundError" in failed.error


def test_running_again_skips_finished_runs_and_retries_failed_ones(local_store, tiny_cifar):
    store_path, *_ = local_store
    config = sweep_from_dict(tiny_sweep(tiny_cifar))
    with ResultStore(store_path) as store:
        done = store.records(status="done")
        stamps = {r.run_id: (store.run_dir(r.run_id) / "final.pt").stat().st_mtime_ns for r in done}
    summary = sweep(config, store_path, retry_failed=False)
    assert (summary.ran, summary.skipped, summary.failed) == (0, 2, 2)
    summary = sweep(config, store_path)
    assert (summary.ran, summary.skipped, summary.failed) == (0, 2, 2)
    with ResultStore(store_path) as store:
        for record in store.records():
            assert record.attempts == (1 if record.status == "done" else 2)
            if record.status == "done":
                mtime = (store.run_dir(record.run_id) / "final.pt").stat().st_mtime_ns
                assert mtime == stamps[record.run_id]  # not trained again


def test_dask_executor_gives_the_local_results(local_store, tiny_cifar, tmp_path):
    store_path, *_ = local_store
    data = tiny_sweep(tiny_cifar)
    data["grid"]["data"] = {"levels": {"ok": {}}}  # the two good runs
    executor = DaskExecutor(n_workers=1, threads_per_worker=1, processes=False)
    summary = sweep(sweep_from_dict(data), tmp_path, executor=executor)
    assert executor.client is None  # the LocalCluster it started is closed
    assert (summary.done, summary.ran) == (2, 2)
    with ResultStore(store_path) as local, ResultStore(tmp_path) as dask:
        expected = local.frame().set_index("run_id")
        for _, row in dask.frame().iterrows():
            reference = expected.loc[row["run_id"]]
            for metric in ("metric.top1", "metric.knn_top1", "metric.train_loss"):
                assert row[metric] == reference[metric], metric  # bit-exact on the CPU
            np.testing.assert_array_equal(row["per_class.linear"], reference["per_class.linear"])


def test_gpus_executor_on_a_cpu_machine_falls_back_to_local(monkeypatch):
    monkeypatch.setattr(executors, "cuda_device_count", lambda: 0)
    with pytest.warns(RuntimeWarning, match="no CUDA GPU"):
        assert isinstance(make_executor("gpus"), LocalExecutor)
    with pytest.raises(ValueError, match="unknown executor 'slurm'"):
        make_executor("slurm")


# --- the backbone-size study (no training) ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cropset(tmp_path_factory) -> Path:
    """Nocodazole cells bright, DMSO cells dark: any backbone separates them."""
    path = tmp_path_factory.mktemp("crops") / "noc"
    rng = np.random.default_rng(0)
    rows = [("nocodazole", c) for c in (1.0, 3.0) for _ in range(6)] + [("DMSO", 0.0)] * 14
    table = pd.DataFrame(rows, columns=["compound", "concentration"])
    table["treatment"] = [f"{c}@{x:g}" for c, x in rows]
    level = np.where(table["compound"] == "DMSO", 40, 200)[:, None, None, None]
    images = np.clip(level + rng.normal(0, 20, (len(table), 3, 32, 32)), 0, 255).astype(np.uint8)
    with CropSetWriter(path, size=32) as writer:
        writer.add(images, table)
    return path


def test_backbone_size_smoke_sweep_embeds_and_clusters(tiny_cropset, tmp_path):
    config = load_sweep(
        TRAINING / "backbone_size.yaml",
        smoke=True,
        overrides={
            "embed.cropset": str(tiny_cropset),
            "embed.input_size": 32,
            "embed.device": "cpu",
        },
    )
    summary = sweep(config, tmp_path)
    assert (summary.done, summary.total) == (4, 4)
    with ResultStore(tmp_path) as store:
        frame = store.frame()
        assert set(frame["param.backbone"]) == {"resnet18", "vgg11"}
        assert set(frame["param.concentration"]) == {1.0, 3.0}
        assert frame["method"].isna().all()
        for _, row in frame.iterrows():
            assert row["metric.n_cells"] == 12  # 6 treated + 6 DMSO drawn
            assert row["metric.ami"] == pytest.approx(1.0)
            assert abs(row["metric.ami_control_mean"]) < 0.3
            with np.load(row["artifact.embeddings"]) as saved:
                assert saved["embeddings"].shape[0] == 12
            assert Image.open(row["artifact.montage"]).size[1] > 2 * 32  # 2 rows of crops


def test_gpu_executor_pins_each_worker_to_its_device(tiny_cropset, tmp_path):
    config = load_sweep(
        TRAINING / "backbone_size.yaml",
        smoke=True,
        overrides={"embed.cropset": str(tiny_cropset), "embed.input_size": 32},
    )
    config.grid = config.grid[:1]  # two runs: one per backbone
    summary = sweep(config, tmp_path, executor=GpuExecutor(gpus=["4", "7"]), device="cpu")
    assert (summary.done, summary.ran) == (2, 2)
    seen = set()
    with ResultStore(tmp_path) as store:
        for record in store.records():
            info = json.loads((store.run_dir(record.run_id) / "evaluation.json").read_text())
            seen.add(info["info"]["cuda_visible_devices"])
            assert info["info"]["pid"] != os.getpid()  # ran in a worker process
    assert seen <= {"4", "7"} and seen


# --- MNIST clustering on the real data ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realdata
def test_mnist_digit_composition_clusters_by_digit(mnist_root, tmp_path):
    """Fig. 4 on real MNIST at the "short" scale of docs/reproduce.md (about 6 CPU minutes).

    Measured on 2 cores with this command: AMI digit 0.458, handwriting 0.317 (random-init
    VGG11-BN on the same test digits: 0.367).
    """
    config = load_sweep(
        TRAINING / "fig4_mnist_clustering.yaml",
        smoke=True,
        overrides=parse_overrides(mnist_ci_settings(mnist_root) + MNIST_SHORT),
    )
    started = time.perf_counter()
    summary = sweep(config, tmp_path)
    assert summary.complete, summary.failures
    with ResultStore(tmp_path) as store:
        frame = store.frame().set_index("param.composition")
    ami = frame["metric.ami"]
    print(f"MNIST AMI digit {ami['digit']:.3f} handwriting {ami['handwriting']:.3f} "
          f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    for composition in ("digit", "handwriting"):
        row = frame.loc[composition]
        assert (
            row["metric.ami"] > row["metric.ami_control_mean"] + 10 * row["metric.ami_control_std"]
        )
        montage = np.asarray(Image.open(row["artifact.montage"]))
        assert montage.shape[0] == 10 * 28 + 11 * 2  # 10 clusters of 28 px test digits
    assert ami["digit"] > ami["handwriting"] + MNIST_MARGIN


MNIST_MARGIN = 0.05
#: docs/reproduce.md's short scale of Fig. 4: 4000 digits, 3 epochs at 32 px, 2000 test digits
MNIST_SHORT = [
    "train.data.limit=4000",
    "train.optim.epochs=3",
    "train.optim.scheduler=warmup_cosine",
    "train.optim.warmup_epochs=1",
    "train.augmentation.0.size=32",
    "evaluate.data.test_limit=2000",
]


def mnist_ci_settings(root: Path) -> list[str]:
    return [f"train.data.root={root}", "train.run.device=cpu", "evaluate.device=cpu"]
