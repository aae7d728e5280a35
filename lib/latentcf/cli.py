"""The command line: ``python -m latentcf reproduce|book``.

Bad input (an unknown chapter or scale, an unavailable device, a missing notebook) and a notebook
that raises end with one ``error: ...`` line and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys

from latentcf.chapters.registry import CHAPTERS, SCALES
from latentcf.core.errors import LatentcfError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m latentcf", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("reproduce", help="execute chapters with papermill and record their results")
    run.add_argument("chapters", nargs="+", metavar="CHAPTER",
                     help=f"chapter names ({', '.join(CHAPTERS)}) or 'all'")
    run.add_argument("--scale", default="smoke", help=f"one of {', '.join(SCALES)} (default: smoke)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    run.add_argument("--seed", type=int, default=0, help="seed of every run (default: 0)")
    run.add_argument("--check", action="store_true", help="check the results against the claims registry")
    commands.add_parser("book", help="build the HTML book from the executed notebooks")
    return parser


def _reproduce(args: argparse.Namespace) -> int:
    from latentcf.book.reproduce import format_verdicts, reproduce
    from latentcf.core.claims import failures

    verdicts = reproduce(args.chapters, args.scale, args.device, args.seed, args.check)
    if args.check:
        print(format_verdicts(verdicts))
        return 1 if failures(verdicts) else 0
    return 0


def _book(_: argparse.Namespace) -> int:
    from latentcf.book.build import build_book

    print(f"open the book: {build_book()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 a claim failed, 2 bad input or a failed chapter)."""
    args = _parser().parse_args(argv)
    try:
        return {"reproduce": _reproduce, "book": _book}[args.command](args)
    except LatentcfError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
