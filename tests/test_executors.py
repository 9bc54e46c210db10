"""Executors: Dask gives the local results, GPU workers are pinned, CPU fallback."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from _sweeps import TRAINING, tiny_sweep

from phenossl.training.sweep import executors
from phenossl.training.sweep.config import load_sweep
from phenossl.training.sweep.executors import (
    DaskExecutor,
    GpuExecutor,
    LocalExecutor,
    make_executor,
)
from phenossl.training.sweep.runner import sweep
from phenossl.training.sweep.store import ResultStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_dask_executor_gives_the_local_results(local_store, tiny_cifar, tmp_path):
    store_path, *_ = local_store
    data = tiny_sweep(tiny_cifar)
    data["grid"]["data"] = {"levels": {"ok": {}}}  # the two good runs
    executor = DaskExecutor(n_workers=1, threads_per_worker=1, processes=False)
    summary = sweep(load_sweep(data), tmp_path, executor=executor)
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


def test_gpu_executor_pins_each_worker_to_its_device(tiny_cropset, tmp_path):
    config = load_sweep(
        TRAINING / "backbone_size.yaml",
        smoke=True,
        overrides={"embed.cropset": str(tiny_cropset), "embed.input_size": 32},
    )
    config.grid = dict(list(config.grid.items())[:1])  # two runs: one per backbone
    summary = sweep(config, tmp_path, executor=GpuExecutor(gpus=["4", "7"]), device="cpu")
    assert (summary.done, summary.ran) == (2, 2)
    seen = set()
    with ResultStore(tmp_path) as store:
        for record in store.records():
            info = json.loads((store.run_dir(record.run_id) / "evaluation.json").read_text())
            seen.add(info["info"]["cuda_visible_devices"])
            assert info["info"]["pid"] != os.getpid()  # ran in a worker process
    assert seen <= {"4", "7"} and seen
