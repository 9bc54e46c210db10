from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _results import CIFAR10, sweep_frame
from scipy import stats

from phenossl.training.analysis import bias, tables
from phenossl.training.analysis._results_frame import infer_dataset, numeric_values

VALUES = tuple(np.linspace(0.0, 0.5, 6))


def _rows(results: pd.DataFrame, method: str) -> pd.DataFrame:
    return results[results["method"] == method].set_index("class")


# --------------------------------------------------------------------------- curves


def test_class_curves_hold_every_seed_and_the_seed_mean():
    frame = sweep_frame(methods=("simclr",), seeds=(5, 6), slopes=np.linspace(-0.5, 0.5, 10))
    curves = bias.class_curves(frame, "hue")["simclr"]
    assert curves.per_seed.shape == (2, 10, 6)
    assert curves.values.tolist() == pytest.approx(list(VALUES))
    assert curves.seeds.tolist() == [5, 6]
    run = frame[(frame["seed"] == 6) & np.isclose(frame["param.hue"], VALUES[3])].iloc[0]
    np.testing.assert_allclose(curves.per_seed[1, :, 3], run["per_class.linear"])
    np.testing.assert_allclose(curves.mean, curves.per_seed.mean(axis=0))
    np.testing.assert_allclose(curves.std, curves.per_seed.std(axis=0, ddof=1))
    assert curves.accuracy.shape == (12, 10) and curves.x.shape == (12,)


def test_missing_run_is_nan_and_the_mean_uses_the_other_seeds():
    frame = sweep_frame(methods=("byol",), seeds=(5, 6, 7))
    frame = frame.drop(index=frame.index[(frame["seed"] == 7) & (frame["param.hue"] == 0.0)])
    curves = bias.class_curves(frame, "param.hue")["byol"]
    assert np.isnan(curves.per_seed[2, :, 0]).all()
    np.testing.assert_allclose(curves.mean[:, 0], curves.per_seed[:2, :, 0].mean(axis=0))
    assert curves.n_seeds[:, 0].tolist() == [2] * 10
    assert curves.n_seeds[:, 1].tolist() == [3] * 10


def test_interval_parameter_is_read_as_its_varying_bound():
    values = [(0.2, 1.0), (0.5, 1.0), (0.8, 1.0)]
    frame = sweep_frame(parameter="crop_scale", values=values, methods=("simclr",), seeds=(5,))
    assert numeric_values(frame, "crop_scale").tolist() == [0.2, 0.5, 0.8]
    frame.loc[0, "param.crop_scale"] = [0.3, 0.9]
    with pytest.raises(ValueError, match="varies at positions"):
        numeric_values(frame, "crop_scale")


def test_curves_reject_bad_frames():
    frame = sweep_frame(methods=("simclr",), seeds=(5,))
    with pytest.raises(ValueError, match=r"no parameter 'hue_p'.*'hue'"):
        bias.class_curves(frame, "hue_p")
    with pytest.raises(ValueError, match=r"needs the column\(s\) \['seed'\]"):
        bias.class_curves(frame.drop(columns="seed"), "hue")
    with pytest.raises(ValueError, match=r"per_class\.finetune"):
        bias.class_curves(frame, "hue", protocol="finetune")
    twice = pd.concat([frame, frame], ignore_index=True)
    with pytest.raises(ValueError, match=r"share method, seed and param\.hue"):
        bias.class_curves(twice, "hue")
    text = frame.astype({"param.hue": object})
    text.loc[2, "param.hue"] = "high"
    with pytest.raises(ValueError, match=r"run 'hue_sweep/simclr/hue=0\.2/seed=5'.*not a number"):
        bias.class_curves(text, "hue")
    renamed = frame.copy()
    renamed.at[1, "class_names.linear"] = [*CIFAR10[:-1], "lorry"]
    with pytest.raises(ValueError, match=r"different class_names\.linear"):
        bias.class_curves(renamed, "hue")
    short = frame.copy()
    short.at[1, "per_class.linear"] = np.zeros(3)
    with pytest.raises(ValueError, match="3 values for 10 class names"):
        bias.class_curves(short, "hue")


# --------------------------------------------------------------------------- correlations


