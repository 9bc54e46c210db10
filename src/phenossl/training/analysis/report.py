"""Regenerate the paper's tables and figures from a result store's frame alone.

:func:`write_report` reads only ``ResultStore(path).frame()`` (and, for cluster exemplars, the
montage files its runs list as artifacts) and writes into one folder:

- ``table1__<sweep>.md/.csv`` linear evaluation against fine-tuning (appendix Table 1);
- ``table2__<sweep>.md/.csv`` top-1 mean and std over a sweep per method (Table 2);
- ``table3.md/.csv`` (+ ``table3_classes.csv``) classes biased in several methods (Table 3);
- ``table4__<experiment>.md/.csv`` top-1 by method and backbone (Table 4);
- ``ami__<experiment>.md/.csv`` clustering AMI with the randomised-label control;
- ``bias__<sweep>__<protocol>.csv/.md`` every class's correlations, trend counts per method;
- ``fig_accuracy__<sweep>.png``, ``fig_classes__<sweep>.png``,
  ``fig_ami_backbone__<experiment>.png``, ``fig_exemplars__<experiment>.png``;
- ``index.md``: what was made and what was skipped, and why.

A *sweep* (:func:`~phenossl.training.analysis._results_frame.find_sweeps`) is one experiment's runs along one
numeric parameter with every other swept parameter fixed (all methods and seeds together). Each output is made only when the store holds
what it needs; otherwise ``index.md`` says what was missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phenossl._progress import Progress, ProgressCallback, ProgressGenerator, drives
from phenossl.training.analysis import bias, figures, tables
from phenossl.training.analysis._results_frame import (
    NO_METHOD,
    PARAM,
    Sweep,
    distinct,
    experiments,
    find_sweeps,
    hashable,
    infer_dataset,
    is_missing,
    numeric_values,
    protocols,
    short,
    slugify,
    swept_parameters,
    value_text,
)

#: the report's outputs, in ``index.md`` order, with what each shows
ARTEFACTS = {
    "Table 1": "linear evaluation vs fine-tuning: significant negative correlations, trend match",
    "Table 2": "top-1 mean and standard deviation over a sweep, per method",
    "Table 3": "classes biased in all / at least 3 / at least 2 methods, per swept parameter",
    "Table 4": "top-1 by method and backbone",
    "AMI tables": "clustering AMI per grid point with the randomised-label control",
    "Bias tables": "every class's Pearson/Spearman correlation with the swept parameter",
    "Figure: accuracy vs parameter": "top-1 against the swept parameter, seed spread, per method",
    "Figure: per-class curves": "accuracy of each method's most biased classes",
    "Figure: AMI vs backbone size": "AMI per backbone with the randomised-label control",
    "Figure: cluster exemplars": "images nearest each cluster centroid (run montages)",
}


class Skip(Exception):
    """An output the store cannot support; the message says why."""


@dataclass
class ReportEntry:
    """One output of the report: made (``files``) or skipped (``reason``)."""

    artefact: str
    subject: str
    files: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def made(self) -> bool:
        return bool(self.files)


@dataclass
class ReportIndex:
    """What :func:`write_report` made and skipped; ``index.md`` is its Markdown form."""

    out_dir: Path
    entries: list[ReportEntry]

    @property
    def made(self) -> list[ReportEntry]:
        return [e for e in self.entries if e.made]

    @property
    def skipped(self) -> list[ReportEntry]:
        return [e for e in self.entries if not e.made]

    def files(self, artefact: str) -> list[str]:
        """Files made for one artefact (a key of :data:`ARTEFACTS`)."""
        return [f for e in self.entries if e.artefact == artefact for f in e.files]


def markdown_table(table: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub Markdown table; floats with ``digits`` decimals, missing values as ``—``."""

    def cell(value: Any) -> str:
        if isinstance(value, list | tuple | np.ndarray):
            return value_text(value)
        if is_missing(value):
            return "—"
        if isinstance(value, float | np.floating):
            return f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)


