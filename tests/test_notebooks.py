"""Every chapter notebook: paired with its py:percent twin, committed without outputs, parameterised."""

import ast
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

from latentcf.chapters.registry import CHAPTERS
from latentcf.core.paths import project_root

ROOT = project_root(Path(__file__).parent)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_chapter_has_its_notebook():
    assert {ROOT / c.notebook for c in CHAPTERS.values()} <= set(NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_text_twin_do_not_drift(path):
    twin = path.with_suffix(".py")
    assert twin.is_file(), f"{path.name} has no py:percent twin"
    from_text = jupytext.read(twin)
    committed = nbformat.read(path, as_version=4)
    assert [(c.cell_type, c.source) for c in from_text.cells] == \
        [(c.cell_type, c.source) for c in committed.cells], \
        f"{path.name} and {twin.name} differ: run 'jupytext --sync {twin}'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_one_parameters_cell(path):
    cells = nbformat.read(path, as_version=4).cells
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("SCALE = \"smoke\"", "SEED =", "DEVICE = \"auto\""):
        assert name in tagged[0].source
    assert nbformat.read(path, as_version=4).metadata["kernelspec"]["name"] == "python3"


SHOWN_CODE = re.compile(r"```\{literalinclude\} (\S+)\n(?::[a-z]+:[^\n]*\n)*?:pyobject: (\w+)")


def shown_code() -> list[tuple[Path, str, str]]:
    """Every ``literalinclude`` with ``:pyobject:`` in a notebook's markdown: (notebook, file, object)."""
    return [(path, file, name) for path in NOTEBOOKS for cell in nbformat.read(path, as_version=4).cells
            if cell.cell_type == "markdown" for file, name in SHOWN_CODE.findall(cell.source)]


def test_the_book_shows_the_library_code_that_ran_for_the_core_methods():
    shown = {name for _, _, name in shown_code()}
    assert {"gradient_ascent", "cfm_loss", "leapfactual"} <= shown


@pytest.mark.parametrize("notebook, file, name", shown_code(), ids=lambda v: getattr(v, "stem", v))
def test_code_shown_on_a_page_exists_in_the_library(notebook, file, name):
    source = (notebook.parent / file).resolve()
    assert source.is_relative_to(ROOT / "lib" / "latentcf") and source.is_file(), file
    defined = {node.name for node in ast.walk(ast.parse(source.read_text()))
               if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert name in defined, f"{file} defines no {name}"
