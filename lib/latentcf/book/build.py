"""Build the HTML book from the papermill-executed notebooks.

The book's sources are staged in ``build/book-src``: the prose pages, the configuration, the
executed notebooks in place of the output-free ones, and the report page filled with results.
Jupyter Book then renders them without executing anything (``execute_notebooks: 'off'``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from latentcf.book.report import fill_report_page
from latentcf.chapters.registry import CHAPTERS
from latentcf.core.errors import LatentcfError
from latentcf.core.paths import build_dir, project_root

REPORT_PAGE = "book/reproduction-report.md"


def stage_sources(out: Path) -> Path:
    """Copy the book's sources with executed notebooks into ``out/book-src``; return that folder."""
    root, stage = project_root(), out / "book-src"
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(root / "book", stage / "book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, stage / name)
    for chapter in CHAPTERS.values():
        executed = out / "executed" / Path(chapter.notebook).name
        if not executed.is_file():
            raise LatentcfError(f"chapter '{chapter.name}' has not been executed ({executed} is missing); "
                                f"run 'python -m latentcf reproduce all' first")
        (stage / chapter.notebook).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(executed, stage / chapter.notebook)
    fill_report_page(stage / REPORT_PAGE, smoke_dir=out / "results")
    return stage


def build_book(out: Path | None = None) -> Path:
    """Stage the sources and run ``jupyter-book build``; return the path of ``index.html``."""
    out = out or build_dir()
    stage = stage_sources(out)
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(stage),
               "--path-output", str(out), "-W", "-n", "--keep-going"]
    if subprocess.run(command).returncode != 0:
        raise LatentcfError("jupyter-book build failed; see the messages above")
    return out / "_build" / "html" / "index.html"