class _Writer:
    """Writes the outputs of one report and remembers the bias tables they share."""

    def __init__(
        self,
        out_dir: Path,
        *,
        store_root: Path | None,
        alpha: float,
        correction: str,
        test: str,
        top_classes: int,
    ) -> None:
        self.out = out_dir
        self.store_root = store_root
        self.options: dict[str, Any] = {"alpha": alpha, "correction": correction, "test": test}
        self.top_classes = top_classes
        self._bias: dict[tuple[str, str], pd.DataFrame] = {}

    # ---------------------------------------------------------------- files
    def markdown(self, stem: str, title: str, table: pd.DataFrame, notes: list[str]) -> str:
        text = f"# {title}\n\n" + "".join(f"{n}\n\n" for n in notes) + markdown_table(table)
        (self.out / f"{stem}.md").write_text(text + "\n")
        return f"{stem}.md"

    def table(
        self,
        stem: str,
        title: str,
        table: pd.DataFrame,
        notes: list[str],
        shown: pd.DataFrame | None = None,
    ) -> list[str]:
        """``stem.csv`` of ``table`` and ``stem.md`` of ``shown`` (default ``table``)."""
        table.to_csv(self.out / f"{stem}.csv", index=False)
        md = self.markdown(stem, title, table if shown is None else shown, notes)
        return [md, f"{stem}.csv"]

    def figure(self, stem: str, figure) -> list[str]:
        figures.save_png(self.out / f"{stem}.png", figure)
        return [f"{stem}.png"]

    # ---------------------------------------------------------------- bias
    def correlations(self, sweep: Sweep, protocol: str) -> pd.DataFrame:
        key = (sweep.slug, protocol)
        if key not in self._bias:
            if protocol not in protocols(sweep.frame):
                raise Skip(f"no per-class accuracy for protocol {protocol!r}")
            n = len(distinct(numeric_values(sweep.frame, sweep.parameter)))
            if n < bias.MIN_VALUES:
                raise Skip(
                    f"{short(sweep.parameter)} takes {n} values; a correlation needs "
                    f"{bias.MIN_VALUES}"
                )
            self._bias[key] = bias.correlate_sweep(
                sweep.frame, sweep.parameter, protocol=protocol, **self.options
            )
        return self._bias[key]

    def _significance_note(self) -> str:
        o = self.options
        corrected = (
            "Benjamini-Hochberg adjusted p-values (per method, over its classes)"
            if o["correction"] == "bh"
            else "raw p-values, as the paper"
        )
        return (
            f"Significance: {o['test'].capitalize()} correlation over every run (parameter "
            f"values x seeds), p < {o['alpha']:g}, {corrected}."
        )

    # ---------------------------------------------------------------- outputs
    def bias_tables(self, sweep: Sweep, protocol: str) -> list[str]:
        results = self.correlations(sweep, protocol)
        stem = f"bias__{sweep.slug}__{protocol}"
        results.to_csv(self.out / f"{stem}.csv", index=False)
        counts = bias.trend_counts(results)
        strongest = bias.most_biased(results, self.top_classes)
        counts["most biased"] = [", ".join(strongest.get(m, [])) for m in counts["method"]]
        notes = [
            self._significance_note(),
            f"Every class's coefficients, p-values and slope: [{stem}.csv]({stem}.csv).",
        ]
        title = f"Per-class bias, {protocol}: {sweep.label}"
        return [self.markdown(stem, title, counts, notes), f"{stem}.csv"]

    def table2(self, sweep: Sweep) -> list[str]:
        if "metric.top1" not in sweep.frame.columns:
            raise Skip("no top-1 metric")
        table = tables.table2(sweep.frame, sweep.parameter, dataset=sweep.dataset)
        notes = [
            "Linear top-1 (%). mean: over parameter values of the seed means; std: sample std "
            "across parameter values of the seed means (the paper's reading); std_runs: over "
            "every run; seed_std: mean std across seeds.",
        ]
        if "paper_mean" in table.columns:
            notes.append(
                "paper: appendix Table 2 (CIFAR-10, ResNet18, 1000 epochs, 20 hue probabilities "
                "at intensity 0.5, seeds 5-9)."
            )
        if "solo_learn" in table.columns:
            notes.append(f"solo_learn: reference top-1 on {sweep.dataset} (1000 epochs).")
        return self.table(f"table2__{sweep.slug}", f"Table 2: {sweep.label}", table, notes)

    def accuracy_figure(self, sweep: Sweep) -> list[str]:
        if not any("metric." + m in sweep.frame.columns for m in figures.ACCURACY_METRICS):
            raise Skip("no accuracy metric")
        figure = figures.accuracy_figure(sweep.frame, sweep.parameter, title=sweep.label)
        return self.figure(f"fig_accuracy__{sweep.slug}", figure)

    def class_figure(self, sweep: Sweep) -> list[str]:
        available = protocols(sweep.frame)
        if not available:
            raise Skip("no per-class accuracy")
        protocol = "linear" if "linear" in available else available[0]
        results = self.correlations(sweep, protocol)
        curves = bias.class_curves(sweep.frame, sweep.parameter, protocol=protocol)
        figure = figures.class_curves_figure(
            curves, results, n=self.top_classes, title=f"{sweep.label} ({protocol})"
        )
        return self.figure(f"fig_classes__{sweep.slug}", figure)

    def table1(self, sweep: Sweep) -> list[str]:
        missing = {"linear", "finetune"} - set(protocols(sweep.frame))
        if missing:
            raise Skip(f"no per-class accuracy for {sorted(missing)}")
        linear = self.correlations(sweep, "linear")
        finetune = self.correlations(sweep, "finetune")
        table = tables.table1(linear, finetune, parameter=sweep.parameter, dataset=sweep.dataset)
        notes = [
            "negative_*: classes with a significant negative correlation; match: % of classes "
            "with the same trend (ascending, descending or none) under both protocols.",
            self._significance_note(),
        ]
        if "paper_match" in table.columns:
            notes.append("paper_*: appendix Table 1 (hue intensity, ResNet18, CIFAR-100).")
        return self.table(f"table1__{sweep.slug}", f"Table 1: {sweep.label}", table, notes)

    def table3(self, sweeps: list[Sweep]) -> list[str]:
        columns = []
        for sweep in sweeps:
            if sweep.frame["method"].nunique() < 2 or "linear" not in protocols(sweep.frame):
                continue
            try:
                results = self.correlations(sweep, "linear")
            except Skip:
                continue
            columns.append(
                tables.Table3Column(sweep.label, sweep.parameter, results, sweep.dataset)
            )
        if not columns:
            raise Skip(
                "no sweep with linear per-class accuracies of at least 2 methods over "
                f"{bias.MIN_VALUES}+ parameter values"
            )
        counts, classes = tables.table3(columns)
        classes.to_csv(self.out / "table3_classes.csv", index=False)
        notes = [
            "Classes biased (significant correlation of either sign, linear evaluation) in "
            "several methods; one column per sweep; last row: methods in the column.",
            self._significance_note(),
            "Class names per cell: [table3_classes.csv](table3_classes.csv).",
        ]
        if any(c.endswith("(paper)") for c in counts.columns):
            notes.append("(paper): appendix Table 3 (CIFAR-100, ResNet18, 5 methods).")
        files = self.table("table3", "Table 3: shared inter-class biases", counts, notes)
        return [*files, "table3_classes.csv"]

    def table4(self, name: str, runs: pd.DataFrame) -> list[str]:
        if len(tables.distinct_backbones(runs)) < 2:
            raise Skip("fewer than 2 backbones")
        if "metric.top1" not in runs.columns:
            raise Skip("no top-1 metric")
        dataset = infer_dataset(runs)
        table = tables.table4(runs, dataset=dataset)
        notes = ["Linear top-1 (%), mean ± std over seeds (long form in the CSV)."]
        if "paper" in table.columns:
            notes.append("(paper): appendix Table 4 (MNIST, 250 epochs; VGG11 for vgg11_bn).")
        wide = tables.table4_wide(table)
        return self.table(f"table4__{slugify(name)}", f"Table 4: {name}", table, notes, wide)

    def ami_table(self, name: str, runs: pd.DataFrame) -> list[str]:
        if "metric.ami" not in runs.columns:
            raise Skip("no AMI metric")
        table = tables.ami_table(runs)
        notes = [
            "AMI (%) of K-means against the labels, mean and std over seeds; control: AMI "
            "against randomly permuted labels (mean over seeds of the permutations' mean/std)."
        ]
        return self.table(f"ami__{slugify(name)}", f"AMI: {name}", table, notes)

    def ami_figure(self, name: str, runs: pd.DataFrame) -> list[str]:
        if "metric.ami" not in runs.columns:
            raise Skip("no AMI metric")
        if len(tables.distinct_backbones(runs)) < 2:
            raise Skip("fewer than 2 backbones")
        figure = figures.ami_backbone_figure(runs, title=name)
        return self.figure(f"fig_ami_backbone__{slugify(name)}", figure)

    def exemplars(self, name: str, runs: pd.DataFrame) -> list[str]:
        found = montage_paths(runs)
        if not found:
            raise Skip("no run lists a montage artifact")
        images = []
        for label, listed in found:
            path = Path(listed)
            if not path.is_absolute():
                if self.store_root is None:
                    raise Skip(f"montage path {listed!r} is relative and no store folder was given")
                path = self.store_root / path
            if not path.is_file():
                raise Skip(f"montage {path} is missing")
            try:
                images.append((label, _read_image(path)))
            except OSError as err:  # a damaged PNG costs this figure, not the whole report
                raise Skip(f"montage {path} is unreadable ({err})") from None
        figure = figures.exemplar_figure(images, title=f"{name}: cluster exemplars")
        return self.figure(f"fig_exemplars__{slugify(name)}", figure)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _artifacts(row: pd.Series) -> dict[str, Any]:
    found: dict[str, Any] = {}
    value = row.get("artifacts")
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict):
        found.update(value)
    for column, item in row.items():
        if isinstance(column, str) and column.startswith("artifact."):
            found[column.removeprefix("artifact.")] = item
    return found


