from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _results import CIFAR10, backbone_frame, mnist_frame, sweep_frame, write_montages
from PIL import Image

from phenossl._progress import Progress, run
from phenossl.training.analysis import report as rp
from phenossl.training.analysis.report import (
    ARTEFACTS,
    find_sweeps,
    iter_write_report,
    write_report,
)

FAKE_CIFAR100 = [f"class_{i:02d}" for i in range(10)]


def _slopes(*biased: tuple[int, float]) -> np.ndarray:
    slopes = np.zeros(10)
    for index, slope in biased:
        slopes[index] = slope
    return slopes


def store_frame() -> pd.DataFrame:
    """Every kind of experiment the report knows, as a store frame would hold them."""
    linear = _slopes((0, 0.8), (1, -0.8))
    finetune = _slopes((1, -0.8), (2, 0.8))
    # class names of phenossl's fake CIFAR-100 (the dataset is unknown: paper numbers shown)
    hue = sweep_frame(
        protocols=("linear", "finetune"),
        slopes=linear,
        finetune_slopes=finetune,
        classes=FAKE_CIFAR100,
    )
    hue_p = sweep_frame(
        experiment="table2_hue_p",
        parameter="hue_p",
        values=tuple(np.linspace(0.0, 1.0, 5)),
        methods=("simclr", "byol", "mocov2plus"),
        slopes=linear,
        fixed={"hue": 0.5},
        rng=1,
    )
    crop = sweep_frame(
        experiment="crop",
        parameter="crop_scale",
        values=[(v, 1.0) for v in (0.2, 0.4, 0.6, 0.8)],
        slopes=linear,
        rng=2,
    )
    flip = sweep_frame(experiment="flip", parameter="flip_p", values=(0.0, 1.0), rng=3)
    parts = [hue, hue_p, crop, flip, backbone_frame(), mnist_frame()]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[rp.ReportIndex, Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("store")
    frame = store_frame()
    write_montages(frame[frame["experiment"] == "mnist_backbones"], root)
    index = write_report(frame, root / "report", store_root=root)
    return index, root / "report", frame


def test_every_artefact_is_made_from_a_full_store(made):
    index, _, _ = made
    for artefact in ARTEFACTS:
        assert index.files(artefact), f"{artefact} was not made"


def test_figures_are_non_empty_pngs(made):
    index, out, _ = made
    pngs = [f for e in index.made for f in e.files if f.endswith(".png")]
    assert len(pngs) >= 10
    for name in pngs:
        with Image.open(out / name) as image:
            pixels = np.asarray(image.convert("L"))
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200, name
        assert pixels.std() > 5, f"{name} is blank"


def _csv(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name)


def test_table2_rows_and_paper_numbers(made):
    _, out, frame = made
    table = _csv(out, "table2__table2_hue_p__hue_p.csv").set_index("method")
    assert sorted(table.index) == ["byol", "mocov2plus", "simclr"]
    runs = frame[(frame["experiment"] == "table2_hue_p") & (frame["method"] == "byol")]
    assert table.loc["byol", "mean"] == pytest.approx(100 * runs["metric.top1"].mean())
    assert table.loc["byol", "n_runs"] == len(runs) == 15
    assert table.loc["mocov2plus", "paper_mean"] == 92.37
    assert table.loc["simclr", "solo_learn"] == 90.74
    assert "paper_mean" not in _csv(out, "table2__crop__crop_scale.csv").columns
    text = (out / "table2__table2_hue_p__hue_p.md").read_text()
    assert "| mocov2plus |" in text and "92.37" in text


def test_table1_counts_and_match(made):
    _, out, _ = made
    table = _csv(out, "table1__hue_sweep__hue.csv").set_index("method")
    assert sorted(table.index) == ["byol", "simclr", "vicreg"]
    # class 1 descends under both protocols, class 2 ascends only under fine-tuning, class 0
    # only under linear evaluation: at least those two disagree
    assert (table["negative_linear"] >= 1).all() and (table["negative_finetune"] >= 1).all()
    assert (table["match"] <= 80.0).all()
    assert table.loc["simclr", "paper_negative_linear"] == 97
    assert table.loc["byol", "paper_match"] == 52.0


def test_table3_counts_per_sweep(made):
    _, out, _ = made
    counts = _csv(out, "table3.csv").set_index("classes biased")
    assert list(counts.index) == [
        "in all methods",
        "in at least 3 methods",
        "in at least 2 methods",
        "methods",
    ]
    assert counts.loc["in all methods", "hue_sweep: hue"] >= 2
    assert counts.loc["methods", "hue_sweep: hue"] == 3
    assert counts.loc["in all methods", "hue_sweep: hue (paper)"] == 51
    assert counts.loc["in at least 2 methods", "hue_sweep: hue (paper)"] == 99
    # Table 3 is CIFAR-100: no paper column beside the CIFAR-10 sweeps
    assert "crop: crop_scale" in counts.columns
    assert "crop: crop_scale (paper)" not in counts.columns
    assert "table2_hue_p: hue_p (paper)" not in counts.columns
    classes = _csv(out, "table3_classes.csv")
    row = classes[(classes["sweep"] == "hue_sweep: hue") & (classes["rule"] == "in all methods")]
    assert {"class_00", "class_01"} <= set(row["classes"].iloc[0].split(", "))


def test_table4_and_ami_tables(made):
    _, out, _ = made
    table4 = _csv(out, "table4__mnist_backbones.csv")
    assert len(table4) == 6
    assert set(table4["backbone"]) == {"vgg11_bn", "resnet18", "convnext_tiny"}
    row = table4[(table4["method"] == "mocov2plus") & (table4["backbone"] == "resnet18")]
    assert row["paper"].iloc[0] == 63.8
    assert row["mean"].iloc[0] == pytest.approx(100 * (0.55 + 0.01 + 0.0005))
    wide = (out / "table4__mnist_backbones.md").read_text()
    header = (
        "| method | vgg11_bn | vgg11_bn (paper) | resnet18 | resnet18 (paper) | convnext_tiny |"
    )
    assert header in wide  # the paper's column order
    ami = _csv(out, "ami__backbone_size.csv")
    assert len(ami) == 5 * 2
    assert (ami["method"] == "none").all()  # runs without an SSL method are kept
    assert {"backbone", "concentration", "ami_mean", "control_mean"} <= set(ami.columns)
    assert (ami["ami_mean"] > ami["control_mean"]).all()


def test_bias_tables_hold_every_class(made):
    _, out, _ = made
    results = _csv(out, "bias__hue_sweep__hue__linear.csv")
    assert len(results) == 3 * 10
    airplane = results[results["class"] == "class_00"]
    assert (airplane["trend"] == "ascending").all() and (airplane["p"] < 0.05).all()
    summary = (out / "bias__hue_sweep__hue__linear.md").read_text()
    assert "| simclr |" in summary and "class_00" in summary


def test_index_lists_made_and_skipped_outputs(made):
    index, out, _ = made
    text = (out / "index.md").read_text()
    for entry in index.made:
        for name in entry.files:
            assert f"]({name})" in text
            assert (out / name).is_file()
    assert "flip_p takes 2 values; a correlation needs 3" in text
    assert "fewer than 2 backbones" in text
    skipped = {(e.artefact, e.subject) for e in index.skipped}
    assert ("Bias tables", "flip: flip_p [linear]") in skipped
    assert ("Table 1", "crop: crop_scale") in skipped


def test_missing_experiments_are_skipped_with_a_reason(tmp_path):
    frame = sweep_frame(methods=("simclr", "byol"), slopes=_slopes((0, 0.8)))
    index = write_report(frame, tmp_path)
    made = {e.artefact for e in index.made}
    assert made == {
        "Table 2",
        "Table 3",
        "Bias tables",
        "Figure: accuracy vs parameter",
        "Figure: per-class curves",
    }
    reasons = {e.artefact: e.reason for e in index.skipped}
    assert reasons["Table 1"] == "no per-class accuracy for ['finetune']"
    assert reasons["Table 4"] == "fewer than 2 backbones"
    assert reasons["AMI tables"] == "no AMI metric"
    assert reasons["Figure: cluster exemplars"] == "no run lists a montage artifact"
    assert not (tmp_path / "table4__hue_sweep.csv").exists()


def test_per_class_curves_without_a_significant_class_show_the_strongest(tmp_path):
    frame = sweep_frame(methods=("simclr",), seeds=(5,), values=(0.0, 0.25, 0.5), noise=0.05)
    index = write_report(frame, tmp_path)
    results = _csv(tmp_path, "bias__hue_sweep__hue__linear.csv")
    assert not results["significant"].any()
    assert index.files("Figure: per-class curves") == ["fig_classes__hue_sweep__hue.png"]


def test_backbones_sort_in_the_papers_order():
    from phenossl.training.analysis.tables import backbone_sort_key

    names = ["resnet101", "convnext_tiny", "vgg16", "resnet18", "vit_b16", "vgg11_bn", "resnet50"]
    assert sorted(names, key=backbone_sort_key) == [
        "vgg11_bn",
        "vgg16",
        "resnet18",
        "resnet50",
        "resnet101",
        "convnext_tiny",
        "vit_b16",
    ]


def test_store_without_sweeps_names_every_artefact_as_skipped(tmp_path):
    index = write_report(backbone_frame(), tmp_path)
    assert {e.artefact for e in index.made} == {"AMI tables", "Figure: AMI vs backbone size"}
    reasons = {e.artefact: e.reason for e in index.skipped}
    assert reasons["Table 2"] == rp._NO_SUBJECT
    assert reasons["Table 3"].startswith("no sweep with linear per-class accuracies")


def test_exemplars_need_the_store_folder(tmp_path):
    index = write_report(mnist_frame(), tmp_path)
    reasons = {e.artefact: e.reason for e in index.skipped}
    assert "relative and no store folder" in reasons["Figure: cluster exemplars"]
    index = write_report(mnist_frame(), tmp_path / "again", store_root=tmp_path)
    reasons = {e.artefact: e.reason for e in index.skipped}
    assert reasons["Figure: cluster exemplars"].startswith("montage ")
    assert reasons["Figure: cluster exemplars"].endswith("is missing")


def test_absolute_montage_paths_need_no_store_folder(tmp_path):
    frame = mnist_frame()
    write_montages(frame, tmp_path)
    frame["artifact.montage"] = [str(tmp_path / a["montage"]) for a in frame["artifacts"]]
    index = write_report(frame.drop(columns="artifacts"), tmp_path / "report")
    assert index.files("Figure: cluster exemplars") == ["fig_exemplars__mnist_backbones.png"]


def test_montage_paths_one_per_grid_point():
    frame = mnist_frame(seeds=(1, 0))
    found = rp.montage_paths(frame)
    assert len(found) == 6
    assert all(label.endswith("seed 0") for label, _ in found)
    labels = [label for label, _ in found]
    assert "byol, backbone=resnet18, seed 0" in labels
    assert rp.montage_paths(frame.drop(columns="artifacts")) == []
    as_columns = frame.drop(columns="artifacts").assign(
        **{"artifact.montage": [a["montage"] for a in frame["artifacts"]]}
    )
    assert [p for _, p in rp.montage_paths(as_columns)] == [p for _, p in found]


def test_find_sweeps_splits_grids_by_the_other_parameters():
    parts = [
        sweep_frame(values=(0.0, 0.25, 0.5), methods=("simclr",), fixed={"hue_p": p})
        for p in (0.4, 0.8)
    ]
    for part, p in zip(parts, (0.4, 0.8)):
        part["run_id"] = part["run_id"] + f"/hue_p={p}"
    sweeps = find_sweeps(pd.concat(parts, ignore_index=True))
    labels = sorted(s.label for s in sweeps)
    assert labels == [
        "hue_sweep: hue (hue_p=0.4)",
        "hue_sweep: hue (hue_p=0.8)",
        "hue_sweep: hue_p (hue=0)",
        "hue_sweep: hue_p (hue=0.25)",
        "hue_sweep: hue_p (hue=0.5)",
    ]
    by_label = {s.label: s for s in sweeps}
    assert len(by_label["hue_sweep: hue (hue_p=0.4)"].frame) == 3 * 3
    assert by_label["hue_sweep: hue (hue_p=0.4)"].slug == "hue_sweep__hue__hue_p=0.4"
    assert all(s.dataset == "cifar10" for s in sweeps)


def test_find_sweeps_reads_intervals_and_ignores_text_parameters():
    crop = sweep_frame(parameter="crop_scale", values=[(0.2, 1.0), (0.6, 1.0), (0.9, 1.0)])
    crop["param.composition"] = np.where(crop.index % 2 == 0, "left", "right")
    sweeps = find_sweeps(crop)
    assert {s.parameter for s in sweeps} == {"param.crop_scale"}
    assert {s.fixed for s in sweeps} == {
        (("param.composition", "left"),),
        (("param.composition", "right"),),
    }


def test_progress_events_count_up_to_the_index(tmp_path):
    frame = sweep_frame(methods=("simclr",), seeds=(5,))
    gen = iter_write_report(frame, tmp_path)
    events = []
    index = run(gen, events.append)
    assert all(isinstance(e, Progress) for e in events)
    assert [e.done for e in events] == list(range(len(events)))
    assert events[-1].done == events[-1].total and events[-1].message == "index.md"
    assert index.out_dir == tmp_path and (tmp_path / "index.md").is_file()


def test_bh_option_reaches_the_bias_tables(tmp_path):
    frame = sweep_frame(methods=("simclr",), seeds=(5, 6), slopes=_slopes((0, 0.8)))
    write_report(frame, tmp_path, correction="bh", test="spearman")
    results = _csv(tmp_path, "bias__hue_sweep__hue__linear.csv")
    assert (results["p"] >= results["spearman_p"] - 1e-12).all()
    assert (results["coefficient"] == results["spearman_rho"]).all()
    assert "Benjamini-Hochberg" in (tmp_path / "bias__hue_sweep__hue__linear.md").read_text()


@pytest.mark.parametrize(
    ("options", "match"),
    [({"alpha": 0}, "alpha"), ({"correction": "holm"}, "correction"), ({"top_classes": 0}, "top")],
)
def test_bad_options_are_errors(tmp_path, options, match):
    with pytest.raises(ValueError, match=match):
        write_report(sweep_frame(), tmp_path, **options)


def test_frame_without_required_columns_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"\['seed'\]"):
        write_report(sweep_frame().drop(columns="seed"), tmp_path)


