"""The registry of the book's chapters: name, title, module, notebook, and the settings of each scale.

Every chapter is listed here once, with its module imported explicitly, so the one place that
knows all chapters is visible in the import graph. :func:`start_run` hands the chapter's settings
to :func:`latentcf.core.results.open_run`; nothing below the chapters imports a chapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from latentcf.chapters import galaxy_leap, helix, mnist_diffeo, mnist_leap, square
from latentcf.core.errors import LatentcfError
from latentcf.core.results import SCALES, Run, check_scale, open_run


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book: its name, its title, and the module with its ``PAPER`` and ``SMOKE`` settings."""

    name: str
    title: str
    module: ModuleType

    @property
    def notebook(self) -> str:
        """The chapter's notebook, relative to the project root: ``notebooks/<name>.ipynb``."""
        return f"notebooks/{self.name}.ipynb"

    def settings(self, scale: str) -> Any:
        """The settings of ``scale`` (``module.SMOKE`` or ``module.PAPER``)."""
        return {"smoke": self.module.SMOKE, "paper": self.module.PAPER}[check_scale(scale)]


CHAPTERS: dict[str, Chapter] = {
    chapter.name: chapter
    for chapter in (
        Chapter("helix", "Diffeomorphic counterfactuals on a helix", helix),
        Chapter("mnist_diffeo", "Diffeomorphic counterfactuals on MNIST", mnist_diffeo),
        Chapter("square", "LeapFactual on the square toy", square),
        Chapter("mnist_leap", "LeapFactual on Morpho-MNIST", mnist_leap),
        Chapter("galaxy_leap", "Reliable counterfactuals as training data on Galaxy10", galaxy_leap),
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

    An unknown chapter or scale and an unavailable device raise :class:`LatentcfError`.
    """
    return open_run(chapter, scale, seed, device, get_chapter(chapter).settings(scale))
