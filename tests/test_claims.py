import math

import pytest

from latentcf.book.reproduce import format_verdicts
from latentcf.core.claims import (
    CLAIMS,
    GALAXY_INJECT_SWEEP,
    LEAPFACTUAL_TABLE3_ERRORS,
    LEAPFACTUAL_TABLE5,
    PAPER_SCALE,
    RELATIONS,
    Claim,
    Relation,
    StandardError,
    check_claim,
    check_document,
    check_relation,
    failures,
    published_values,
    reported,
)


def _failing(verdicts):
    """The verdicts whose claim or relation does not hold, gated or only reported."""
    return [v for v in verdicts if v.passed is False]


def _document(scale, **overrides):
    metrics = {"median_distance_x": 2.3, "median_distance_z": 0.02, "success_rate_x": 1.0,
               "success_rate_z": 1.0, "classifier_accuracy": 1.0, "tangent_singular_ratio": 0.01,
               "tangent_alignment": 0.99, **overrides}
    return {"chapter": "helix", "scale": scale, "metrics": metrics}


def test_a_run_matching_the_paper_passes_everything():
    verdicts = check_document(_document("paper"))
    assert len(verdicts) == sum(c.chapter == "helix" for c in CLAIMS) + sum(r.chapter == "helix" for r in RELATIONS)
    assert _failing(verdicts) == []


def test_a_claim_outside_its_tolerance_fails_at_paper_scale():
    failed = _failing(check_document(_document("paper", median_distance_x=1.0)))
    assert [v.name for v in failed] == ["median_distance_x"]
    assert "0 failed" not in format_verdicts(check_document(_document("paper", median_distance_x=1.0)))


def test_claims_are_not_applied_at_smoke_scale_but_relations_are():
    verdicts = check_document(_document("smoke", median_distance_x=1.0, median_distance_z=0.5))
    claims = [v for v in verdicts if v.paper_value is not None]
    assert all(v.passed is None for v in claims)
    tenth = [r.text for r in RELATIONS if r.chapter == "helix" and "tenth" in r.text]
    assert [v.name for v in _failing(verdicts)] == tenth


def test_a_missing_metric_fails_its_relation():
    document = _document("smoke")
    del document["metrics"]["tangent_alignment"]
    failed = _failing(check_document(document))
    assert len(failed) == 1 and "missing" in failed[0].detail


def test_published_values_come_from_the_registry():
    assert published_values("helix")["median_distance_x"] == 2.34
    assert published_values("square") == {}


def _published_table3_sems():
    return {f"sem_{metric}_{column}": error for metric, columns in LEAPFACTUAL_TABLE3_ERRORS.items()
            for column, error in columns.items()}


def test_the_published_galaxy10_tables_pass_their_own_claims_and_relations():
    assert len(published_values("galaxy_leap")) == 16 + 35 + 35
    metrics = {**published_values("galaxy_leap"), **_published_table3_sems()}
    verdicts = check_document({"chapter": "galaxy_leap", "scale": "paper", "settings": {"table3_runs": 5},
                               "metrics": metrics})
    assert _failing(verdicts) == []
    worse = {**metrics, "acc_rce_100": metrics["acc_ce_100"] - 0.01, "ssim_ni5": metrics["ssim_ni0"] + 0.01}
    failed = _failing(check_document({"chapter": "galaxy_leap", "scale": "smoke", "metrics": worse}))
    assert {v.name for v in failed} == {
        "the weak classifier retrained with 100% reliable CEs beats the one retrained with 100% CEs",
        "reliable CEs (every N_i > 0) are less similar to the input (SSIM) than CEs",
        "more injection leaps: SSIM falls at every step of N_i",
        "ACC: the weak set plus 100% reliable CEs beats the weak set alone by more than their two standard errors "
        "combined (reliable CEs help)"}


# Tolerances from published errors, weak claims, relations by scale ---------------------------------------------

def _galaxy_paper(**overrides):
    metrics = {**published_values("galaxy_leap"), **_published_table3_sems(), **overrides}
    return {"chapter": "galaxy_leap", "scale": "paper", "settings": {"table3_runs": 5}, "metrics": metrics}


def _names(verdicts):
    return {v.name for v in verdicts}


