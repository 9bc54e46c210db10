"""The ``phenossl`` command: thin subcommands that parse, call the library and print.

Each module of this package adds its subcommands to the parser (``add_parsers``, through
``_common.add_command``: a handler's docstring is its subcommand's help text); heavy imports
(torch, scikit-image) happen inside the handlers so ``phenossl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from phenossl import __version__
from phenossl.cli import (
    cells,
    demo,
    embed_cluster,
    evaluation,
    profiles,
    reporting,
    sweep,
    training,
)
from phenossl.cli._common import error_line, is_user_error

#: modules whose ``add_parsers(subparsers)`` registers subcommands, in --help order
COMMAND_MODULES = (cells, embed_cluster, profiles, training, sweep, evaluation, reporting, demo)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``phenossl`` argument parser with every subcommand."""
    parser = _Parser(
        prog="phenossl",
        description="Cell phenotypes from fluorescence microscopy with self-supervised learning.",
        epilog="Errors in the input print one line and exit with code 2; --debug (or "
        "PHENOSSL_DEBUG=1) shows their traceback instead.",
    )
    parser.add_argument("--version", action="version", version=f"phenossl {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error in the input"
    )
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
    debug = args.debug or os.environ.get("PHENOSSL_DEBUG", "") not in ("", "0")
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug or not is_user_error(err):
            raise
        sys.stdout.flush()
        print(f"phenossl {args.command}: error: {error_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
