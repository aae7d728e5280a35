import subprocess
import sys

import nbformat
import pytest
import torch

from latentcf.book import bench
from latentcf.chapters import helix, registry
from latentcf.chapters.registry import Chapter
from latentcf.cli import main


def _error_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "nochapter"], "error: unknown chapter 'nochapter'; known chapters: helix"),
    (["reproduce", "helix", "--scale", "huge"], "error: unknown scale 'huge'"),
    (["reproduce", "helix", "--device", "quantum"], "error: unknown device 'quantum'"),
    (["reproduce", "helix", "--dry-run"], "error: --dry-run runs the paper scale's code paths"),
    (["bench", "nochapter"], "error: unknown chapter 'nochapter'; known chapters: helix"),
    (["bench", "helix", "--device", "quantum"], "error: unknown device 'quantum'"),
])
def test_bad_input_is_one_error_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_stops_before_any_notebook_runs(capsys):
    assert main(["reproduce", "helix", "--device", "cuda"]) == 2
    assert _error_lines(capsys) == ["error: device 'cuda' requested but CUDA is not available on this machine"]


def _fake_project(tmp_path, monkeypatch, name, cells):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (tmp_path / "notebooks").mkdir()
    if cells is not None:
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, tmp_path / "notebooks" / f"{name}.ipynb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(registry.CHAPTERS, name, Chapter(name, name, helix))


def test_a_missing_notebook_is_named(tmp_path, monkeypatch, capsys):
    _fake_project(tmp_path, monkeypatch, "ghost", cells=None)
    assert main(["reproduce", "ghost", "--device", "cpu"]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1 and "ghost.ipynb of chapter 'ghost' is missing" in lines[0]


def test_a_notebook_that_raises_names_its_cell_and_error(tmp_path, monkeypatch, capsys):
    _fake_project(tmp_path, monkeypatch, "boom", cells=["x = 1", "raise ValueError('the flow diverged')"])
    assert main(["reproduce", "boom", "--device", "cpu"]) == 2
    error = [line for line in _error_lines(capsys) if line.startswith("error:")]
    assert len(error) == 1
    assert "chapter 'boom' failed in cell" in error[0] and "ValueError: the flow diverged" in error[0]
    assert (tmp_path / "build" / "executed" / "boom.ipynb").is_file()


def test_the_book_needs_executed_chapters(tmp_path, monkeypatch, capsys):
    _fake_project(tmp_path, monkeypatch, "boom", cells=["x = 1"])
    for name in ("_config.yml",):
        (tmp_path / name).write_text("title: t\n")
    (tmp_path / "book").mkdir()
    assert main(["book"]) == 2
    assert "has not been executed" in _error_lines(capsys)[0]


@pytest.mark.parametrize("limit, status", [("1", 1), ("10", 0)])
def test_bench_prints_the_projection_and_fails_over_its_limit(limit, status, tmp_path, monkeypatch, capsys):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(bench.WORK_MODELS, "helix", lambda settings: [
        bench.Stage("flow", "training steps", settings.flow_steps, lambda probe: bench.Rate(20.0, 1, 1))])
    assert main(["bench", "helix", "--device", "cpu", "--limit-minutes", limit]) == status
    out, err = capsys.readouterr()
    assert out.splitlines()[1].split() == ["helix", "flow", "training", "steps", "5,000", "1", "20", "4", "min"]
    assert (tmp_path / "build" / "bench" / "cpu.json").is_file()
    assert ("error: the projected paper-scale run takes 4 min, more than the limit of 1 min" in err) == (status == 1)


def test_the_module_entry_point_exits_non_zero():
    done = subprocess.run([sys.executable, "-m", "latentcf", "reproduce", "nochapter"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error: unknown chapter 'nochapter'")
