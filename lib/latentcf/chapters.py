"""The registry of the book's chapters: name, title, notebook, and scale-dependent settings."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from latentcf.errors import LatentcfError

SCALES = ("smoke", "paper")


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book: its notebook and the module that holds its settings."""

    name: str
    title: str
    notebook: str
    module: str


CHAPTERS: dict[str, Chapter] = {
    chapter.name: chapter
    for chapter in (
        Chapter("helix", "Diffeomorphic counterfactuals on a helix", "notebooks/helix.ipynb",
                "latentcf.helix"),
        Chapter("mnist_diffeo", "Diffeomorphic counterfactuals on MNIST", "notebooks/mnist_diffeo.ipynb",
                "latentcf.mnist_diffeo"),
        Chapter("square", "LeapFactual on the square toy", "notebooks/square.ipynb", "latentcf.square"),
        Chapter("mnist_leap", "LeapFactual on Morpho-MNIST", "notebooks/mnist_leap.ipynb", "latentcf.mnist_leap"),
        Chapter("galaxy_leap", "Reliable counterfactuals as training data on Galaxy10", "notebooks/galaxy_leap.ipynb",
                "latentcf.galaxy_leap"),
    )
}


def get_chapter(name: str) -> Chapter:
    """Look up a chapter by name; an unknown name raises :class:`LatentcfError`."""
    if name not in CHAPTERS:
        raise LatentcfError(f"unknown chapter '{name}'; known chapters: {', '.join(CHAPTERS)}")
    return CHAPTERS[name]


def check_scale(scale: str) -> str:
    """Return ``scale`` if it is ``"smoke"`` or ``"paper"``, else raise :class:`LatentcfError`."""
    if scale not in SCALES:
        raise LatentcfError(f"unknown scale '{scale}'; choose one of {', '.join(SCALES)}")
    return scale


def chapter_settings(name: str, scale: str) -> Any:
    """The settings object of ``chapter`` at ``scale`` (``SETTINGS[scale]`` in its module)."""
    module = importlib.import_module(get_chapter(name).module)
    return module.SETTINGS[check_scale(scale)]
