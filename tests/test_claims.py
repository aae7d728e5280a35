from latentcf.book.reproduce import format_verdicts
from latentcf.core.claims import CLAIMS, RELATIONS, check_document, failures, published_values


def _document(scale, **overrides):
    metrics = {"median_distance_x": 2.3, "median_distance_z": 0.02, "success_rate_x": 1.0,
               "success_rate_z": 1.0, "classifier_accuracy": 1.0, "tangent_singular_ratio": 0.01,
               "tangent_alignment": 0.99, **overrides}
    return {"chapter": "helix", "scale": scale, "metrics": metrics}


def test_a_run_matching_the_paper_passes_everything():
    verdicts = check_document(_document("paper"))
    assert len(verdicts) == sum(c.chapter == "helix" for c in CLAIMS) + sum(r.chapter == "helix" for r in RELATIONS)
    assert failures(verdicts) == []


def test_a_claim_outside_its_tolerance_fails_at_paper_scale():
    failed = failures(check_document(_document("paper", median_distance_x=1.0)))
    assert [v.name for v in failed] == ["median_distance_x"]
    assert "0 failed" not in format_verdicts(check_document(_document("paper", median_distance_x=1.0)))


def test_claims_are_not_applied_at_smoke_scale_but_relations_are():
    verdicts = check_document(_document("smoke", median_distance_x=1.0, median_distance_z=0.5))
    claims = [v for v in verdicts if v.paper_value is not None]
    assert all(v.passed is None for v in claims)
    tenth = [r.text for r in RELATIONS if r.chapter == "helix" and "tenth" in r.text]
    assert [v.name for v in failures(verdicts)] == tenth


def test_a_missing_metric_fails_its_relation():
    document = _document("smoke")
    del document["metrics"]["tangent_alignment"]
    failed = failures(check_document(document))
    assert len(failed) == 1 and "missing" in failed[0].detail


def test_published_values_come_from_the_registry():
    assert published_values("helix")["median_distance_x"] == 2.34
    assert published_values("square") == {}


def test_the_published_galaxy10_tables_pass_their_own_claims_and_relations():
    metrics = dict(published_values("galaxy_leap"))
    verdicts = check_document({"chapter": "galaxy_leap", "scale": "paper", "metrics": metrics})
    assert len(metrics) == 16 + 35 + 35 and failures(verdicts) == []
    worse = {**metrics, "acc_rce_100": metrics["acc_ce_100"] - 0.01, "ssim_ni5": metrics["ssim_ni0"] + 0.01}
    failed = failures(check_document({"chapter": "galaxy_leap", "scale": "smoke", "metrics": worse}))
    assert len(failed) == 2 and all("CEs" in v.name for v in failed)