def test_positive_slope_is_ascending_negative_descending_flat_none():
    slopes = np.zeros(10)
    slopes[0], slopes[1] = 0.6, -0.6
    frame = sweep_frame(methods=("simclr",), slopes=slopes, noise=0.03, seeds=(5, 6, 7, 8, 9))
    rows = _rows(bias.correlate_sweep(frame, "hue"), "simclr")
    up, down, flat = rows.loc["airplane"], rows.loc["automobile"], rows.loc["bird"]
    assert up["trend"] == "ascending" and up["sign"] == 1 and up["p"] < 0.05
    assert up["pearson_r"] > 0.9 and up["strength"] == "strong"
    assert up["slope"] == pytest.approx(0.6, abs=0.05)
    assert down["trend"] == "descending" and down["sign"] == -1 and down["pearson_r"] < -0.9
    assert flat["trend"] == "none" and flat["sign"] == 0 and not flat["significant"]
    assert flat["p"] >= 0.05 and abs(flat["pearson_r"]) < 0.3
    assert (rows["n_points"] == 30).all() and (rows["n_values"] == 6).all()


def test_correlation_uses_every_seed_not_the_means():
    slopes = np.full(10, 0.2)
    frame = sweep_frame(methods=("byol",), slopes=slopes, noise=0.05, seeds=(5, 6, 7))
    curves = bias.class_curves(frame, "hue")["byol"]
    row = bias.correlate(curves).iloc[4]
    expected = stats.pearsonr(curves.x, curves.accuracy[:, 4])
    assert row["pearson_r"] == pytest.approx(expected.statistic)
    assert row["pearson_p"] == pytest.approx(expected.pvalue)
    on_means = stats.pearsonr(curves.values, curves.mean[4])
    assert row["pearson_r"] != pytest.approx(on_means.statistic, abs=1e-3)
    spearman = stats.spearmanr(curves.x, curves.accuracy[:, 4])
    assert row["spearman_rho"] == pytest.approx(spearman.statistic)
    assert row["spearman_p"] == pytest.approx(spearman.pvalue)
    assert row["slope"] == pytest.approx(np.polyfit(curves.x, curves.accuracy[:, 4], 1)[0])


def test_spearman_finds_a_monotone_non_linear_trend_pearson_understates():
    x = np.linspace(0.0, 1.0, 10)
    rng = np.random.default_rng(3)
    seeds = (5, 6, 7)
    # steep at the end, a small steady rise before: monotone but far from a line
    curve = 0.5 + 0.4 * x**12 + 0.02 * x
    accuracy = np.stack([curve + rng.normal(0, 0.0005, x.size) for _ in seeds])
    curves = bias.ClassCurves(
        method="simclr",
        parameter="param.hue",
        protocol="linear",
        classes=("steep",),
        values=x,
        seeds=np.array(seeds),
        per_seed=accuracy[:, None, :],
        x=np.tile(x, len(seeds)),
        accuracy=accuracy.reshape(-1, 1),
        run_ids=tuple(str(i) for i in range(accuracy.size)),
    )
    pearson = bias.correlate(curves).iloc[0]
    spearman = bias.correlate(curves, test="spearman").iloc[0]
    assert spearman["coefficient"] == spearman["spearman_rho"] > 0.9
    assert spearman["strength"] == "strong" and spearman["trend"] == "ascending"
    assert pearson["pearson_r"] < spearman["spearman_rho"] - 0.2
    assert spearman["p"] < pearson["p"]


def test_strength_labels_follow_cohen():
    assert [bias.strength(r) for r in (0.05, -0.2, 0.35, -0.8, 1.0)] == [
        "negligible",
        "weak",
        "moderate",
        "strong",
        "strong",
    ]
    assert bias.strength(float("nan")) == ""


def test_constant_class_gets_no_trend_and_no_warning():
    frame = sweep_frame(methods=("simclr",), seeds=(5, 6))
    frame["per_class.linear"] = [np.r_[1.0, a[1:]] for a in frame["per_class.linear"]]
    rows = _rows(bias.correlate_sweep(frame, "hue"), "simclr")
    assert np.isnan(rows.loc["airplane", "pearson_r"])
    assert rows.loc["airplane", "trend"] == "none" and not rows.loc["airplane", "significant"]


