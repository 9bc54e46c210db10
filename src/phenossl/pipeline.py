"""Fields -> segment -> crops -> embed -> cluster, streaming.

The pipeline never holds a whole plate's crops: fields are read, segmented and cropped (optionally
in worker processes, a bounded number in flight), their crops are embedded in batches as they
arrive and then dropped; only the per-cell table and the embeddings are kept. Crops are written to
disk (a CropSet) only when asked, e.g. for a training subset or the centroid gallery.

A failing field (corrupt TIFF, mismatched channels, ...) is recorded in the result and the run
goes on; fields whose files are missing are listed, not read.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import shutil
import warnings
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phenossl._progress import Progress, ProgressCallback, ProgressGenerator, drives

#: the paper's crop side (appendix B.4), for models that do not say which crop they expect
PAPER_CROP_SIZE = 196

# columns copied from the field table onto every cell of that field
FIELD_COLUMNS = (
    "field_id",
    "plate",
    "well",
    "site",
    "replicate",
    "compound",
    "concentration",
    "moa",
    "treatment",
)


@dataclass(frozen=True)
class FieldFailure:
    """A field that could not be processed, and why."""

    field_id: str
    error: str


@dataclass
class FieldCrops:
    """What one field contributes: its crops and their per-cell rows."""

    field_id: str
    images: np.ndarray  # uint8 (n, 3, S, S)
    table: pd.DataFrame
    n_dropped: int
    metadata: dict[str, Any] = field(default_factory=dict)  # the field's FIELD_COLUMNS values
    labels: np.ndarray | None = None  # the field's cell labels, where asked for (keep_labels)


@dataclass
class PipelineResult:
    """Outcome of :func:`run_pipeline`.

    ``cells`` has one row per embedded cell (field metadata, label, centroid and, after clustering,
    ``cluster``); ``embeddings`` is aligned with it row for row.
    """

    cells: pd.DataFrame
    embeddings: np.ndarray
    clustering: Any | None = None  # phenossl.clustering.ClusterResult
    failures: list[FieldFailure] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    empty_fields: list[str] = field(default_factory=list)
    n_fields: int = 0
    n_processed: int = 0
    n_dropped_border: int = 0
    cropset: Path | None = None
    #: field id -> its cell label image (int32, the table's ``label`` values), for the fields
    #: named in ``keep_labels``
    labels: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts: fields processed, failed, missing, cells kept and dropped."""
        return {
            "fields_requested": self.n_fields,
            "fields_processed": self.n_processed,
            "fields_failed": len(self.failures),
            "fields_missing": len(self.missing),
            "fields_without_cells": len(self.empty_fields),
            "cells": len(self.cells),
            "cells_dropped_at_border": self.n_dropped_border,
            "failures": [asdict(f) for f in self.failures],
            "missing": list(self.missing),
        }

    def describe(self) -> str:
        """The run in one sentence: cells, fields, and what failed or was missing.

        Examples
        --------
        >>> import pandas as pd
        >>> PipelineResult(pd.DataFrame({"cell": range(5)}), None, n_fields=2, n_processed=1,
        ...                missing=["plate1_A01_s1"]).describe()
        '5 cells from 1 field(s); 1 with missing files'
        """
        problems = []
        if self.failures:
            failed = ", ".join(f.field_id for f in self.failures[:3])
            problems.append(f"{len(self.failures)} failed ({failed})")
        if self.missing:
            problems.append(f"{len(self.missing)} with missing files")
        text = f"{len(self.cells):,} cells from {self.n_processed:,} field(s)"
        return text + (f"; {'; '.join(problems)}" if problems else "")

    def why_no_cells(self) -> str:
        """Why a run found no cell, and where to look: for a run whose ``cells`` is empty."""
        text = f"no cells were found in the {self.n_fields} field(s)"
        if self.failures:
            first = self.failures[0]
            text += f"; {len(self.failures)} failed (first: {first.field_id}: {first.error})"
        if self.missing:
            text += f"; {len(self.missing)} have missing files"
        if self.n_processed:
            text += ". Check the segmentation parameters on one of them"
        return text + "."


