"""The smoke margins: which relations a smoke run is gated on, and the evidence the registry is held to."""

import json

import pytest

from latentcf.book.margins import ISA_CAPS, margins_markdown, merge, tabulate
from latentcf.core.claims import RELATIONS, check_document
from latentcf.core.smoke_evidence import MIN_ISAS, MIN_SEEDS, margins_table, relation_key, run_label, smoke_power


def _table(margins_by_run, key="helix: x"):
    runs = {label: {"isa": label.split("/")[0], "seed": int(label.split("seed")[1])} for label in margins_by_run}
    return {"runs": runs, "margins": {key: margins_by_run}}


def _everywhere(margin=0.1, seeds=MIN_SEEDS, isas=("native", "capped")):
    return {run_label(isa, seed): margin for isa in isas for seed in range(seeds)}


def test_a_relation_held_at_every_seed_under_both_instruction_sets_is_shown_everywhere():
    power = smoke_power("helix", "x", False, _table(_everywhere()))
    assert power.shown_everywhere and power.held == power.evaluated == MIN_SEEDS * MIN_ISAS
    assert power.describe() == f"shown at 10 of 10 smoke runs ({MIN_SEEDS} seeds x 2 instruction sets)"


@pytest.mark.parametrize("broken", ["one run fails", "four seeds", "one instruction set", "strict zero"])
def test_a_relation_is_not_shown_everywhere_on_evidence_built_to_lack_power(broken):
    margins, inclusive = _everywhere(), False
    if broken == "one run fails":
        margins[run_label("capped", 3)] = -0.01
    elif broken == "four seeds":
        margins = _everywhere(seeds=MIN_SEEDS - 1)
    elif broken == "one instruction set":
        margins = _everywhere(seeds=10, isas=("native",))
    else:
        margins[run_label("native", 0)] = 0.0
    assert not smoke_power("helix", "x", inclusive, _table(margins)).shown_everywhere


def test_an_at_least_relation_holds_at_a_zero_margin_and_unevaluated_runs_do_not_count():
    margins = {**_everywhere(), run_label("native", 0): 0.0, run_label("native", 9): None}
    power = smoke_power("helix", "x", True, _table(margins))
    assert power.shown_everywhere and power.evaluated == MIN_SEEDS * MIN_ISAS
    assert smoke_power("helix", "unknown", False, _table(margins)).describe().startswith("no smoke run")
    one = smoke_power("helix", "x", False, _table({run_label("native", 0): 0.1}))
    assert one.describe() == "shown at 1 of 1 smoke runs (1 seed x 1 instruction set)"


def test_the_registry_gates_exactly_the_relations_the_shipped_margins_show_everywhere():
    table = margins_table()
    for relation in RELATIONS:
        power = smoke_power(relation.chapter, relation.text, relation.inclusive, table)
        assert relation.smoke_gated == power.shown_everywhere, (relation.chapter, relation.text, power)


def test_the_shipped_margins_name_only_relations_of_the_registry_and_runs_with_their_machine():
    table = margins_table()
    keys = {relation_key(r.chapter, r.text) for r in RELATIONS}
    assert set(table["margins"]) <= keys
    for label, run in table["runs"].items():
        assert label == run_label(run["isa"], run["seed"]) and run["isa"] in ISA_CAPS
        assert run["cpu"]["model"] and run["git_sha"]


def _write_run(folder, isa, seed, metrics):
    path = folder / isa / f"seed{seed}" / "helix.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"chapter": "helix", "scale": "smoke", "device": "cpu", "seed": seed, "runtime_s": 60.0,
                "git_sha": "abc1234567", "date": "2026-12-08T00:00:00+00:00", "versions": {}, "metrics": metrics,
                "cpu": {"model": "a CPU", "flags": ["avx2"], "aten_capability": "AVX2", "threads": 1, "caps": {}}}
    path.write_text(json.dumps(document))


HELIX = {"median_distance_x": 2.0, "median_distance_z": 0.05, "success_rate_x": 1.0, "success_rate_z": 1.0,
         "classifier_accuracy": 1.0, "tangent_singular_ratio": 0.01, "tangent_alignment": 0.99}


def test_tabulate_gives_each_relation_its_margin_per_run_and_merge_keeps_earlier_runs(tmp_path):
    _write_run(tmp_path, "native", 0, HELIX)
    _write_run(tmp_path, "capped", 0, {**HELIX, "median_distance_z": 0.3})
    table = tabulate(tmp_path)
    tenth = next(r for r in RELATIONS if "tenth" in r.text)
    margins = table["margins"][relation_key("helix", tenth.text)]
    assert margins == {"native/seed0": pytest.approx(0.15), "capped/seed0": pytest.approx(-0.1)}
    square = next(r for r in RELATIONS if r.chapter == "square")
    assert set(table["margins"][relation_key("square", square.text)].values()) == {None}
    expected = {v.name: v.margin for v in check_document({"chapter": "helix", "scale": "smoke", "metrics": HELIX})
                if v.paper_value is None}
    assert {r.text: table["margins"][relation_key("helix", r.text)]["native/seed0"]
            for r in RELATIONS if r.chapter == "helix"} == expected
    later = tmp_path / "later"
    _write_run(later, "native", 1, HELIX)
    merged = merge({**table, "notes": ["first sweep"]}, {**tabulate(later), "notes": ["second sweep"]})
    assert merged["notes"] == ["first sweep", "second sweep"]
    assert set(merged["runs"]) == {"native/seed0", "capped/seed0", "native/seed1"}
    assert merged["margins"][relation_key("helix", tenth.text)]["capped/seed0"] == pytest.approx(-0.1)
    page = margins_markdown(merged)
    assert "| native/seed0 | a CPU (avx2) | AVX2 | 1 | none | abc1234567 |" in page and "- second sweep" in page
    row = next(line for line in page.splitlines() if line.startswith("| median distance to the helix in Z"))
    assert row.endswith("| 2 of 3 | reported |") and "-0.1 |" in row