def test_class_absent_from_some_runs_uses_its_other_points():
    frame = sweep_frame(methods=("simclr",), slopes=np.full(10, 0.6), seeds=(5, 6))
    frame["per_class.linear"] = [
        np.r_[np.nan, a[1:]] if i % 4 == 0 else a for i, a in enumerate(frame["per_class.linear"])
    ]
    curves = bias.class_curves(frame, "hue")["simclr"]
    rows = bias.correlate(curves).set_index("class")
    ok = np.isfinite(curves.accuracy[:, 0])
    assert rows.loc["airplane", "n_points"] == ok.sum() == 9
    expected = stats.pearsonr(curves.x[ok], curves.accuracy[ok, 0])
    assert rows.loc["airplane", "pearson_r"] == pytest.approx(expected.statistic)
    assert rows.loc["airplane", "pearson_p"] == pytest.approx(expected.pvalue)
    assert rows.loc["bird", "n_points"] == 12


def test_too_few_parameter_values_is_an_error():
    frame = sweep_frame(values=(0.0, 0.5), methods=("simclr",))
    with pytest.raises(ValueError, match=r"'simclr'.*takes 2 value\(s\).*at least 3"):
        bias.correlate_sweep(frame, "hue")


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"correction": "bonferroni"}, "correction"),
        ({"test": "kendall"}, "test"),
    ],
)
def test_bad_options_are_errors(option, match):
    frame = sweep_frame(methods=("simclr",), seeds=(5,))
    with pytest.raises(ValueError, match=match):
        bias.correlate_sweep(frame, "hue", **option)


