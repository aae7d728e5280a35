"""The reproduction report: a summary per chapter, then paper value, smoke value, paper-scale value and verdict
per claim and per relation.

Smoke values come from ``build/results`` (this build's run); paper-scale values come from the
tracked ``results/paper`` folder, which holds committed paper-scale runs with device and date. Its
``seeds`` folder holds paper-scale runs of a chapter at other seeds (``<chapter>-seed<N>.json``); each chapter
lists them next to its main run, so that a reader sees whether a result holds beyond one trained model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latentcf.chapters.registry import CHAPTERS
from latentcf.core.claims import (
    CLAIMS,
    RELATIONS,
    Claim,
    Relation,
    StandardError,
    Verdict,
    check_claim,
    check_relation,
)
from latentcf.core.errors import LatentcfError
from latentcf.core.paths import paper_results_dir, results_dir
from latentcf.core.results import load_results, short_commit
from latentcf.core.smoke_evidence import smoke_power

MARKER = "<!-- results-table -->"
MARKS = {True: "pass", False: "**fail**", None: "–"}
MISSED = "missed (reported)"
"""A smoke run's failure of a relation it is not gated on (:attr:`latentcf.core.claims.Relation.smoke_gated`)."""
NOT_CHECKED = "not checked at this scale"
WEAK = "weak by construction"
SEEDS_FOLDER = "seeds"
"""The subfolder of the paper-scale results with runs at other seeds."""


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
            f"{document.get('date', 'date unknown')}, commit `{short_commit(document['git_sha'])}`, "
            f"{document['runtime_s']:.0f} s.")


def _claim_mark(claim: Claim, paper: dict[str, Any] | None) -> str:
    """The paper-scale check of one claim; a weak claim says so instead of counting as a pass."""
    if paper is None:
        return WEAK if claim.weak else "–"
    verdict = check_claim(claim, paper)
    return f"{MARKS[verdict.passed]} ({WEAK})" if claim.weak else MARKS[verdict.passed]


def _tolerance(claim: Claim, paper: dict[str, Any] | None) -> str:
    """The tolerance: a number, or the standard-error rule with its value where a paper-scale run gives one."""
    if not isinstance(claim.tolerance, StandardError):
        return f"{claim.tolerance:g}"
    value = claim.tolerance_for(paper) if paper is not None else None
    return claim.describe_tolerance() + ("" if value is None else f" = {value:.3g}")


def _relation_mark(verdict: Verdict | None) -> str:
    if verdict is None:
        return "–"
    if verdict.detail == NOT_CHECKED:
        return NOT_CHECKED
    return MISSED if verdict.passed is False and not verdict.gated else MARKS[verdict.passed]


def _smoke_power(relation: Relation) -> str:
    """The smoke margins' record of ``relation``: ``gated, 10 of 10`` or ``reported, 7 of 10``."""
    if "smoke" not in relation.scales:
        return NOT_CHECKED
    power = smoke_power(relation.chapter, relation.text, relation.inclusive)
    check = "gated" if relation.smoke_gated else "reported"
    return f"{check}, {power.held} of {power.evaluated}" if power.evaluated else f"{check}, no runs yet"


def chapter_summary(chapter: str, smoke: dict[str, Any] | None, paper: dict[str, Any] | None) -> dict[str, str]:
    """One row of the summary: published numbers registered, checked at paper scale, passing (weak claims not
    counted), weak by construction, not yet run; relations passing at smoke and at paper scale."""
    claims = [c for c in CLAIMS if c.chapter == chapter]
    verdicts = [check_claim(c, paper) for c in claims] if paper is not None else []
    row = {"registered": str(len(claims)), "checked": str(len(verdicts)),
           "passing": str(sum(v.passed is True and not v.weak for v in verdicts)),
           "weak": str(sum(bool(c.weak) for c in claims)),
           "not yet run": str(len(claims) - len(verdicts))}
    relations = [r for r in RELATIONS if r.chapter == chapter]
    for scale, document in (("smoke", smoke), ("paper", paper)):
        if document is None:
            row[f"relations {scale}"] = "no run"
            continue
        passing, checked = _relations_passing(chapter, document)
        skipped = len(relations) - checked
        gated = sum(r.smoke_gated for r in relations) if scale == "smoke" else None
        row[f"relations {scale}"] = (f"{passing} of {checked}" + ("" if gated is None else f", {gated} gated")
                                     + (f" ({skipped} {NOT_CHECKED})" if skipped else ""))
    return row


def _relations_passing(chapter: str, document: dict[str, Any]) -> tuple[int, int]:
    """How many of ``chapter``'s relations ``document`` passes, and how many apply at its scale."""
    checked = [v for v in (check_relation(r, document) for r in RELATIONS if r.chapter == chapter)
               if v.passed is not None]
    return sum(bool(v.passed) for v in checked), len(checked)


def summary_table(documents: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]]) -> str:
    """Markdown of the summary at a glance: one row per chapter (``documents``: name -> (smoke, paper))."""
    lines = ["## At a glance", "",
             "| chapter | published numbers | checked at paper scale | passing | weak by construction | "
             "not yet run | relations passing (smoke) | relations passing (paper scale) |",
             "|---|---|---|---|---|---|---|---|"]
    for chapter, (smoke, paper) in documents.items():
        row = chapter_summary(chapter, smoke, paper)
        lines.append(f"| {CHAPTERS[chapter].title} | {row['registered']} | {row['checked']} | {row['passing']} | "
                     f"{row['weak']} | {row['not yet run']} | {row['relations smoke']} | {row['relations paper']} |")
    lines += ["", "*Passing* counts the published numbers reproduced within their tolerance at paper scale, "
              f"leaving out those {WEAK} (any plausible run meets them; they are listed, not counted). "
              "Every relation is evaluated at every scale that records its metrics; a paper-scale run fails on any "
              "of them, a smoke run only on those *gated* at smoke scale: the relations that held at every run of "
              "the smoke margins (at least 5 seeds, natively and with the CPU's instruction set capped; "
              "`results/smoke/margins.md`). A smoke run reports the others as "
              f"*{MISSED}* where it misses them."]
    return "\n".join(lines) + "\n"


