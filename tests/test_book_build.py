"""Staging the smoke-scale and the paper-scale book: which executed notebook each page shows."""

import json
from pathlib import Path

import nbformat
import pytest

from latentcf.book import build
from latentcf.chapters.registry import CHAPTERS
from latentcf.core.errors import LatentcfError


def executed(folder: Path, scale: str) -> None:
    """An executed notebook (title cell, one output) and a results file per chapter, run at ``scale``."""
    (folder / "executed").mkdir(parents=True)
    (folder / "results").mkdir(parents=True)
    for chapter in CHAPTERS.values():
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("install = 1"),
                                                   nbformat.v4.new_markdown_cell(f"# {chapter.title}"),
                                                   nbformat.v4.new_code_cell(f"SCALE = '{scale}'")])
        nbformat.write(notebook, folder / "executed" / Path(chapter.notebook).name)
        document = {"chapter": chapter.name, "scale": scale, "device": "cpu", "seed": 0, "runtime_s": 1.0,
                    "git_sha": "x", "versions": {}, "metrics": {}}
        (folder / "results" / f"{chapter.name}.json").write_text(json.dumps(document))


def staged_sources(stage: Path, chapter: str) -> str:
    return "\n".join(cell.source for cell in nbformat.read(stage / CHAPTERS[chapter].notebook, as_version=4).cells)


def test_the_paper_book_shows_paper_runs_and_notes_the_smoke_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "stage_static", lambda folder: folder.mkdir(parents=True))
    executed(tmp_path, "smoke")
    executed(tmp_path / "paper", "paper")
    (tmp_path / "paper" / "executed" / "galaxy_leap.ipynb").unlink()
    stage = build.stage_sources(tmp_path / "paper", "paper", tmp_path)
    assert "SCALE = 'paper'" in staged_sources(stage, "helix")
    assert "smoke-scale" not in staged_sources(stage, "helix")
    galaxy = nbformat.read(stage / CHAPTERS["galaxy_leap"].notebook, as_version=4)
    assert "SCALE = 'smoke'" in staged_sources(stage, "galaxy_leap")
    assert galaxy.cells[1].source.startswith(f"# {CHAPTERS['galaxy_leap'].title}\n\n```{{note}}")
    assert "**smoke-scale** run" in galaxy.cells[1].source and len(galaxy.cells) == 3


def test_the_smoke_book_never_shows_a_paper_run_and_names_a_missing_chapter(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "stage_static", lambda folder: folder.mkdir(parents=True))
    executed(tmp_path, "smoke")
    executed(tmp_path / "paper", "paper")
    stage = build.stage_sources(tmp_path, "smoke")
    assert "SCALE = 'smoke'" in staged_sources(stage, "helix")
    (tmp_path / "executed" / "helix.ipynb").unlink()
    with pytest.raises(LatentcfError, match="helix.ipynb has not been executed"):
        build.stage_sources(tmp_path, "smoke")
    build.stage_sources(tmp_path / "paper", "paper", tmp_path)
    (tmp_path / "paper" / "executed" / "helix.ipynb").unlink()
    with pytest.raises(LatentcfError, match="helix.ipynb has not been executed"):
        build.stage_sources(tmp_path / "paper", "paper", tmp_path)


def test_the_paper_report_overlays_this_builds_paper_runs_on_the_committed_ones(tmp_path, monkeypatch):
    committed, fresh = tmp_path / "committed", tmp_path / "fresh"
    for folder, chapters in ((committed, ("helix", "square")), (fresh, ("square",))):
        folder.mkdir()
        for chapter in chapters:
            (folder / f"{chapter}.json").write_text(json.dumps({"from": folder.name}))
    monkeypatch.setattr(build, "paper_results_dir", lambda: committed)
    merged = build.paper_results(tmp_path / "merged", fresh)
    assert json.loads((merged / "helix.json").read_text()) == {"from": "committed"}
    assert json.loads((merged / "square.json").read_text()) == {"from": "fresh"}
    assert sorted(path.name for path in build.paper_results(tmp_path / "smoke", None).iterdir()) == [
        "helix.json", "square.json"]