def test_benjamini_hochberg_matches_the_procedure_and_keeps_nan():
    adjusted = bias.benjamini_hochberg([0.01, 0.04, 0.03, 0.2, np.nan])
    np.testing.assert_allclose(adjusted[:4], [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert np.isnan(adjusted[4])


def _noise_curves(rng: np.random.Generator, classes: int = 100) -> bias.ClassCurves:
    values, seeds = np.linspace(0, 1, 6), np.arange(3)
    per_seed = 0.5 + rng.normal(0, 0.05, (seeds.size, classes, values.size))
    return bias.ClassCurves(
        method="m",
        parameter="param.p",
        protocol="linear",
        classes=tuple(f"c{i}" for i in range(classes)),
        values=values,
        seeds=seeds,
        per_seed=per_seed,
        x=np.tile(values, seeds.size),
        accuracy=per_seed.transpose(0, 2, 1).reshape(-1, classes),
        run_ids=tuple(str(i) for i in range(seeds.size * values.size)),
    )


def test_bh_removes_the_false_positives_of_pure_noise():
    rng = np.random.default_rng(11)
    draws, raw_hits, bh_hits, bh_draws = 100, 0, 0, 0
    for _ in range(draws):
        curves = _noise_curves(rng)
        raw_hits += int(bias.correlate(curves)["significant"].sum())
        found = int(bias.correlate(curves, correction="bh")["significant"].sum())
        bh_hits += found
        bh_draws += found > 0
    tests = draws * 100
    # raw p < 0.05 on 10,000 null tests: 500 false positives expected (binomial sd 22)
    assert 0.043 < raw_hits / tests < 0.057
    # BH under the global null: a draw has any discovery with probability <= 0.05 (5 expected)
    assert bh_draws <= 12 and bh_hits < raw_hits / 10


def test_bh_keeps_real_effects():
    slopes = np.zeros(10)
    slopes[:3] = 0.6
    frame = sweep_frame(methods=("simclr",), slopes=slopes, seeds=(5, 6, 7))
    rows = bias.correlate_sweep(frame, "hue", correction="bh")
    assert set(rows.loc[rows["significant"], "class"]) == set(CIFAR10[:3])
    assert (rows["p"] >= rows["pearson_p"] - 1e-15).all()


def test_trend_counts_and_most_biased():
    slopes = np.zeros(10)
    slopes[[0, 2]] = [0.3, 0.8]
    slopes[1] = -0.5
    frame = sweep_frame(methods=("simclr", "byol"), slopes=slopes, noise=0.05)
    results = bias.correlate_sweep(frame, "hue")
    byol = _rows(results, "byol")
    assert abs(byol.loc["bird", "pearson_r"]) > abs(byol.loc["automobile", "pearson_r"])
    counts = bias.trend_counts(results).set_index("method")
    assert counts.loc["simclr", "ascending"] >= 2 and counts.loc["simclr", "descending"] >= 1
    assert (counts["classes"] == 10).all()
    assert bias.most_biased(results, 2)["byol"] == ["bird", "automobile"]
    significant = set(results.loc[results["significant"], "class"])
    assert set(bias.most_biased(results, 10)["simclr"]) <= significant
    assert len(bias.most_biased(results, 10, significant_only=False)["simclr"]) == 10


# --------------------------------------------------------------------------- Table 3 logic


def _hand_results(biased: dict[str, dict[str, int]], methods: list[str]) -> pd.DataFrame:
    """``biased[class][method]`` = sign of a significant correlation (missing: not biased)."""
    rows = []
    for cls in ("a", "b", "c", "d", "e"):
        for method in methods:
            sign = biased.get(cls, {}).get(method, 0)
            rows.append({"method": method, "class": cls, "significant": sign != 0, "sign": sign})
    return pd.DataFrame(rows)


HAND = {
    "a": {"m1": 1, "m2": 1, "m3": -1, "m4": 1},
    "b": {"m1": -1, "m2": -1, "m3": -1},
    "c": {"m2": 1, "m4": -1},
    "d": {"m3": 1},
}


def test_shared_biases_count_classes_biased_in_k_methods():
    table = bias.shared_biases(_hand_results(HAND, ["m1", "m2", "m3", "m4"]))
    assert table["rule"].tolist() == [
        "in all 4 methods",
        "in at least 3 methods",
        "in at least 2 methods",
    ]
    assert table["n_classes"].tolist() == [1, 2, 3]
    assert table["classes"].tolist() == ["a", "a, b", "a, b, c"]


def test_shared_biases_with_same_sign():
    table = bias.shared_biases(_hand_results(HAND, ["m1", "m2", "m3", "m4"]), same_sign=True)
    # a: 3 positive + 1 negative; b: 3 negative; c: one of each sign
    assert table["n_classes"].tolist() == [0, 2, 2]


def test_shared_biases_leave_unanswerable_rows_missing():
    results = _hand_results({"a": {"m1": 1, "m2": -1}}, ["m1", "m2"])
    table = bias.shared_biases(results, min_methods=(3, 2))
    assert table["n_classes"].isna().tolist() == [False, True, False]
    assert table["n_classes"].iloc[0] == 1


def test_shared_biases_reject_one_method_or_different_classes():
    with pytest.raises(ValueError, match="at least 2 methods"):
        bias.shared_biases(_hand_results(HAND, ["m1"]))
    results = _hand_results(HAND, ["m1", "m2"])
    results = results[~((results["method"] == "m2") & (results["class"] == "e"))]
    with pytest.raises(ValueError, match="different classes"):
        bias.shared_biases(results)


# --------------------------------------------------------------------------- Table 1 logic


def _trend_table(method: str, trends: list[str]) -> pd.DataFrame:
    sign = {"ascending": 1, "descending": -1, "none": 0}
    return pd.DataFrame(
        {
            "method": method,
            "class": [f"c{i}" for i in range(len(trends))],
            "trend": trends,
            "sign": [sign[t] for t in trends],
        }
    )


def test_behaviour_match_on_a_hand_made_example():
    linear = _trend_table("simclr", ["ascending", "descending", "none", "descending", "none"])
    finetune = _trend_table("simclr", ["ascending", "none", "none", "descending", "descending"])
    finetune = finetune.iloc[::-1]  # the class order must not matter
    row = bias.behaviour_match(linear, finetune).iloc[0]
    assert row["negative_linear"] == 2 and row["negative_finetune"] == 2
    assert row["positive_linear"] == 1 and row["positive_finetune"] == 1
    assert row["match"] == pytest.approx(3 / 5)
    table = tables.table1(linear, finetune, parameter="param.hue")
    assert table.loc[0, "match"] == pytest.approx(60.0)
    assert table.loc[0, "paper_negative_linear"] == 97
    assert table.loc[0, "paper_match"] == 45.0
    other = tables.table1(linear, finetune, parameter="param.crop_scale")
    assert "paper_match" not in other.columns
    cifar10 = tables.table1(linear, finetune, parameter="param.hue", dataset="cifar10")
    assert "paper_match" not in cifar10.columns  # the paper's Table 1 is on CIFAR-100


def test_behaviour_match_needs_common_methods_and_classes():
    linear = _trend_table("simclr", ["none", "none"])
    with pytest.raises(ValueError, match="no method in common"):
        bias.behaviour_match(linear, _trend_table("byol", ["none", "none"]))
    with pytest.raises(ValueError, match="different classes"):
        bias.behaviour_match(linear, _trend_table("simclr", ["none", "none", "none"]))


# --------------------------------------------------------------------------- Table 2 logic


def _top1_frame(top1: dict[tuple[int, float], float], method: str = "simclr") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run_id": f"t2/{method}/hue_p={v}/seed={s}",
                "experiment": "t2",
                "method": method,
                "seed": s,
                "param.hue_p": v,
                "metric.top1": acc,
            }
            for (s, v), acc in top1.items()
        ]
    )


