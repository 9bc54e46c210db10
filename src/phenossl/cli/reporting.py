"""`phenossl report`: the paper's tables and figures from a sweep's result store."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

from phenossl.cli._common import (
    CLIError,
    add_command,
    positive_float,
    positive_int,
    run_with_progress,
    writable_folder,
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `report`."""
    p = add_command(sub, "report", _cmd_report)
    p.add_argument("store", type=Path, help="result store folder (`phenossl sweep --store`)")
    p.add_argument("--out", required=True, type=Path, help="folder for the tables and figures")
    p.add_argument(
        "--experiment",
        action="append",
        default=None,
        metavar="NAME",
        help="report only this experiment (repeatable; default all)",
    )
    p.add_argument(
        "--alpha",
        type=positive_float,
        default=0.05,
        help="significance level of a class bias (0.05)",
    )
    p.add_argument(
        "--correction",
        choices=["none", "bh"],
        default="none",
        help="multiple testing: none (raw p, as the paper) or bh (Benjamini-Hochberg per "
        "method over its classes)",
    )
    p.add_argument(
        "--test",
        choices=["pearson", "spearman"],
        default="pearson",
        help="correlation that decides a class's trend (default pearson)",
    )
    p.add_argument(
        "--top-classes",
        type=positive_int,
        default=5,
        help="most biased classes drawn per method (5)",
    )


def _cmd_report(args: argparse.Namespace) -> int:
    """result store -> the paper's tables (Markdown + CSV) and figures (PNG)

    Regenerate the paper's tables (1-4, AMI) and figures (accuracy against each swept parameter,
    per-class curves of the most biased classes, AMI against backbone size, cluster exemplars) from
    a result store's finished runs, with the paper's numbers beside ours. Outputs the store cannot
    support are skipped; OUT/index.md lists what was made and why the rest was not.
    """

    from phenossl.training.analysis.report import iter_write_report
    from phenossl.training.sweep.store import ResultStore

    if not args.store.is_dir():
        raise CLIError(f"{args.store}: no such result store folder")
    try:
        with ResultStore(args.store, create=False) as store:
            frame = store.frame()
    except sqlite3.DatabaseError as err:  # e.g. a truncated copy: name the file
        raise CLIError(f"{args.store / 'results.sqlite'}: {err}") from None
    writable_folder(args.out, "--out")
    if args.experiment:
        known = sorted(frame["experiment"].unique()) if len(frame) else []
        unknown = [name for name in args.experiment if name not in known]
        if unknown:
            raise CLIError(
                f"no finished run of experiment(s) {unknown} in {args.store}; it has {known}"
            )
        frame = frame[frame["experiment"].isin(args.experiment)]
    if frame.empty:
        raise CLIError(f"{args.store} holds no finished run to report on")
    gen = iter_write_report(
        frame,
        args.out,
        store_root=args.store,
        alpha=args.alpha,
        correction=args.correction,
        test=args.test,
        top_classes=args.top_classes,
    )
    index = run_with_progress(gen, args, "report", "output")
    print(
        f"{len(index.made)} output(s) made, {len(index.skipped)} skipped -> "
        f"{Path(args.out) / 'index.md'}"
    )
    return 0
