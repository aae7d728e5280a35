"""One public home, one version: everything that names the repository or the version agrees with lib/pyproject.toml.

:func:`disagreements` reads a copy of the book's files and names every place that disagrees with
:func:`public_home.public_home`: the derived ``[project.urls]``, each notebook's install line (the first code cell
of ``notebooks/<chapter>.py``), ``_config.yml``'s repository, release branch and site, the README's site and its
Colab badge of every chapter, ``CITATION.cff`` and its references (held to ``book/references.md``), and every
``latentcf==<version>`` that the README and the reproduction page mention. The tests below run it on the book, and
on copies broken on purpose, one place at a time.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import jupytext
import pytest
import yaml
from public_home import ROOT, PublicHome, install_line_pattern, public_home, read_pyproject

from latentcf.chapters.registry import CHAPTERS

CHECKED_FILES = ("lib/pyproject.toml", "_config.yml", "README.md", "CITATION.cff", "book/references.md",
                 "book/reproduce.md", *(f"notebooks/{name}.py" for name in CHAPTERS))
BADGE = "[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^\s)\]]+")
PINNED_VERSION = re.compile(r"latentcf(?:\[[a-z0-9,\-]*\])?==([0-9][^\s`\"')]*)")
PINNED_TAG = re.compile(r"@v([0-9][^#\s`\"']*)#subdirectory=lib")
PAPERS = ("Diffeomorphic counterfactuals with generative models",
          "LeapFactual: Reliable visual counterfactual explanation using conditional flow matching")


def disagreements(root: Path) -> list[str]:
    """Every place under ``root`` that names the repository or the version otherwise than its pyproject.toml."""
    home = public_home(root / "lib" / "pyproject.toml")
    return [*_pyproject_urls(root, home), *_install_lines(root, home), *_book_config(root, home),
            *_readme(root, home), *_citation(root, home), *_pinned_versions(root, home)]


def _pyproject_urls(root: Path, home: PublicHome) -> list[str]:
    urls = read_pyproject(root / "lib" / "pyproject.toml")["project"]["urls"]
    expected = {"Documentation": home.site, "Issues": home.issues}
    return [f"lib/pyproject.toml: [project.urls] {key} is {urls.get(key)!r}, expected {value!r}"
            for key, value in expected.items() if urls.get(key) != value]


def _install_lines(root: Path, home: PublicHome) -> list[str]:
    found = []
    pattern = install_line_pattern(home)
    for name in CHAPTERS:
        path = root / "notebooks" / f"{name}.py"
        first_code = next(cell.source for cell in jupytext.read(path).cells if cell.cell_type == "code")
        if len(pattern.findall(first_code)) != 1 or path.read_text().count("@ git+") != 1:
            found.append(f"notebooks/{name}.py: its first code cell must install exactly one "
                         f"\"{home.requirement('[<extras>]')}\"")
    return found


def _book_config(root: Path, home: PublicHome) -> list[str]:
    config = yaml.safe_load((root / "_config.yml").read_text())
    actual = {"repository.url": config["repository"]["url"], "repository.branch": config["repository"]["branch"],
              "html.baseurl": config["html"].get("baseurl"),
              "launch_buttons.colab_url": config["launch_buttons"].get("colab_url")}
    expected = {"repository.url": home.repository, "repository.branch": home.tag, "html.baseurl": home.site,
                "launch_buttons.colab_url": "https://colab.research.google.com"}
    return [f"_config.yml: {key} is {actual[key]!r}, expected {value!r}"
            for key, value in expected.items() if actual[key] != value]


def _readme(root: Path, home: PublicHome) -> list[str]:
    text = (root / "README.md").read_text()
    found = [f"README.md does not say where the book lives ({where})"
             for where in (home.site, home.repository) if where not in text]
    expected = {home.colab(chapter.notebook) for chapter in CHAPTERS.values()}
    found += [f"README.md lacks the Colab badge of {chapter.name}: {BADGE.format(url=home.colab(chapter.notebook))}"
              for chapter in CHAPTERS.values() if BADGE.format(url=home.colab(chapter.notebook)) not in text]
    found += [f"README.md links to Colab at {url}, which is no chapter at {home.tag}"
              for url in COLAB_LINK.findall(text) if url not in expected]
    return found


def _citation(root: Path, home: PublicHome) -> list[str]:
    citation = yaml.safe_load((root / "CITATION.cff").read_text())
    title = yaml.safe_load((root / "_config.yml").read_text())["title"]
    expected = {"version": home.version, "repository-code": home.repository, "url": home.site, "title": title}
    found = [f"CITATION.cff: {key} is {citation.get(key)!r}, expected {value!r}"
             for key, value in expected.items() if str(citation.get(key)) != value]
    references = {reference["title"].casefold(): reference for reference in citation.get("references", [])}
    found += [f"CITATION.cff does not cite {paper!r}" for paper in PAPERS if paper.casefold() not in references]
    entries = _reference_entries(root / "book" / "references.md")
    for key, reference in references.items():
        entry = next((entry for entry in entries if key in entry.casefold()), None)
        if entry is None:
            found.append(f"CITATION.cff cites {reference['title']!r}, which book/references.md does not list")
            continue
        names = [f"{author['given-names']} {author['family-names']}" for author in reference["authors"]]
        found += [f"CITATION.cff: {what} of {reference['title']!r} is not in its book/references.md entry"
                  for what in (*names, str(reference["year"])) if what not in entry]
    return found


def _reference_entries(path: Path) -> list[str]:
    """The entries of a Markdown list of references, each joined into one line."""
    text = re.sub(r"\n[ \t]+", " ", path.read_text())
    return [line[2:] for line in text.splitlines() if line.startswith("- ")]


def _pinned_versions(root: Path, home: PublicHome) -> list[str]:
    found = []
    for name in ("README.md", "book/reproduce.md"):
        text = (root / name).read_text()
        found += [f"{name} pins latentcf {version}, expected {home.version}"
                  for version in PINNED_VERSION.findall(text) + PINNED_TAG.findall(text) if version != home.version]
    return found


def book_copy(folder: Path) -> Path:
    """A copy of the files :func:`disagreements` reads, in ``folder``."""
    for name in CHECKED_FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, folder / name)
    return folder


def test_everything_agrees_with_the_one_repository_address_and_version():
    assert disagreements(ROOT) == []


def test_the_public_home_is_a_github_repository_and_a_release():
    home = public_home()
    assert re.fullmatch(r"\d+\.\d+\.\d+", home.version), "the version must be MAJOR.MINOR.PATCH"
    owner, name = home.owner_and_name
    assert home.site == f"https://{owner.lower()}.github.io/{name}/"
    assert home.colab("notebooks/helix.ipynb").endswith(f"/{owner}/{name}/blob/v{home.version}/notebooks/helix.ipynb")


HOME = public_home()
OTHER_VERSION = "0.0.9" if HOME.version != "0.0.9" else "0.0.8"
BREAKAGES = {  # (file, text in it, replaced by, what the finding names)
    "a notebook installs another release": ("notebooks/helix.py", f"@{HOME.tag}#", f"@v{OTHER_VERSION}#",
                                            "notebooks/helix.py"),
    "a notebook installs the moving branch": ("notebooks/square.py", f"@{HOME.tag}#", "#", "notebooks/square.py"),
    "the book's launch buttons open main": ("_config.yml", f"branch: {HOME.tag}", "branch: main",
                                            "repository.branch"),
    "the book names another repository": ("_config.yml", f"url: {HOME.repository}",
                                          "url: https://github.com/someone/else", "repository.url"),
    "a Colab badge of another release": ("README.md", f"blob/{HOME.tag}/notebooks/mnist_leap.ipynb",
                                         "blob/main/notebooks/mnist_leap.ipynb", "badge of mnist_leap"),
    "the README pins another version": ("README.md", f"pip install latentcf=={HOME.version}",
                                        f"pip install latentcf=={OTHER_VERSION}",
                                        f"README.md pins latentcf {OTHER_VERSION}"),
    "the README forgets the site": ("README.md", HOME.site, "https://example.org/", "where the book lives"),
    "the citation's version": ("CITATION.cff", f"version: {HOME.version}", f"version: {OTHER_VERSION}",
                               "CITATION.cff: version"),
    "the citation drops a paper": ("CITATION.cff", "title: Diffeomorphic counterfactuals with generative models",
                                   "title: Something else", "does not cite 'Diffeomorphic"),
    "the citation misspells an author": ("CITATION.cff", "family-names: Krieger", "family-names: Kriger",
                                         "Lena Kriger of 'LeapFactual"),
    "pyproject's site is another": ("lib/pyproject.toml", f'Documentation = "{HOME.site}"',
                                    'Documentation = "https://other.github.io/"', "[project.urls] Documentation"),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_a_place_that_disagrees_is_named(tmp_path, breakage):
    path, old, new, named = BREAKAGES[breakage]
    copy = book_copy(tmp_path)
    text = (copy / path).read_text()
    assert old in text, f"the breakage {breakage!r} no longer applies to {path}"
    (copy / path).write_text(text.replace(old, new, 1))
    found = disagreements(copy)
    assert found and all(finding.startswith(path) for finding in found), found
    assert any(named in finding for finding in found), found


def test_a_new_version_in_pyproject_alone_is_named_everywhere(tmp_path):
    copy = book_copy(tmp_path)
    pyproject = copy / "lib" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'version = "{HOME.version}"', 'version = "99.0.0"', 1))
    found = "\n".join(disagreements(copy))
    for place in ("_config.yml: repository.branch", "CITATION.cff: version", f"README.md pins latentcf {HOME.version}",
                  *(f"notebooks/{name}.py" for name in CHAPTERS), *(f"badge of {name}" for name in CHAPTERS)):
        assert place in found


def test_the_published_library_carries_the_licence():
    assert (ROOT / "lib" / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes(), \
        "lib/LICENSE must be a copy of LICENSE: the sdist and the wheel are built from lib/ alone"
