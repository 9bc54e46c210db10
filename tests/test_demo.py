from __future__ import annotations

import json

import pytest

from phenossl._progress import run
from phenossl.demo import iter_demo


def test_demo_runs_end_to_end_and_writes_the_report(tmp_path):
    events = []
    report = run(
        iter_demo(tmp_path / "demo", model="resnet18", input_size=32, seed=1), events.append
    )
    on_disk = json.loads((tmp_path / "demo" / "report" / "report.json").read_text())
    assert on_disk["ami"] == pytest.approx(report["ami"])
    assert 0 <= report["ami"] <= 1
    assert report["ami_control_mean"] < 0.05
    assert report["label_column"] == "compound"
    assert set(on_disk["timings"]) == {"plate_s", "cells_s", "embed_s", "cluster_s"}
    assert (tmp_path / "demo" / "report" / "montage.png").is_file()
    assert (tmp_path / "demo" / "embeddings.npz").is_file()
    dones = [e.done for e in events]
    assert dones == sorted(dones) and dones[-1] == events[-1].total


def test_demo_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        run(iter_demo(tmp_path))


@pytest.mark.slow
def test_the_readme_demo_command(tmp_path, capsys):
    """`phenossl demo` exactly as the README runs it (VGG13-BN, defaults)."""
    from phenossl.cli import main

    assert main(["-q", "demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "AMI (compound, K=2" in out and "randomised-label control" in out
    report = json.loads((tmp_path / "demo" / "report" / "report.json").read_text())
    # untrained VGG13 already separates rounded nocodazole cells from spread DMSO cells
    assert report["ami"] > report["ami_control_mean"] + 10 * max(report["ami_control_std"], 1e-3)
