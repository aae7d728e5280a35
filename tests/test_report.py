import json

from latentcf.book.report import MARKER, fill_report_page, render_report

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
    assert "(\\|cos\\| > 0.9)" in row and row.count(" | ") == 3
