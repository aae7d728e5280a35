"""The registry of the book's chapters: name, title, module, notebook, and the settings of each scale.

Every chapter is listed here once, with its module imported explicitly, so the one place that
knows all chapters is visible in the import graph. :func:`start_run` hands the chapter's settings
to :func:`latentcf.core.results.open_run`; nothing below the chapters imports a chapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from latentcf.chapters import galaxy_leap, helix, mnist_compare, mnist_diffeo, mnist_leap, square
from latentcf.core.errors import LatentcfError
from latentcf.core.results import SCALES, Run, check_scale, open_run
from latentcf.core.runtime import run_options


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book: its name, its title, the module with its ``PAPER``, ``SMOKE`` and ``DRY_RUN``
    settings, and the paper scale's data sets (``"mnist"``, ``"galaxy10"``) that a dry run may fabricate."""

    name: str
    title: str
    module: ModuleType
    data_sets: tuple[str, ...] = ()

    @property
    def notebook(self) -> str:
        """The chapter's notebook, relative to the project root: ``notebooks/<name>.ipynb``."""
        return f"notebooks/{self.name}.ipynb"

    def settings(self, scale: str, dry_run: bool = False) -> Any:
        """The settings of ``scale`` (``module.SMOKE`` or ``module.PAPER``); ``module.DRY_RUN`` in a paper dry run."""
        if dry_run and check_scale(scale) == "paper":
            return self.module.DRY_RUN
        return {"smoke": self.module.SMOKE, "paper": self.module.PAPER}[check_scale(scale)]


CHAPTERS: dict[str, Chapter] = {
    chapter.name: chapter
    for chapter in (
        Chapter("helix", "Diffeomorphic counterfactuals on a helix", helix),
        Chapter("mnist_diffeo", "Diffeomorphic counterfactuals on MNIST", mnist_diffeo, ("mnist",)),
        Chapter("square", "LeapFactual on the square toy", square),
        Chapter("mnist_leap", "LeapFactual on Morpho-MNIST", mnist_leap, ("mnist",)),
        Chapter("mnist_compare", "Diffeomorphic counterfactuals and LeapFactual head to head", mnist_compare,
                ("mnist",)),
        Chapter("galaxy_leap", "Reliable counterfactuals as training data on Galaxy10", galaxy_leap, ("galaxy10",)),
    )
}
__all__ = ["CHAPTERS", "SCALES", "Chapter", "get_chapter", "start_run"]


def get_chapter(name: str) -> Chapter:
    """Look up a chapter by name; an unknown name raises :class:`LatentcfError`."""
    if name not in CHAPTERS:
        raise LatentcfError(f"unknown chapter '{name}'; known chapters: {', '.join(CHAPTERS)}")
    return CHAPTERS[name]


def start_run(chapter: str, scale: str, seed: int, device: str = "auto") -> Run:
    """Open the run of a notebook: check its parameters, seed everything, load the scale's settings.

    In a dry run (:class:`latentcf.core.runtime.RunOptions`) the paper scale's settings are the
    chapter's ``DRY_RUN``: ``PAPER`` with its sizes cut to a few dozen items.

    An unknown chapter or scale and an unavailable device raise :class:`LatentcfError`.
    """
    return open_run(chapter, scale, seed, device, get_chapter(chapter).settings(scale, run_options().dry_run))