def chapter_table(chapter: str, smoke: dict[str, Any] | None, paper: dict[str, Any] | None) -> str:
    """Markdown for one chapter: provenance lines, the claims table with the reasons for its tolerances and
    weak claims, and the relations table."""
    claims = [c for c in CLAIMS if c.chapter == chapter]
    lines = [f"## {CHAPTERS[chapter].title}", "", _provenance("Smoke run", smoke),
             _provenance("Paper-scale run", paper), ""]
    lines += (["| metric | paper | tolerance | where | smoke | paper scale | paper-scale check |",
               "|---|---|---|---|---|---|---|"] if claims else ["The papers publish no numbers for this chapter."])
    for claim in claims:
        lines.append(f"| `{claim.metric}` | {claim.paper_value:g} | {_cell(_tolerance(claim, paper))} | "
                     f"{_cell(claim.where)} | {_value(smoke, claim.metric)} | {_value(paper, claim.metric)} | "
                     f"{_claim_mark(claim, paper)} |")
    reasons = dict.fromkeys(c.tolerance.why for c in claims if isinstance(c.tolerance, StandardError))
    weak = dict.fromkeys(f"`{c.metric}`: {c.weak}" for c in claims if c.weak)
    if reasons or weak:
        lines.append("")
    lines += [f"- Tolerance (SE = standard error): {why}." for why in reasons]
    lines += [f"- {WEAK.capitalize()}, {text}." for text in weak]
    lines += ["", "| relation | where | smoke margins (held at runs) | smoke | paper scale |", "|---|---|---|---|---|"]
    for relation in (r for r in RELATIONS if r.chapter == chapter):
        smoke_mark = _relation_mark(check_relation(relation, smoke) if smoke else None)
        paper_mark = _relation_mark(check_relation(relation, paper) if paper else None)
        lines.append(f"| {_cell(relation.text)} | {_cell(relation.where)} | {_smoke_power(relation)} | {smoke_mark} | "
                     f"{paper_mark} |")
    return "\n".join(lines) + "\n"


def seed_runs(paper_dir: Path, chapter: str) -> list[dict[str, Any]]:
    """The paper-scale runs of ``chapter`` in ``paper_dir/seeds`` (``<chapter>-seed<N>.json``), by seed.

    A file there that holds another chapter's run, or a run of another scale, is an error.
    """
    folder = paper_dir / SEEDS_FOLDER
    documents = [(path, load_results(path)) for path in sorted(folder.glob(f"{chapter}-seed*.json"))]
    for path, document in documents:
        if document["chapter"] != chapter or document["scale"] != "paper":
            raise LatentcfError(f"{path} holds a {document['scale']}-scale run of '{document['chapter']}', "
                                f"not a paper-scale run of '{chapter}'")
    return sorted((document for _, document in documents), key=lambda document: document["seed"])


def seeds_table(chapter: str, paper: dict[str, Any] | None, others: list[dict[str, Any]]) -> str:
    """Markdown: the main paper-scale run and the runs at other seeds, with their checks and claimed values.

    Claims weak by construction are left out of the count, as in :func:`summary_table`.
    """
    if not others:
        return ""
    claims = [c for c in CLAIMS if c.chapter == chapter]
    lines = ["", "Paper-scale runs at other seeds (`results/paper/seeds`), with the main run; claims "
             f"{WEAK} are not counted:", "",
             "| seed | commit | claims passing | relations passing | "
             + " | ".join(f"`{c.metric}`" for c in claims) + " |",
             "|---|---|---|---|" + "---|" * len(claims)]
    for document in ([paper] if paper is not None else []) + others:
        claim_verdicts = [v for v in (check_claim(c, document) for c in claims) if not v.weak]
        relations_passing, relations_checked = _relations_passing(chapter, document)
        lines.append(f"| {document['seed']} | `{short_commit(document['git_sha'])}` | "
                     f"{sum(v.passed is True for v in claim_verdicts)} of {len(claim_verdicts)} | "
                     f"{relations_passing} of {relations_checked} | "
                     + " | ".join(_value(document, c.metric) for c in claims) + " |")
    return "\n".join(lines) + "\n"


def render_report(smoke_dir: Path | None = None, paper_dir: Path | None = None) -> str:
    """The summary and the tables of every chapter as Markdown."""
    smoke_dir, paper_dir = smoke_dir or results_dir(), paper_dir or paper_results_dir()
    documents = {name: (_load_if_present(smoke_dir / f"{name}.json", "smoke"),
                        _load_if_present(paper_dir / f"{name}.json", "paper")) for name in CHAPTERS}
    return "\n".join([summary_table(documents),
                      *(chapter_table(name, smoke, paper) + seeds_table(name, paper, seed_runs(paper_dir, name))
                        for name, (smoke, paper) in documents.items())])


def fill_report_page(page: Path, smoke_dir: Path | None = None, paper_dir: Path | None = None) -> None:
    """Replace the marker line of the report page with the rendered tables."""
    text = page.read_text()
    if MARKER not in text:
        raise ValueError(f"{page} has no '{MARKER}' line to fill")
    page.write_text(text.replace(MARKER, render_report(smoke_dir, paper_dir)))