def test_a_standard_error_tolerance_follows_the_published_error_and_the_run_sample_size():
    sem = StandardError(0.0026, paper_n=5, spread="sem", sample_size="eval_runs", floor=0.001, why="test")
    assert sem({"settings": {"eval_runs": 5}}) == pytest.approx(3 * 0.0026 * math.sqrt(2))
    assert sem({"settings": {"eval_runs": 1}}) == pytest.approx(3 * 0.0026 * math.sqrt(6))
    assert sem({"settings": {}}) is None
    std = StandardError(0.711, paper_n=500, spread="std", sample_size="search_n", floor=0.01, why="test")
    assert std({"settings": {"search_n": 500}}) == pytest.approx(3 * 0.711 * math.sqrt(2 / 500))
    assert std({"settings": {"search_n": 48}}) > std({"settings": {"search_n": 500}})
    floored = StandardError(0.0, paper_n=5, spread="sem", sample_size=1, floor=0.001, why="test")
    assert floored({}) == 0.001 and "floor 0.001" in floored.describe()
    with pytest.raises(ValueError):
        StandardError(0.1, paper_n=5, spread="iqr", sample_size=1, floor=0.0, why="test")


def test_a_claim_with_a_standard_error_tolerance_is_checked_against_the_run_sample_size():
    claim = Claim("mnist_leap", "acc_leap", 0.9868,
                  StandardError(0.0026, paper_n=5, spread="sem", sample_size="eval_runs", floor=0.001, why="t"), "T2")
    document = {"chapter": "mnist_leap", "scale": "paper", "settings": {"eval_runs": 5}, "metrics": {"acc_leap": 0.977}}
    assert check_claim(claim, document).passed is True  # 0.0098 off, tolerance 0.0110
    document["settings"]["eval_runs"] = 50
    assert check_claim(claim, document).passed is False  # tolerance 0.0082 with ten times the runs
    del document["settings"]["eval_runs"]
    verdict = check_claim(claim, document)
    assert verdict.passed is False and "sample size" in verdict.detail


def test_every_published_error_becomes_a_tolerance_that_can_fail():
    for claim in CLAIMS:
        if isinstance(claim.tolerance, StandardError):
            tolerance = claim.tolerance({"settings": {claim.tolerance.sample_size: 5}})
            assert 0 < tolerance < 0.5 * abs(claim.paper_value), claim.metric


def test_the_z_space_class_distances_are_marked_weak_and_say_why():
    weak = {c.metric: c.weak for c in CLAIMS if c.weak}
    assert set(weak) == {"l2z_class_x", "l2z_class_z"} and all("39.6" in text for text in weak.values())
    metrics = published_values("mnist_diffeo")
    verdicts = check_document({"chapter": "mnist_diffeo", "scale": "paper", "settings": {"search_n": 500},
                               "metrics": metrics})
    assert {v.name for v in verdicts if v.weak} == set(weak)


def test_a_relation_is_only_checked_at_its_scales():
    relation = Relation("helix", "x is positive", ("x",), lambda m: m["x"], "here", scales=PAPER_SCALE)
    smoke = check_relation(relation, {"scale": "smoke", "metrics": {"x": -1.0}})
    assert smoke.passed is None and smoke.detail == "not checked at this scale"
    assert check_relation(relation, {"scale": "paper", "metrics": {"x": -1.0}}).passed is False
    failed = check_relation(relation, {"scale": "paper", "metrics": {"x": -1.0}})
    assert "x = -1" in failed.detail


def test_a_run_flat_in_n_b_passes_table5_claims_but_fails_its_trend():
    columns = ("acc", "auc", "acc_r", "auc_r", "ssim", "psnr", "lpips")
    flat = {f"{metric}_nb{n}": value for n in LEAPFACTUAL_TABLE5
            for metric, value in zip(columns, LEAPFACTUAL_TABLE5[250])}
    verdicts = check_document(_galaxy_paper(**flat))
    assert not [v for v in _failing(verdicts) if v.paper_value is not None]
    assert _names(_failing(verdicts)) == {r.text for r in RELATIONS
                                          if "blending leaps" in r.text and "ACC does not fall" not in r.text}


def test_table3_fails_when_reliable_ces_do_not_help_or_plain_ces_do_not_hurt():
    metrics = published_values("galaxy_leap")
    no_help = _galaxy_paper(acc_rce_100=metrics["acc_weak"] - 0.001)
    assert any("reliable CEs help" in v.name and v.name.startswith("ACC") for v in _failing(check_document(no_help)))
    no_harm = _galaxy_paper(auc_ce_100=metrics["auc_weak"] + 0.0001)
    assert [v.name[:4] for v in _failing(check_document(no_harm)) if "plain CEs hurt" in v.name] == ["AUC:"]
    at_smoke = check_document({**no_help, "scale": "smoke"})
    assert [v.name[:4] for v in _failing(at_smoke) if "reliable CEs help" in v.name] == ["ACC:"]


