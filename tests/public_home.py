"""The book's one public home, as ``lib/pyproject.toml`` writes it: the repository address and the library's version.

Everything that names them elsewhere (the notebooks' install lines, ``_config.yml``, the README's Colab badges and
site, ``CITATION.cff``) is derived here and held to it by ``test_public_home.py``; ``test_install.py`` reads the
install lines with :func:`install_line_pattern`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from latentcf.core.paths import project_root

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = project_root(Path(__file__).parent)
GITHUB_REPOSITORY = re.compile(r"https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)")


@dataclass(frozen=True)
class PublicHome:
    """The repository address ``https://github.com/<owner>/<name>`` and the version, and what follows from them."""

    repository: str
    version: str

    @property
    def owner_and_name(self) -> tuple[str, str]:
        match = GITHUB_REPOSITORY.fullmatch(self.repository)
        assert match, f"[project.urls] Repository must be https://github.com/<owner>/<name>, got {self.repository}"
        return match[1], match[2]

    @property
    def tag(self) -> str:
        """The release tag of the version: ``v<version>``."""
        return f"v{self.version}"

    @property
    def site(self) -> str:
        """Where GitHub Pages serves the book: ``https://<owner>.github.io/<name>/``."""
        owner, name = self.owner_and_name
        return f"https://{owner.lower()}.github.io/{name}/"

    @property
    def issues(self) -> str:
        return f"{self.repository}/issues"

    def requirement(self, extras: str) -> str:
        """A notebook's install requirement: the library with ``extras`` (e.g. ``"[notebook]"``) at the release tag."""
        return f"latentcf{extras} @ git+{self.repository}@{self.tag}#subdirectory=lib"

    def colab(self, notebook: str) -> str:
        """The Colab address of ``notebook`` (e.g. ``"notebooks/helix.ipynb"``) at the release tag."""
        owner, name = self.owner_and_name
        return f"https://colab.research.google.com/github/{owner}/{name}/blob/{self.tag}/{notebook}"


def read_pyproject(path: Path = ROOT / "lib" / "pyproject.toml") -> dict:
    return tomllib.loads(path.read_text())


def public_home(pyproject: Path = ROOT / "lib" / "pyproject.toml") -> PublicHome:
    """The :class:`PublicHome` written in ``pyproject`` (``[project.urls] Repository`` and ``[project] version``)."""
    project = read_pyproject(pyproject)["project"]
    return PublicHome(project["urls"]["Repository"], project["version"])


def install_line_pattern(home: PublicHome) -> re.Pattern[str]:
    """A notebook's quoted install requirement in the pinned form of ``home``; group 1 is its extras (or ``""``)."""
    return re.compile(rf'"latentcf(\[[a-z0-9,\-]*\]|) @ {re.escape(f"git+{home.repository}@{home.tag}")}'
                      rf'#subdirectory=lib"')
