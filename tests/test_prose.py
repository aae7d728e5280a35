"""Sentences that state a result are held to the run's metrics: the checker, the book build, the committed prose."""

import json
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

from latentcf.book import build, prose
from latentcf.chapters.registry import CHAPTERS
from latentcf.core.claims import CLAIMS, RELATIONS
from latentcf.core.errors import LatentcfError
from latentcf.core.paths import project_root

ROOT = project_root(Path(__file__).parent)

CONTRADICTED = [
    ("galaxy_leap", "In this run reliable CEs hurt less than plain CEs.",
     {"acc_rce_100": 0.40, "acc_ce_100": 0.45}, {"acc_rce_100": 0.45, "acc_ce_100": 0.40}),
    ("galaxy_leap", "On this smoke scale plain CEs hurt.",
     {"acc_weak": 0.40, "acc_ce_100": 0.45}, {"acc_weak": 0.45, "acc_ce_100": 0.40}),
    ("galaxy_leap", "Reliable CEs help.", {"acc_weak": 0.45, "acc_rce_100": 0.40},
     {"acc_weak": 0.40, "acc_rce_100": 0.45}),
    ("galaxy_leap", "What to read here: the strong classifier beats the weak one.",
     {"acc_strong": 0.50, "acc_weak": 0.55}, {"acc_strong": 0.55, "acc_weak": 0.50}),
    ("helix", "Every search succeeds.", {"success_rate_z": 0.98}, {"success_rate_z": 1.0}),
    ("helix", "All latent searches succeed, and quickly.", {"success_rate_z": 0.5}, {"success_rate_z": 1.0}),
    ("square", "Every $\\alpha$ lies strictly between 0 and 1.",
     {name: value for name, value in zip(prose.SQUARE_BLEND_ALPHAS, (0.9, 0.7, 0.5, 0.3, -0.1))},
     {name: value for name, value in zip(prose.SQUARE_BLEND_ALPHAS, (0.9, 0.7, 0.5, 0.3, 0.1))}),
    ("galaxy_leap", "Each injection leap makes the strong classifier agree more often.",
     {"acc_r_ni0": 0.3, "acc_r_ni5": 0.4, "acc_r_ni15": 0.35}, {"acc_r_ni0": 0.3, "acc_r_ni5": 0.4, "acc_r_ni15": 0.5}),
]


@pytest.mark.parametrize("chapter, sentence, contradicting, agreeing", CONTRADICTED, ids=lambda v: str(v)[:30])
def test_a_sentence_is_contradicted_by_opposite_metrics_only(chapter, sentence, contradicting, agreeing):
    found = prose.contradictions(chapter, f"Some words first.\n{sentence}\n\nMore words.", contradicting)
    assert len(found) == 1 and sentence in found[0]
    assert all(f"{name} = {prose.number(value, 4)}" in found[0] for name, value in contradicting.items())
    assert prose.contradictions(chapter, sentence, agreeing) == []


def test_only_the_chapters_own_phrases_apply():
    assert prose.contradictions("helix", "Reliable CEs hurt less.", {"acc_rce_100": 0.4, "acc_ce_100": 0.5}) == []


@pytest.mark.parametrize("sentence", [
    "Where the share stays low, reliable CEs hurt less.",
    "If the flow is good, every search succeeds.",
    "Does every latent search succeed?",
    "The paper finds that reliable CEs hurt less.",
    "LeapFactual (Sec. 4.2): reliable CEs hurt less.",
    "Reliable CEs hurt less only where the strong classifier agrees.",
])
def test_conditions_questions_and_the_papers_findings_state_nothing_about_the_run(sentence):
    metrics = {"acc_rce_100": 0.4, "acc_ce_100": 0.5, "success_rate_z": 0.5}
    assert prose.is_hedged(sentence)
    assert prose.contradictions("galaxy_leap", sentence, metrics) == []
    assert prose.contradictions("helix", sentence, metrics) == []


def test_a_metric_the_run_lacks_or_left_undefined_contradicts_nothing():
    for metrics in ({}, {"acc_rce_100": None, "acc_ce_100": 0.5}, {"acc_rce_100": float("nan"), "acc_ce_100": 0.5}):
        assert prose.contradictions("galaxy_leap", "Reliable CEs hurt less.", metrics) == []


def test_sentences_split_at_full_stops_but_not_after_abbreviations_or_in_code():
    markdown = ("Dombrowski et al. Sec. 4.1 say so. The value is 0.5. Next one!\n\n* a list item\n"
                "```python\nx = 1. Not a sentence.\n```\n$$ a. B $$")
    assert prose.sentences(markdown) == ["Dombrowski et al. Sec. 4.1 say so.", "The value is 0.5.", "Next one!",
                                         "* a list item"]