def process_field(
    row: Mapping[str, Any],
    *,
    segment_params: Mapping[str, Any] | None = None,
    crop_size: int = 196,
    border: str = "drop",
    normalize_percentiles: tuple[float, float] = (1.0, 99.8),
    keep_labels: bool = False,
) -> FieldCrops:
    """Read, normalise, segment and crop one field (a field-table row).

    Runs in worker processes, so it only imports what it needs (no torch). ``keep_labels``
    also returns the cell label image.
    """
    from phenossl.cells.crops import crop_cells
    from phenossl.cells.segment import segment
    from phenossl.data.fields import read_field

    image = read_field(row, percentiles=normalize_percentiles)
    seg = segment(image, **dict(segment_params or {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pipeline reports empty fields itself
        crops = crop_cells(image, seg, size=crop_size, border=border)
    meta = {col: row[col] for col in FIELD_COLUMNS if col in row}
    table = crops.table.assign(**meta)
    front = list(meta)
    table = table[front + [c for c in table.columns if c not in front]]
    labels = seg.cells if keep_labels else None
    field_id = str(row.get("field_id", ""))
    return FieldCrops(field_id, crops.images, table, int(crops.n_dropped), meta, labels)


def _bounded_map(
    fn: Callable[[Any], Any], items: Iterable[Any], workers: int
) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Yield ``(item, result, error)`` in input order, with at most ``2 * workers`` in flight.

    ``workers <= 1`` runs inline. Keeping few futures in flight bounds memory: results (a field's
    crops) are consumed as they arrive instead of piling up for a whole plate.
    """
    if workers <= 1:
        for item in items:
            try:
                yield item, fn(item), None
            except Exception as err:
                yield item, None, err
        return
    ctx = multiprocessing.get_context("spawn")  # safe with torch/Qt loaded in the parent
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending: deque[tuple[Any, cf.Future]] = deque()
        iterator = iter(items)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < 2 * workers:
                try:
                    item = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                pending.append((item, pool.submit(fn, item)))
            if not pending:
                break
            item, future = pending.popleft()
            try:
                yield item, future.result(), None
            except Exception as err:
                yield item, None, err


class _FieldJob:
    """Picklable callable for worker processes."""

    def __init__(self, keep_labels: Collection[str] = (), **kwargs: Any) -> None:
        self.keep_labels = frozenset(map(str, keep_labels))
        self.kwargs = kwargs

    def __call__(self, row: Mapping[str, Any]) -> FieldCrops:
        keep = str(row.get("field_id", "")) in self.keep_labels
        return process_field(row, keep_labels=keep, **self.kwargs)


def iter_field_crops(
    fields: pd.DataFrame,
    *,
    segment_params: Mapping[str, Any] | None = None,
    crop_size: int = 196,
    border: str = "drop",
    workers: int = 0,
    failures: list[FieldFailure] | None = None,
    missing: list[str] | None = None,
    keep_labels: Collection[str] = (),
) -> Iterator[FieldCrops]:
    """Yield :class:`FieldCrops` for every readable field of a field table, in table order.

    Fields whose ``exists`` is False are appended to ``missing``; fields that raise are appended to
    ``failures``; neither stops the iteration. The fields named in ``keep_labels`` (field ids)
    carry their cell label image.
    """
    if "exists" in fields.columns:
        absent = fields.loc[~fields["exists"].astype(bool), "field_id"].astype(str).tolist()
        if missing is not None:
            missing.extend(absent)
        fields = fields[fields["exists"].astype(bool)]
    job = _FieldJob(keep_labels, segment_params=segment_params, crop_size=crop_size, border=border)
    rows = (row.to_dict() for _, row in fields.iterrows())
    for row, result, error in _bounded_map(job, rows, workers):
        if error is not None:
            if failures is not None:
                failures.append(FieldFailure(str(row.get("field_id", "?")), _describe(error)))
            continue
        yield result


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def iter_make_cropset(
    fields: pd.DataFrame,
    out: str | Path,
    *,
    crop_size: int = 196,
    border: str = "drop",
    segment_params: Mapping[str, Any] | None = None,
    workers: int = 0,
    paper_subset: str | None = None,
    n_top: int = 4,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    overwrite: bool = False,
) -> ProgressGenerator[dict[str, Any]]:
    """Segment fields and write their crops as a CropSet; yields progress per field.

    Parameters
    ----------
    fields
        Field table rows to process (missing files are listed in the summary, not read).
    out
        CropSet folder to create.
    paper_subset
        A compound name: build the paper's subset instead of keeping every cell. The compound's
        ``n_top`` highest concentrations (among ``fields``) are all processed; DMSO fields are
        processed in a seeded random order only until they hold as many cells, then
        :func:`phenossl.data.bbbc021.paper_subset` samples that many DMSO cells and adds a
        ``split`` column (``fractions`` train/val/test). On a whole plate this segments a few dozen
        DMSO fields instead of 1,320.

    Returns
    -------
    dict
        The run summary (:meth:`PipelineResult.summary` keys, with ``cropset``).
    """
    from phenossl.data import bbbc021
    from phenossl.data.cropset import CropSetWriter

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers={workers!r}; expected an integer >= 0 (0: in-process)")
    out = Path(out)
    _check_cropset_target(out, overwrite)
    staging = out.with_name(f".{out.name}.partial")  # the new set grows here, beside the old one
    fields = _order_for_subset(fields, paper_subset, n_top, seed) if paper_subset else fields
    total = len(fields)
    failures: list[FieldFailure] = []
    missing: list[str] = []
    empty: list[str] = []
    n_dropped = n_done = n_treated = n_dmso = 0
    yield Progress(0, total, "starting")
    stream = iter_field_crops(
        fields,
        segment_params=segment_params,
        crop_size=crop_size,
        border=border,
        workers=workers,
        failures=failures,
        missing=missing,
    )
    with CropSetWriter(staging, size=crop_size, overwrite=True) as writer:
        for crops in stream:
            n_done += 1
            n_dropped += crops.n_dropped
            if len(crops.images) == 0:
                empty.append(crops.field_id)
            writer.add(crops.images, crops.table)
            is_dmso = crops.metadata.get("compound") == bbbc021.DMSO
            if is_dmso:
                n_dmso += len(crops.images)
            else:
                n_treated += len(crops.images)
            done = n_done + len(failures) + len(missing)
            yield Progress(done, total, f"{crops.field_id}: {len(crops.images)} cells")
            if paper_subset and is_dmso and n_treated and n_dmso >= n_treated:
                break  # enough DMSO cells: the remaining DMSO fields are not needed
        table = writer.table
        if paper_subset:
            table = bbbc021.paper_subset(
                table, paper_subset, n_concentrations=n_top, seed=seed, fractions=fractions
            )
        if len(table) == 0:
            shutil.rmtree(staging, ignore_errors=True)
            first = f"; first: {failures[0].field_id}: {failures[0].error}" if failures else ""
            raise ValueError(
                f"no crops: {len(failures)} of {total} field(s) failed, {len(missing)} missing, "
                f"{len(empty)} without a cell{first}; {out} was left as it was"
            )
        writer.close(table)
    _swap_into_place(staging, out)
    result = PipelineResult(
        cells=table,
        embeddings=np.zeros((0, 0), np.float32),
        failures=failures,
        missing=missing,
        empty_fields=empty,
        n_fields=total,
        n_processed=n_done,
        n_dropped_border=n_dropped,
        cropset=Path(out),
    )
    yield Progress(total, total, f"{len(table)} crops written")
    return {**result.summary(), "cropset": str(out)}


_CROPSET_FILES = {"shards", "cells.csv", "cropset.json"}


def _check_cropset_target(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that cannot take a CropSet, before any field is segmented."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a folder")
    names = {p.name for p in out.iterdir()} if out.is_dir() else set()
    if names and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True to replace a CropSet")
    if names - _CROPSET_FILES:
        raise FileExistsError(
            f"{out} holds other files than a CropSet ({sorted(names - _CROPSET_FILES)[:3]}); "
            "choose an empty or new folder"
        )
    parent = out.parent if out.parent != Path("") else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write the CropSet {out}: {parent} is not writable")


def _swap_into_place(staging: Path, out: Path) -> None:
    """Put the finished set at ``out``; an old set stays on disk until the new one is there."""
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def _order_for_subset(fields: pd.DataFrame, compound: str, n_top: int, seed: int) -> pd.DataFrame:
    """The compound's top-N fields first, then DMSO fields in a seeded random order."""
    from phenossl.data import bbbc021

    treated = bbbc021.select_fields(fields, compounds=[compound], n_top=n_top)
    dmso = fields[fields["compound"] == bbbc021.DMSO]
    if treated.empty:
        raise ValueError(f"no field of compound {compound!r} in the selection")
    if dmso.empty:
        raise ValueError("the paper subset needs DMSO fields; the selection has none")
    rng = np.random.default_rng(seed)
    dmso = dmso.iloc[rng.permutation(len(dmso))]
    return pd.concat([treated, dmso])


@dataclass
class PipelineOptions:
    """Every knob of a pipeline run; saved next to the results for reproducibility."""

    model: str = "vgg13_bn"
    weights: str | None = None
    device: str = "auto"
    batch_size: int = 64
    input_size: int | None = None
    crop_size: int | None = None  # None: the size the model was trained on, else 196
    normalize: str = "auto"  # embeddings: auto (the model's own), none or l2 (phenossl.embed)
    cpu_amp: bool = False  # bf16 embedding on a CPU with bf16 instructions (phenossl.embed)
    border: str = "drop"
    segment_params: dict[str, Any] = field(default_factory=dict)
    k: int | None = 2
    label_column: str = "treatment"
    seed: int = 0
    n_init: int = 10
    n_permutations: int = 10
    n_nearest: int = 8
    workers: int = 0


def resolve_crop_size(crop_size: int | None, model: Any) -> int:
    """``crop_size``, or the crop side ``model`` was trained on, or the paper's 196 px.

    A model trained on 68-px single-cell crops must not be fed 196-px crops holding neighbours.
    """
    from phenossl.models.pretrained import model_crop_size

    if crop_size is not None:
        return int(crop_size)
    return model_crop_size(model) or PAPER_CROP_SIZE


def iter_pipeline(
    fields: pd.DataFrame,
    options: PipelineOptions | None = None,
    *,
    cropset: str | Path | None = None,
    overwrite: bool = False,
    keep_labels: Collection[str] = (),
) -> ProgressGenerator[PipelineResult]:
    """Run fields -> segment -> crops -> embed -> cluster, yielding progress per field.

    Parameters
    ----------
    fields
        A field table (:func:`phenossl.data.bbbc021.load_image_table` or a selection of it).
    options
        Model, segmentation, clustering and parallelism settings.
    cropset
        If given, the crops are also written to a CropSet at this folder (for training or the
        centroid gallery); otherwise they are discarded once embedded.
    overwrite
        Allow replacing an existing CropSet folder.
    keep_labels
        Field ids whose cell label images the result keeps (``result.labels``), e.g. the field
        on screen, so that it need not be segmented again. Other fields' images are discarded.

    Returns
    -------
    PipelineResult
        Per-cell table, embeddings, clustering (when ``options.k`` is set and there are enough
        cells) and the list of failed / missing / empty fields.
    """
    from phenossl.data.cropset import CropSetWriter
    from phenossl.embedding import Embedder

    opts = options or PipelineOptions()
    total = len(fields)
    failures: list[FieldFailure] = []
    missing: list[str] = []
    empty: list[str] = []
    tables: list[pd.DataFrame] = []
    chunks: list[np.ndarray] = []
    n_dropped = 0
    embedder = Embedder(
        opts.model,
        weights=opts.weights,
        device=opts.device,
        batch_size=opts.batch_size,
        input_size=opts.input_size,
        seed=opts.seed,
        normalize=opts.normalize,
        cpu_amp=opts.cpu_amp,
    )
    crop_size = resolve_crop_size(opts.crop_size, opts.model)
    writer = (
        CropSetWriter(cropset, size=crop_size, overwrite=overwrite) if cropset is not None else None
    )
    yield Progress(0, total, "starting")
    stream = iter_field_crops(
        fields,
        segment_params=opts.segment_params,
        crop_size=crop_size,
        border=opts.border,
        workers=opts.workers,
        failures=failures,
        missing=missing,
        keep_labels=keep_labels,
    )
    labels: dict[str, np.ndarray] = {}
    try:
        for crops in stream:
            n_dropped += crops.n_dropped
            if crops.labels is not None:
                labels[crops.field_id] = crops.labels
            if len(crops.images) == 0:
                empty.append(crops.field_id)
                warnings.warn(f"field {crops.field_id}: no cells found", stacklevel=2)
            else:
                chunks.append(embedder(crops.images))
                tables.append(crops.table)
                if writer is not None:
                    writer.add(crops.images, crops.table)
            done = len(missing) + len(failures) + len(empty) + len(tables)
            yield Progress(done, total, f"{crops.field_id}: {len(crops.images)} cells")
    finally:
        if writer is not None:
            writer.close()

    cells = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    embeddings = (
        np.concatenate(chunks).astype(np.float32, copy=False)
        if chunks
        else np.zeros((0, embedder.feature_dim), np.float32)
    )
    result = PipelineResult(
        cells=cells,
        embeddings=embeddings,
        failures=failures,
        missing=missing,
        empty_fields=empty,
        n_fields=total,
        n_processed=len(tables) + len(empty),
        n_dropped_border=n_dropped,
        cropset=Path(cropset) if cropset is not None else None,
        labels=labels,
    )
    if opts.k is not None and len(cells) >= max(opts.k, 2):
        yield Progress(total, total, f"clustering {len(cells)} cells (K={opts.k})")
        result.clustering = cluster_cells(cells, embeddings, opts)
        result.cells = cells.assign(cluster=result.clustering.assignments)
    return result


def cluster_cells(cells: pd.DataFrame, embeddings: np.ndarray, opts: PipelineOptions):
    """KMeans + AMI of a pipeline's cells against ``opts.label_column``."""
    from phenossl.clustering import cluster

    if opts.k is None:
        raise ValueError("opts.k is None: no clustering was asked for")
    labels = None
    if opts.label_column:
        if opts.label_column not in cells.columns:
            raise ValueError(
                f"label column {opts.label_column!r} is not in the cell table; "
                f"expected one of {sorted(cells.columns)}"
            )
        labels = cells[opts.label_column].astype(str).to_numpy()
    return cluster(
        embeddings,
        labels,
        k=opts.k,
        seed=opts.seed,
        n_init=opts.n_init,
        n_permutations=opts.n_permutations,
        n_nearest=opts.n_nearest,
    )


@drives(iter_pipeline)
def run_pipeline(*, progress: ProgressCallback | None = None) -> PipelineResult:
    """Blocking form of :func:`iter_pipeline`; ``progress`` receives every event."""
