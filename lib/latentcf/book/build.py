"""Build the HTML book from the papermill-executed notebooks.

The book's sources are staged in ``build/book-src``: the prose pages, the configuration, the
executed notebooks in place of the output-free ones, the report page filled with results, the
committed time projections of ``python -m latentcf bench`` (``results/bench``) on the reproduction page, the
library's source, which chapters show on the page with ``literalinclude`` (the code that ran), and
the static files that make the book work offline: plotly.js (from the plotly package) and MathJax
(from the ``django-static-mathjax`` package), served once per site from ``_static``. Before anything is
staged, every sentence of the executed notebooks and of the prose pages that states a result is held to the
results of the run it shows (:func:`latentcf.book.prose.check_book_prose`): a page that its own run
contradicts stops the build. Jupyter Book
then renders them without executing anything (``execute_notebooks: 'off'``), and the built pages
are checked to load nothing from outside the site.

Two books are built from the same sources. The smoke book (``book``, into ``build/_build/html``) shows
the smoke runs of ``build/executed``; the paper-scale book (``book --scale paper``, into
``build/paper/_build/html``) shows each chapter's paper-scale run from ``build/paper/executed``, or,
for a chapter without one, its smoke run with a note at the top of the page that says so.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from latentcf.book.bench import committed_dir, fill_projections_page
from latentcf.book.prose import Metrics, check_book_prose
from latentcf.book.report import SEEDS_FOLDER, fill_report_page
from latentcf.chapters.registry import CHAPTERS
from latentcf.core.errors import LatentcfError, optional_import
from latentcf.core.paths import build_dir, paper_results_dir, project_root
from latentcf.core.results import check_scale

REPORT_PAGE = "book/reproduction-report.md"
PROJECTIONS_PAGE = "book/reproduce.md"
"""The page whose section "What a paper-scale run costs" shows the committed projections of ``bench``."""
HIDDEN_TAGS = {"injected-parameters": "remove-cell"}
"""Cells papermill adds for the run (its injected parameters) are removed from the HTML page; they stay
in the executed ``.ipynb``."""
MATHJAX_PARTS = ("tex-mml-chtml.js", "input", "output/chtml", "ui", "a11y", "adaptors", "core.js", "startup.js")
"""What MathJax 3's ``tex-mml-chtml`` component loads: itself, its fonts and the extensions it autoloads."""
REMOTE_LOAD = re.compile(r"""<(?:script|img|iframe)\b[^>]*\bsrc=["'](?:https?:)?//[^>]*>""", re.I)
REMOTE_LINK = re.compile(r"""<link\b[^>]*\bhref=["'](?:https?:)?//[^>]*>""", re.I)
REMOTE_IMPORT = re.compile(r"""\bimport\s*\(?\s*["'](?:https?:)?//[^"']+["']""")
LOADING_RELS = re.compile(r"""\brel=["'][^"']*\b(?:stylesheet|preload|modulepreload|icon)\b""", re.I)


SMOKE_FALLBACK_NOTE = ("```{note}\nThis page shows the **smoke-scale** run of the chapter: no paper-scale run of "
                       "it was available when this paper-scale book was built. Its numbers are not the paper's; the "
                       "[reproduction report](../book/reproduction-report.md) lists what was run at which scale.\n```")
"""The note at the top of a chapter page of the paper-scale book that shows a smoke run."""


def executed_notebook(chapter_notebook: str, scale: str, smoke_out: Path, paper_out: Path) -> tuple[Path, str]:
    """The executed notebook a book of ``scale`` shows, and the scale it was run at.

    The smoke book shows ``smoke_out/executed``; the paper-scale book prefers ``paper_out/executed`` and
    falls back to the smoke run. A chapter with neither raises :class:`LatentcfError`.
    """
    name = Path(chapter_notebook).name
    candidates = [(paper_out / "executed" / name, "paper")] if check_scale(scale) == "paper" else []
    candidates.append((smoke_out / "executed" / name, "smoke"))
    for path, ran_at in candidates:
        if path.is_file():
            return path, ran_at
    raise LatentcfError(f"{name} has not been executed ({candidates[-1][0]} is missing); run 'python -m latentcf "
                        f"reproduce all' first")


def shown_metrics(executed: Path, chapter: str) -> Metrics:
    """The metrics of the run an executed notebook shows: ``results/<chapter>.json`` beside its ``executed/``.

    ``{}`` where that run wrote no results (nothing can then contradict its prose).
    """
    results = executed.parent.parent / "results" / f"{chapter}.json"
    return json.loads(results.read_text()).get("metrics", {}) if results.is_file() else {}


