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