def test_a_broken_run_skips_its_outputs_with_the_run_named(tmp_path):
    frame = sweep_frame(methods=("simclr", "byol"))
    frame.at[3, "class_names.linear"] = [*CIFAR10[:9], "lorry"]
    index = write_report(frame, tmp_path)
    reasons = [e.reason for e in index.skipped if e.artefact == "Bias tables"]
    assert len(reasons) == 1 and "different class_names.linear" in reasons[0]
    assert frame.at[3, "run_id"] in reasons[0] or frame.at[0, "run_id"] in reasons[0]
    assert index.files("Table 2")


def test_markdown_table_formats_numbers_and_missing_values():
    table = pd.DataFrame(
        {"name": ["a|b", "c"], "x": [1.23456, np.nan], "n": pd.array([3, None], dtype="Int64")}
    )
    assert rp.markdown_table(table, digits=1).splitlines() == [
        "| name | x | n |",
        "|---|---|---|",
        "| a\\|b | 1.2 | 3 |",
        "| c | — | — |",
    ]


def test_figures_save_png_takes_the_path_first_like_montage(tmp_path):
    from matplotlib.figure import Figure

    from phenossl.training.analysis import figures

    path = figures.save_png(tmp_path / "sub" / "f.png", Figure(figsize=(1, 1)))
    assert path == tmp_path / "sub" / "f.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
