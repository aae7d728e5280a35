"""Sentences of the book that state what a run shows, held to that run's recorded metrics.

The book shows runs that are executed again on other machines, and a smoke run's numbers move between
them. A sentence that states a result ("reliable CEs hurt less", "every latent search succeeds") must
therefore be written by the run from its metrics, or be phrased as a condition ("where ..., ..."). This
module holds a short list of phrases that assert a direction of a chapter's metrics (:data:`PROSE_RULES`),
finds them in Markdown and reports every sentence whose direction the run's metrics contradict
(:func:`contradictions`); the book build refuses such a page (:func:`check_book_prose`). A sentence is
not read as a statement about the run when it is a condition, a question or what a paper reports
(:func:`is_hedged`). It is a list of phrases, not a reader: a result sentence in other words goes unseen.

The notebooks write their result sentences with :func:`number` and :func:`ordered`, and show their
chapter's relations with :func:`relation_table`.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentcf.core.claims import (
    MORPHO_ROWS,
    RELATIONS,
    SQUARE_BLEND_ALPHAS,
    check_relation,
    fall,
    rise,
    sweep_names,
)
from latentcf.core.errors import LatentcfError, optional_import
from latentcf.core.smoke_evidence import smoke_power

Metrics = dict[str, float | None]
"""A run's recorded metrics; ``None`` is a value a dry run could not define."""

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le, "==": operator.eq}
COMPARISON = re.compile(r"(\S+) (>=|<=|==|>|<) (\S+)")
SWEEP = re.compile(r"(\w+)\* (rises|falls)")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class ProseRule:
    """A phrase that asserts a direction of the metrics of a run of ``chapter``.

    ``pattern`` is a case-insensitive regex, matched against a sentence without its Markdown marks
    (``$``, ``\\``, ``*``, backticks: ``$\\alpha$`` reads ``alpha``). ``asserts`` is what the phrase states:
    comparisons ``"<metric> <op> <metric or number>"`` (``op`` one of ``> < >= <= ==``) joined by
    ``" and "``, or ``"<prefix>* rises"`` / ``"<prefix>* falls"`` for a sweep (``acc_r_ni*``: every
    ``acc_r_ni<N>`` of the run in increasing ``N``, at every step).
    """

    chapter: str
    pattern: str
    asserts: str

    def matches(self, sentence: str) -> bool:
        """Whether the phrase occurs in ``sentence`` (Markdown marks ignored)."""
        return re.search(self.pattern, plain(sentence), re.I) is not None


def _all_of(*comparisons: str) -> str:
    """The conjunction of ``comparisons`` as :attr:`ProseRule.asserts` writes it."""
    return " and ".join(comparisons)


