"""Inter-class bias across a sweep: per-class accuracy against a transformation parameter.

Everything here is a pure function of the result store's analysis frame
(``ResultStore(path).frame()``) or of the tables it derives; nothing touches training code.

Definitions (DESIGN.md, appendix Tables 1-3):

- *Per-class accuracy* is the recall of each class from one confusion matrix over the whole test
  set, as the store holds it (``per_class.<protocol>``).
- A class is *biased* by a parameter when the correlation of its accuracy with the parameter
  across the sweep is significant (``p < alpha``, 0.05). The correlation uses **every run** (one
  point per method x parameter value x seed), not the seed means: the seed spread is then part of
  the test's noise instead of being averaged away, and the test has ``values x seeds`` points.
  Pearson's r decides by default (``test="spearman"`` for monotone, non-linear trends); both
  coefficients and p-values are always reported.
- Its *trend* is ``ascending`` (significant, r > 0), ``descending`` (significant, r < 0) or
  ``none`` (the paper's "random"); its *strength* labels |r| with Cohen's thresholds: below 0.1
  negligible, below 0.3 weak, below 0.5 moderate, else strong.
- Multiple testing: the paper thresholds raw p-values (``correction="none"``, the default).
  With 100 classes about 5 false positives per method and parameter are then expected under no
  effect at all; ``correction="bh"`` applies the Benjamini-Hochberg false discovery rate
  procedure within each family of tests, the classes of one method, parameter and protocol.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from phenossl.training.analysis._results_frame import (
    metric_column,
    numeric_values,
    param_column,
    per_class_block,
    require_columns,
)

TRENDS = ("ascending", "descending", "none")
TESTS = ("pearson", "spearman")
CORRECTIONS = ("none", "bh")
#: fewest distinct parameter values a correlation accepts
MIN_VALUES = 3
#: Cohen's (1988) labels of |r|: the label of the first bound above |r|
STRENGTHS = ((0.1, "negligible"), (0.3, "weak"), (0.5, "moderate"), (np.inf, "strong"))

_RUN_COLUMNS = ("run_id", "method", "seed")


@dataclass(frozen=True, eq=False)
class ClassCurves:
    """Per-class accuracy of one method across a sweep of one parameter.

    Attributes
    ----------
    method, parameter, protocol
        What the curves are of (``parameter`` is the frame's column name).
    classes
        The ``C`` class names.
    values
        float64 ``(V,)``: the distinct parameter values, ascending.
    seeds
        int64 ``(S,)``: the distinct seeds, ascending.
    per_seed
        float64 ``(S, C, V)``: accuracy of every class for each seed and value; NaN where that
        run is missing (or the class was absent from its test set).
    x, accuracy, run_ids
        The runs themselves: parameter value ``(N,)``, per-class accuracy ``(N, C)``, ids.
    """

    method: str
    parameter: str
    protocol: str
    classes: tuple[str, ...]
    values: np.ndarray
    seeds: np.ndarray
    per_seed: np.ndarray
    x: np.ndarray
    accuracy: np.ndarray
    run_ids: tuple[str, ...]

    @property
    def mean(self) -> np.ndarray:
        """float64 ``(C, V)``: mean over seeds (NaN where no seed ran)."""
        return _nan_reduce(np.nanmean, self.per_seed, min_count=1)

    @property
    def std(self) -> np.ndarray:
        """float64 ``(C, V)``: sample standard deviation over seeds (NaN below two seeds)."""
        return _nan_reduce(lambda a, axis: np.nanstd(a, axis=axis, ddof=1), self.per_seed, 2)

    @property
    def n_seeds(self) -> np.ndarray:
        """int64 ``(C, V)``: seeds with a finite accuracy."""
        return np.isfinite(self.per_seed).sum(axis=0)


def _nan_reduce(reduce, array: np.ndarray, min_count: int) -> np.ndarray:
    count = np.isfinite(array).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = reduce(array, axis=0)
    return np.where(count >= min_count, out, np.nan)


def class_curves(
    frame: pd.DataFrame, parameter: str, *, protocol: str = "linear"
) -> dict[str, ClassCurves]:
    """Per-class accuracy against ``parameter``, one :class:`ClassCurves` per method.

    Parameters
    ----------
    frame
        Runs of one sweep (every other parameter fixed), any number of methods and seeds.
    parameter
        The swept parameter, ``hue_p`` or ``param.hue_p``.
    protocol
        ``linear`` or ``finetune``: which ``per_class.<protocol>`` to read.

    Raises
    ------
    ValueError
        A column is missing, a parameter value is not numeric, runs of one method disagree on
        the classes, or two runs share method, seed and parameter value (split the frame by
        its other parameters first).
    """
    require_columns(frame, _RUN_COLUMNS, "per-class curves")
    column = param_column(frame, parameter)
    if frame.empty:
        raise ValueError(f"no run to build per-class curves of {column!r} from")
    x_all = numeric_values(frame, column)
    curves = {}
    for method, runs in frame.groupby("method", sort=True):
        classes, accuracy = per_class_block(runs, protocol)
        x = x_all.loc[runs.index].to_numpy()
        seeds = runs["seed"].to_numpy(dtype=np.int64)
        _check_unique_cells(runs, x, seeds, column)
        values, v_index = np.unique(x, return_inverse=True)
        seed_values, s_index = np.unique(seeds, return_inverse=True)
        per_seed = np.full((seed_values.size, len(classes), values.size), np.nan)
        per_seed[s_index, :, v_index] = accuracy
        curves[str(method)] = ClassCurves(
            method=str(method),
            parameter=column,
            protocol=protocol,
            classes=tuple(classes),
            values=values,
            seeds=seed_values,
            per_seed=per_seed,
            x=x,
            accuracy=accuracy,
            run_ids=tuple(str(r) for r in runs["run_id"]),
        )
    return curves


def _check_unique_cells(runs: pd.DataFrame, x: np.ndarray, seeds: np.ndarray, column: str) -> None:
    keys = pd.Series(list(zip(seeds, x)), index=runs.index)
    dup = keys.duplicated(keep=False)
    if dup.any():
        ids = runs.loc[dup, "run_id"].tolist()[:4]
        raise ValueError(
            f"runs {ids} share method, seed and {column}; the frame mixes several sweeps "
            "(split it by experiment and the other parameters first)"
        )


def strength(r: float) -> str:
    """Cohen's label of a correlation coefficient's magnitude (``""`` for NaN)."""
    if not np.isfinite(r):
        return ""
    return next(label for bound, label in STRENGTHS if abs(r) < bound)


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN entries stay NaN and are not counted."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = stats.false_discovery_control(p[finite], method="bh")
    return out


def _pearson(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson r, its two-sided p-value and the least-squares slope of every column of ``y``
    ``(N, K)`` against ``x`` ``(N,)`` (no NaN). A constant column gets NaN.

    The p-value is the exact one of the t test with N - 2 degrees of freedom, as
    ``scipy.stats.pearsonr``'s (and, on ranks, ``scipy.stats.spearmanr``'s).
    """
    n = x.shape[0]
    xc, yc = x - x.mean(), y - y.mean(axis=0)
    sxx, syy = float(xc @ xc), (yc * yc).sum(axis=0)
    sxy = xc @ yc
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0)
        r = np.where(np.ptp(y, axis=0) > 0, r, np.nan)
        t = np.abs(r) * np.sqrt((n - 2) / np.maximum(1.0 - r * r, 0.0))
    p = np.where(np.isfinite(r), 2 * stats.t.sf(t, n - 2), np.nan)
    slope = np.where(np.isfinite(r), sxy / sxx, np.nan)
    return r, p, slope


