"""The ``phenossl`` command: thin subcommands that parse, call the library and print.

Each module of this package adds its subcommands to the parser (``add_parsers``); heavy imports
(torch, scikit-image) happen inside the handlers so ``phenossl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from phenossl import __version__
from phenossl.cli import analysis, cells, demo, evaluation, profiles, reporting, sweep, training
from phenossl.cli._common import CLIError

#: modules whose ``add_parsers(subparsers)`` registers subcommands, in --help order
COMMAND_MODULES = (cells, analysis, profiles, training, sweep, evaluation, reporting, demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``phenossl`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="phenossl",
        description="Cell phenotypes from fluorescence microscopy with self-supervised learning.",
    )
    parser.add_argument("--version", action="version", version=f"phenossl {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``phenossl`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except (CLIError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"phenossl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