PROSE_RULES: tuple[ProseRule, ...] = (
    ProseRule("helix", r"every (latent )?search succeeds|all (latent )?searches succeed", "success_rate_z == 1"),
    ProseRule("helix", r"every (ascent|search) in Z (succeeds|reaches)", "success_rate_z == 1"),
    ProseRule("helix", r"every (ascent|search) in X (succeeds|reaches)", "success_rate_x == 1"),
    ProseRule("helix", r"(classifier|it) is accurate on the helix", "classifier_accuracy >= 0.95"),
    ProseRule("helix", r"ascent in Z reaches it while staying on the (learned )?manifold"
                       r"|searches in Z end closer to the helix", "median_distance_z < median_distance_x"),
    ProseRule("helix", r"boxes collapse to segments",
              "tangent_singular_ratio < 0.1 and tangent_alignment > 0.9"),
    ProseRule("square", r"every alpha lies strictly between 0 and 1",
              _all_of(*(f"{alpha} > 0 and {alpha} < 1" for alpha in SQUARE_BLEND_ALPHAS))),
    ProseRule("square", r"alpha falls as gamma grows",
              _all_of(*(f"{a} > {b}" for a, b in zip(SQUARE_BLEND_ALPHAS, SQUARE_BLEND_ALPHAS[1:])))),
    # "close to an edge", "far below a class square": within a tenth of a class square's side (0.5)
    ProseRule("square", r"misses of the learned field all start close to an edge", "miss_max_edge_distance < 0.05"),
    ProseRule("square", r"fixed-grid solver agrees with dopri5", "rk4_dopri5_max_gap < 0.05"),
    ProseRule("square", r"(fixed-grid solver|fixed grid|rk4) is (enough and )?faster",
              "leaps_per_s_rk4 > leaps_per_s_dopri5"),
    ProseRule("square", r"injection pushes (every point|the points|points|target-class points) "
                        r"(outwards|towards the outer corner)", "inject_gain > 0"),
    ProseRule("square", r"injected points are (all )?still in the target square", "inject_hit_rate == 1"),
    ProseRule("square", r"injection (keeps pushing towards the target and )?brings in the rest",
              "leapfactual_hit_rate == 1"),
    ProseRule("mnist_diffeo", r"adversarials are (the closest images|closer) to their sources? (in X|than the c)",
              "l2x_source_x < l2x_source_z"),
    ProseRule("mnist_diffeo", r"counterfactuals are closer to their sources? (in Z|than the adversarials)",
              "l2z_source_z < l2z_source_x"),
    ProseRule("mnist_diffeo", r"counterfactuals (found )?in Z beat the adversarials",
              "oracle_target_acc_z > oracle_target_acc_x and knn_target_frac_z > knn_target_frac_x "
              "and im1_z < im1_x"),
    ProseRule("mnist_diffeo", r"SVM (then )?agrees with the target readily", "oracle_target_acc_vae > 0.5"),
    # "a few" of the 784 directions: under a tenth of them
    ProseRule("mnist_diffeo", r"few large eigenvalues and a long tail", "spectrum_dims_90 < 78.4"),
    ProseRule("mnist_leap", r"LeapFactual reaches the target more often than the Opt"
                            r"|LeapFactual'?s counterfactuals are classified as the target (far )?more often "
                            r"than the Opt"
                            r"|LeapFactual beats the Opt", "acc_leap > acc_opt"),
    ProseRule("mnist_leap", r"CGM(-based)?( counterfactuals)? reach(es)? the target more often than the Opt",
              "acc_cgm > acc_opt"),
    ProseRule("mnist_leap", r"injection (raises the accuracy|makes them more reliable)", "acc_leap_r > acc_leap"),
    ProseRule("mnist_leap", r"injection does not lose accuracy", "acc_leap_r >= acc_leap"),
    ProseRule("mnist_leap", r"LeapFactual changes the (stroke )?area less than", "d_area_leap < d_area_cgm"),
    ProseRule("mnist_leap", r"LeapFactual changes every morphological property less",
              _all_of(*(f"d_{row}_leap < d_{row}_{other}" for row in MORPHO_ROWS for other in ("opt", "cgm")))),
    ProseRule("mnist_compare", r"search in Z beats the search in X"
                               r"|counterfactuals (found )?in Z are judged the target class more often",
              "oracle_z_4to9 > oracle_x_4to9"),
    ProseRule("mnist_compare", r"more target-class nearest neighbours", "knn_z_4to9 > knn_x_4to9"),
    ProseRule("mnist_compare", r"lower IM1 than (the )?adversarial", "im1_z_4to9 < im1_x_4to9"),
    ProseRule("mnist_compare", r"leaps beat the search in the same latent"
                               r"|LeapFactual reaches the target more often than the Opt", "acc_leap > acc_vae"),
    ProseRule("galaxy_leap", r"strong classifier beats the weak|more real data helps", "acc_strong > acc_weak"),
    ProseRule("galaxy_leap", r"plain CEs hurt(?! less)", "acc_weak > acc_ce_100"),
    ProseRule("galaxy_leap", r"plain CEs help", "acc_ce_100 > acc_weak"),
    ProseRule("galaxy_leap", r"reliable CEs help", "acc_rce_100 > acc_weak"),
    ProseRule("galaxy_leap", r"reliable CEs hurt(?! less)", "acc_weak > acc_rce_100"),
    ProseRule("galaxy_leap", r"reliable CEs hurt less|reliable CEs beat plain CEs"
                             r"|retraining with reliable CEs beats retraining with CEs", "acc_rce_100 > acc_ce_100"),
    ProseRule("galaxy_leap", r"more blending leaps bring more CEs across", "acc_nb* rises"),
    ProseRule("galaxy_leap", r"each injection leap makes the strong classifier agree more often", "acc_r_ni* rises"),
    ProseRule("galaxy_leap", r"injection is what convinces the strong", "acc_r_ni35 > acc_r_ni0"),
    ProseRule("galaxy_leap", r"(each injection leap|injection) moves the image further from the input",
              "ssim_ni* falls"),
)
"""Every phrase that asserts a direction of a chapter's metrics, with what it asserts (:class:`ProseRule`)."""

