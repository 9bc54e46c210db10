"""Bad input gets a clear answer and nothing computed is lost (issue 11).

The first tests pin the "wrong results, no error" defects one by one, each at the level a user
meets it. ``test_bad_input_catalogue`` then runs the whole catalogue of bad inputs through the
``phenossl`` command and checks each outcome: exit code 2, one line on stderr, no traceback, and
no earlier output lost. It prints how many cases it tried and how many were handled.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import yaml
from _plates import write_tiny_plate

from phenossl.cli import main
from phenossl.cli._common import CLIError

REPO = Path(__file__).resolve().parents[1]
FAST = ["--model", "resnet18", "--input-size", "32", "--batch-size", "16", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cropset(path: Path, n: int = 24, seed: int = 0, size: int = 32) -> Path:
    from phenossl.data.cropset import CropSetWriter

    rng = np.random.default_rng(seed)
    compound = np.where(np.arange(n) % 2 == 0, "DMSO", "nocodazole")
    table = pd.DataFrame({"compound": compound, "treatment": compound})
    images = rng.integers(0, 255, (n, 3, size, size), dtype=np.uint8)
    with CropSetWriter(path, size=size) as writer:
        writer.add(images[: n // 2], table.iloc[: n // 2])
        writer.add(images[n // 2 :], table.iloc[n // 2 :])
    return path


def _train_config(root: Path, data: Path) -> Path:
    config = {
        "data": {"dataset": "cifar10", "root": str(data)},
        "model": {"backbone": "vgg11_bn"},
        "method": {"name": "byol", "proj_hidden_dim": 32, "pred_hidden_dim": 32},
        "augmentation": [{"name": "cifar", "size": 16}],
        "optim": {"batch_size": 8, "epochs": 1},
        "run": {"device": "cpu", "log_every": 1, "eval": {"knn": False}},
    }
    config["data"]["limit"] = 16
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Good inputs the bad ones are made from: a plate, two CropSets, embeddings, a run."""
    from phenossl.data.datasets import write_cifar_like

    root = tmp_path_factory.mktemp("robust")
    w = {"root": root}
    w["plate"] = write_tiny_plate(root / "plate")
    w["crops_a"] = _cropset(root / "crops_a", seed=0)
    w["crops_b"] = _cropset(root / "crops_b", n=20, seed=1)
    w["emb_a"] = root / "a.npz"
    assert main(["-q", "embed", str(w["crops_a"]), "--out", str(w["emb_a"]), *FAST]) == 0
    w["cifar"] = root / "cifar"
    write_cifar_like(w["cifar"], n_train=24, n_test=8, seed=0)
    w["config"] = _train_config(root, w["cifar"])
    w["run"] = root / "run"
    assert main(["-q", "train", "--config", str(w["config"]), "--out", str(w["run"])]) == 0
    return w


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


# --- wrong results, no error -----------------------------------------------------------------


def test_sweep_refuses_a_method_its_config_cannot_train(tmp_path, capsys):
    config = REPO / "training" / "fig4_mnist_clustering.yaml"
    argv = ["-q", "sweep", str(config), "--smoke", "--methods", "byol"]
    assert main([*argv, "--store", str(tmp_path / "st")]) == 2
    line = _error_line(capsys)
    assert "'byol'" in line and "trains 'mocov2plus'" in line
    assert not (tmp_path / "st" / "results.sqlite").exists()


def test_cluster_refuses_embeddings_of_another_cropset(world, tmp_path, capsys):
    argv = ["-q", "cluster", str(world["emb_a"]), "--out", str(tmp_path / "c")]
    assert main([*argv, "--cropset", str(world["crops_b"])]) == 2
    assert "was computed from the CropSet" in _error_line(capsys)
    # the same CropSet moved elsewhere is still the same crops
    moved = shutil.copytree(world["crops_a"], tmp_path / "moved")
    assert main([*argv, "--cropset", str(moved), "--permutations", "2"]) == 0