def executed_notebook(path: Path, markdown: str, generated: str, printed: str, table: str) -> Path:
    """An executed notebook with a Markdown cell, and code cells that output Markdown, printed text and a table."""
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(markdown),
        nbformat.v4.new_code_cell("Markdown(...)", outputs=[nbformat.v4.new_output(
            "display_data", data={"text/markdown": generated, "text/plain": "<Markdown>"})]),
        nbformat.v4.new_code_cell("print(...)", outputs=[nbformat.v4.new_output("stream", name="stdout",
                                                                                text=printed)]),
        nbformat.v4.new_code_cell("frame", outputs=[nbformat.v4.new_output(
            "execute_result", data={"text/plain": table, "text/html": f"<td>{table}</td>"}, execution_count=1)]),
    ])
    nbformat.write(notebook, path)
    return path


def test_the_markdown_and_the_text_a_notebook_outputs_are_checked_but_not_its_tables(tmp_path):
    path = executed_notebook(tmp_path / "galaxy_leap.ipynb", "In this run plain CEs hurt.",
                             "In this run reliable CEs help.", "The strong classifier beats the weak one.\n",
                             "reliable CEs hurt less")
    metrics = {"acc_weak": 0.5, "acc_ce_100": 0.6, "acc_rce_100": 0.4, "acc_strong": 0.45}
    found = prose.notebook_contradictions("galaxy_leap", path, metrics)
    assert len(found) == 3 and all(message.startswith("galaxy_leap.ipynb: ") for message in found)
    assert not any("hurt less" in message for message in found)


def test_the_book_check_names_the_chapter_the_sentence_and_the_metrics(tmp_path):
    path = executed_notebook(tmp_path / "galaxy_leap.ipynb", "Plain words.", "In this run reliable CEs hurt less.",
                             "", "")
    page = tmp_path / "intro.md"
    page.write_text("On the helix every search succeeds.\n")
    results = {"galaxy_leap": {"acc_rce_100": 0.41, "acc_ce_100": 0.45}, "helix": {"success_rate_z": 0.9}}
    with pytest.raises(LatentcfError) as raised:
        prose.check_book_prose({"galaxy_leap": path}, results, [page])
    message = str(raised.value)
    assert "2 sentence(s)" in message and "galaxy_leap.ipynb" in message and "intro.md" in message
    assert "In this run reliable CEs hurt less." in message and "acc_rce_100 = 0.41, acc_ce_100 = 0.45" in message
    assert "the helix run has success_rate_z = 0.9" in message
    prose.check_book_prose({"galaxy_leap": path}, {"galaxy_leap": {"acc_rce_100": 0.5, "acc_ce_100": 0.45},
                                                    "helix": {"success_rate_z": 1.0}}, [page])


def test_the_build_refuses_a_page_that_its_own_run_contradicts(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "stage_static", lambda folder: folder.mkdir(parents=True))
    (tmp_path / "executed").mkdir()
    (tmp_path / "results").mkdir()
    metrics = {"acc_rce_100": 0.41, "acc_ce_100": 0.45}
    for chapter in CHAPTERS.values():
        sentence = "In this run reliable CEs hurt less." if chapter.name == "galaxy_leap" else "Plain words."
        executed_notebook(tmp_path / "executed" / Path(chapter.notebook).name, f"# {chapter.title}", sentence, "", "")
        document = {"chapter": chapter.name, "scale": "smoke", "device": "cpu", "seed": 0, "runtime_s": 1.0,
                    "git_sha": "x", "versions": {}, "metrics": metrics if chapter.name == "galaxy_leap" else {}}
        (tmp_path / "results" / f"{chapter.name}.json").write_text(json.dumps(document))
    expected = (r"galaxy_leap\.ipynb: \"In this run reliable CEs hurt less\.\" states acc_rce_100 > acc_ce_100, "
                r"but the galaxy_leap run has acc_rce_100 = 0\.41, acc_ce_100 = 0\.45")
    with pytest.raises(LatentcfError, match=expected):
        build.stage_sources(tmp_path, "smoke")
    document = json.loads((tmp_path / "results" / "galaxy_leap.json").read_text())
    document["metrics"] = {"acc_rce_100": 0.46, "acc_ce_100": 0.45}
    (tmp_path / "results" / "galaxy_leap.json").write_text(json.dumps(document))
    assert (build.stage_sources(tmp_path, "smoke") / "book").is_dir()