CODE_OR_DISPLAY_MATH = re.compile(r"```.*?```|\$\$.*?\$\$", re.S)
BLOCK_BREAK = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*+]|\d+\.|#+|\|)\s)")
SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z`*$(\[])")
ABBREVIATIONS = {"al", "sec", "app", "fig", "figs", "eq", "eqs", "e.g", "i.e", "vs", "cf", "no", "ref", "tab"}
"""Words whose full stop ends no sentence ("Dombrowski et al. Sec. 4.1")."""
MARKDOWN_MARKS = re.compile(r"[$\\*`]")
CONDITION = re.compile(r"^\W*(?:where|wherever|if|when|whenever|whether|unless|once)\b"
                       r"|[,;:(]\s*(?:where|if|when|whenever|unless)\b|\bonly (?:where|if|when)\b|\bwhether\b", re.I)
"""A sentence phrased as a condition: it opens with one, or has a clause "..., where ..." or "only if"."""
PAPER_REPORT = re.compile(r"\bpapers?\b(?![- ]scale)|\bpaper's\b|\bpublished\b|\bet al\b|\b(?:Sec|App)\. ?[A-Z\d]",
                          re.I)
"""A sentence that says what a paper reports (its numbers are the paper's, not the run's): it names a paper or
cites a section of one ("Sec. 4.1")."""


def plain(sentence: str) -> str:
    """``sentence`` without the Markdown marks ``$ \\ * ` `` and with single spaces."""
    return " ".join(MARKDOWN_MARKS.sub("", sentence).split())


def sentences(markdown: str) -> list[str]:
    """The sentences of ``markdown``: paragraphs, list items and headings split at full stops.

    Code blocks and display maths are left out; a full stop after an abbreviation (:data:`ABBREVIATIONS`) or
    before a lower-case word or a digit ends no sentence.
    """
    found = []
    for block in BLOCK_BREAK.split(CODE_OR_DISPLAY_MATH.sub(" ", markdown)):
        text, start = " ".join(block.split()), 0
        for end in SENTENCE_END.finditer(text):
            words = text[start:end.start()].split()
            if words and words[-1].lower().strip("(") in ABBREVIATIONS:
                continue
            found.append(text[start:end.end()].strip())
            start = end.end()
        found.append(text[start:].strip())
    return [sentence for sentence in found if sentence]


def is_hedged(sentence: str) -> bool:
    """Whether ``sentence`` states nothing about the run: a condition, a question or what a paper reports."""
    text = plain(sentence)
    return text.endswith("?") or CONDITION.search(text) is not None or PAPER_REPORT.search(text) is not None


