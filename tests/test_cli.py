from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from _plates import TINY_CROP, write_tiny_plate

from phenossl.cli import build_parser, main

FAST_MODEL = ["--model", "resnet18", "--input-size", "32", "--batch-size", "32"]


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    return write_tiny_plate(tmp_path_factory.mktemp("cli") / "plate")


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("segment", "crops", "embed", "cluster", "synth", "demo"):
        assert command in out


@pytest.mark.parametrize("command", ["segment", "crops", "embed", "cluster", "synth", "demo"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: phenossl " + command in capsys.readouterr().out


def test_every_subcommand_has_a_summary_and_a_description():
    """The handler's docstring gives both: the line of `phenossl --help` and the paragraph."""
    import argparse

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {action.dest: action.help for action in sub._choices_actions}
    assert set(summaries) == set(sub.choices)
    for name, parser in sub.choices.items():
        assert summaries[name] and "\n" not in summaries[name], name
        assert parser.description and len(parser.description) > len(summaries[name]) / 2, name


def test_no_subcommand_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_segment_writes_labels_and_table(plate, tmp_path, capsys):
    from phenossl.data.bbbc021 import load_image_table

    row = load_image_table(plate).iloc[0]
    code = main(
        ["-q", "segment", "--dapi", row.dapi, "--tubulin", row.tubulin, "--actin", row.actin]
        + ["--out", str(tmp_path / "seg")]
    )
    assert code == 0
    n = int(re.match(r"(\d+) cells", capsys.readouterr().out).group(1))
    cells = tifffile.imread(tmp_path / "seg" / "cells.tif")
    table = pd.read_csv(tmp_path / "seg" / "cells.csv")
    assert n == len(table) == cells.max() > 0
    assert tifffile.imread(tmp_path / "seg" / "nuclei.tif").shape == cells.shape


@pytest.mark.realdata
def test_segment_on_the_real_field(real_field_paths, tmp_path, capsys):
    p = real_field_paths
    args = ["-q", "segment", "--dapi", p["dapi"], "--tubulin", p["tubulin"], "--actin", p["actin"]]
    assert main([*map(str, args), "--out", str(tmp_path)]) == 0
    n = int(capsys.readouterr().out.split()[0])
    assert 150 <= n <= 300


def test_crops_embed_cluster_chain(plate, tmp_path, capsys):
    crops, emb, report = tmp_path / "crops", tmp_path / "emb.npz", tmp_path / "report"
    assert main(["-q", "crops", str(plate), "--out", str(crops), "--size", str(TINY_CROP)]) == 0
    assert "crops from" in capsys.readouterr().out
    assert main(["-q", "embed", str(crops), "--out", str(emb), *FAST_MODEL]) == 0
    assert "embeddings of dimension 512" in capsys.readouterr().out
    assert main(["-q", "cluster", str(emb), "--out", str(report), "--label", "compound"]) == 0
    out = capsys.readouterr().out
    assert "AMI (compound, K=2" in out and "randomised-label control" in out
    data = json.loads((report / "report.json").read_text())
    assert 0 <= data["ami"] <= 1 and data["k"] == 2 and data["label_column"] == "compound"
    assert (report / "montage.png").stat().st_size > 0
    composition = pd.read_csv(report / "composition.csv", index_col=0)
    assert composition.to_numpy().sum() == data["n_cells"]
    clusters = pd.read_csv(report / "clusters.csv")
    assert set(clusters["cluster"]) == {0, 1}
    # the tiny plate is one plate: an AMI against it is undefined, not the formula's 0
    assert main(["-q", "cluster", str(emb), "--out", str(report), "--label", "plate"]) == 0
    (plate_name,) = pd.read_csv(report / "clusters.csv")["plate"].unique()
    expected = f"AMI (plate, K=2, {data['n_cells']} cells): undefined (every cell has plate "
    assert f"{expected}{plate_name})" in capsys.readouterr().out


def test_embed_normalize_writes_unit_length_embeddings(plate, tmp_path):
    from phenossl.embedding import load_embeddings

    crops = tmp_path / "crops"
    main(["-q", "crops", str(plate), "--out", str(crops), "--size", str(TINY_CROP), "--limit", "2"])
    for normalize in ("none", "l2"):
        out = tmp_path / f"{normalize}.npz"
        assert main(["-q", "embed", str(crops), "--out", str(out), *FAST_MODEL,
                     "--normalize", normalize]) == 0  # fmt: skip
    raw, _, _ = load_embeddings(tmp_path / "none.npz")
    unit, _, meta = load_embeddings(tmp_path / "l2.npz")
    assert meta["normalize"] == "l2"
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-4)
    assert meta["cpu_amp"] is False
    assert main(["-q", "embed", str(crops), "--out", str(tmp_path / "bf16.npz"), *FAST_MODEL,
                 "--cpu-amp"]) == 0  # fmt: skip
    assert load_embeddings(tmp_path / "bf16.npz")[2]["cpu_amp"] is True


def test_paper_subset_cli_writes_splits(plate, tmp_path):
    crops = tmp_path / "crops"
    args = ["-q", "crops", str(plate), "--out", str(crops), "--size", str(TINY_CROP)]
    assert main([*args, "--paper-subset", "nocodazole"]) == 0
    table = pd.read_csv(crops / "cells.csv")
    assert set(table["split"]) <= {"train", "val", "test"}
    assert (table["compound"] == "DMSO").sum() == (table["compound"] == "nocodazole").sum()


def test_crops_with_no_matching_field_is_a_clear_error(plate, tmp_path, capsys):
    code = main(["-q", "crops", str(plate), "--out", str(tmp_path / "c"), "--plate", "Week9_1"])
    assert code == 2
    assert "error" in capsys.readouterr().err


def test_missing_csv_columns_are_named(tmp_path, capsys):
    (tmp_path / "BBBC021_v1_image.csv").write_text("TableNumber,ImageNumber\n1,1\n")
    (tmp_path / "BBBC021_v1_moa.csv").write_text("compound,concentration,moa\n")
    assert main(["-q", "crops", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert "Image_FileName_DAPI" in capsys.readouterr().err


def test_cluster_errors_say_what_was_expected(plate, tmp_path, capsys):
    crops, emb = tmp_path / "crops", tmp_path / "emb.npz"
    main(["-q", "crops", str(plate), "--out", str(crops), "--size", str(TINY_CROP), "--limit", "1"])
    main(["-q", "embed", str(crops), "--out", str(emb), *FAST_MODEL])
    capsys.readouterr()
    assert main(["-q", "cluster", str(emb), "--out", str(tmp_path / "r"), "-k", "100000"]) == 2
    assert "k=100000" in capsys.readouterr().err
    assert main(["-q", "cluster", str(emb), "--out", str(tmp_path / "r"), "--label", "x"]) == 2
    assert "'x'" in capsys.readouterr().err


def test_unknown_backbone_is_named(plate, tmp_path, capsys):
    crops = tmp_path / "crops"
    main(["-q", "crops", str(plate), "--out", str(crops), "--size", str(TINY_CROP), "--limit", "1"])
    args = ["-q", "embed", str(crops), "--out", str(tmp_path / "e.npz"), "--model", "vgg99"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "vgg99" in err and "resnet18" in err


def test_nan_embeddings_are_refused(plate, tmp_path, capsys):
    from phenossl.data.cropset import CropSet
    from phenossl.embedding import save_embeddings

    crops = tmp_path / "crops"
    main(["-q", "crops", str(plate), "--out", str(crops), "--size", str(TINY_CROP), "--limit", "1"])
    table = CropSet(crops).table
    features = np.ones((len(table), 4), np.float32)
    features[0, 0] = np.nan
    save_embeddings(tmp_path / "e.npz", features, table["cell_id"], {"cropset": str(crops)})
    assert main(["-q", "cluster", str(tmp_path / "e.npz"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "1 row" in err and ("NaN" in err or "non-finite" in err)


def test_synth_writes_an_official_layout_plate(tmp_path, capsys):
    out = tmp_path / "plate"
    assert main(["-q", "synth", str(out), "--shape", "256", "320", "--sites", "1"]) == 0
    assert (out / "BBBC021_v1_image.csv").is_file()
    assert len(list(out.rglob("*.tif"))) % 3 == 0
    assert main(["-q", "synth", str(out)]) == 2  # refuses to overwrite
    assert "overwrite" in capsys.readouterr().err


def test_parser_builds_without_importing_torch():
    import subprocess
    import sys

    code = "import sys, phenossl.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert build_parser().prog == "phenossl"
