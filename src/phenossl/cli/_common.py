"""Helpers shared by the subcommands: errors, progress bars, JSON output."""

from __future__ import annotations

import argparse
import inspect
import math
import tempfile
from collections.abc import Callable
from pathlib import Path


class CLIError(Exception):
    """An error to print as one line and exit 2 (bad input, not a bug)."""


#: torch allocator messages: the machine lacks the memory the input needs
_ALLOCATION = ("can't allocate memory", "out of memory", "not enough memory")
#: torch advice that would make a user unpickle an untrusted file
_UNSAFE_ADVICE = ("weights_only=False", "re-running `torch.load`", "WeightsUnpickler", "trust")


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is about the input or the machine (one line for the user), not a bug."""
    import sqlite3
    import zipfile

    import yaml

    if isinstance(err, CLIError | ValueError | OSError | EOFError | MemoryError):
        return True
    if isinstance(err, zipfile.BadZipFile | sqlite3.Error | yaml.YAMLError):
        return True
    return isinstance(err, RuntimeError) and any(s in str(err).lower() for s in _ALLOCATION)


def error_line(err: BaseException) -> str:
    """One line for the user: the message's first line, without torch's unsafe advice."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    lines = [line for line in lines if not any(s in line for s in _UNSAFE_ADVICE)]
    text = lines[0] if lines else type(err).__name__
    if isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and any(s in text.lower() for s in _ALLOCATION)
    ):
        text = f"out of memory ({text[:200]}); lower --batch-size or --input-size"
    if len(text) > 500:  # e.g. a state-dict key list
        text = text[:497] + "..."
    return text


def add_command(
    sub: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """Add the subcommand ``name``, run by ``handler``, whose docstring is its help text.

    The docstring's first paragraph is the one-line help that ``phenossl --help`` lists, the rest
    the description of ``phenossl NAME --help`` (argparse re-wraps both).
    """
    summary, _, description = inspect.cleandoc(handler.__doc__ or "").partition("\n\n")
    parser = sub.add_parser(name, help=" ".join(summary.split()), description=description)
    parser.set_defaults(handler=handler)
    return parser


def add_overrides(p: argparse.ArgumentParser, help: str) -> None:
    """Declare the repeatable ``--set KEY=VALUE``: ``args.overrides``, for ``parse_overrides``."""
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def writable_folder(path: Path, flag: str) -> Path:
    """Create ``path`` and check a file can be written in it, before any work is done."""
    _probe_write(path, path, flag)
    return path


def writable_file(path: Path, flag: str) -> Path:
    """Check that the file ``path`` can be written (its folder is created), before the work."""
    if path.is_dir():
        raise CLIError(f"{flag} {path} is a folder; expected a file name")
    _probe_write(path.parent if str(path.parent) else Path("."), path, flag)
    return path


def _probe_write(folder: Path, path: Path, flag: str) -> None:
    """Create ``folder`` and write a temporary file in it; a failure names ``flag path``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise CLIError(f"{flag} {path}: cannot write there ({err.strerror or err})") from None


def add_embeddings_input(p: argparse.ArgumentParser) -> None:
    """Declare the embeddings file, the report folder ``--out`` and ``--cropset``."""
    p.add_argument("embeddings", type=Path, help="embeddings file from `phenossl embed`")
    p.add_argument("--out", required=True, type=Path, help="report folder")
    p.add_argument(
        "--cropset", type=Path, default=None, help="CropSet (default: the one recorded in the file)"
    )


def embeddings_cropset(args: argparse.Namespace, meta: dict) -> Path:
    """The CropSet of ``args.embeddings``: ``--cropset``, else the one its ``meta`` records."""
    path = args.cropset or (Path(meta["cropset"]) if meta.get("cropset") else None)
    if path is None:
        raise CLIError(f"{args.embeddings} records no CropSet; pass --cropset")
    return path


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _bounded(text, int, 1, ">= 1")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _bounded(text, int, 0, ">= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (``nan`` and ``inf`` are refused)."""
    value = _bounded(text, float, 0.0, "> 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number > 0")
    return value


def _bounded(text: str, kind: type, low: float, expected: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {kind.__name__} {expected}") from None
    if not math.isfinite(value) or value < low:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {kind.__name__} {expected}")
    return value


def progress_bar(args: argparse.Namespace, desc: str, unit: str = "it", percent: bool = False):
    """A tqdm ``(callback, close)`` pair, silent with ``--quiet``."""
    from phenossl._progress import tqdm_callback

    return tqdm_callback(desc, unit=unit, disable=getattr(args, "quiet", False), percent=percent)


def run_with_progress(
    gen, args: argparse.Namespace, desc: str, unit: str = "it", percent: bool = False
):
    """Drive a progress generator with a tqdm bar and return its result."""
    from phenossl._progress import run

    callback, close = progress_bar(args, desc, unit, percent)
    try:
        return run(gen, callback)
    finally:
        close()