def unconditional_matches(markdown: str, chapter: str | None = None) -> list[tuple[ProseRule, str]]:
    """Every (rule, sentence) of ``markdown`` where a rule's phrase states a result outright.

    Only the rules of ``chapter``; of every chapter where it is ``None``.
    """
    rules = [rule for rule in PROSE_RULES if chapter is None or rule.chapter == chapter]
    return [(rule, sentence) for sentence in sentences(markdown) if not is_hedged(sentence)
            for rule in rules if rule.matches(sentence)]


def defined(value: float | None) -> bool:
    """Whether ``value`` is a number a sentence can be held to (not ``None``, not NaN)."""
    return value is not None and not math.isnan(value)


def comparison_holds(comparison: str, metrics: Metrics) -> bool | None:
    """Whether one comparison of :attr:`ProseRule.asserts` holds; ``None`` where a metric is missing or undefined."""
    sweep = SWEEP.fullmatch(comparison)
    if sweep:
        values = [metrics[name] for name in sweep_names(metrics, sweep.group(1))]
        if len(values) < 2 or not all(defined(v) for v in values):
            return None
        return (rise(values) if sweep.group(2) == "rises" else fall(values)) > 0
    parsed = COMPARISON.fullmatch(comparison)
    if parsed is None:
        raise LatentcfError(f"cannot read the comparison '{comparison}': write '<metric> <op> <metric or number>' "
                            f"or '<prefix>* rises|falls'")
    left, op, right = parsed.groups()
    values = [float(side) if NUMBER.fullmatch(side) else metrics.get(side) for side in (left, right)]
    return OPERATORS[op](*values) if all(defined(v) for v in values) else None


def assertion_holds(asserts: str, metrics: Metrics) -> bool | None:
    """Whether every comparison of ``asserts`` holds on ``metrics``; ``None`` where one cannot be evaluated."""
    outcomes = [comparison_holds(part, metrics) for part in asserts.split(" and ")]
    return None if None in outcomes else all(outcomes)


def named_metrics(asserts: str, metrics: Metrics) -> list[str]:
    """The metrics ``asserts`` names, sweeps spelled out: ``["acc_rce_100", "acc_ce_100"]``."""
    names = []
    for part in asserts.split(" and "):
        sweep = SWEEP.fullmatch(part)
        sides = sweep_names(metrics, sweep.group(1)) if sweep else COMPARISON.fullmatch(part).group(1, 3)
        names += [name for name in sides if not NUMBER.fullmatch(name) and name not in names]
    return names


def contradictions(chapter: str, markdown: str, metrics: Metrics) -> list[str]:
    """One message per sentence of ``markdown`` whose stated direction the run's ``metrics`` contradict.

    Only the rules of ``chapter`` apply; a rule whose metrics the run lacks, or left undefined, contradicts nothing.
    """
    found = []
    for rule, sentence in unconditional_matches(markdown, chapter):
        if assertion_holds(rule.asserts, metrics) is False:
            names = named_metrics(rule.asserts, metrics)
            values = ", ".join(f"{name} = {number(metrics.get(name), 4)}" for name in names)
            found.append(f"\"{sentence}\" states {rule.asserts}, but the {chapter} run has {values}")
    return found


def _joined(text: str | list[str]) -> str:
    """A notebook field as one string (``.ipynb`` files may store text as a list of lines)."""
    return "".join(text) if isinstance(text, list) else text


def notebook_prose(notebook: dict[str, Any]) -> str:
    """The prose of an executed notebook (its JSON): the Markdown cells, and the Markdown and printed text
    its code cells output. Tables and figures are not prose and are left out."""
    parts = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            parts.append(_joined(cell["source"]))
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(_joined(output["text"]))
            elif "text/markdown" in output.get("data", {}):
                parts.append(_joined(output["data"]["text/markdown"]))
    return "\n\n".join(parts)


def notebook_contradictions(chapter: str, notebook: Path, metrics: Metrics) -> list[str]:
    """:func:`contradictions` of an executed notebook's prose (:func:`notebook_prose`), each naming the file."""
    text = notebook_prose(json.loads(notebook.read_text()))
    return [f"{notebook.name}: {message}" for message in contradictions(chapter, text, metrics)]