def test_table3_fails_when_a_gap_is_within_the_two_standard_errors():
    metrics = published_values("galaxy_leap")
    within = _galaxy_paper(sem_acc_weak=metrics["acc_rce_100"] - metrics["acc_weak"])
    assert [v.name for v in _failing(check_document(within)) if "standard errors" in v.name] == [
        r.text for r in RELATIONS if "standard errors" in r.text]
    gap = metrics["acc_weak"] - metrics["acc_ce_100"]
    just_outside = _galaxy_paper(sem_acc_weak=0.4 * gap, sem_acc_ce_100=0.4 * gap, sem_acc_rce_100=0.0)
    assert not [v for v in _failing(check_document(just_outside)) if "standard errors" in v.name]


def test_table5_acc_may_not_fall_along_the_blending_sweep_of_any_scale():
    rising = {"acc_nb5": 0.3, "acc_nb10": 0.6, "acc_nb15": 0.6, "acc_nb20": 0.9}
    relation = next(r for r in RELATIONS if "ACC does not fall" in r.text)
    assert check_relation(relation, {"scale": "smoke", "metrics": rising}).passed is True
    falling = check_relation(relation, {"scale": "smoke", "metrics": {**rising, "acc_nb15": 0.5}})
    assert falling.passed is False and "acc_nb5 = 0.3, acc_nb10 = 0.6, acc_nb15 = 0.5" in falling.detail
    unsorted_names = {"acc_nb100": 0.9, "acc_nb20": 0.85, "acc_r_nb20": 0.1}
    assert check_relation(relation, {"scale": "paper", "metrics": unsorted_names}).passed is True
    one_point = check_relation(relation, {"scale": "smoke", "metrics": {"acc_nb5": 0.3}})
    assert one_point.passed is False and "acc_nb<N>" in one_point.detail


def test_table6_fails_when_injection_does_not_raise_acc_r_or_lower_similarity():
    flat_acc_r = _galaxy_paper(**{f"acc_r_ni{n}": 0.6 for n in (5, 15, 25)})
    assert any("ACC_r rises" in v.name for v in _failing(check_document(flat_acc_r)))
    rising_psnr = _galaxy_paper(psnr_ni35=25.0)
    assert any("PSNR falls at every step of N_i" in v.name for v in _failing(check_document(rising_psnr)))
    assert GALAXY_INJECT_SWEEP == (5, 15, 25, 35)


def _mnist_leap(scale, **overrides):
    metrics = {**published_values("mnist_leap"), "acc_leap_blackbox": 0.99, **overrides}
    return {"chapter": "mnist_leap", "scale": scale, "settings": {"eval_runs": 5}, "metrics": metrics}


def test_the_published_table2_passes_its_claims_and_relations():
    assert _failing(check_document(_mnist_leap("paper"))) == []


def test_injection_must_raise_the_accuracy_not_merely_keep_it():
    verdicts = check_document(_mnist_leap("smoke", acc_leap_r=0.9858))  # the old relation allowed 0.02 less
    assert [v.name for v in _failing(verdicts)] == [r.text for r in RELATIONS if "raises the accuracy" in r.text]


def test_leapfactual_must_change_every_property_least():
    worse_slant = _mnist_leap("paper", d_slant_leap=3.5)
    assert any("every D row" in v.name for v in failures(check_document(worse_slant)))
    at_smoke = check_document({**worse_slant, "scale": "smoke"})
    assert any("every D row" in v.name for v in _failing(at_smoke))


def _mnist_diffeo(**overrides):
    metrics = {**published_values("mnist_diffeo"), "oracle_target_acc_z": 0.5, "oracle_target_acc_x": 0.1,
               "knn_target_frac_z": 0.5, "knn_target_frac_x": 0.1, **overrides}
    return {"chapter": "mnist_diffeo", "scale": "smoke", "settings": {"search_n": 48}, "metrics": metrics}


@pytest.mark.parametrize(("overrides", "words"), [
    ({"im1_x": 2.3}, "IM1 is lowest"),
    ({"l2x_source_z": 9.5}, "than to the source class"),
    ({"l2z_source_z": 40.0}, "in Z, counterfactuals are closer to their source image than to the source class"),
])
def test_the_orderings_of_dombrowski_tables_1_to_3_fail_when_violated(overrides, words):
    assert _failing(check_document(_mnist_diffeo())) == []
    assert [v.name for v in _failing(check_document(_mnist_diffeo(**overrides))) if words in v.name]