def test_a_negative_crop_index_is_refused(world, tmp_path):
    from phenossl.data.cropset import CropSet

    bad = shutil.copytree(world["crops_a"], tmp_path / "bad")
    table = pd.read_csv(bad / "cells.csv")
    table.loc[3, "index"] = -1
    table.to_csv(bad / "cells.csv", index=False)
    with pytest.raises(ValueError, match=r"cells.csv: row 5, column 'index' is -1"):
        CropSet(bad)


def test_concurrent_embeds_give_the_features_of_a_lone_one():
    import phenossl

    crops = np.random.default_rng(0).integers(0, 255, (4, 3, 32, 32), dtype=np.uint8)
    alone = phenossl.embed(crops, model="resnet18", device="cpu")
    results: list[np.ndarray] = []
    stop = threading.Event()

    def worker() -> None:
        results.append(phenossl.embed(crops, model="resnet18", device="cpu"))

    def noise() -> None:  # another thread drawing seeded random inits all the while
        from phenossl.models.backbones import build_backbone

        while not stop.is_set():
            build_backbone("resnet18", seed=123)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    other = threading.Thread(target=noise)
    other.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    other.join()
    assert len(results) == 4
    for features in results:
        np.testing.assert_array_equal(features, alone)


def test_embed_refuses_float_crops_in_0_255():
    import phenossl

    crops = np.full((2, 3, 32, 32), 200.0, dtype=np.float32)
    with pytest.raises(ValueError, match=r"float values span \[200, 200\]; expected \[0, 1\]"):
        phenossl.embed(crops, model="resnet18", device="cpu")


def test_evaluate_library_refuses_a_nan_learning_rate():
    from phenossl.training.evaluate.protocols import linear_eval

    x, y = torch.randn(8, 4), torch.arange(8) % 2
    with pytest.raises(ValueError, match="lr=nan"):
        linear_eval(x, y, x, y, epochs=1, lr=float("nan"))


def test_crops_overwrite_keeps_the_old_set_until_the_new_one_exists(world, tmp_path, capsys):
    from phenossl.data.cropset import CropSet

    out = tmp_path / "set"
    base = ["-q", "crops", str(world["plate"]), "--out", str(out), "--size", "64", "--limit", "1"]
    assert main(base) == 0
    before = len(CropSet(out))
    broken = shutil.copytree(world["plate"], tmp_path / "broken")
    for tif in broken.rglob("*.tif"):
        tif.write_bytes(b"not a tiff")
    argv = ["-q", "crops", str(broken), "--out", str(out), "--overwrite", "--limit", "2"]
    assert main([*argv, "--size", "64"]) == 2
    assert "no crops: 2 of 2 field(s) failed" in _error_line(capsys)
    assert len(CropSet(out)) == before  # the good set is still there
    assert main([*base, "--overwrite", "--limit", "2"]) == 0
    assert len(CropSet(out)) > before  # swapped in at the end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "set"]


