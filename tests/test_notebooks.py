"""Every chapter notebook: paired with its py:percent twin, committed without outputs, parameterised."""

import jupytext
import nbformat
import pytest

from latentcf.chapters import CHAPTERS
from latentcf.core.paths import project_root

ROOT = project_root(__import__("pathlib").Path(__file__).parent)
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