def montage_paths(runs: pd.DataFrame, limit: int = 8) -> list[tuple[str, str]]:
    """``(label, path)`` of the runs' montage PNGs, one per grid point.

    Artifacts come from ``artifact.<name>`` columns or an ``artifacts`` column (a dict or
    JSON, name -> path); a relative path is relative to the store folder; a montage is a ``.png`` whose name mentions ``montage`` or
    ``exemplar``. The lowest seed of each method and grid point is kept, at most ``limit``.
    """
    swept = [PARAM + p for p in swept_parameters(runs)]
    out, seen = [], set()
    for _, row in runs.sort_values("seed", kind="stable").iterrows():
        key = (row["method"], *(hashable(row[c]) for c in swept))
        if key in seen:
            continue
        for name, path in _artifacts(row).items():
            if (
                isinstance(path, str)
                and path.lower().endswith(".png")
                and ("montage" in name.lower() or "exemplar" in name.lower())
            ):
                label = ", ".join(
                    [str(row["method"]), *(f"{short(c)}={value_text(row[c])}" for c in swept)]
                )
                out.append((f"{label}, seed {row['seed']}", path))
                seen.add(key)
                break
        if len(out) >= limit:
            break
    return out


def _has_accuracy(frame: pd.DataFrame) -> bool:
    """Whether runs hold an accuracy (clustering-only sweeps are left to the AMI outputs)."""
    metrics = any("metric." + m in frame.columns for m in figures.ACCURACY_METRICS)
    return metrics or bool(protocols(frame))