@pytest.mark.parametrize(("metric", "words"), [("auc_r", "AUC_r rises"), ("ssim", "SSIM falls at every step of N_i"),
                                               ("psnr", "PSNR falls at every step of N_i"),
                                               ("lpips", "LPIPS rises at every step of N_i")])
def test_each_table6_trend_fails_on_a_run_flat_in_n_i(metric, words):
    flat = _galaxy_paper(**{f"{metric}_ni{n}": published_values("galaxy_leap")[f"{metric}_ni0"]
                            for n in GALAXY_INJECT_SWEEP})
    failed = [v.name for v in _failing(check_document(flat)) if v.paper_value is None]
    assert [name for name in failed if "more injection leaps" in name] == [
        r.text for r in RELATIONS if r.chapter == "galaxy_leap" and words in r.text]


@pytest.mark.parametrize(("overrides", "words"), [({"acc_cgm": 0.8}, "CGM-based"),
                                                  ({"auc_leap_r": 0.9990}, "raises the AUC")])
def test_the_other_table2_orderings_fail_when_violated(overrides, words):
    assert [v.name for v in _failing(check_document(_mnist_leap("smoke", **overrides)))] == [
        r.text for r in RELATIONS if words in r.text]


# Margins and smoke gating --------------------------------------------------------------------------------------

def test_a_relation_margin_is_positive_where_it_holds_and_negative_where_it_fails():
    relation = next(r for r in RELATIONS if r.chapter == "helix" and "tenth" in r.text)
    holds = check_relation(relation, _document("paper", median_distance_x=2.0, median_distance_z=0.05))
    assert holds.passed is True and holds.margin == pytest.approx(0.15)
    fails = check_relation(relation, _document("paper", median_distance_x=2.0, median_distance_z=0.3))
    assert fails.passed is False and fails.margin == pytest.approx(-0.1) and "margin -0.1" in fails.detail


def test_an_at_least_threshold_holds_at_a_margin_of_zero_and_a_strict_one_does_not():
    at_least = next(r for r in RELATIONS if r.chapter == "helix" and "95% of the starts" in r.text)
    assert at_least.inclusive and check_relation(at_least, _document("paper", success_rate_x=0.95)).passed is True
    assert check_relation(at_least, _document("paper", success_rate_x=0.94)).passed is False
    strict = next(r for r in RELATIONS if r.chapter == "helix" and "rank one" in r.text)
    assert check_relation(strict, _document("paper", tangent_singular_ratio=0.1)).passed is False


def test_a_chain_margin_is_its_smallest_step():
    relation = next(r for r in RELATIONS if "IM1 is lowest" in r.text)
    verdict = check_relation(relation, _mnist_diffeo(im1_z=1.0, im1_x=1.2, im1_original=2.0))
    assert verdict.margin == pytest.approx(0.2)
    assert check_relation(relation, _mnist_diffeo(im1_z=1.0, im1_x=2.1, im1_original=2.0)).margin == pytest.approx(-0.1)


def test_a_smoke_run_reports_an_ungated_relation_and_fails_a_gated_one():
    ungated = Relation("helix", "x is positive", ("x",), lambda m: m["x"], "here")
    gated = Relation("helix", "x is positive", ("x",), lambda m: m["x"], "here", smoke_gated=True)
    smoke = {"chapter": "helix", "scale": "smoke", "metrics": {"x": -1.0}}
    reported_verdict = check_relation(ungated, smoke)
    assert reported_verdict.passed is False and not reported_verdict.gated
    assert "reported, not gated at smoke scale" in reported_verdict.detail
    assert failures([reported_verdict]) == [] and reported([reported_verdict]) == [reported_verdict]
    gated_verdict = check_relation(gated, smoke)
    assert failures([gated_verdict]) == [gated_verdict] and reported([gated_verdict]) == []
    paper = check_relation(ungated, {**smoke, "scale": "paper"})
    assert failures([paper]) == [paper]
    text = format_verdicts([reported_verdict, gated_verdict])
    assert text.splitlines()[0].startswith("MISS") and text.splitlines()[1].startswith("FAIL")
    assert text.splitlines()[-1] == "claims: 0 passed, 1 failed" and "1 relations missed" in text


def test_a_smoke_run_that_breaks_a_gated_helix_relation_fails_the_check():
    tenth = next(r for r in RELATIONS if r.chapter == "helix" and "tenth" in r.text)
    assert tenth.smoke_gated
    failed = failures(check_document(_document("smoke", median_distance_x=1.0, median_distance_z=0.5)))
    assert [v.name for v in failed] == [tenth.text]
