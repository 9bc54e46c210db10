"""`phenossl sweep`: the command, and a sweep killed with SIGKILL then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from phenossl.cli import main
from phenossl.data.cifar import write_cifar_like
from phenossl.training.sweep.config import load_sweep
from phenossl.training.sweep.experiment import execute
from phenossl.training.sweep.store import ResultStore
from phenossl.training.train.config import parse_overrides

TRAINING = Path(__file__).resolve().parents[1] / "training"
SRC = Path(__file__).resolve().parents[1] / "src"
TABLE2 = TRAINING / "table2_hue_probability.yaml"
EPOCHS = 3


def smoke_settings(cifar: Path) -> list[str]:
    """Tiny runs: 32 images of 16 px, VGG11, a few epochs, one thread."""
    settings = {
        "train.data.root": cifar,
        "train.data.limit": 32,
        "train.optim.batch_size": 16,
        "train.optim.epochs": EPOCHS,
        "train.model.backbone": "vgg11",
        "train.augmentation.0.size": 16,
        "train.run.num_threads": 1,
        "evaluate.linear.epochs": 2,
        "evaluate.data.train_limit": 64,
        "evaluate.data.test_limit": 32,
    }
    return [f"{key}={value}" for key, value in settings.items()]


def smoke_args(cifar: Path) -> list[str]:
    """table2's smoke grid (SimCLR, BYOL x hue_p 0, 1) with 2 seeds on tiny data: 8 runs."""
    sets = [f"--set={setting}" for setting in smoke_settings(cifar)]
    return [str(TABLE2), "--smoke", "--seeds", "5,6", "--device", "cpu", *sets]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_like(root, n_train=128, n_test=64, seed=0)
    return root


def _command(args: list[str]) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from phenossl.cli import main; sys.exit(main())",
        *args,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}


def _state(store: Path) -> tuple[dict[str, str], dict[str, int]]:
    """Run statuses and, for running runs, the epochs saved in their last checkpoint."""
    db = store / "results.sqlite"
    if not db.is_file() or db.stat().st_size == 0:  # not there yet, or its schema being written
        return {}, {}
    with ResultStore(store) as results:
        status = {r.run_id: r.status for r in results.records()}
        saved = {}
        for run_id, s in status.items():
            last = results.run_dir(run_id) / "checkpoints" / "last.pt"
            if s == "running" and last.is_file():
                saved[run_id] = 1
    return status, saved


def test_sweep_killed_midway_resumes_without_losing_or_repeating_runs(cifar, tmp_path):
    store = tmp_path / "store"
    args = ["-q", "sweep", *smoke_args(cifar), "--store", str(store)]
    process = subprocess.Popen(_command(args), env=_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    try:
        while True:  # SIGKILL once 2 runs are done and a third has saved a checkpoint
            status, saved = _state(store)
            done = [r for r, s in status.items() if s == "done"]
            if len(done) >= 2 and saved:
                break
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    (interrupted,) = saved
    killed_done = {r: (store / "runs" / r / "final.pt").stat().st_mtime_ns for r in done}
    assert (store / "runs" / interrupted / "checkpoints" / "last.pt").is_file()

    result = subprocess.run(_command(args), env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "8/8 done" in result.stdout

    with ResultStore(store) as results:
        records = {r.run_id: r for r in results.records()}
        assert len(records) == 8 and {r.status for r in records.values()} == {"done"}
        for run_id, record in records.items():
            run_dir = results.run_dir(run_id)
            assert record.attempts == (2 if run_id == interrupted else 1), run_id
            epochs = [
                json.loads(line)["epoch"]
                for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                if json.loads(line)["kind"] == "epoch"
            ]
            assert epochs == list(range(EPOCHS)), run_id  # no epoch lost or logged twice
            info = json.loads((run_dir / "evaluation.json").read_text())["info"]
            if run_id == interrupted:
                assert info["resumed_from_epoch"] >= 1
            if run_id in killed_done:  # finished before the kill: not run again
                assert (run_dir / "final.pt").stat().st_mtime_ns == killed_done[run_id]
        frame = results.frame()
        assert len(frame) == 8 and frame["metric.top1"].notna().all()
        resumed = frame.set_index("run_id").loc[interrupted]

    # the resumed run ends exactly where an uninterrupted run ends
    config = load_sweep(
        TABLE2, smoke=True, seeds=[5, 6], overrides=parse_overrides(smoke_settings(cifar))
    )
    spec = next(s for s in config.runs() if s.run_id == interrupted)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clean = execute(spec, tmp_path / "clean", device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert clean["metrics"]["train_loss"] == resumed["metric.train_loss"]
    assert clean["metrics"]["top1"] == resumed["metric.top1"]


def test_list_shows_runs_and_status(cifar, tmp_path, capsys):
    store = tmp_path / "s"
    assert main(["sweep", *smoke_args(cifar), "--store", str(store), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8
    assert lines[0].split() == ["new", "table2_hue_p/simclr/hue_p=0/seed=5"]
    assert not store.exists()  # --list runs nothing


def test_bad_setting_is_reported_with_its_key(cifar, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(TABLE2), "--smoke", "--set", "train.optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "train.optim.lrr" in err and "unknown key" in err
    assert list(tmp_path.iterdir()) == []  # no store folder for a sweep that cannot run
    assert main(["sweep", str(TABLE2), "--seeds", "5,x"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["sweep", str(TRAINING / "cifar10_simclr.yaml")]) == 2
    assert "experiment" in capsys.readouterr().err
