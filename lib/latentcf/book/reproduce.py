"""Execute chapters with papermill, collect their results, and check them against the claims."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from latentcf.chapters.registry import CHAPTERS, Chapter, get_chapter
from latentcf.core.claims import CLAIMS, RELATIONS, Verdict, check_document, failures, reported
from latentcf.core.errors import LatentcfError
from latentcf.core.paths import RESULTS_DIR_ENV, build_dir, project_root
from latentcf.core.results import check_scale, load_results
from latentcf.core.runtime import RunOptions, resolve_device
from latentcf.data.fabricate import fabricate_data


class ChapterFailed(LatentcfError):
    """A chapter's notebook raised; the message names the cell and the error."""


class DryRunIncomplete(LatentcfError):
    """A dry run finished without a metric that a claim or relation of its chapter names."""


def run_dir(scale: str, options: RunOptions) -> Path:
    """Where a run writes ``executed/`` and ``results/``: ``build/`` (smoke), ``build/paper``, ``build/dry-run``.

    Each lane has its own folder, so a paper-scale or dry run never overwrites the smoke results
    that the smoke book is built from.
    """
    if options.dry_run:
        return build_dir() / "dry-run"
    return build_dir() / "paper" if check_scale(scale) == "paper" else build_dir()


def named_metrics(chapter: str) -> set[str]:
    """Every metric that a claim or a relation of ``chapter`` names."""
    names = {claim.metric for claim in CLAIMS if claim.chapter == chapter}
    return names | {name for relation in RELATIONS if relation.chapter == chapter for name in relation.metrics}


def missing_metrics(document: dict[str, Any]) -> list[str]:
    """The metrics named by the chapter's claims and relations that ``document`` does not record.

    A value must be a finite number, or ``null`` in a dry run (:func:`undefined_metrics`).
    """
    metrics = document["metrics"]
    allowed = (type(None),) if document.get("dry_run") else ()

    def recorded(name: str) -> bool:
        value = metrics.get(name, "absent")
        return isinstance(value, allowed) or (isinstance(value, (int, float)) and math.isfinite(value))

    return sorted(name for name in named_metrics(document["chapter"]) if not recorded(name))


def undefined_metrics(document: dict[str, Any]) -> list[str]:
    """Named metrics that a dry run recorded as undefined (``null``): statistics over an empty set of successes, or
    over random targets that miss a class (a macro AUROC)."""
    return sorted(name for name in named_metrics(document["chapter"])
                  if name in document["metrics"] and document["metrics"][name] is None)


@contextmanager
def kernel_options(options: RunOptions, data_sets: tuple[str, ...]) -> Iterator[list[str]]:
    """Hand ``options`` to the notebooks' kernels; in a dry run, fabricate the files of ``data_sets`` this
    machine lacks.

    Yields the sentences that say which data a dry run reads. The fabricated files live in a
    temporary folder that is removed afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="latentcf-dry-run-") as folder:
        sentences = []
        if options.dry_run:
            sentences = fabricate_data(Path(folder), data_sets)
            options = dataclasses.replace(options, fabricated_data=folder)
        saved = {key: os.environ.get(key) for key in options.environment()}
        os.environ.update(options.environment())
        try:
            yield sentences
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


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
              out: Path | None = None, options: RunOptions | None = None) -> list[Verdict]:
    """Execute the chapters; with ``check``, evaluate claims and relations on their results.

    ``options`` (:class:`latentcf.core.runtime.RunOptions`) asks for a dry run of the paper scale
    or lets a paper-scale run go on without published weights. A dry run compares nothing with
    the papers: it checks that every metric a claim or relation names is there and finite, and
    raises :class:`DryRunIncomplete` naming the missing ones after all chapters ran. Raises
    :class:`LatentcfError` for bad input and :class:`ChapterFailed` when a notebook raises.
    """
    options = options or RunOptions()
    check_scale(scale)
    if options.dry_run and scale != "paper":
        raise LatentcfError("--dry-run runs the paper scale's code paths: use it with --scale paper")
    resolve_device(device)
    chapters = select_chapters(names)
    for chapter in chapters:
        notebook_path(chapter)
    out = out or run_dir(scale, options)
    verdicts, missing = [], {}
    data_sets = tuple(sorted({name for chapter in chapters for name in chapter.data_sets}))
    with kernel_options(options, data_sets) as sentences:
        for sentence in sentences:
            tqdm.write(f"dry run data: {sentence}")
        for chapter in tqdm(chapters, desc=f"chapters ({'dry run of the ' if options.dry_run else ''}{scale})",
                            unit="chapter"):
            document = execute_chapter(chapter, scale, device, seed, out)
            if options.dry_run:
                missing[chapter.name] = missing_metrics(document)
                if undefined := undefined_metrics(document):
                    tqdm.write(f"dry run of {chapter.name}: undefined (two training steps, few items): "
                               f"{', '.join(undefined)}")
            elif check:
                verdicts += check_document(document)
    if any(missing.values()):
        raise DryRunIncomplete("the dry run did not record " + "; ".join(
            f"{name}: {', '.join(metrics)}" for name, metrics in missing.items() if metrics))
    return verdicts


def format_verdicts(verdicts: list[Verdict]) -> str:
    """A plain-text table of verdicts with a closing ``N passed, N failed`` line.

    A relation that a smoke run failed without being gated on it is marked ``MISS`` and counted on a line of
    its own: shown, not a failure of the check.
    """
    marks = {True: "PASS", False: "FAIL", None: "n/a "}
    missed = reported(verdicts)
    lines = [f"{'MISS' if v in missed else marks[v.passed]}  {v.chapter}: {v.name} ({v.detail})" for v in verdicts]
    failed = len(failures(verdicts))
    passed = sum(v.passed is True for v in verdicts)
    return "\n".join([*lines, f"reported, not gated at smoke scale: {len(missed)} relations missed",
                      f"claims: {passed} passed, {failed} failed"])
