"""Execute chapters with papermill, collect their results, and check them against the claims."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from latentcf.chapters.registry import CHAPTERS, Chapter, get_chapter
from latentcf.core.claims import Verdict, check_document, failures
from latentcf.core.errors import LatentcfError
from latentcf.core.paths import RESULTS_DIR_ENV, build_dir, project_root
from latentcf.core.results import check_scale, load_results
from latentcf.core.runtime import resolve_device


class ChapterFailed(LatentcfError):
    """A chapter's notebook raised; the message names the cell and the error."""


def select_chapters(names: list[str]) -> list[Chapter]:
    """``["all"]`` means every chapter; otherwise each name must be a known chapter."""
    if "all" in names:
        return list(CHAPTERS.values())
    return [get_chapter(name) for name in names]


def notebook_path(chapter: Chapter) -> Path:
    """The chapter's ``.ipynb``; a missing file raises :class:`LatentcfError`."""
    path = project_root() / chapter.notebook
    if not path.is_file():
        raise LatentcfError(f"notebook {path} of chapter '{chapter.name}' is missing")
    return path


def execute_chapter(chapter: Chapter, scale: str, device: str, seed: int, out: Path) -> dict[str, Any]:
    """Run one notebook with papermill into ``out/executed`` and return its results document.

    The notebook's own recorder writes ``out/results/<chapter>.json``; this function replaces its
    ``runtime_s`` by the wall time of the whole notebook (kernel start included).
    """
    import papermill

    source = notebook_path(chapter)
    executed = out / "executed" / source.name
    results_path = out / "results" / f"{chapter.name}.json"
    executed.parent.mkdir(parents=True, exist_ok=True)
    results_path.unlink(missing_ok=True)
    os.environ[RESULTS_DIR_ENV] = str(results_path.parent)
    started = time.perf_counter()
    try:
        papermill.execute_notebook(source, executed, parameters={"SCALE": scale, "SEED": seed, "DEVICE": device},
                                   kernel_name="python3", cwd=str(source.parent), progress_bar=True)
    except papermill.PapermillExecutionError as err:
        raise ChapterFailed(f"chapter '{chapter.name}' failed in cell {err.exec_count}: "
                            f"{err.ename}: {err.evalue} (executed notebook: {executed})") from err
    document = load_results(results_path)
    document["runtime_s"] = round(time.perf_counter() - started, 2)
    results_path.write_text(json.dumps(document, indent=2) + "\n")
    return document


def reproduce(names: list[str], scale: str, device: str, seed: int, check: bool,
              out: Path | None = None) -> list[Verdict]:
    """Execute the chapters; with ``check``, evaluate claims and relations on their results.

    Raises :class:`LatentcfError` for bad input and :class:`ChapterFailed` when a notebook raises.
    """
    check_scale(scale)
    resolve_device(device)
    chapters = select_chapters(names)
    for chapter in chapters:
        notebook_path(chapter)
    out = out or build_dir()
    verdicts = []
    for chapter in tqdm(chapters, desc=f"chapters ({scale})", unit="chapter"):
        document = execute_chapter(chapter, scale, device, seed, out)
        if check:
            verdicts += check_document(document)
    return verdicts


def format_verdicts(verdicts: list[Verdict]) -> str:
    """A plain-text table of verdicts with a closing ``N passed, N failed`` line."""
    marks = {True: "PASS", False: "FAIL", None: "n/a "}
    lines = [f"{marks[v.passed]}  {v.chapter}: {v.name} ({v.detail})" for v in verdicts]
    failed = len(failures(verdicts))
    passed = sum(v.passed is True for v in verdicts)
    return "\n".join([*lines, f"claims: {passed} passed, {failed} failed"])