def page_contradictions(page: Path, results: dict[str, Metrics]) -> list[str]:
    """:func:`contradictions` of a prose page of the book, under every chapter's rules and that chapter's results."""
    markdown = page.read_text()
    return [f"{page.name}: {message}" for chapter, metrics in results.items()
            for message in contradictions(chapter, markdown, metrics)]


def check_book_prose(notebooks: dict[str, Path], results: dict[str, Metrics], pages: list[Path]) -> None:
    """Raise :class:`LatentcfError` naming every sentence of the book that its runs contradict.

    ``notebooks``: each chapter's executed notebook; ``results``: the metrics of the runs the book shows, by
    chapter; ``pages``: the book's prose pages (Markdown).
    """
    found = [message for chapter, path in notebooks.items()
             for message in notebook_contradictions(chapter, path, results.get(chapter, {}))]
    found += [message for page in pages for message in page_contradictions(page, results)]
    if found:
        raise LatentcfError(f"{len(found)} sentence(s) of the book state a result that the run shown contradicts "
                            f"(generate them from run.metrics, or phrase them as a condition): "
                            + "; ".join(found))


def number(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, or ``"n/a"`` where it is undefined (``None``, NaN)."""
    return f"{value:.{digits}g}" if defined(value) else "n/a"


def ordered(first: float | None, second: float | None, above: str = "above", below: str = "below",
            level: str = "level with") -> str:
    """The words for how ``first`` stands to ``second``: ``above``, ``below`` or ``level``.

    ``"not comparable with"`` where either is undefined (a dry run's ``None``, NaN).
    """
    if not (defined(first) and defined(second)):
        return "not comparable with"
    return above if first > second else below if first < second else level


HOLDS = {True: "yes", False: "no", None: "n/a"}
"""A verdict's ``passed`` in the relation table's words."""


def relation_frame(document: dict[str, Any]) -> Any:
    """The run's verdict on each relation of its chapter (``latentcf.core.claims.RELATIONS``), a pandas DataFrame.

    ``document``: a results document (``run.as_dict()``). Columns: ``relation``, ``holds`` (yes, no, or n/a
    where it is not evaluated at this scale), ``margin`` (how far the run is from failing it), ``check``
    (``gated``: a miss fails ``reproduce --check``; ``reported``: a smoke run shows it without failing on
    it), ``smoke margins`` (at how many runs of the shipped smoke margins it held,
    :mod:`latentcf.core.smoke_evidence`) and ``note`` (why it does not hold, or why it is only reported).
    Metrics a dry run left undefined count as missing.
    """
    pandas = optional_import("pandas", "pandas", "the table of a run's relations")
    recorded = {**document, "metrics": {name: value for name, value in document["metrics"].items()
                                        if defined(value)}}
    relations = [relation for relation in RELATIONS if relation.chapter == document["chapter"]]
    verdicts = [check_relation(relation, recorded) for relation in relations]
    powers = [smoke_power(relation.chapter, relation.text, relation.inclusive) for relation in relations]
    return pandas.DataFrame({
        "relation": [verdict.name for verdict in verdicts],
        "holds": [HOLDS[verdict.passed] for verdict in verdicts],
        "margin": [number(verdict.margin) if verdict.margin is not None else "" for verdict in verdicts],
        "check": ["gated" if verdict.gated else "reported" for verdict in verdicts],
        "smoke margins": [f"held at {power.held} of {power.evaluated} runs" if power.evaluated else "no runs yet"
                          for power in powers],
        "note": ["" if verdict.passed else verdict.detail for verdict in verdicts],
    })


def relation_table(document: dict[str, Any]) -> Any:
    """:func:`relation_frame` as a notebook shows it: each relation's text in full (a plain DataFrame cuts long
    cells to 50 characters), without the row numbers. A pandas ``Styler``."""
    return relation_frame(document).style.hide(axis="index")