def _statistics(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(K, 5)``: Pearson r, p, Spearman rho, p and slope of each column of ``y``."""
    r, p_r, slope = _pearson(x, y)
    rho, p_rho, _ = _pearson(stats.rankdata(x), stats.rankdata(y, axis=0))
    return np.stack([r, p_r, rho, p_rho, slope], axis=1)


def correlate(
    curves: ClassCurves,
    *,
    alpha: float = 0.05,
    correction: str = "none",
    test: str = "pearson",
) -> pd.DataFrame:
    """Correlation of every class's accuracy with the parameter, over all the method's runs.

    Parameters
    ----------
    curves
        One method's sweep (:func:`class_curves`).
    alpha
        Significance level of ``p`` (after correction).
    correction
        ``"none"`` (raw p-values, as the paper) or ``"bh"`` (Benjamini-Hochberg over the
        classes).
    test
        ``"pearson"`` or ``"spearman"``: whose coefficient and p-value decide the trend.

    Returns
    -------
    pandas.DataFrame
        One row per class: ``method, parameter, protocol, class, n_points, n_values,
        pearson_r, pearson_p, spearman_rho, spearman_p`` (raw), ``slope`` (least-squares
        accuracy change per unit of the parameter), ``coefficient`` and ``p`` (the deciding
        test's; ``p`` corrected), ``significant``, ``sign`` (+1, -1, or 0 when not
        significant), ``trend`` and ``strength`` (of ``coefficient``). A class whose accuracy
        never changes (or has fewer than three finite points) gets NaN statistics and trend
        ``none``.

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_VALUES` distinct parameter values, or a bad option.
    """
    check_options(alpha, correction, test)
    if curves.values.size < MIN_VALUES:
        raise ValueError(
            f"method {curves.method!r}: {curves.parameter} takes {curves.values.size} value(s) "
            f"{curves.values.tolist()}; a correlation needs at least {MIN_VALUES}"
        )
    x, accuracy = curves.x, curves.accuracy
    finite = np.isfinite(accuracy)
    columns = np.full((len(curves.classes), 5), np.nan)
    complete = finite.all(axis=0)
    if complete.any():
        columns[complete] = _statistics(x, accuracy[:, complete])
    for c in np.flatnonzero(~complete):  # classes absent from some test sets
        ok = finite[:, c]
        if ok.sum() >= 3 and np.ptp(x[ok]) > 0:
            columns[c] = _statistics(x[ok], accuracy[ok, c : c + 1])[0]
    table = pd.DataFrame(
        columns, columns=["pearson_r", "pearson_p", "spearman_rho", "spearman_p", "slope"]
    )
    n_values = [np.unique(x[finite[:, c]]).size for c in range(finite.shape[1])]
    table.insert(0, "n_values", n_values)
    table.insert(0, "n_points", finite.sum(axis=0))
    table.insert(0, "class", list(curves.classes))
    coef = table["pearson_r" if test == "pearson" else "spearman_rho"].to_numpy()
    p = table["pearson_p" if test == "pearson" else "spearman_p"].to_numpy()
    if correction == "bh":
        p = benjamini_hochberg(p)
    significant = np.isfinite(p) & (p < alpha)
    sign = np.where(significant, np.sign(np.nan_to_num(coef)), 0).astype(np.int64)
    table["coefficient"] = coef
    table["p"] = p
    table["significant"] = significant
    table["sign"] = sign
    table["trend"] = np.select([sign > 0, sign < 0], ["ascending", "descending"], "none")
    table["strength"] = [strength(r) for r in coef]
    table.insert(0, "protocol", curves.protocol)
    table.insert(0, "parameter", curves.parameter)
    table.insert(0, "method", curves.method)
    return table


def check_options(alpha: float, correction: str, test: str) -> None:
    """Raise ``ValueError`` for a significance level outside (0, 1) or an unknown option."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r}: expected a significance level in (0, 1)")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction={correction!r}: expected one of {CORRECTIONS}")
    if test not in TESTS:
        raise ValueError(f"test={test!r}: expected one of {TESTS}")


def correlate_sweep(
    frame: pd.DataFrame,
    parameter: str,
    *,
    protocol: str = "linear",
    alpha: float = 0.05,
    correction: str = "none",
    test: str = "pearson",
) -> pd.DataFrame:
    """:func:`correlate` for every method of one sweep, concatenated (method-major order)."""
    curves = class_curves(frame, parameter, protocol=protocol)
    return pd.concat(
        [correlate(c, alpha=alpha, correction=correction, test=test) for c in curves.values()],
        ignore_index=True,
    )


def trend_counts(results: pd.DataFrame) -> pd.DataFrame:
    """Per method: classes ascending, descending, with no trend, and in all."""
    require_columns(results, ("method", "class", "trend"), "trend counts")
    counts = pd.crosstab(results["method"], results["trend"]).reindex(
        columns=list(TRENDS), fill_value=0
    )
    counts["classes"] = counts.sum(axis=1)
    counts.columns.name = None
    return counts.reset_index()


def most_biased(
    results: pd.DataFrame, n: int = 6, *, significant_only: bool = True
) -> dict[str, list[str]]:
    """Per method, up to ``n`` classes with the largest |coefficient|, strongest first: the
    significant ones, or any class with a defined coefficient (``significant_only=False``)."""
    require_columns(results, ("method", "class", "significant", "coefficient"), "most biased")
    out = {}
    for method, rows in results.groupby("method", sort=True):
        keep = rows["significant"].astype(bool) if significant_only else rows["coefficient"].notna()
        rows = rows[keep]
        order = rows["coefficient"].abs().sort_values(ascending=False, kind="stable").index
        out[str(method)] = rows.loc[order, "class"].head(n).tolist()
    return out


def shared_biases(
    results: pd.DataFrame,
    *,
    min_methods: Sequence[int] = (3, 2),
    same_sign: bool = False,
) -> pd.DataFrame:
    """Classes biased by one parameter in several methods (appendix Table 3).

    Parameters
    ----------
    results
        :func:`correlate_sweep` output of one parameter (columns ``method, class,
        significant, sign``), two methods or more.
    min_methods
        The "in at least k methods" rows besides "in all"; a k above the number of methods
        gives a missing count (the question does not apply).
    same_sign
        Count a class in k methods only when it is biased with the same sign in all k (the
        paper does not say; by default any significant correlation counts).

    Returns
    -------
    pandas.DataFrame
        Rows ``all`` then each k: ``rule`` (text), ``min_methods``, ``n_classes`` (nullable
        Int64) and ``classes`` (the class names, comma-separated).
    """
    require_columns(results, ("method", "class", "significant", "sign"), "shared biases")
    methods = sorted(results["method"].unique())
    _check_same_classes(results, methods)
    biased = results[results["significant"].astype(bool)]
    if same_sign:
        per_sign = biased.groupby(["class", "sign"])["method"].nunique()
        n_biased = per_sign.groupby(level="class").max()
    else:
        n_biased = biased.groupby("class")["method"].nunique()
    rows = []
    for k, rule in [(len(methods), f"in all {len(methods)} methods")] + [
        (k, f"in at least {k} methods") for k in min_methods
    ]:
        if k < 1:
            raise ValueError(f"min_methods holds {k}; expected counts of at least 1")
        if k > len(methods):
            rows.append((rule, k, pd.NA, ""))
            continue
        names = sorted(n_biased.index[n_biased >= k])
        rows.append((rule, k, len(names), ", ".join(map(str, names))))
    table = pd.DataFrame(rows, columns=["rule", "min_methods", "n_classes", "classes"])
    table["n_classes"] = table["n_classes"].astype("Int64")
    return table


def _check_same_classes(results: pd.DataFrame, methods: Sequence[str]) -> None:
    if len(methods) < 2:
        raise ValueError(f"shared biases need at least 2 methods; the results hold {methods}")
    sets = {m: frozenset(results.loc[results["method"] == m, "class"]) for m in methods}
    first = methods[0]
    for m in methods[1:]:
        if sets[m] != sets[first]:
            raise ValueError(f"methods {first!r} and {m!r} were tested on different classes")


def behaviour_match(linear: pd.DataFrame, finetune: pd.DataFrame) -> pd.DataFrame:
    """Linear evaluation against fine-tuning, per method (appendix Table 1).

    Parameters
    ----------
    linear, finetune
        :func:`correlate_sweep` outputs of one sweep under each protocol.

    Returns
    -------
    pandas.DataFrame
        One row per method present in both: ``negative_linear``, ``negative_finetune``
        (classes with a significant negative correlation), ``positive_linear``,
        ``positive_finetune``, ``classes`` and ``match``: the fraction of classes whose trend
        (ascending, descending or none) is the same under both protocols.

    Raises
    ------
    ValueError
        No method in common, or a method's classes differ between the protocols.
    """
    for name, table in (("linear", linear), ("finetune", finetune)):
        require_columns(table, ("method", "class", "trend", "sign"), f"behaviour match ({name})")
    methods = sorted(set(linear["method"]) & set(finetune["method"]))
    if not methods:
        raise ValueError(
            f"no method in common: linear has {sorted(set(linear['method']))}, finetune has "
            f"{sorted(set(finetune['method']))}"
        )
    rows = []
    for method in methods:
        a = linear[linear["method"] == method].set_index("class")
        b = finetune[finetune["method"] == method].set_index("class")
        if set(a.index) != set(b.index):
            raise ValueError(f"method {method!r}: linear and finetune have different classes")
        b = b.loc[a.index]
        rows.append(
            {
                "method": method,
                "negative_linear": int((a["sign"] < 0).sum()),
                "negative_finetune": int((b["sign"] < 0).sum()),
                "positive_linear": int((a["sign"] > 0).sum()),
                "positive_finetune": int((b["sign"] > 0).sum()),
                "classes": len(a),
                "match": float((a["trend"].to_numpy() == b["trend"].to_numpy()).mean()),
            }
        )
    return pd.DataFrame(rows)


def metric_by_value(frame: pd.DataFrame, parameter: str, metric: str = "top1") -> pd.DataFrame:
    """Seed statistics of a scalar metric at each parameter value, per method.

    Returns one row per (method, value): ``method, value, mean, std`` (sample std over seeds,
    NaN for one seed), ``n`` (finite runs) and ``seeds`` (the seeds' list).
    """
    require_columns(frame, _RUN_COLUMNS, "metric by parameter value")
    m_col = metric_column(frame, metric)
    data = pd.DataFrame(
        {
            "method": frame["method"].astype(str),
            "value": numeric_values(frame, parameter),
            "seed": frame["seed"],
            "y": pd.to_numeric(frame[m_col], errors="coerce").astype(np.float64),
        }
    ).dropna(subset=["y"])
    if data.empty:
        raise ValueError(f"no run has a finite {m_col!r}")
    grouped = data.groupby(["method", "value"], sort=True)
    out = grouped["y"].agg(mean="mean", std=lambda s: s.std(ddof=1), n="count")
    out["seeds"] = grouped["seed"].agg(lambda s: sorted(s.tolist()))
    return out.reset_index()


def metric_summary(frame: pd.DataFrame, parameter: str, metric: str = "top1") -> pd.DataFrame:
    """Mean and spread of a metric over a sweep, per method (appendix Table 2).

    The paper's Table 2 gives, per method, a mean and a standard deviation of top-1 over 20
    hue probabilities x 5 seeds without saying over what the deviation runs; as its text reads
    "results show consistent accuracy across methods" of one transformation sweep, ``std`` here
    is the spread *across parameter values* of the seed means.

    Returns
    -------
    pandas.DataFrame
        One row per method: ``mean`` (mean over parameter values of the seed means, so that a
        missing seed does not reweight the values), ``std`` (sample std, ddof=1, of the seed
        means across values), ``std_runs`` (sample std over every run), ``seed_std`` (mean
        over values of the std across seeds), ``n_values``, ``n_runs``.
    """
    by_value = metric_by_value(frame, parameter, metric)
    grouped = by_value.groupby("method", sort=True)
    out = grouped["mean"].agg(mean="mean", std=lambda s: s.std(ddof=1), n_values="count")
    out["seed_std"] = grouped["std"].mean()
    out["n_runs"] = grouped["n"].sum()
    y = pd.to_numeric(frame[metric_column(frame, metric)], errors="coerce")
    out["std_runs"] = y.groupby(frame["method"].astype(str)).std(ddof=1)
    return out[["mean", "std", "std_runs", "seed_std", "n_values", "n_runs"]].reset_index()
