"""The registry of the papers' published numbers, and the check of a run against it.

A :class:`Claim` is a published value with where it stands in the paper and the tolerance within
which a paper-scale run must reproduce it. A :class:`Relation` is a scale-independent statement
that the paper argues for ("the median distance in Z is far below the one in X") and that must
hold at every scale, smoke included. ``python -m latentcf reproduce ... --check`` evaluates both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


LEAPFACTUAL_TABLE2 = {
    "acc": (0.8277, 0.9422, 0.9868, 0.9906),
    "auc": (0.8814, 0.9979, 0.9990, 0.9999),
    "d_area": (0.2475, 0.2556, 0.1665, 0.2295),
    "d_length": (0.2472, 0.2999, 0.2128, 0.2732),
    "d_slant": (4.3667, 3.4613, 2.5026, 3.3144),
    "d_thickness": (0.1724, 0.0859, 0.0807, 0.0895),
    "d_width": (0.2912, 0.3069, 0.2061, 0.2784),
    "d_height": (0.0620, 0.0288, 0.0265, 0.0303),
}
"""LeapFactual Table 2 (Morpho-MNIST, mean of 5 runs) by row, for Opt, CGM, LeapFactual, LeapFactual_R."""
TABLE2_METHODS = ("opt", "cgm", "leap", "leap_r")
TABLE2_TOLERANCES = {"acc": (0.06, 0.03, 0.01, 0.01), "auc": (0.05, 0.003, 0.002, 0.001)}
"""Absolute tolerances of ACC and AUC: wide where the paper's runs themselves vary (Opt-based: the
official notebook's single run gave 0.878 against the table's 0.828)."""
TABLE2_RELATIVE_TOLERANCE = {"d_slant": 0.5}
"""D(.) rows are checked to 20% of the published value, D(Slant) to 50% (it is heavy-tailed: near-upright
digits make any change a large ratio)."""


def _table2_tolerance(row: str, method_index: int, value: float) -> float:
    if row in TABLE2_TOLERANCES:
        return TABLE2_TOLERANCES[row][method_index]
    return round(TABLE2_RELATIVE_TOLERANCE.get(row, 0.2) * value, 4)


LEAPFACTUAL_TABLE3 = {
    "acc": {"weak": 0.8107, "strong": 0.8530, "ce_10": 0.7975, "ce_50": 0.7968, "ce_100": 0.7967,
            "rce_10": 0.8163, "rce_50": 0.8197, "rce_100": 0.8237},
    "auc": {"weak": 0.9770, "strong": 0.9813, "ce_10": 0.9749, "ce_50": 0.9744, "ce_100": 0.9738,
            "rce_10": 0.9776, "rce_50": 0.9788, "rce_100": 0.9793},
}
"""LeapFactual Table 3 (Galaxy10 DECaLS, mean of 5 runs): the weak (20%) and strong (100%) classifiers and the
weak set plus 10/50/100% of the CEs or reliable CEs, by metric and column."""
LEAPFACTUAL_TABLE5 = {
    100: (0.9718, 0.9855, 0.4868, 0.8798, 0.8579, 22.8416, 0.0641),
    150: (0.9772, 0.9884, 0.4862, 0.8829, 0.8562, 22.3836, 0.0655),
    200: (0.9814, 0.9896, 0.4880, 0.8832, 0.8551, 22.1526, 0.0663),
    250: (0.9832, 0.9901, 0.4892, 0.8836, 0.8544, 21.9950, 0.0668),
    300: (0.9832, 0.9898, 0.4874, 0.8835, 0.8538, 21.8846, 0.0673),
}
"""LeapFactual Table 5 (Galaxy10, N_b ablation at gamma_b = 0.1): ACC, AUC, ACC_r, AUC_r, SSIM, PSNR, LPIPS per N_b."""
LEAPFACTUAL_TABLE6 = {
    0: (0.9821, 0.9897, 0.4738, 0.8797, 0.8577, 22.4959, 0.0651),
    5: (0.9439, 0.9934, 0.6620, 0.9404, 0.8255, 21.0064, 0.0821),
    15: (0.9599, 0.9973, 0.7899, 0.9740, 0.7774, 19.2938, 0.1095),
    25: (0.9612, 0.9975, 0.8171, 0.9815, 0.7417, 18.0882, 0.1324),
    35: (0.9545, 0.9974, 0.8135, 0.9832, 0.7122, 17.0410, 0.1524),
}
"""LeapFactual Table 6 (Galaxy10, reliable CEs along N_i; N_b = 250, gamma 0.1 and 1 / 1.025; mean of 10 runs)."""
GALAXY_SWEEP_COLUMNS = ("acc", "auc", "acc_r", "auc_r", "ssim", "psnr", "lpips")
GALAXY_SWEEP_TOLERANCES = {"acc": 0.02, "auc": 0.01, "acc_r": 0.05, "auc_r": 0.02, "ssim": 0.03, "psnr": 1.0,
                           "lpips": 0.02}
"""Absolute tolerances of Tables 5 and 6: ACC_r and AUC_r depend on a separately trained strong classifier;
PSNR in dB; LPIPS needs downloaded weights (a run without them fails these claims as missing)."""
GALAXY_INJECT_SWEEP = (5, 15, 25, 35)
"""The N_i > 0 of Table 6 (reliable CEs), compared with N_i = 0 (CEs) by the relations."""

SQUARE_BLEND_ALPHAS = tuple(f"blend_alpha_g{gamma:g}" for gamma in (0.1, 0.3, 0.5, 0.7, 0.9))
"""The square chapter's blending alphas, by increasing gamma (``latentcf.chapters.square.BLEND_GAMMAS``)."""

