"""Where the project keeps its build output, its results and its model cache.

Paths never depend on the working directory a notebook happens to run in: the project root is
found by walking up to the folder that holds ``_toc.yml``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

RESULTS_DIR_ENV = "LATENTCF_RESULTS_DIR"
CACHE_DIR_ENV = "LATENTCF_CACHE"


def project_root(start: Path | None = None) -> Path:
    """The book's root folder (the one with ``_toc.yml``), or the working directory outside it."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    return here


def build_dir() -> Path:
    """The ignored folder that receives executed notebooks, results and the built book."""
    return project_root() / "build"


def results_dir() -> Path:
    """Where a run writes ``<chapter>.json``: ``$LATENTCF_RESULTS_DIR`` or ``build/results``."""
    return Path(os.environ.get(RESULTS_DIR_ENV, build_dir() / "results"))


def paper_results_dir() -> Path:
    """The tracked folder of paper-scale results, committed with device and date."""
    return project_root() / "results" / "paper"


def cache_dir() -> Path:
    """Where trained models are cached: ``$LATENTCF_CACHE`` or ``~/.cache/latentcf``."""
    return Path(os.environ.get(CACHE_DIR_ENV, Path.home() / ".cache" / "latentcf"))


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest (``"md5"``, ``"sha256"``, ...) of a file, read in 8 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 23), b""):
            digest.update(block)
    return digest.hexdigest()