def _plan(
    writer: _Writer, frame: pd.DataFrame
) -> Iterator[tuple[str, str, Callable[[], list[str]]]]:
    sweeps = [s for s in find_sweeps(frame) if _has_accuracy(s.frame)]
    for sweep in sweeps:
        yield "Table 2", sweep.label, partial(writer.table2, sweep)
        yield (
            "Figure: accuracy vs parameter",
            sweep.label,
            partial(writer.accuracy_figure, sweep),
        )
        for protocol in protocols(sweep.frame):
            yield (
                "Bias tables",
                f"{sweep.label} [{protocol}]",
                partial(writer.bias_tables, sweep, protocol),
            )
        yield "Figure: per-class curves", sweep.label, partial(writer.class_figure, sweep)
        yield "Table 1", sweep.label, partial(writer.table1, sweep)
    yield "Table 3", "all sweeps", lambda: writer.table3(sweeps)
    for name, runs in experiments(frame).items():
        yield "Table 4", name, partial(writer.table4, name, runs)
        yield "AMI tables", name, partial(writer.ami_table, name, runs)
        yield "Figure: AMI vs backbone size", name, partial(writer.ami_figure, name, runs)
        yield "Figure: cluster exemplars", name, partial(writer.exemplars, name, runs)


def iter_write_report(
    frame: pd.DataFrame,
    out_dir: str | Path,
    *,
    store_root: str | Path | None = None,
    alpha: float = 0.05,
    correction: str = "none",
    test: str = "pearson",
    top_classes: int = 5,
) -> ProgressGenerator[ReportIndex]:
    """Write every table and figure the frame supports into ``out_dir``; yield progress.

    Parameters
    ----------
    frame
        ``ResultStore(path).frame()`` (finished runs).
    out_dir
        Output folder (created; existing files of the same names are replaced).
    store_root
        The store folder, to resolve artifact paths (cluster montages); without it the
        exemplar figures are skipped.
    alpha, correction, test
        Significance of the per-class correlations (see :mod:`phenossl.training.analysis.bias`).
    top_classes
        Classes per method in the per-class curves and the "most biased" lists.

    Returns
    -------
    ReportIndex
        What was made and skipped (also written as ``index.md``).
    """
    bias.check_options(alpha, correction, test)
    if top_classes < 1:
        raise ValueError(f"top_classes={top_classes!r}: expected at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = _Writer(
        out,
        store_root=None if store_root is None else Path(store_root),
        alpha=alpha,
        correction=correction,
        test=test,
        top_classes=top_classes,
    )
    tasks = list(_plan(writer, frame))
    entries = []
    for done, (artefact, subject, task) in enumerate(tasks):
        yield Progress(done, len(tasks), f"{artefact}: {subject}")
        try:
            entries.append(ReportEntry(artefact, subject, files=task()))
        except (Skip, ValueError) as reason:
            entries.append(ReportEntry(artefact, subject, reason=str(reason)))
    index = ReportIndex(out, _summarise(entries))
    (out / "index.md").write_text(index_markdown(index, frame, writer.options))
    yield Progress(len(tasks), len(tasks), "index.md")
    return index


