"""The library's layers: imports only go down, and no chapter imports another."""

import ast
from pathlib import Path

import pytest

import latentcf

PACKAGE = Path(latentcf.__file__).parent
RANKS = {"core": 0, "models": 1, "methods": 1, "metrics": 1, "data": 2, "chapters": 3, "book": 4, "cli": 5,
         "__main__": 6, "__init__": 6}
"""core <- models, methods, metrics <- data (Morpho-MNIST's plain form uses the morphometry's own
resampling) <- chapters <- book <- the command line. The package's own ``__init__`` may re-export
from any layer below it."""
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    """``lib/latentcf/core/cache.py`` -> ``latentcf.core.cache``."""
    return ".".join(("latentcf", *path.relative_to(PACKAGE).with_suffix("").parts))


def imported_modules(source: str) -> set[str]:
    """Every ``latentcf...`` module that ``source`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("latentcf"):
            folder = PACKAGE.joinpath(*node.module.split(".")[1:])
            found |= {f"{node.module}.{alias.name}" if (folder / f"{alias.name}.py").is_file() else node.module
                      for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("latentcf")}
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or ``None`` when the arrow goes down (or stays home)."""
    source, target = layer(importer), layer(imported)
    if source == target == "chapters":
        if importer.endswith(".registry") or imported == "latentcf.chapters":
            return None
        return f"the chapter {importer} imports the chapter {imported}"
    if source == target or RANKS[target] < RANKS[source]:
        return None
    return f"{importer} ({source}) imports {imported} ({target}), which is not below it"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down(path):
    importer = module_name(path)
    problems = [violation(importer, imported) for imported in sorted(imported_modules(path.read_text()))]
    assert [p for p in problems if p] == []


def test_the_check_catches_a_chapter_importing_a_chapter_and_an_upward_arrow():
    source = (PACKAGE / "chapters" / "helix.py").read_text() + "\nfrom latentcf.chapters import square\n"
    imported = imported_modules(source)
    assert "latentcf.chapters.square" in imported
    assert violation("latentcf.chapters.helix", "latentcf.chapters.square") is not None
    assert violation("latentcf.core.results", "latentcf.chapters.registry") is not None
    assert violation("latentcf.models.vgg", "latentcf.data.galaxy10") is not None
    assert violation("latentcf.chapters.registry", "latentcf.chapters.helix") is None