def committed_prose() -> list[tuple[str, str]]:
    """(file, Markdown) of every notebook's Markdown cells, from both twins, and of every prose page."""
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "notebooks").glob("*.py"))
    found = [(path.name, "\n\n".join(cell.source for cell in (nbformat.read(path, as_version=4) if path.suffix
                                                               == ".ipynb" else jupytext.read(path)).cells
                                     if cell.cell_type == "markdown")) for path in notebooks]
    return found + [(page.name, page.read_text()) for page in sorted((ROOT / "book").glob("*.md"))]


@pytest.mark.parametrize("name, markdown", committed_prose(), ids=lambda v: v if len(v) < 40 else "")
def test_the_committed_prose_states_no_result_outright(name, markdown):
    """A result sentence is generated by the run, or phrased as a condition (the audit of issue 26 stays done)."""
    assert [sentence for _, sentence in prose.unconditional_matches(markdown)] == []


def recorded_names(chapter: str) -> str:
    """Everything that names a metric of ``chapter``: its notebook, its module and its claims and relations."""
    registered = [claim.metric for claim in CLAIMS if claim.chapter == chapter]
    registered += [name for relation in RELATIONS if relation.chapter == chapter for name in relation.metrics]
    module = Path(CHAPTERS[chapter].module.__file__).read_text()
    return " ".join([(ROOT / CHAPTERS[chapter].notebook).with_suffix(".py").read_text(), module, *registered])


@pytest.mark.parametrize("rule", prose.PROSE_RULES, ids=lambda rule: f"{rule.chapter}: {rule.pattern[:30]}")
def test_every_rule_reads_and_names_metrics_its_chapter_records(rule):
    assert rule.chapter in CHAPTERS
    assert prose.assertion_holds(rule.asserts, {}) is None
    names = recorded_names(rule.chapter)
    for part in rule.asserts.split(" and "):
        sweep = prose.SWEEP.fullmatch(part)
        metrics = [sweep.group(1)] if sweep else [side for side in prose.COMPARISON.fullmatch(part).group(1, 3)
                                                  if not prose.NUMBER.fullmatch(side)]
        assert all(re.search(rf"\b{re.escape(metric)}", names) for metric in metrics), part


def test_the_relation_table_shows_every_relation_of_the_chapter_with_its_verdict():
    helix = [relation for relation in RELATIONS if relation.chapter == "helix"]
    metrics = {"median_distance_x": 2.0, "median_distance_z": 0.01, "success_rate_x": 1.0,
               "tangent_singular_ratio": 0.5, "tangent_alignment": 0.99, "classifier_accuracy": None}
    frame = prose.relation_frame({"chapter": "helix", "scale": "paper", "metrics": metrics, "settings": {}})
    assert list(frame.columns) == ["relation", "holds", "margin", "check", "smoke margins", "note"]
    assert set(frame["smoke margins"]) == {"held at 10 of 10 runs"}
    assert list(frame["relation"]) == [relation.text for relation in helix]
    verdicts = dict(zip(frame["relation"], frame["holds"]))
    assert verdicts[helix[0].text] == "yes" and verdicts["the classifier is at least 95% accurate on the helix"] == "no"
    assert set(frame["check"]) == {"gated"}
    flat = frame.set_index("relation")
    assert "metrics missing" in flat.loc["the classifier is at least 95% accurate on the helix", "note"]
    assert flat.loc[helix[0].text, "note"] == "" and flat.loc[helix[0].text, "margin"] == prose.number(0.19)
    smoke = prose.relation_frame({"chapter": "helix", "scale": "smoke", "metrics": metrics, "settings": {}})
    assert list(smoke["check"]) == ["gated" if relation.smoke_gated else "reported" for relation in helix]


def test_the_sentence_helpers_say_when_a_value_is_undefined():
    assert prose.number(0.123456) == "0.123" and prose.number(None) == prose.number(float("nan")) == "n/a"
    assert prose.ordered(2, 1) == "above" and prose.ordered(1, 2, "more", "less") == "less"
    assert prose.ordered(1, 1) == "level with" and prose.ordered(None, 1) == "not comparable with"


def test_the_relation_table_a_notebook_shows_keeps_every_relation_in_full():
    longest = max((relation for relation in RELATIONS if relation.chapter == "galaxy_leap"), key=lambda r: len(r.text))
    html = prose.relation_table({"chapter": "galaxy_leap", "scale": "smoke", "metrics": {}, "settings": {}}).to_html()
    assert len(longest.text) > 50 and longest.text in html.replace("&gt;", ">")