@drives(iter_write_report)
def write_report(*, progress: ProgressCallback | None = None) -> ReportIndex:
    """:func:`iter_write_report` driven to the end (``progress`` gets its events)."""


#: why an artefact has no entry at all: none of its subjects exists in the store
_NO_SUBJECT = "no experiment with accuracies sweeps a numeric parameter over two values or more"


def _summarise(entries: list[ReportEntry]) -> list[ReportEntry]:
    """The entries in :data:`ARTEFACTS` order, plus one skipped entry for each artefact that
    had nothing to be made from, so that ``index.md`` names every artefact."""
    out = list(entries)
    for artefact in ARTEFACTS:
        if not any(e.artefact == artefact for e in entries):
            out.append(ReportEntry(artefact, "—", reason=_NO_SUBJECT))
    order = list(ARTEFACTS)
    return sorted(out, key=lambda e: order.index(e.artefact))


def index_markdown(index: ReportIndex, frame: pd.DataFrame, options: dict[str, Any]) -> str:
    """``index.md``: store summary, outputs made (with links), outputs skipped (with reasons)."""
    methods = sorted({NO_METHOD if is_missing(m) else str(m) for m in frame["method"]})
    names = sorted(map(str, frame["experiment"].unique())) if "experiment" in frame else []
    lines = [
        "# Report",
        "",
        f"{len(frame)} finished run(s); experiments: {', '.join(names) or '—'}; methods: "
        f"{', '.join(methods) or '—'}.",
        "",
        f"Per-class bias: {options['test']} correlation, p < {options['alpha']:g}, "
        f"correction: {options['correction']}. Accuracies and AMI in %. Paper numbers sit "
        "beside ours where the appendix gives them (see each table's notes).",
        "",
        "## Made",
        "",
    ]
    for entry in index.made:
        links = ", ".join(f"[{f}]({f})" for f in entry.files)
        lines.append(f"- **{entry.artefact}** — {entry.subject}: {links}")
    if not index.made:
        lines.append("- nothing")
    lines += ["", "## Skipped", ""]
    grouped: dict[tuple[str, str], list[str]] = {}
    for entry in index.skipped:
        grouped.setdefault((entry.artefact, entry.reason), []).append(entry.subject)
    for (artefact, reason), subjects in grouped.items():
        lines.append(f"- **{artefact}** — {reason}: {'; '.join(subjects)}")
    if not index.skipped:
        lines.append("- nothing")
    lines += ["", "## Artefacts", ""]
    lines += [f"- **{name}**: {text}" for name, text in ARTEFACTS.items()]
    return "\n".join(lines) + "\n"
