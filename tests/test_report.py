import json

import pytest

from latentcf.book.report import MARKER, fill_report_page, render_report
from latentcf.core.claims import RELATIONS
from latentcf.core.errors import LatentcfError

REQUIRED = {"device": "cpu (2 cores)", "seed": 0, "runtime_s": 1.0, "git_sha": "abc", "versions": {}}


def _write(folder, scale, **metrics):
    folder.mkdir(parents=True, exist_ok=True)
    document = {"chapter": "helix", "scale": scale, "metrics": metrics, **REQUIRED}
    (folder / "helix.json").write_text(json.dumps(document))


def test_report_shows_paper_smoke_and_paper_scale_values(tmp_path):
    _write(tmp_path / "smoke", "smoke", median_distance_x=1.9, median_distance_z=0.05)
    _write(tmp_path / "paper", "paper", median_distance_x=2.2, median_distance_z=0.3)
    table = render_report(tmp_path / "smoke", tmp_path / "paper")
    row = next(line for line in table.splitlines() if line.startswith("| `median_distance_z`"))
    assert "0.01" in row and "0.05" in row and "0.3" in row and "**fail**" in row
    row_x = next(line for line in table.splitlines() if line.startswith("| `median_distance_x`"))
    assert row_x.endswith("pass |")


def test_report_without_runs_says_so(tmp_path):
    table = render_report(tmp_path / "none", tmp_path / "none")
    assert "no run yet" in table


def test_report_page_marker_is_replaced(tmp_path):
    page = tmp_path / "report.md"
    page.write_text(f"# Report\n\n{MARKER}\n")
    fill_report_page(page, tmp_path / "none", tmp_path / "none")
    assert MARKER not in page.read_text() and "median_distance_x" in page.read_text()


def test_pages_that_load_from_another_site_are_found_and_links_are_not(tmp_path):
    from latentcf.book.build import external_resources

    (tmp_path / "ok.html").write_text('<script src="_static/plotly.min.js"></script>'
                                      '<a href="https://colab.research.google.com/x">open in Colab</a>'
                                      '<link rel="canonical" href="https://example.org/page.html">')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "cdn.html").write_text('<script type="module" src="https://cdn.plot.ly/plotly.min.js">'
                                               '</script><link rel="stylesheet" href="//fonts.example/css">'
                                               '<script type="module">import "https://cdn.plot.ly/plotly-4"</script>')
    found = external_resources(tmp_path)
    assert list(found) == ["sub/cdn.html"] and len(found["sub/cdn.html"]) == 3


def test_a_bar_inside_a_relation_stays_in_its_cell(tmp_path):
    _write(tmp_path / "smoke", "smoke", tangent_alignment=0.99)
    row = next(line for line in render_report(tmp_path / "smoke", tmp_path / "none").splitlines()
               if "tangent to the helix" in line)
    assert "(\\|cos\\| > 0.9)" in row and row.count(" | ") == 4


def _write_document(folder, chapter, scale, metrics, settings=None):
    folder.mkdir(parents=True, exist_ok=True)
    document = {"chapter": chapter, "scale": scale, "metrics": metrics, "settings": settings or {}, **REQUIRED}
    (folder / f"{chapter}.json").write_text(json.dumps(document))


def _summary_row(table, title):
    return next(line for line in table.splitlines() if line.startswith(f"| {title} |"))


def test_the_report_opens_with_a_summary_per_chapter(tmp_path):
    from latentcf.chapters.registry import CHAPTERS

    _write(tmp_path / "smoke", "smoke", median_distance_x=1.9, median_distance_z=0.05)
    _write(tmp_path / "paper", "paper", median_distance_x=2.2, median_distance_z=0.3, success_rate_x=1.0,
           success_rate_z=1.0, classifier_accuracy=1.0, tangent_singular_ratio=0.01, tangent_alignment=0.99)
    table = render_report(tmp_path / "smoke", tmp_path / "paper")
    assert table.startswith("## At a glance")
    helix = _summary_row(table, CHAPTERS["helix"].title)
    # 5 published numbers, 5 checked, 4 pass (median_distance_z fails), none weak, none unrun; the smoke run lacks
    # four relations' metrics (they fail as missing); at paper scale the distance in Z is not a tenth of X's
    gated = sum(r.smoke_gated for r in RELATIONS if r.chapter == "helix")
    assert helix.endswith(f"| 5 | 5 | 4 | 0 | 0 | 1 of 5, {gated} gated | 4 of 5 |")
    galaxy = _summary_row(table, CHAPTERS["galaxy_leap"].title)
    assert galaxy.endswith("| 86 | 0 | 0 | 0 | 86 | no run | no run |")