def test_a_second_train_on_the_same_folder_names_the_holder(world, tmp_path, capsys):
    import os

    from phenossl._lock import folder_lock

    out = tmp_path / "run"
    with folder_lock(out, "run folder"):
        assert main(["-q", "train", "--config", str(world["config"]), "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert f"process {os.getpid()} on" in line and "in use" in line
    assert not (out / "metrics.jsonl").exists()


def test_report_artifacts_of_a_relative_store_are_found(tmp_path, monkeypatch):
    from phenossl.training.sweep.store import ResultStore

    monkeypatch.chdir(tmp_path)
    with ResultStore("st") as store:
        store.add_runs([("e/r", "e", {"config": {"data": {"root": "a"}}})])
        store.claim()
        (store.run_dir("e/r")).mkdir(parents=True)
        (store.run_dir("e/r") / "montage.png").write_bytes(b"png")
        store.finish("e/r", metrics={"ami": 0.5}, artifacts={"montage": "runs/e/r/montage.png"})
    with ResultStore("st", create=False) as store:
        path = Path(store.frame()["artifact.montage"].iloc[0])
    assert path.is_absolute() and path.is_file()


def test_a_moved_data_folder_keeps_the_runs_of_a_store(tmp_path):
    from phenossl.training.sweep.store import ResultStore, SpecMismatchError

    spec = {"config": {"data": {"dataset": "cifar10", "root": "/old/place", "limit": 10}}}
    with ResultStore(tmp_path / "st") as store:
        store.add_runs([("e/r", "e", spec)])
        store.claim()
        store.finish("e/r", metrics={"top1": 0.5})
        moved = {"config": {"data": {**spec["config"]["data"], "root": "/new/place"}}}
        assert store.add_runs([("e/r", "e", moved)]) == 0
        assert store.get("e/r").status == "done"
        other = {"config": {"data": {**spec["config"]["data"], "limit": 20}}}
        with pytest.raises(SpecMismatchError, match=r"config\.data\.limit"):
            store.add_runs([("e/r", "e", other)])


def test_segment_refuses_nan_and_estimates_huge_images():
    from phenossl.cells.segment import _check_segment_memory, segment

    image = np.zeros((3, 64, 64), np.float32)
    image[1, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"channel\(s\) \[1\] hold NaN"):
        segment(image)
    with pytest.raises(MemoryError, match="segmenting a 200000 x 200000 image needs about"):
        _check_segment_memory((3, 200_000, 200_000))


# --- the catalogue ---------------------------------------------------------------------------


@dataclass
class Case:
    """One bad input: ``make(tmp)`` prepares it and returns the argv; ``keep`` checks after."""

    name: str
    make: Callable[[dict[str, Path], Path], list[str]]
    expect: str = ""
    keep: Callable[[dict[str, Path], Path], bool] = field(default=lambda w, t: True)


def _file(t: Path, name: str = "afile") -> Path:
    path = t / name
    path.write_text("x")
    return path


def _copy(w, t, key: str) -> Path:
    return shutil.copytree(w[key], t / key)


def _broken_run(w, t) -> list[str]:
    from phenossl.models.checkpoint import load_checkpoint

    run = shutil.copytree(w["run"], t / "run")
    (run / "final.pt").unlink()
    data = load_checkpoint(run / "checkpoints" / "last.pt")
    del data["state"]["optimizer"]
    torch.save(data, run / "checkpoints" / "last.pt")
    return ["train", "--config", str(w["config"]), "--out", str(run)]


def _pickle_checkpoint(w, t) -> list[str]:
    path = t / "evil.pt"
    torch.save({"format": "phenossl-checkpoint", "x": Path("/")}, path)
    return ["embed", str(w["crops_a"]), "--out", str(t / "e.npz"), "--model", str(path)]


def _mismatched_checkpoint(w, t) -> list[str]:
    from phenossl.models.checkpoint import load_checkpoint

    data = load_checkpoint(w["run"] / "final.pt")
    data["backbone"] = {k: v for i, (k, v) in enumerate(data["backbone"].items()) if i % 3}
    torch.save(data, t / "cut.pt")
    return ["embed", str(w["crops_a"]), "--out", str(t / "e.npz"), "--model", str(t / "cut.pt")]


def _cells_csv(w, t, text: str) -> list[str]:
    crops = _copy(w, t, "crops_a")
    (crops / "cells.csv").write_text(text)
    return ["embed", str(crops), "--out", str(t / "e.npz"), *FAST]


def _zero_shard(w, t) -> list[str]:
    crops = _copy(w, t, "crops_a")
    (crops / "shards" / "00001.npy").write_bytes(b"")
    return ["embed", str(crops), "--out", str(t / "e.npz"), *FAST]


def _npz(w, t, data: bytes) -> list[str]:
    (t / "e.npz").write_bytes(data)
    return ["cluster", str(t / "e.npz"), "--out", str(t / "c"), "--cropset", str(w["crops_a"])]


def _store(t, data: bytes | None) -> Path:
    store = t / "st"
    (store / "runs").mkdir(parents=True)
    if data is not None:
        (store / "results.sqlite").write_bytes(data)
    return store


def _truncated_store(w, t) -> list[str]:
    from phenossl.training.sweep.store import ResultStore

    with ResultStore(t / "st") as store:
        store.add_runs([(f"e/r{i}", "e", {"config": {"x": "y" * 500}}) for i in range(200)])
    db = t / "st" / "results.sqlite"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    return ["report", str(t / "st"), "--out", str(t / "r")]


def _zero_sqlite_kept(w, t) -> bool:
    return (t / "st" / "results.sqlite").stat().st_size == 0


def _header_only(w, t, name: str) -> list[str]:
    plate = _copy(w, t, "plate")
    csv = plate / name
    csv.write_text(csv.read_text().splitlines()[0] + "\n")
    return ["crops", str(plate), "--out", str(t / "o")]


def _nan_field(w, t) -> list[str]:
    image = np.ones((32, 32), np.float32)
    image[3, 3] = np.nan
    for name in ("d", "t", "a"):
        tifffile.imwrite(t / f"{name}.tif", image)
    return ["segment", "--dapi", str(t / "d.tif"), "--tubulin", str(t / "t.tif")] + [
        "--actin",
        str(t / "a.tif"),
        "--out",
        str(t / "seg"),
    ]


def _empty_yaml(w, t) -> list[str]:
    (t / "empty.yaml").write_text("")
    return ["train", "--config", str(t / "empty.yaml"), "--out", str(t / "r")]


def _report(w, t, out: Path) -> list[str]:
    from phenossl.training.sweep.store import ResultStore

    ResultStore(t / "st").close()
    return ["report", str(t / "st"), "--out", str(out)]


def _old_set_intact(w, t) -> bool:
    from phenossl.data.cropset import CropSet

    return len(CropSet(t / "crops_a")) == 24


def _crops_all_fail(w, t) -> list[str]:
    crops = _copy(w, t, "crops_a")
    plate = _copy(w, t, "plate")
    for tif in plate.rglob("*.tif"):
        tif.write_bytes(b"")
    return ["crops", str(plate), "--out", str(crops), "--overwrite", "--limit", "1"]


EMB = ["cluster"]
CATALOGUE = [
    # wrong results, no error (items 1-8 of the issue)
    Case(
        "1 sweep --methods X on a config without {method}",
        lambda w, t: [
            "sweep",
            str(REPO / "training" / "bbbc021_cellular_clustering.yaml"),
            "--smoke",
            "--methods",
            "simclr",
            "--store",
            str(t / "st"),
        ],
        "trains 'mocov2plus'",
    ),
    Case(
        "2 cluster --cropset OTHER",
        lambda w, t: [*EMB, str(w["emb_a"]), "--out", str(t / "c"), "--cropset", str(w["crops_b"])],
        "was computed from the CropSet",
    ),
    Case(
        "2 cells.csv index=-1",
        lambda w, t: _cells_csv(
            w,
            t,
            (w["crops_a"] / "cells.csv")
            .read_text()
            .replace("\n0,DMSO,DMSO,0,0\n", "\n0,DMSO,DMSO,0,-1\n"),
        ),
        "column 'index' is -1",
    ),
    Case(
        "4 evaluate --lr nan",
        lambda w, t: (
            ["evaluate", str(w["run"] / "final.pt"), "--dataset", "cifar10"]
            + ["--data-root", str(w["cifar"]), "--lr", "nan"]
        ),
        "argument --lr: 'nan'",
    ),
    Case(
        "4 crops --limit -1",
        lambda w, t: ["crops", str(w["plate"]), "--out", str(t / "o"), "--limit", "-1"],
        "argument --limit: '-1'",
    ),
    Case(
        "4 crops --workers -3",
        lambda w, t: ["crops", str(w["plate"]), "--out", str(t / "o"), "--workers", "-3"],
        "argument --workers: '-3'",
    ),
    Case("4 train with an empty YAML", _empty_yaml, "the file is empty"),
    Case(
        "5 crops where every field fails, --overwrite",
        _crops_all_fail,
        "no crops: 1 of 1 field(s) failed",
        _old_set_intact,
    ),
    # work done, then lost: outputs checked before the work
    Case(
        "segment --out under a file",
        lambda w, t: _nan_field(w, t)[:-1] + [str(_file(t) / "seg")],
        "--out",
    ),
    Case(
        "crops --out is a file",
        lambda w, t: ["crops", str(w["plate"]), "--out", str(_file(t))],
        "is not a folder",
    ),
    Case(
        "crops --out under a file",
        lambda w, t: ["crops", str(w["plate"]), "--out", str(_file(t) / "o")],
        "",
    ),
    Case(
        "embed --out is a folder",
        lambda w, t: ["embed", str(w["crops_a"]), "--out", str(t), *FAST],
        "is a folder",
    ),
    Case(
        "embed --out under a file",
        lambda w, t: ["embed", str(w["crops_a"]), "--out", str(_file(t) / "e.npz"), *FAST],
        "cannot write there",
    ),
    Case(
        "cluster --out under a file",
        lambda w, t: [*EMB, str(w["emb_a"]), "--out", str(_file(t) / "c")],
        "cannot write there",
    ),
    Case(
        "train --out under a file",
        lambda w, t: ["train", "--config", str(w["config"]), "--out", str(_file(t) / "r")],
        "cannot write there",
    ),
    Case(
        "evaluate --out under a file",
        lambda w, t: (
            ["evaluate", str(w["run"] / "final.pt"), "--dataset", "cifar10"]
            + ["--data-root", str(w["cifar"]), "--out", str(_file(t) / "r.json")]
        ),
        "cannot write there",
    ),
    Case(
        "sweep --store under a file",
        lambda w, t: (
            ["sweep", str(REPO / "training" / "fig4_mnist_clustering.yaml"), "--smoke"]
            + ["--store", str(_file(t) / "st")]
        ),
        "cannot write there",
    ),
    Case("report --out under a file", lambda w, t: _report(w, t, _file(t) / "r"), "cannot write"),
    # corrupt inputs
    Case("zero-byte .npz", lambda w, t: _npz(w, t, b""), "not a phenossl embeddings file"),
    Case(
        "truncated .npz",
        lambda w, t: _npz(w, t, w["emb_a"].read_bytes()[:300]),
        "not a phenossl embeddings file",
    ),
    Case("zero-byte shard", _zero_shard, "00001.npy: not a readable crop shard"),
    Case("zero-byte cells.csv", lambda w, t: _cells_csv(w, t, ""), "cells.csv: not a readable"),
    Case(
        "zero-byte results.sqlite (report)",
        lambda w, t: ["report", str(_store(t, b"")), "--out", str(t / "r")],
        "is empty (0 bytes)",
        _zero_sqlite_kept,
    ),
    Case(
        "zero-byte results.sqlite (sweep)",
        lambda w, t: (
            ["sweep", str(REPO / "training" / "fig4_mnist_clustering.yaml"), "--smoke"]
            + ["--store", str(_store(t, b""))]
        ),
        "is empty (0 bytes)",
        _zero_sqlite_kept,
    ),
    Case(
        "text results.sqlite",
        lambda w, t: ["report", str(_store(t, b"hello " * 300)), "--out", str(t / "r")],
        "not a readable result store",
    ),
    Case("truncated results.sqlite", _truncated_store, "results.sqlite"),
    Case(
        "header-only image CSV",
        lambda w, t: _header_only(w, t, "BBBC021_v1_image.csv"),
        "no rows (only a header)",
    ),
    Case(
        "header-only MOA CSV",
        lambda w, t: _header_only(w, t, "BBBC021_v1_moa.csv"),
        "no rows (only a header)",
    ),
    Case(
        "cluster --permutations 0",
        lambda w, t: [*EMB, str(w["emb_a"]), "--out", str(t / "c"), "--permutations", "0"],
        "argument --permutations",
    ),
    Case(
        "cluster --nearest 100000",
        lambda w, t: [*EMB, str(w["emb_a"]), "--out", str(t / "c"), "--nearest", "100000"],
        "at most 100",
    ),
    Case("resume from last.pt without optimizer state", _broken_run, "no 'optimizer'"),
    Case("a checkpoint holding a pickled object", _pickle_checkpoint, "never unpickles"),
    Case("a checkpoint with missing weights", _mismatched_checkpoint, "missing key(s)"),
    Case(
        "embed --input-size 8192",
        lambda w, t: (
            ["embed", str(w["crops_a"]), "--out", str(t / "e.npz")]
            + ["--model", "vgg11_bn", "--input-size", "8192", "--device", "cpu"]
        ),
        "lower --batch-size or --input-size",
        lambda w, t: not (t / "e.npz").exists(),
    ),
    Case("segment a field holding NaN", _nan_field, "NaN"),
    Case(
        "a missing checkpoint",
        lambda w, t: ["embed", str(w["crops_a"]), "--out", str(t / "e.npz"), "--model", "x.pt"],
        "",
    ),
    Case(
        "an unknown option",
        lambda w, t: ["cluster", str(w["emb_a"]), "--out", str(t / "c"), "--bogus"],
        "unrecognized arguments",
    ),
]


def test_bad_input_catalogue(world, tmp_path, capsys):
    handled, problems = 0, []
    for i, case in enumerate(CATALOGUE):
        t = tmp_path / f"case{i}"
        t.mkdir()
        argv = case.make(world, t)
        capsys.readouterr()
        try:
            code = main(["-q", *argv])
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
        except Exception as err:
            problems.append(f"{case.name}: raised {type(err).__name__}: {err}")
            continue
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        if code != 2 or len(lines) != 1 or "Traceback" in err:
            problems.append(f"{case.name}: exit {code}, stderr {err!r}")
        elif case.expect not in lines[0]:
            problems.append(f"{case.name}: {lines[0]!r} lacks {case.expect!r}")
        elif not case.keep(world, t):
            problems.append(f"{case.name}: earlier output lost")
        else:
            handled += 1
    with capsys.disabled():
        print(f"\nrobustness catalogue: {len(CATALOGUE)} cases tried, {handled} handled")
    assert not problems, "\n".join(problems)


def test_debug_shows_the_traceback(world, tmp_path, monkeypatch):
    argv = ["cluster", str(world["emb_a"]), "--out", str(tmp_path / "c")]
    with pytest.raises(CLIError, match="was computed from the CropSet"):
        main(["--debug", *argv, "--cropset", str(world["crops_b"])])
    monkeypatch.setenv("PHENOSSL_DEBUG", "1")
    with pytest.raises(CLIError):
        main([*argv, "--cropset", str(world["crops_b"])])


# --- a fresh machine -------------------------------------------------------------------------


@pytest.mark.slow
def test_gui_tests_skip_without_a_display(tmp_path):
    """No Xvfb on PATH and no DISPLAY: the GUI tests skip with a reason instead of aborting."""
    import os
    import subprocess
    import sys

    pytest.importorskip("pytestqt")
    bin_dir = tmp_path / "bin"  # a PATH holding python only (no Xvfb, no xvfb-run)
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(PATH=str(bin_dir), PYTHONPATH=os.pathsep.join(sys.path))
    test = REPO / "tests" / "napari" / "test_manifest.py"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "Fatal Python error" not in output
    assert done.returncode == 0, output[-2000:]
    assert "skipped" in output and "no display (Xvfb not installed?)" in output
