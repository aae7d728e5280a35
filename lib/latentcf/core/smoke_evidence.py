"""What the smoke scale has the power to show: each relation's margins over seeds and instruction sets.

A smoke run is small: a relation whose margin is small next to what a seed or another CPU changes
holds on one machine and fails on the next. ``python -m latentcf margins`` (:mod:`latentcf.book.margins`)
runs the chapters at several seeds, natively and with the CPU's instruction set capped, and writes
every relation's margin per run to :data:`MARGINS_FILE`, which ships with the library. A relation
fails a smoke run's check only where that table shows it holding at every run of at least
:data:`MIN_SEEDS` seeds under at least :data:`MIN_ISAS` instruction sets (``Relation.smoke_gated``; a test
holds the registry to the table). Introduced in the reproduction report (``book/report.md``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from latentcf.core.errors import LatentcfError

MARGINS_FILE = "smoke_margins.json"
"""The table of smoke margins, a data file of this package (``latentcf/core/smoke_margins.json``)."""
MIN_SEEDS = 5
"""Seeds per instruction set at which a relation must hold before a smoke run is gated on it."""
MIN_ISAS = 2
"""Instruction sets (native and capped) under which a relation must hold before a smoke run is gated on it."""


def relation_key(chapter: str, text: str) -> str:
    """The key of a relation in the margins table: ``"<chapter>: <text>"``."""
    return f"{chapter}: {text}"


def run_label(isa: str, seed: int) -> str:
    """The key of one smoke run in the margins table: ``"<isa>/seed<N>"``."""
    return f"{isa}/seed{seed}"


@cache
def margins_table() -> dict[str, Any]:
    """The shipped table: ``{"runs": {label: run}, "margins": {relation key: {label: margin or None}}}``.

    A missing or malformed file raises :class:`LatentcfError`.
    """
    try:
        text = resources.files("latentcf.core").joinpath(MARGINS_FILE).read_text()
        table = json.loads(text)
    except (OSError, json.JSONDecodeError) as err:
        raise LatentcfError(f"the smoke margins table latentcf/core/{MARGINS_FILE} is missing or not JSON: "
                            f"{err}") from err
    if not {"runs", "margins"} <= set(table):
        raise LatentcfError(f"the smoke margins table latentcf/core/{MARGINS_FILE} lacks 'runs' or 'margins'")
    return table


@dataclass(frozen=True)
class SmokePower:
    """A relation's record in the margins table: the runs that evaluated it and how many it held at.

    ``seeds_by_isa`` maps each instruction-set label to the seeds of the runs that evaluated it.
    """

    held: int
    evaluated: int
    seeds_by_isa: dict[str, tuple[int, ...]]
    smallest_margin: float | None

    @property
    def shown_everywhere(self) -> bool:
        """Held at every run, with at least :data:`MIN_SEEDS` seeds under each of :data:`MIN_ISAS` instruction sets."""
        enough = [isa for isa, seeds in self.seeds_by_isa.items() if len(set(seeds)) >= MIN_SEEDS]
        return self.evaluated > 0 and self.held == self.evaluated and len(enough) >= MIN_ISAS

    def describe(self) -> str:
        """``"shown at 7 of 10 smoke runs (5 seeds x 2 instruction sets)"``, or that no smoke run evaluated it."""
        if self.evaluated == 0:
            return "no smoke run in the margins table evaluated it"
        seeds = len({seed for seeds in self.seeds_by_isa.values() for seed in seeds})
        isas = len(self.seeds_by_isa)
        return (f"shown at {self.held} of {self.evaluated} smoke runs ({seeds} seed{'s' * (seeds != 1)} x {isas} "
                f"instruction set{'s' * (isas != 1)})")


def smoke_power(chapter: str, text: str, inclusive: bool, table: dict[str, Any] | None = None) -> SmokePower:
    """The record of relation ``chapter: text`` in ``table`` (default: the shipped :func:`margins_table`).

    A margin holds where it is positive (``inclusive``: not negative); ``None`` marks a run that
    could not evaluate the relation (its metrics were missing) and is not counted.
    """
    table = margins_table() if table is None else table
    margins = table["margins"].get(relation_key(chapter, text), {})
    evaluated = {label: margin for label, margin in margins.items() if margin is not None}
    held = sum(margin >= 0 if inclusive else margin > 0 for margin in evaluated.values())
    seeds_by_isa: dict[str, list[int]] = {}
    for label in evaluated:
        run = table["runs"][label]
        seeds_by_isa.setdefault(run["isa"], []).append(int(run["seed"]))
    return SmokePower(held, len(evaluated), {isa: tuple(sorted(seeds)) for isa, seeds in seeds_by_isa.items()},
                      min(evaluated.values()) if evaluated else None)