def test_metric_summary_mean_and_std_across_values_of_seed_means():
    top1 = {(1, 0.0): 0.80, (1, 0.5): 0.90, (1, 1.0): 0.70}
    top1 |= {(2, 0.0): 0.82, (2, 0.5): 0.88, (2, 1.0): 0.72}
    row = bias.metric_summary(_top1_frame(top1), "hue_p").iloc[0]
    seed_means = [0.81, 0.89, 0.71]
    assert row["mean"] == pytest.approx(np.mean(seed_means))
    assert row["std"] == pytest.approx(np.std(seed_means, ddof=1))
    assert row["std_runs"] == pytest.approx(np.std(list(top1.values()), ddof=1))
    assert row["seed_std"] == pytest.approx(np.mean([np.std([0.8, 0.82], ddof=1)] * 3))
    assert (row["n_values"], row["n_runs"]) == (3, 6)


def test_metric_summary_weights_values_not_runs():
    top1 = {(1, 0.0): 0.80, (1, 0.5): 0.90, (2, 0.5): 0.92, (3, 0.5): 0.94}
    row = bias.metric_summary(_top1_frame(top1), "hue_p").iloc[0]
    assert row["mean"] == pytest.approx((0.80 + 0.92) / 2)


def test_table2_in_percent_with_the_papers_numbers():
    top1 = {(s, v): 0.9 for s in (5, 6) for v in (0.0, 0.5, 1.0)}
    frame = pd.concat([_top1_frame(top1), _top1_frame(top1, "vibcreg")], ignore_index=True)
    table = tables.table2(frame, "hue_p", dataset="cifar10").set_index("method")
    assert table.loc["simclr", "mean"] == pytest.approx(90.0)
    assert table.loc["simclr", "std"] == pytest.approx(0.0)
    assert table.loc["simclr", "paper_mean"] == 90.16 and table.loc["vibcreg", "paper_std"] == 0.89
    assert table.loc["simclr", "solo_learn"] == 90.74
    mnist = tables.table2(frame, "hue_p", dataset="mnist")
    assert "paper_mean" not in mnist.columns and "solo_learn" not in mnist.columns
    frame.loc[0, "metric.top1"] = 90.0
    with pytest.raises(ValueError, match=r"metric\.top1 holds 90\.0; expected fractions"):
        tables.table2(frame, "hue_p")


def test_infer_dataset_from_class_names():
    frame = sweep_frame(methods=("simclr",), seeds=(5,))
    assert infer_dataset(frame) == "cifar10"
    digits = frame.assign(**{"class_names.linear": [[str(d) for d in range(10)]] * len(frame)})
    assert infer_dataset(digits) == "mnist"
    assert infer_dataset(frame.assign(dataset="imagenet100")) == "imagenet100"
    assert infer_dataset(frame.drop(columns=["per_class.linear", "class_names.linear"])) is None