def test_weak_claims_are_listed_but_not_counted_as_passing(tmp_path):
    from latentcf.chapters.registry import CHAPTERS
    from latentcf.core.claims import published_values

    _write_document(tmp_path / "paper", "mnist_diffeo", "paper", published_values("mnist_diffeo"), {"search_n": 500})
    table = render_report(tmp_path / "none", tmp_path / "paper")
    assert _summary_row(table, CHAPTERS["mnist_diffeo"].title).startswith(
        f"| {CHAPTERS['mnist_diffeo'].title} | 16 | 16 | 14 | 2 |")
    row = next(line for line in table.splitlines() if line.startswith("| `l2z_class_z`"))
    assert row.endswith("| pass (weak by construction) |")
    assert "Weak by construction, `l2z_class_z`: two independent" in table
    im1 = next(line for line in table.splitlines() if line.startswith("| `im1_x`"))
    assert "3 SE (SD 0.317 of 500; run n: search_n; floor 0.01) = 0.0601" in im1
    assert "- Tolerance (SE = standard error): Table 1: mean and standard deviation" in table


def test_a_relation_outside_its_scales_says_so(tmp_path):
    from latentcf.chapters.registry import CHAPTERS

    _write_document(tmp_path / "smoke", "galaxy_leap", "smoke", {"acc_strong": 0.6, "acc_weak": 0.3})
    table = render_report(tmp_path / "smoke", tmp_path / "none")
    row = next(line for line in table.splitlines() if "PSNR falls at every step of N_b" in line)
    assert row.endswith("| not checked at this scale | not checked at this scale | – |")
    paper_only = [r for r in RELATIONS if r.chapter == "galaxy_leap" and "smoke" not in r.scales]
    assert len(paper_only) == 4
    assert f"({len(paper_only)} not checked at this scale)" in _summary_row(table, CHAPTERS["galaxy_leap"].title)


def test_a_relation_a_smoke_run_misses_without_being_gated_is_reported_not_failed(tmp_path):
    _write_document(tmp_path / "smoke", "galaxy_leap", "smoke", {"acc_strong": 0.3, "acc_weak": 0.6})
    table = render_report(tmp_path / "smoke", tmp_path / "none")
    row = next(line for line in table.splitlines() if "the strong classifier (all training images)" in line)
    relation = next(r for r in RELATIONS if "the strong classifier (all training images)" in r.text)
    assert not relation.smoke_gated and row.endswith("| missed (reported) | – |")


def test_a_chapter_without_published_numbers_says_so(tmp_path):
    table = render_report(tmp_path / "none", tmp_path / "none")
    square = table[table.index("## LeapFactual on the square toy"):]
    assert "The papers publish no numbers for this chapter." in square.split("| relation |")[0]


def _write_seed(folder, seed, chapter="helix", **metrics):
    folder.mkdir(parents=True, exist_ok=True)
    document = {"chapter": chapter, "scale": "paper", "metrics": metrics, **REQUIRED, "seed": seed}
    (folder / f"helix-seed{seed}.json").write_text(json.dumps(document))


def test_runs_at_other_seeds_are_listed_with_their_checks(tmp_path):
    good = dict(median_distance_x=2.2, median_distance_z=0.005, success_rate_x=1.0, success_rate_z=1.0,
                classifier_accuracy=1.0, tangent_singular_ratio=0.01, tangent_alignment=0.99)
    _write(tmp_path / "paper", "paper", **good)
    _write_seed(tmp_path / "paper" / "seeds", 2, **{**good, "success_rate_z": 0.574})
    _write_seed(tmp_path / "paper" / "seeds", 1, **good)
    table = render_report(tmp_path / "none", tmp_path / "paper")
    rows = table.split("Paper-scale runs at other seeds")[1].split("\n\n")[1].splitlines()
    seed_rows = rows[2:]
    assert [row.split(" | ")[0] for row in seed_rows] == ["| 0", "| 1", "| 2"]
    assert "| 5 of 5 | 5 of 5 |" in seed_rows[1]
    assert "| 4 of 5 | 5 of 5 |" in seed_rows[2] and "0.574" in seed_rows[2]


def test_a_seed_file_of_another_chapter_is_an_error(tmp_path):
    _write_seed(tmp_path / "paper" / "seeds", 1, chapter="square", median_distance_z=0.005)
    with pytest.raises(LatentcfError, match="not a paper-scale run of 'helix'"):
        render_report(tmp_path / "none", tmp_path / "paper")
