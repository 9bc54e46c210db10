"""Helpers shared by the subcommands: errors, progress bars, JSON output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


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


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=json_default) + "\n")
    tmp.replace(path)


def json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer | np.floating | np.bool_):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
