"""The reproduction report: paper value, smoke value, paper-scale value and verdict per claim.

Smoke values come from ``build/results`` (this build's run); paper-scale values come from the
tracked ``results/paper`` folder, which holds committed paper-scale runs with device and date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latentcf.chapters.registry import CHAPTERS
from latentcf.core.claims import CLAIMS, RELATIONS, check_claim, check_relation
from latentcf.core.paths import paper_results_dir, results_dir
from latentcf.core.results import load_results

MARKER = "<!-- results-table -->"
MARKS = {True: "pass", False: "**fail**", None: "–"}


def _load_if_present(path: Path, scale: str) -> dict[str, Any] | None:
    """The results document at ``path`` if it exists and was run at ``scale``."""
    document = load_results(path) if path.is_file() else None
    return document if document is not None and document["scale"] == scale else None


def _value(document: dict[str, Any] | None, metric: str) -> str:
    if document is None or metric not in document["metrics"]:
        return "–"
    return f"{document['metrics'][metric]:.4g}"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a ``|`` inside it (``|cos| > 0.9``) must not end the cell."""
    return text.replace("|", "\\|")


def _provenance(label: str, document: dict[str, Any] | None) -> str:
    if document is None:
        return f"- {label}: no run yet."
    return (f"- {label}: {document['scale']} scale on {document['device']}, seed {document['seed']}, "
            f"{document.get('date', 'date unknown')}, commit `{document['git_sha'][:10]}`, "
            f"{document['runtime_s']:.0f} s.")


def chapter_table(chapter: str, smoke: dict[str, Any] | None, paper: dict[str, Any] | None) -> str:
    """Markdown for one chapter: provenance lines, the claims table and the relations table."""
    lines = [f"## {CHAPTERS[chapter].title}", "", _provenance("Smoke run", smoke),
             _provenance("Paper-scale run", paper), "",
             "| metric | paper | where | smoke | paper scale | paper-scale check |",
             "|---|---|---|---|---|---|"]
    for claim in (c for c in CLAIMS if c.chapter == chapter):
        verdict = check_claim(claim, paper) if paper else None
        lines.append(f"| `{claim.metric}` | {claim.paper_value:g} ± {claim.tolerance:g} | {_cell(claim.where)} | "
                     f"{_value(smoke, claim.metric)} | {_value(paper, claim.metric)} | "
                     f"{MARKS[verdict.passed] if verdict else '–'} |")
    lines += ["", "| relation (every scale) | where | smoke | paper scale |", "|---|---|---|---|"]
    for relation in (r for r in RELATIONS if r.chapter == chapter):
        smoke_mark = MARKS[check_relation(relation, smoke).passed] if smoke else "–"
        paper_mark = MARKS[check_relation(relation, paper).passed] if paper else "–"
        lines.append(f"| {_cell(relation.text)} | {_cell(relation.where)} | {smoke_mark} | {paper_mark} |")
    return "\n".join(lines) + "\n"


def render_report(smoke_dir: Path | None = None, paper_dir: Path | None = None) -> str:
    """The report tables of every chapter as Markdown."""
    smoke_dir, paper_dir = smoke_dir or results_dir(), paper_dir or paper_results_dir()
    tables = [chapter_table(name, _load_if_present(smoke_dir / f"{name}.json", "smoke"),
                            _load_if_present(paper_dir / f"{name}.json", "paper")) for name in CHAPTERS]
    return "\n".join(tables)


def fill_report_page(page: Path, smoke_dir: Path | None = None, paper_dir: Path | None = None) -> None:
    """Replace the marker line of the report page with the rendered tables."""
    text = page.read_text()
    if MARKER not in text:
        raise ValueError(f"{page} has no '{MARKER}' line to fill")
    page.write_text(text.replace(MARKER, render_report(smoke_dir, paper_dir)))
