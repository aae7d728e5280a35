"""The registry of the papers' published numbers, and the check of a run against it.

A :class:`Claim` is a published value with where it stands in the paper and the tolerance within
which a paper-scale run must reproduce it. A :class:`Relation` is a scale-independent statement
that the paper argues for ("the median distance in Z is far below the one in X") and that must
hold at every scale, smoke included. ``python -m latentcf reproduce ... --check`` evaluates both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

Metrics = dict[str, float]


@dataclass(frozen=True)
class Claim:
    """A published number: ``|measured - paper_value| <= tolerance`` at paper scale."""

    chapter: str
    metric: str
    paper_value: float
    tolerance: float
    where: str


@dataclass(frozen=True)
class Relation:
    """A statement over a run's metrics that must hold at every scale."""

    chapter: str
    text: str
    metrics: tuple[str, ...]
    holds: Callable[[Metrics], bool]
    where: str


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim or relation for one results document.

    ``passed`` is ``None`` when the check does not apply (a claim at smoke scale).
    """

    chapter: str
    name: str
    where: str
    paper_value: float | None
    measured: float | None
    passed: bool | None
    detail: str


SQUARE_BLEND_ALPHAS = tuple(f"blend_alpha_g{gamma:g}" for gamma in (0.1, 0.3, 0.5, 0.7, 0.9))
"""The square chapter's blending alphas, by increasing gamma (``latentcf.square.BLEND_GAMMAS``)."""

CLAIMS: tuple[Claim, ...] = (
    Claim("helix", "median_distance_x", 2.34, 0.6, "Dombrowski et al. Sec. 4.1.1, Fig. 16"),
    Claim("helix", "median_distance_z", 0.01, 0.04, "Dombrowski et al. Sec. 4.1.1, Fig. 16"),
    Claim("helix", "success_rate_x", 1.0, 0.01, "Dombrowski et al. Sec. 4.1.1 (all reach the target)"),
    Claim("helix", "success_rate_z", 1.0, 0.01, "Dombrowski et al. Sec. 4.1.1 (all reach the target)"),
    Claim("helix", "classifier_accuracy", 1.0, 0.01, "Dombrowski et al. App. B.1 (near perfect)"),
)

RELATIONS: tuple[Relation, ...] = (
    Relation("helix", "median distance to the helix in Z is below a tenth of the one in X",
             ("median_distance_z", "median_distance_x"),
             lambda m: m["median_distance_z"] < 0.1 * m["median_distance_x"],
             "Dombrowski et al. Sec. 4.1.1"),
    Relation("helix", "ascent in X reaches the target from at least 95% of the starts",
             ("success_rate_x",), lambda m: m["success_rate_x"] >= 0.95, "Dombrowski et al. Sec. 4.1.1"),
    Relation("helix", "the flow's Jacobian is nearly rank one on the helix (sigma_min/sigma_max < 0.1)",
             ("tangent_singular_ratio",), lambda m: m["tangent_singular_ratio"] < 0.1,
             "Dombrowski et al. Sec. 4.1.2, Fig. 7 left"),
    Relation("helix", "the dominant eigenvector of J J^T is tangent to the helix (|cos| > 0.9)",
             ("tangent_alignment",), lambda m: m["tangent_alignment"] > 0.9,
             "Dombrowski et al. Sec. 4.1.2, Fig. 7 left"),
    Relation("helix", "the classifier is at least 95% accurate on the helix",
             ("classifier_accuracy",), lambda m: m["classifier_accuracy"] >= 0.95,
             "Dombrowski et al. App. B.1"),
    Relation("square", "one replacement leap lands at least 95% of the points in the target square",
             ("replace_hit_rate",), lambda m: m["replace_hit_rate"] >= 0.95,
             "LeapFactual Sec. 3.2.2, Fig. 4 (b)"),
    Relation("square", "the lift removes the class: lifted points of one residual are under 10% as far "
             "apart as their sources", ("replace_collapse",), lambda m: m["replace_collapse"] < 0.1,
             "LeapFactual Theorem 1, Fig. 4 (a, b)"),
    Relation("square", "replacement keeps the residual to within 0.05 (10% of a class square's side)",
             ("residual_error",), lambda m: m["residual_error"] < 0.05, "LeapFactual Sec. 3.2.2, Fig. 4 (b)"),
    Relation("square", "a blending leap gives 0 < alpha < 1, decreasing as gamma grows",
             SQUARE_BLEND_ALPHAS,
             lambda m: all(0 < m[a] < 1 for a in SQUARE_BLEND_ALPHAS)
             and all(m[a] > m[b] for a, b in zip(SQUARE_BLEND_ALPHAS, SQUARE_BLEND_ALPHAS[1:])),
             "LeapFactual Sec. 3.2.2, Fig. 4 (c)"),
    Relation("square", "points of the target class move less than 0.01 over 10 blending leaps",
             ("blend_fixed_point_drift",), lambda m: m["blend_fixed_point_drift"] < 0.01,
             "LeapFactual Sec. 3.2.2 (blending stops by itself), Fig. 4 (e)"),
    Relation("square", "injection pushes target-class points outwards along the class direction",
             ("inject_gain",), lambda m: m["inject_gain"] > 0, "LeapFactual Sec. 3.2.2, Fig. 4 (d, e)"),
)


def published_values(chapter: str) -> dict[str, float]:
    """The published value of every claim of ``chapter``, by metric name."""
    return {claim.metric: claim.paper_value for claim in CLAIMS if claim.chapter == chapter}


def check_claim(claim: Claim, document: dict[str, Any]) -> Verdict:
    """Compare one published value with a results document (applies at paper scale only)."""
    measured = document["metrics"].get(claim.metric)
    if document["scale"] != "paper":
        passed, detail = None, "checked at paper scale only"
    elif measured is None:
        passed, detail = False, f"metric '{claim.metric}' missing from the results"
    else:
        passed = abs(measured - claim.paper_value) <= claim.tolerance
        detail = f"|{measured:.4g} - {claim.paper_value:g}| {'<=' if passed else '>'} {claim.tolerance:g}"
    return Verdict(claim.chapter, claim.metric, claim.where, claim.paper_value, measured, passed, detail)


def check_relation(relation: Relation, document: dict[str, Any]) -> Verdict:
    """Evaluate one relation on a results document (applies at every scale)."""
    missing = [name for name in relation.metrics if name not in document["metrics"]]
    if missing:
        passed, detail = False, f"metrics missing from the results: {', '.join(missing)}"
    else:
        passed = bool(relation.holds(document["metrics"]))
        detail = "holds" if passed else "does not hold"
    return Verdict(relation.chapter, relation.text, relation.where, None, None, passed, detail)


def check_document(document: dict[str, Any]) -> list[Verdict]:
    """Every claim and relation of the document's chapter, evaluated."""
    chapter = document["chapter"]
    return ([check_claim(c, document) for c in CLAIMS if c.chapter == chapter]
            + [check_relation(r, document) for r in RELATIONS if r.chapter == chapter])


def failures(verdicts: list[Verdict]) -> list[Verdict]:
    """The verdicts that failed (``passed is False``)."""
    return [v for v in verdicts if v.passed is False]