def stage_sources(out: Path, scale: str = "smoke", smoke_out: Path | None = None) -> Path:
    """Copy the book's sources with executed notebooks into ``out/book-src``; return that folder.

    ``scale="paper"``: the chapters' paper-scale runs from ``out/executed`` (smoke runs from
    ``smoke_out/executed`` where there is none, noted on the page), and the report's paper-scale column
    from ``out/results``, then the committed ``results/paper``. A sentence of an executed notebook or of a
    prose page that the run shown contradicts raises :class:`LatentcfError` (:func:`check_book_prose`).
    """
    root, stage = project_root(), out / "book-src"
    smoke_out = smoke_out or out
    shown = {chapter.name: executed_notebook(chapter.notebook, scale, smoke_out, out) for chapter in CHAPTERS.values()}
    check_book_prose({name: executed for name, (executed, _) in shown.items()},
                     {name: shown_metrics(executed, name) for name, (executed, _) in shown.items()},
                     sorted((root / "book").glob("*.md")))
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(root / "book", stage / "book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, stage / name)
    for chapter in CHAPTERS.values():
        executed, ran_at = shown[chapter.name]
        (stage / chapter.notebook).parent.mkdir(parents=True, exist_ok=True)
        stage_notebook(executed, stage / chapter.notebook, note=SMOKE_FALLBACK_NOTE if ran_at != scale else None)
    shutil.copytree(root / "lib" / "latentcf", stage / "lib" / "latentcf",
                    ignore=shutil.ignore_patterns("__pycache__", "shipped"))
    fill_projections_page(stage / PROJECTIONS_PAGE, committed_dir())
    fill_report_page(stage / REPORT_PAGE, smoke_dir=smoke_out / "results",
                     paper_dir=paper_results(out / "report-paper-results",
                                             out / "results" if scale == "paper" else None))
    stage_static(stage / "_static")
    return stage


def paper_results(folder: Path, fresh: Path | None) -> Path:
    """The paper-scale results the report shows: the committed ``results/paper``, overlaid by ``fresh`` runs.

    Returns ``folder``, which holds one ``<chapter>.json`` per chapter that has a paper-scale run, and the
    committed runs at other seeds (:data:`latentcf.book.report.SEEDS_FOLDER`).
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for source in (paper_results_dir(), fresh):
        for path in sorted(source.glob("*.json")) if source is not None and source.is_dir() else []:
            shutil.copy2(path, folder / path.name)
    seeds = paper_results_dir() / SEEDS_FOLDER
    if seeds.is_dir():
        shutil.copytree(seeds, folder / SEEDS_FOLDER)
    return folder


def stage_notebook(executed: Path, staged: Path, note: str | None = None) -> None:
    """Copy an executed notebook, tagging the cells of :data:`HIDDEN_TAGS` so the page leaves them out.

    ``note`` (Markdown) goes right under the page's title, at the top of the page.
    """
    notebook = nbformat.read(executed, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        tags += [hidden for tag, hidden in HIDDEN_TAGS.items() if tag in tags and hidden not in tags]
    if note is not None:
        title = next(cell for cell in notebook.cells
                     if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "))
        heading, _, rest = title.source.lstrip().partition("\n")
        title.source = f"{heading}\n\n{note}\n{rest}"
    nbformat.write(notebook, staged)


def stage_static(folder: Path) -> None:
    """plotly.min.js and MathJax 3 into the book's ``_static`` folder, so the book needs no CDN."""
    plotly = optional_import("plotly", "plotly", "the book's interactive figures")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", folder / "plotly.min.js")
    spec = importlib.util.find_spec("mathjax")
    es5 = Path(spec.origin).parent / "static" / "mathjax" / "es5" if spec and spec.origin else None
    if es5 is None or not (es5 / "tex-mml-chtml.js").is_file():
        raise LatentcfError("the offline book needs MathJax from the package 'django-static-mathjax', which is "
                            "not installed: pip install django-static-mathjax")
    for part in MATHJAX_PARTS:
        source, target = es5 / part, folder / "mathjax" / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, target)


def external_resources(html_dir: Path) -> dict[str, list[str]]:
    """``{page: [tags]}`` of every script, module import, stylesheet, icon, image or frame loaded from another site.

    Links a reader clicks (``<a href=...>``) are not loads and are not listed.
    """
    found = {}
    for page in sorted(html_dir.rglob("*.html")):
        text = page.read_text(errors="replace")
        links = [tag for tag in REMOTE_LINK.findall(text) if LOADING_RELS.search(tag)]
        loads = REMOTE_LOAD.findall(text) + REMOTE_IMPORT.findall(text) + links
        if loads:
            found[str(page.relative_to(html_dir))] = loads
    return found


def build_book(out: Path | None = None, scale: str = "smoke") -> Path:
    """Stage the sources, run ``jupyter-book build`` and check the pages work offline; return ``index.html``.

    ``scale="paper"`` builds the paper-scale book into ``build/paper`` (see the module docstring).
    """
    smoke_out = out or build_dir()
    out = smoke_out / "paper" if check_scale(scale) == "paper" else smoke_out
    stage = stage_sources(out, scale, smoke_out)
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(stage),
               "--path-output", str(out), "-W", "-n", "--keep-going"]
    if subprocess.run(command).returncode != 0:
        raise LatentcfError("jupyter-book build failed; see the messages above")
    html = out / "_build" / "html"
    loads = external_resources(html)
    if loads:
        listing = "; ".join(f"{page}: {tags[0]}" for page, tags in list(loads.items())[:5])
        raise LatentcfError(f"{len(loads)} built page(s) load resources from outside the site, so the book "
                            f"does not work offline: {listing}")
    return html / "index.html"
