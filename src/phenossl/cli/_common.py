"""Helpers shared by the subcommands: errors, progress bars, JSON output."""

from __future__ import annotations

import argparse


class CLIError(Exception):
    """An error to print as one line and exit 2 (bad input, not a bug)."""


def progress_bar(args: argparse.Namespace, desc: str, unit: str = "it"):
    from phenossl._progress import tqdm_callback

    return tqdm_callback(desc, unit=unit, disable=getattr(args, "quiet", False))


def run_with_progress(gen, args: argparse.Namespace, desc: str, unit: str = "it"):
    from phenossl._progress import run

    callback, close = progress_bar(args, desc, unit)
    try:
        return run(gen, callback)
    finally:
        close()