CLAIMS: tuple[Claim, ...] = (
    Claim("helix", "median_distance_x", 2.34, 0.6, "Dombrowski et al. Sec. 4.1.1, Fig. 16"),
    Claim("helix", "median_distance_z", 0.01, 0.04, "Dombrowski et al. Sec. 4.1.1, Fig. 16"),
    Claim("helix", "success_rate_x", 1.0, 0.01, "Dombrowski et al. Sec. 4.1.1 (all reach the target)"),
    Claim("helix", "success_rate_z", 1.0, 0.01, "Dombrowski et al. Sec. 4.1.1 (all reach the target)"),
    Claim("helix", "classifier_accuracy", 1.0, 0.01, "Dombrowski et al. App. B.1 (near perfect)"),
    Claim("mnist_leap", "classifier_accuracy", 0.9658, 0.01, "LeapFactual Sec. 4.1 (official notebook: 0.9707)"),
    *(Claim("mnist_leap", f"{row}_{method}", value, _table2_tolerance(row, index, value), "LeapFactual Table 2")
      for row, values in LEAPFACTUAL_TABLE2.items()
      for index, (method, value) in enumerate(zip(TABLE2_METHODS, values, strict=True))),
    *(Claim("galaxy_leap", f"{metric}_{column}", value, 0.015 if metric == "acc" else 0.004, "LeapFactual Table 3")
      for metric, columns in LEAPFACTUAL_TABLE3.items() for column, value in columns.items()),
    *(Claim("galaxy_leap", f"{metric}_{prefix}{count}", value, GALAXY_SWEEP_TOLERANCES[metric], where)
      for prefix, table, where in (("nb", LEAPFACTUAL_TABLE5, "LeapFactual Table 5"),
                                   ("ni", LEAPFACTUAL_TABLE6, "LeapFactual Table 6"))
      for count, values in table.items() for metric, value in zip(GALAXY_SWEEP_COLUMNS, values)),
    Claim("mnist_diffeo", "flow_bits_per_dim", 1.21, 0.1, "Dombrowski et al. App. B.3"),
    Claim("mnist_diffeo", "classifier_accuracy", 0.99, 0.005, "Dombrowski et al. Sec. 4.1.3, App. B.4"),
    Claim("mnist_diffeo", "oracle_accuracy", 0.92, 0.02, "Dombrowski et al. Sec. 4.1.3 (10-class SVM)"),
    Claim("mnist_diffeo", "success_rate_x", 1.0, 0.01, "Dombrowski et al. App. B.6 (500 of 500)"),
    Claim("mnist_diffeo", "success_rate_z", 0.996, 0.02, "Dombrowski et al. App. B.6 (498 of 500)"),
    Claim("mnist_diffeo", "im1_original", 2.250, 0.711, "Dombrowski et al. Table 1 (tolerance: one paper std)"),
    Claim("mnist_diffeo", "im1_x", 1.603, 0.317, "Dombrowski et al. Table 1 (tolerance: one paper std)"),
    Claim("mnist_diffeo", "im1_z", 1.056, 0.233, "Dombrowski et al. Table 1 (tolerance: one paper std)"),
    Claim("mnist_diffeo", "l2x_source_x", 2.54, 0.61, "Dombrowski et al. Table 2 (tolerance: one paper std)"),
    Claim("mnist_diffeo", "l2x_source_z", 4.82, 1.20, "Dombrowski et al. Table 2 (tolerance: one paper std)"),
    Claim("mnist_diffeo", "l2x_class_x", 8.77, 1.25, "Dombrowski et al. Table 2 (tolerance: one paper std)"),
    Claim("mnist_diffeo", "l2x_class_z", 9.27, 1.32, "Dombrowski et al. Table 2 (tolerance: one paper std)"),
    Claim("mnist_diffeo", "l2z_source_x", 41.86, 2.1, "Dombrowski et al. Table 3 (tolerance: 5%)"),
    Claim("mnist_diffeo", "l2z_source_z", 35.26, 4.68, "Dombrowski et al. Table 3 (tolerance: one paper std)"),
    Claim("mnist_diffeo", "l2z_class_x", 42.12, 2.1, "Dombrowski et al. Table 3 (tolerance: 5%)"),
    Claim("mnist_diffeo", "l2z_class_z", 39.91, 2.0, "Dombrowski et al. Table 3 (tolerance: 5%)"),
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
    Relation("mnist_diffeo", "the oracle (SVM) says 9 more often for counterfactuals in Z than for adversarials in X",
             ("oracle_target_acc_z", "oracle_target_acc_x"),
             lambda m: m["oracle_target_acc_z"] > m["oracle_target_acc_x"],
             "Dombrowski et al. Sec. 4.1.3, Fig. 9 left"),
    Relation("mnist_diffeo", "more of the 10 nearest neighbours are 9s for counterfactuals in Z than in X",
             ("knn_target_frac_z", "knn_target_frac_x"),
             lambda m: m["knn_target_frac_z"] > m["knn_target_frac_x"], "Dombrowski et al. Sec. 4.1.3, Fig. 11 left"),
    Relation("mnist_diffeo", "IM1 is lower for counterfactuals in Z than for adversarials in X",
             ("im1_z", "im1_x"), lambda m: m["im1_z"] < m["im1_x"], "Dombrowski et al. Table 1"),
    Relation("mnist_diffeo", "in X, adversarials are closer to their source images than counterfactuals",
             ("l2x_source_x", "l2x_source_z"), lambda m: m["l2x_source_x"] < m["l2x_source_z"],
             "Dombrowski et al. Table 2"),
    Relation("mnist_diffeo", "in Z, counterfactuals are closer to their source images than adversarials",
             ("l2z_source_z", "l2z_source_x"), lambda m: m["l2z_source_z"] < m["l2z_source_x"],
             "Dombrowski et al. Table 3"),
    Relation("mnist_leap", "LeapFactual's counterfactuals reach the target more often than the Opt-based ones",
             ("acc_leap", "acc_opt"), lambda m: m["acc_leap"] > m["acc_opt"], "LeapFactual Table 2"),
    Relation("mnist_leap", "injection keeps the accuracy (ACC of LeapFactual_R >= ACC of LeapFactual - 0.02)",
             ("acc_leap_r", "acc_leap"), lambda m: m["acc_leap_r"] >= m["acc_leap"] - 0.02, "LeapFactual Table 2"),
    Relation("mnist_leap", "LeapFactual changes the stroke area less than the conditional VAE (D(Area))",
             ("d_area_leap", "d_area_cgm"), lambda m: m["d_area_leap"] < m["d_area_cgm"], "LeapFactual Table 2"),
    Relation("mnist_leap", "LeapFactual explains a k-NN classifier (no gradients): at least 90% of its "
             "counterfactuals are the target class for the k-NN itself", ("acc_leap_blackbox",),
             lambda m: m["acc_leap_blackbox"] >= 0.9,
             "this book (beyond the paper: LeapFactual Sec. 1, model-agnostic)"),
    Relation("galaxy_leap",
             "the strong classifier (all training images) is more accurate than the weak one (the weak set only)",
             ("acc_strong", "acc_weak"), lambda m: m["acc_strong"] > m["acc_weak"], "LeapFactual Table 3"),
    Relation("galaxy_leap", "the strong classifier calls reliable CEs (every N_i > 0) the target more often than CEs",
             tuple(f"acc_r_ni{n}" for n in (0, *GALAXY_INJECT_SWEEP)),
             lambda m: all(m[f"acc_r_ni{n}"] > m["acc_r_ni0"] for n in GALAXY_INJECT_SWEEP), "LeapFactual Table 6"),
    Relation("galaxy_leap", "reliable CEs (every N_i > 0) are less similar to the input (SSIM) than CEs",
             tuple(f"ssim_ni{n}" for n in (0, *GALAXY_INJECT_SWEEP)),
             lambda m: all(m[f"ssim_ni{n}"] < m["ssim_ni0"] for n in GALAXY_INJECT_SWEEP), "LeapFactual Table 6"),
    Relation("galaxy_leap",
             "the weak classifier retrained with 100% reliable CEs beats the one retrained with 100% CEs",
             ("acc_rce_100", "acc_ce_100"), lambda m: m["acc_rce_100"] > m["acc_ce_100"], "LeapFactual Table 3"),
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
