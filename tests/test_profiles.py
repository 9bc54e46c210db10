"""Phenotype profiles: DMSO normalisation, aggregation, NSC/NSCB, compound AMI, `phenossl profile`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from phenossl.cli import main
from phenossl.data.cropset import CropSetWriter
from phenossl.embedding import save_embeddings
from phenossl.profile_report import FILES, write_profiles_csv
from phenossl.profiles import (
    aggregate,
    compound_contrasts,
    contrast_input,
    moa_accuracy,
    normalize_to_controls,
    prepare_table,
    score_profiles,
    treatment_profiles,
    well_profiles,
)

# --- NSC / NSCB on profiles whose answer is known by construction ------------------------------


def _meta(rows):
    return pd.DataFrame(rows, columns=["treatment", "compound", "moa", "batches"])


def test_nsc_all_correct_and_single_compound_moa_skipped():
    meta = _meta(
        [
            ("a@1", "a", "X", "W1"),
            ("b@1", "b", "X", "W2"),
            ("c@1", "c", "Y", "W1"),
            ("d@1", "d", "Y", "W2"),
            ("e@1", "e", "Z", "W1"),  # the only compound of its MOA: never a query
            ("DMSO@0", "DMSO", "DMSO", "W1;W2"),
        ]
    )
    p = np.array([[1, 0, 0], [1, 0.2, 0], [0, 1, 0], [0.2, 1, 0], [0.7, 0.7, 0.1], [1, 1, 1.0]])
    result = moa_accuracy(p, meta, "nsc")
    assert result["accuracy"] == 1.0
    assert result["n_queries"] == 4 and result["n_correct"] == 4
    assert result["skipped"] == ["e@1"]
    assert {q["treatment"] for q in result["queries"]} == {"a@1", "b@1", "c@1", "d@1"}
    # DMSO is neither a query nor a neighbour, even though it is the closest to e and to others
    assert all(q["neighbour"] != "DMSO@0" for q in result["queries"])


def test_same_compound_is_never_the_neighbour():
    # a@1 and a@3 are identical; under NSC a@1 must look past a@3 (and finds the wrong MOA)
    meta = _meta(
        [("a@1", "a", "X", "W1"), ("a@3", "a", "X", "W1"), ("b@1", "b", "X", "W1"),
         ("c@1", "c", "Y", "W1")]
    )  # fmt: skip
    p = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.1], [0.9, 0.3]])
    queries = {q["treatment"]: q for q in moa_accuracy(p, meta, "nsc")["queries"]}
    assert queries["a@1"]["neighbour"] == "c@1" and not queries["a@1"]["correct"]
    assert queries["a@3"]["neighbour"] == "c@1"
    assert "c@1" not in queries  # Y has no other compound


def test_nsc_and_nscb_differ_when_the_batch_effect_dominates():
    # a's nearest other compound is c (same week W1, other MOA): wrong under NSC; excluding W1
    # (NSCB) leaves b (same MOA, W2) and d: b is nearer, so the NSCB answer is right.
    meta = _meta(
        [("a@1", "a", "X", "W1"), ("c@1", "c", "Y", "W1"), ("b@1", "b", "X", "W2"),
         ("d@1", "d", "Y", "W2")]
    )  # fmt: skip
    p = np.array([[1.0, 0.9], [1.0, 1.0], [0.9, 0.1], [0.0, 1.0]])
    nsc = {q["treatment"]: q for q in moa_accuracy(p, meta, "nsc")["queries"]}
    nscb = {q["treatment"]: q for q in moa_accuracy(p, meta, "nscb")["queries"]}
    assert nsc["a@1"]["neighbour"] == "c@1" and not nsc["a@1"]["correct"]
    assert nscb["a@1"]["neighbour"] == "b@1" and nscb["a@1"]["correct"]


def test_nscb_skips_a_moa_whose_other_compounds_share_the_batch():
    meta = _meta(
        [("a@1", "a", "X", "W1"), ("b@1", "b", "X", "W1;W2"), ("c@1", "c", "Y", "W1"),
         ("d@1", "d", "Y", "W2")]
    )  # fmt: skip
    p = np.eye(4)
    nsc, nscb = moa_accuracy(p, meta, "nsc"), moa_accuracy(p, meta, "nscb")
    assert nsc["n_queries"] == 4 and nsc["skipped"] == []
    assert sorted(nscb["skipped"]) == ["a@1", "b@1"]  # b spans W1 too: shares a batch with a
    assert nscb["n_queries"] == 2


def test_no_query_gives_none_not_zero():
    meta = _meta([("a@1", "a", "X", "W1"), ("c@1", "c", "Y", "W1")])
    result = moa_accuracy(np.eye(2), meta, "nsc")
    assert result["accuracy"] is None and result["n_queries"] == 0


def test_moa_accuracy_bad_input():
    with pytest.raises(ValueError, match="protocol"):
        moa_accuracy(np.eye(2), _meta([("a", "a", "X", "W")] * 2), "nsx")
    with pytest.raises(ValueError, match="batches"):
        moa_accuracy(np.eye(1), pd.DataFrame({"treatment": ["a"], "compound": ["a"], "moa": ["X"]}),
                     "nscb")  # fmt: skip


# --- normalisation and aggregation -------------------------------------------------------------


def _cells(spec):
    """spec: (plate, well, compound, moa, values...) rows -> (table, features)."""
    table = pd.DataFrame(
        [r[:4] for r in spec], columns=["plate", "well", "compound", "moa"]
    ).assign(concentration=1.0)
    table.loc[table["compound"] == "DMSO", "concentration"] = 0.0
    return table, np.array([r[4:] for r in spec], dtype=float)


def test_prepare_table_adds_treatment_batch_and_names_missing_columns():
    t = prepare_table(pd.DataFrame({"compound": ["taxol"], "concentration": [0.3],
                                    "moa": ["MS"], "plate": ["Week7_34681"]}))  # fmt: skip
    assert t.loc[0, "treatment"] == "taxol@0.3" and t.loc[0, "batch"] == "Week7"
    with pytest.raises(ValueError, match="moa"):
        prepare_table(pd.DataFrame({"compound": ["x"], "plate": ["p"]}))
    with pytest.raises(ValueError, match="'compound' is empty"):
        prepare_table(pd.DataFrame({"compound": [None], "moa": ["x"], "plate": ["p"]}))


def test_zscore_uses_the_plates_own_dmso_and_falls_back_to_the_batch_then_all():
    spec = [
        ("Week1_A", "B02", "DMSO", "DMSO", 10.0),
        ("Week1_A", "B02", "DMSO", "DMSO", 12.0),
        ("Week1_A", "C03", "t", "M", 14.0),
        ("Week1_B", "C03", "t", "M", 100.0),  # no DMSO on this plate -> Week1's DMSO
        ("Week2_A", "B02", "DMSO", "DMSO", 50.0),  # one DMSO cell: too few even for Week2
        ("Week2_A", "C03", "t", "M", 52.0),
    ]
    table, x = _cells(spec)
    z, refs = normalize_to_controls(x, table, min_controls=2)
    refs = refs.set_index("plate")
    assert refs.loc["Week1_A", "reference"] == "plate" and refs.loc["Week1_A", "n_controls"] == 2
    assert refs.loc["Week1_B", "reference"] == "batch" and refs.loc["Week1_B", "n_controls"] == 2
    assert refs.loc["Week2_A", "reference"] == "all" and refs.loc["Week2_A", "n_controls"] == 3
    assert z[2, 0] == pytest.approx((14 - 11) / 1)  # mean 11, std 1 of the plate's DMSO
    assert z[3, 0] == pytest.approx((100 - 11) / 1)
    all_dmso = np.array([10.0, 12.0, 50.0])
    assert z[5, 0] == pytest.approx((52 - all_dmso.mean()) / all_dmso.std())


def test_zscore_removes_a_plate_offset():
    rng = np.random.default_rng(0)
    spec = []
    for plate, offset in (("Week1_A", 0.0), ("Week1_B", 7.0)):
        for _ in range(30):
            spec.append((plate, "B02", "DMSO", "DMSO", *(rng.normal(size=3) + offset)))
        spec.append((plate, "C03", "t", "M", *(np.array([3.0, 0, 0]) + offset)))
    table, x = _cells(spec)
    z, _ = normalize_to_controls(x, table)
    treated = z[table["compound"].to_numpy() == "t"]
    assert np.allclose(treated[0], treated[1], atol=1.0)  # the offset is gone
    assert abs(z[table["compound"] == "DMSO"].mean()) < 1e-6


def test_whitening_makes_the_dmso_covariance_isotropic():
    rng = np.random.default_rng(1)
    mix = np.array([[1.0, 0.9, 0.0], [0.0, 0.4, 0.0], [0.0, 0.0, 2.0]])
    spec = [("Week1_A", "B02", "DMSO", "DMSO", *v) for v in rng.normal(size=(400, 3)) @ mix]
    table, x = _cells(spec)
    z, _ = normalize_to_controls(x, table, method="whiten")
    before = np.corrcoef(x.T)[0, 1]
    cov = np.cov(z.T)
    assert before > 0.8 and np.abs(cov - np.diag(np.diag(cov))).max() < 0.06  # decorrelated
    assert np.allclose(np.diag(cov), 1.0, atol=0.1)  # unit DMSO variance (up to the shrinkage)
    with pytest.raises(ValueError, match="method"):
        normalize_to_controls(x, table, method="tvn")


def test_normalisation_needs_two_controls():
    table, x = _cells([("Week1_A", "B02", "t", "M", 1.0), ("Week1_A", "B02", "DMSO", "DMSO", 0.0)])
    with pytest.raises(ValueError, match="at least 2"):
        normalize_to_controls(x, table)


def test_aggregate_median_and_mean():
    table = pd.DataFrame({"g": ["a", "a", "a", "b"]})
    x = np.array([[0.0], [1.0], [8.0], [5.0]])
    med, meta = aggregate(x, table, ["g"], "median")
    mean, _ = aggregate(x, table, ["g"], "mean")
    assert med[:, 0].tolist() == [1.0, 5.0] and mean[:, 0].tolist() == [3.0, 5.0]
    assert meta["n_cells"].tolist() == [3, 1]
    with pytest.raises(ValueError, match="how"):
        aggregate(x, table, ["g"], "max")
    with pytest.raises(ValueError, match="features"):
        aggregate(x[:2], table, ["g"])


def test_wells_then_treatments_each_well_counts_once():
    spec = [
        ("Week1_A", "B02", "t", "M", 0.0),
        ("Week1_A", "B02", "t", "M", 0.0),
        ("Week1_A", "B02", "t", "M", 0.0),  # a crowded well
        ("Week2_A", "C03", "t", "M", 6.0),  # a sparse well on another week
    ]
    table, x = _cells(spec)
    wells, wmeta = well_profiles(x, table, "mean")
    assert len(wells) == 2 and wmeta["n_cells"].tolist() == [3, 1]
    treat, tmeta = treatment_profiles(wells, wmeta, "mean")
    assert treat[0, 0] == pytest.approx(3.0)  # mean of the two wells, not of the four cells
    assert tmeta.loc[0, "batches"] == "Week1;Week2"
    assert tmeta.loc[0, "n_wells"] == 2 and tmeta.loc[0, "n_cells"] == 4


# --- the compound-vs-DMSO AMI block ------------------------------------------------------------


def test_compound_contrasts_planted():
    rng = np.random.default_rng(0)
    compounds = ["DMSO"] * 60 + ["far"] * 30 + ["same"] * 40 + ["few"] * 5
    x = rng.normal(size=(len(compounds), 4))
    x[60:90] += 8.0  # "far" is far from DMSO; "same" is drawn like DMSO
    table = pd.DataFrame({"compound": compounds})
    out = compound_contrasts(x, table, min_cells=20, seeds=(0, 1), probe=True)
    assert set(out) == {"far", "same"}  # "few" has fewer than min_cells cells
    assert out["far"]["ami"] > 0.95 and out["far"]["probe"] > 0.95
    assert out["same"]["ami"] < 0.2 and out["same"]["probe"] < 0.8
    assert abs(out["far"]["control"]) < 0.1
    assert out["far"]["n_per_side"] == 30 and out["same"]["n_per_side"] == 40  # balanced
    assert len(out["far"]["ami_per_seed"]) == 2
    capped = compound_contrasts(x, table, min_cells=20, max_cells=10, seeds=(0,))
    assert capped["far"]["n_per_side"] == 10


def test_contrast_input_scales_each_embedding_the_same_way():
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {"compound": ["DMSO"] * 20 + ["t"] * 20, "moa": ["DMSO"] * 20 + ["M"] * 20,
         "plate": ["Week1_A", "Week1_B"] * 20}
    )  # fmt: skip
    x = rng.normal(size=(40, 3)) * [1.0, 100.0, 0.0] + [0.0, 5.0, 2.0]
    assert np.array_equal(contrast_input(x, table), x)  # "none": as it is
    z = contrast_input(x, table, "global")
    assert np.allclose(z[:, :2].mean(0), 0) and np.allclose(z[:, :2].std(0), 1)
    assert np.allclose(z[:, 2], 0)  # a constant column is only centred
    per_plate = contrast_input(x, table, "zscore")
    assert np.allclose(per_plate, normalize_to_controls(x, table, min_controls=5)[0], atol=1e-5)
    with pytest.raises(ValueError, match="normalization='plate'; expected one of"):
        contrast_input(x, table, "plate")


def test_per_plate_contrasts_use_the_same_min_controls_as_the_profiles():
    # plate B has 3 DMSO cells: its own reference with min_controls=3, the batch's with 10
    rng = np.random.default_rng(2)
    plates = ["Week1_A"] * 30 + ["Week1_B"] * 3 + ["Week1_A"] * 10 + ["Week1_B"] * 20
    compounds = ["DMSO"] * 33 + ["t"] * 30
    table = pd.DataFrame({"compound": compounds, "moa": ["DMSO"] * 33 + ["M"] * 30,
                          "plate": plates})  # fmt: skip
    x = rng.normal(size=(len(table), 3))
    x[np.array(plates) == "Week1_B"] += 4.0
    own = contrast_input(x, table, "zscore", min_controls=3)
    assert np.allclose(own, normalize_to_controls(x, table, min_controls=3)[0], atol=1e-5)
    assert not np.allclose(own, contrast_input(x, table, "zscore"), atol=1e-3)
    scores = score_profiles(
        x, table, min_controls=3, seeds=[0], n_permutations=0, min_cells=20,
        contrast_normalization="zscore",
    )  # fmt: skip
    direct = compound_contrasts(own, table, seeds=[0], n_permutations=0, min_cells=20)
    assert scores.contrasts["t"]["ami_per_seed"] == direct["t"]["ami_per_seed"]


def test_contrast_normalization_decides_what_kmeans_sees():
    # the compound moves feature 0 by 3 units; feature 1 is noise 20 times wider, and the two
    # plates differ by 40 on feature 2. Raw KMeans splits on the noise or the plates; z-scoring
    # every feature alone still splits on the plates; normalising to each plate's DMSO finds
    # the compound.
    rng = np.random.default_rng(0)
    n = 60
    compound = np.repeat(["DMSO", "t"], n)
    plate = np.tile(["Week1_A", "Week1_B"], n)
    x = rng.normal(size=(2 * n, 3)) * [1.0, 20.0, 1.0]
    x[compound == "t", 0] += 3.0
    x[plate == "Week1_B", 2] += 40.0
    table = pd.DataFrame({"compound": compound, "moa": np.where(compound == "t", "M", "DMSO"),
                          "plate": plate})  # fmt: skip
    ami = {
        how: compound_contrasts(x, table, seeds=(0, 1), n_permutations=0, normalization=how)["t"][
            "ami"
        ]
        for how in ("none", "global", "zscore")
    }
    assert ami["none"] < 0.1 and ami["global"] < 0.1
    assert ami["zscore"] > 0.5


def test_contrast_normalization_scales_each_draw_over_its_own_cells():
    # the compound moves feature 0 by 4 units, feature 1 is noise 20 times wider: raw KMeans
    # splits on the noise; z-scoring each drawn contrast (as a standardised selection is) finds
    # the compound, and no per-column scale or offset changes what it finds
    rng = np.random.default_rng(0)
    n = 60
    compound = np.repeat(["DMSO", "t"], n)
    x = rng.normal(size=(2 * n, 2)) * [1.0, 20.0]
    x[compound == "t", 0] += 4.0
    table = pd.DataFrame({"compound": compound})
    assert np.array_equal(contrast_input(x, table, "contrast"), x)  # scaled per draw, later

    def scores(features, how):
        out = compound_contrasts(features, table, seeds=(0, 1), n_permutations=0,
                                 normalization=how, probe=True)["t"]  # fmt: skip
        return out["ami_per_seed"], out["probe_per_seed"]

    own = scores(x, "contrast")
    assert scores(x, "none")[0][0] < 0.1 and min(own[0]) > 0.5
    assert scores(x * [1e3, 1e-2] + [7.0, -4.0], "contrast") == pytest.approx(own)


def test_score_profiles_records_the_contrast_normalization():
    rng = np.random.default_rng(0)
    t = pd.DataFrame({"compound": ["DMSO"] * 40 + ["a"] * 20 + ["b"] * 20,
                      "moa": ["DMSO"] * 40 + ["X"] * 40, "plate": ["Week1_1"] * 80})  # fmt: skip
    x = rng.normal(size=(80, 3))
    x[40:, 0] += 8
    x[:, 1] *= 50  # wide noise: raw KMeans splits on it, z-scored KMeans does not
    raw = score_profiles(x, t, seeds=[0], n_permutations=0)
    scaled = score_profiles(x, t, seeds=[0], n_permutations=0, contrast_normalization="global")
    assert raw.settings["contrast_normalization"] == "none"
    assert scaled.settings["contrast_normalization"] == "global"
    assert scaled.contrasts["a"]["ami"] > raw.contrasts["a"]["ami"] + 0.3


def test_compound_contrasts_reuse_the_clustering_module(monkeypatch):
    import phenossl.clustering

    calls = []
    real = phenossl.clustering.cluster

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(phenossl.clustering, "cluster", spy)
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"compound": ["DMSO"] * 25 + ["t"] * 25})
    compound_contrasts(rng.normal(size=(50, 3)), table, seeds=(0, 1, 2), n_permutations=4)
    assert len(calls) == 3 and all(c["k"] == 2 and c["n_permutations"] == 4 for c in calls)


# --- the whole scoring and the CLI -------------------------------------------------------------


def _planted_experiment(rng, n_per_well=12):
    """Two weeks x two plates; MOA X (a, b), Y (c, d), Z (e, alone); DMSO on every plate but one.

    Each MOA shifts a different feature; each week adds an offset (removed by normalisation,
    also on the plate without DMSO, which borrows its week's DMSO cells).
    """
    direction = {"X": 0, "Y": 1, "Z": 2}
    layout = {
        "Week1_P1": ["a", "c", "e"],
        "Week1_P2": ["a", "d"],
        "Week2_P1": ["b", "d"],
        "Week2_P2": ["b", "c"],
    }
    moa = {"a": "X", "b": "X", "c": "Y", "d": "Y", "e": "Z"}
    rows, feats = [], []
    offsets = {week: rng.normal(scale=3.0, size=6) for week in ("Week1", "Week2")}
    for p, (plate, compounds) in enumerate(layout.items()):
        offset = offsets[plate[:5]] + rng.normal(scale=0.1, size=6)
        wells = [*compounds, "DMSO", "DMSO"] if plate != "Week2_P2" else compounds
        for w, compound in enumerate(wells):
            for _ in range(n_per_well):
                v = rng.normal(size=6) + offset
                if compound != "DMSO":
                    v[direction[moa[compound]]] += 4.0
                feats.append(v)
                rows.append(
                    {
                        "plate": plate,
                        "well": f"W{w:02d}",
                        "compound": compound,
                        "concentration": 0.0 if compound == "DMSO" else 1.0,
                        "moa": "DMSO" if compound == "DMSO" else moa[compound],
                        "split": "test" if p % 2 else "train",
                    }
                )
    return pd.DataFrame(rows), np.array(feats)


def test_score_profiles_planted_experiment():
    table, x = _planted_experiment(np.random.default_rng(0))
    scores = score_profiles(x, table, seeds=(0,), min_controls=10)
    s = scores.scores()
    assert s["nsc"] == 1.0 and s["n_queries"]["nsc"] == 4  # a, b, c, d; e skipped
    assert s["skipped"]["nsc"] == ["e@1"]
    refs = scores.references.set_index("plate")["reference"]
    assert refs["Week2_P2"] == "batch" and refs["Week1_P1"] == "plate"
    assert set(s["ami"]) == {"a", "b", "c", "d"}  # e has 12 cells < 20
    assert s["n_treatments"] == 6  # a..e and DMSO


@pytest.fixture
def embedded_cropset(tmp_path):
    table, x = _planted_experiment(np.random.default_rng(1))
    with CropSetWriter(tmp_path / "cs", size=4) as writer:
        writer.add(np.zeros((len(table), 3, 4, 4), dtype=np.uint8), table)
    ids = np.arange(len(table))[::-1]  # stored in another order than the CropSet
    emb = save_embeddings(tmp_path / "emb.npz", x[::-1], ids, {"cropset": str(tmp_path / "cs")})
    return tmp_path, emb


def test_cli_profile_writes_every_output(embedded_cropset, capsys):
    tmp_path, emb = embedded_cropset
    out = tmp_path / "report"
    assert main(["-q", "profile", str(emb), "--out", str(out), "--seeds", "2", "--probe"]) == 0
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    scores = json.loads((out / "scores.json").read_text())
    assert scores["nsc"] == 1.0 and scores["n_queries"]["nsc"] == 4
    assert {"nscb", "ami"} <= set(scores)
    assert set(scores["ami"]["a"]) >= {"ami", "control", "probe"}
    frame = pd.read_csv(out / "profiles.csv")
    assert set(frame["level"]) == {"well", "treatment"}
    assert (frame["level"] == "treatment").sum() == 6
    assert "NSC" in (out / "summary.md").read_text()
    assert "NSC: 1.000" in capsys.readouterr().out


def test_cli_profile_contrast_normalization(embedded_cropset):
    tmp_path, emb = embedded_cropset
    out = tmp_path / "global"
    argv = ["-q", "profile", str(emb), "--out", str(out), "--seeds", "1"]
    assert main([*argv, "--contrast-normalization", "global"]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["settings"]["contrast_normalization"] == "global"
    with pytest.raises(SystemExit):
        main([*argv, "--contrast-normalization", "plate"])


def test_cli_profile_split_and_bad_input(embedded_cropset, capsys):
    tmp_path, emb = embedded_cropset
    assert main(["-q", "profile", str(emb), "--out", str(tmp_path / "t"), "--split", "test"]) == 0
    assert (
        json.loads((tmp_path / "t" / "scores.json").read_text())["n_cells"] == 12 * 6
    )  # Week1_P2 (a, d, 2 DMSO) + Week2_P2 (b, c)
    capsys.readouterr()
    assert main(["profile", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.npz" in err and len(err.splitlines()) == 1
    assert main(["profile", str(emb), "--out", str(tmp_path / "x"), "--split", "val"]) == 2
    assert "no cell" in capsys.readouterr().err
    other = save_embeddings(tmp_path / "other.npz", np.zeros((3, 2)), np.arange(3), {})
    assert main(["profile", str(other), "--out", str(tmp_path / "x")]) == 2
    assert "--cropset" in capsys.readouterr().err


def test_write_profiles_csv_for_the_export(tmp_path):
    table, x = _planted_experiment(np.random.default_rng(2))
    table.loc[table["compound"] == "e", "moa"] = None  # a compound outside the MOA table
    path = write_profiles_csv(tmp_path / "p" / "cells_profiles.csv", x, table)
    frame = pd.read_csv(path)
    treatments = frame[frame["level"] == "treatment"].set_index("treatment")
    assert treatments.loc["e@1", "moa"] == "unknown" and len(treatments) == 6
    assert (frame["level"] == "well").sum() == table.groupby(["plate", "well"]).ngroups
    with pytest.raises(ValueError, match="DMSO"):
        write_profiles_csv(tmp_path / "q.csv", x[:3], table.iloc[:3].assign(compound="t"))


def test_python_path_imports_embeds_and_profiles_real_shaped_crops(tmp_path):
    # the whole real-cell evaluation from the top-level API: crops made elsewhere (uint16,
    # channels last, Actin first) -> CropSet -> hand-crafted features -> profiles and scores
    import phenossl

    table, _ = _planted_experiment(np.random.default_rng(2), n_per_well=4)
    rng = np.random.default_rng(3)
    crops = rng.integers(200, 400, size=(len(table), 24, 24, 3)).astype(np.uint16)
    yy, xx = np.mgrid[:24, :24]
    disk = (yy - 12) ** 2 + (xx - 12) ** 2 < 36
    radius = {"X": 4, "Y": 8, "Z": 6}  # the MOA sets the nucleus size (DAPI, last channel)
    for i, row in enumerate(table.itertuples()):
        r = radius.get(row.moa, 6)
        crops[i, ..., 2][(yy - 12) ** 2 + (xx - 12) ** 2 < r * r] = 3000
        crops[i, ..., 0][disk] += 500
    cs = phenossl.import_crops(crops, table, tmp_path / "cs", channels="Actin,Tubulin,DAPI")
    x = phenossl.embed(cs, model="features")
    scores = phenossl.score_profiles(x, cs.table, seeds=(0,), min_cells=8)
    assert scores.scores()["nsc"] == 1.0
    content = phenossl.write_profile_report(tmp_path / "report", scores)
    assert content["nsc"] == 1.0
    assert all((tmp_path / "report" / name).stat().st_size > 0 for name in FILES)
