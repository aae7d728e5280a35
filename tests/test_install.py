"""The Colab install line of every notebook works: a fresh environment with exactly its extras imports it all.

Each notebook installs the library on Colab with
``pip install "latentcf[extras] @ git+<repository>@v<version>#subdirectory=lib"``, the release that
``lib/pyproject.toml`` names (``public_home.py``).
This test installs ``lib/`` with exactly those extras into a new virtual environment (CPU torch first, as
the README's set-up does, so no CUDA build is pulled) and runs every import statement of the notebook.
Notebooks with the same extras share one environment; the environments are built in parallel.
"""

import ast
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from public_home import install_line_pattern, public_home

from latentcf.core.paths import project_root

ROOT = project_root(Path(__file__).parent)
INSTALL_LINE = install_line_pattern(public_home())
CPU_TORCH = "torch==2.13.0"


def install_extras(notebook: Path) -> str:
    """The extras of the notebook's Colab install line, e.g. ``"[notebook,mnist]"`` (``""`` for none)."""
    lines = INSTALL_LINE.findall(notebook.read_text())
    assert len(lines) == 1, f"{notebook.name} has {len(lines)} Colab install lines"
    return lines[0]


def import_statements(notebook: Path) -> str:
    """Every import statement of the notebook's code, in order, as one program."""
    tree = ast.parse(notebook.read_text())
    return "\n".join(ast.unparse(node) for node in ast.walk(tree)
                     if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0))


def fresh_environment(folder: Path, extras: str) -> Path:
    """A new venv in ``folder`` with CPU torch and ``lib[extras]``, built from a copy of ``lib/``; its python."""
    source = folder / "lib"
    shutil.copytree(ROOT / "lib", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True)
    python = folder / "venv" / "bin" / "python"
    for requirement in (CPU_TORCH, f"{source}{extras}"):
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement],
                       check=True, capture_output=True, text=True)
    return python


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


@pytest.fixture(scope="module")
def environments(tmp_path_factory) -> dict[str, Path]:
    extras = sorted({install_extras(notebook) for notebook in NOTEBOOKS})
    folders = [tmp_path_factory.mktemp(f"venv{i}") for i in range(len(extras))]
    with ThreadPoolExecutor(max_workers=len(extras)) as pool:
        pythons = list(pool.map(fresh_environment, folders, extras))
    return dict(zip(extras, pythons, strict=True))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_install_line_gives_every_import_of_the_notebook(notebook, environments):
    python = environments[install_extras(notebook)]
    result = subprocess.run([str(python), "-c", import_statements(notebook)], capture_output=True, text=True,
                            cwd=notebook.parent)
    assert result.returncode == 0, f"{notebook.name} with latentcf{install_extras(notebook)}: {result.stderr[-800:]}"


def test_a_missing_extra_is_caught(environments, tmp_path):
    """A notebook that imports scikit-learn under an install line without ``[mnist]`` fails the check."""
    python = environments[install_extras(ROOT / "notebooks" / "helix.py")]
    result = subprocess.run([str(python), "-c", "import sklearn"], capture_output=True, text=True)
    assert result.returncode != 0 and "sklearn" in result.stderr
