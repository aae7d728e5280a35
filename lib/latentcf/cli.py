"""The command line: ``python -m latentcf reproduce|book|bench|margins``.

Bad input (an unknown chapter or scale, an unavailable device, a missing notebook) and a notebook
that raises end with one ``error: ...`` line and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latentcf.book.bench import SECONDS_PER_STAGE
from latentcf.chapters.registry import CHAPTERS, SCALES
from latentcf.core.errors import LatentcfError
from latentcf.core.runtime import RunOptions


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
    run.add_argument("--dry-run", action="store_true",
                     help="paper scale only: every paper-scale code path with two training steps per stage and a "
                          "few dozen items; fabricates the data files this machine lacks; checks that every "
                          "claimed metric is recorded")
    run.add_argument("--allow-missing-weights", action="store_true",
                     help="go on without published weights (ImageNet VGG16, LPIPS) instead of refusing; "
                          "recorded in the results")
    run.add_argument("--out", type=Path, default=None,
                     help="folder for executed/ and results/ (default: build/, build/paper or build/dry-run)")
    book = commands.add_parser("book", help="build the HTML book from the executed notebooks")
    book.add_argument("--scale", default="smoke",
                      help="smoke: the smoke runs (build/_build/html); paper: the paper-scale runs, smoke runs noted "
                           "where a chapter has none (build/paper/_build/html)")
    bench = commands.add_parser("bench", help="time every paper-scale stage for a few seconds and project the "
                                              "wall time of a paper-scale run")
    bench.add_argument("chapters", nargs="+", metavar="CHAPTER",
                       help=f"chapter names ({', '.join(CHAPTERS)}) or 'all'")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    bench.add_argument("--seconds", type=float, default=SECONDS_PER_STAGE,
                       help=f"timed seconds per stage after its warm-up (default: {SECONDS_PER_STAGE:g})")
    bench.add_argument("--note", default="", help="which machine this is, in words (recorded in the results file)")
    bench.add_argument("--limit-minutes", type=float, default=None,
                       help="exit with status 1 when the projected total exceeds this many minutes")
    margins = commands.add_parser("margins", help="run chapters at smoke scale at several seeds under one instruction "
                                                  "set and tabulate every relation's margin over all such runs")
    margins.add_argument("chapters", nargs="+", metavar="CHAPTER",
                         help=f"chapter names ({', '.join(CHAPTERS)}) or 'all'")
    margins.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default: 0 to 4)")
    margins.add_argument("--isa", default="native", help="native or capped (default: native)")
    margins.add_argument("--threads", type=int, default=1,
                         help="torch threads per run (default: 1, so that two sweeps share a 2-core machine)")
    margins.add_argument("--note", default="", help="a sentence about these runs, kept with the table")
    return parser


def _margins(args: argparse.Namespace) -> int:
    from latentcf.book.margins import merge, sweep, sweep_dir, tabulate, write_margins
    from latentcf.book.reproduce import select_chapters
    from latentcf.core.smoke_evidence import margins_table

    sweep([chapter.name for chapter in select_chapters(args.chapters)], args.seeds, args.isa, args.threads)
    table = merge(margins_table(), {**tabulate(sweep_dir()), "notes": [args.note] if args.note else []})
    for path in write_margins(table):
        print(f"margins written to {path}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from latentcf.book.bench import bench, duration, format_table

    document, path = bench(args.chapters, args.device, args.seconds, args.note)
    print(format_table(document))
    print(f"projection written to {path}")
    if args.limit_minutes is not None and document["total_s"] > 60 * args.limit_minutes:
        print(f"error: the projected paper-scale run takes {duration(document['total_s'])}, more than the limit "
              f"of {args.limit_minutes:g} min", file=sys.stderr)
        return 1
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from latentcf.book.reproduce import format_verdicts, reproduce
    from latentcf.core.claims import failures

    options = RunOptions(dry_run=args.dry_run, allow_missing_weights=args.allow_missing_weights)
    verdicts = reproduce(args.chapters, args.scale, args.device, args.seed, args.check, out=args.out,
                         options=options)
    if args.check and not args.dry_run:
        print(format_verdicts(verdicts))
        return 1 if failures(verdicts) else 0
    return 0


def _book(args: argparse.Namespace) -> int:
    from latentcf.book.build import build_book

    print(f"open the book: {build_book(scale=args.scale)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 a claim failed or a projection is over its limit, 2 bad input
    or a failed chapter)."""
    args = _parser().parse_args(argv)
    try:
        return {"reproduce": _reproduce, "book": _book, "bench": _bench, "margins": _margins}[args.command](args)
    except LatentcfError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
