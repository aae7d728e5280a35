"""The results recorder: every number the book shows is recorded here by the run that made it.

A notebook opens a :class:`Run` with ``latentcf.chapters.registry.start_run`` (which looks up the
chapter's settings of the scale and calls :func:`open_run` here: seeds, device, settings), records
metrics with :meth:`Run.record` and stage times with :meth:`Run.stage`, and writes
``<results_dir>/<chapter>.json`` with :meth:`Run.save`. Introduced in ``notebooks/helix``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from latentcf.core.errors import LatentcfError
from latentcf.core.paths import project_root, results_dir
from latentcf.core.runtime import (
    RunOptions,
    configure_device,
    cpu_description,
    device_description,
    resolve_device,
    run_options,
    seed_everything,
)
from latentcf.core.settings import STAGES, check_settings

SCALES = ("smoke", "paper")
REQUIRED_KEYS = ("chapter", "scale", "device", "seed", "runtime_s", "git_sha", "versions", "metrics")
OPTION_KEYS = tuple(option.name for option in dataclasses.fields(RunOptions))
"""``dry_run`` and ``allow_missing_weights``: every results file says how its run was made."""
VERSIONED_PACKAGES = ("latentcf", "torch", "numpy", "scipy", "nflows", "torchdiffeq")


@dataclass
class Run:
    """One execution of one chapter at one scale: its settings, device, seed and metrics."""

    chapter: str
    scale: str
    seed: int
    device: torch.device
    settings: Any
    generator: torch.Generator
    options: RunOptions = field(default_factory=RunOptions)
    metrics: dict[str, float | None] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def record(self, **metrics: float) -> None:
        """Record named scalar metrics; a non-finite or non-numeric value raises ``ValueError``.

        In a dry run a non-finite value is recorded as ``None`` (JSON ``null``): models trained for two
        steps leave statistics over their successes undefined (a median over no successful search),
        and the dry run reports which (:func:`latentcf.book.reproduce.undefined_metrics`).

        Times are ``seconds_<stage>`` (see :meth:`stage`): a name ending in ``_s`` is refused, so one
        naming convention holds in every results file.
        """
        for name, value in metrics.items():
            if name.endswith("_s"):
                raise ValueError(f"metric '{name}': record a stage's time with Run.stage, as seconds_<stage>")
            number = float(value)
            if not math.isfinite(number) and not self.options.dry_run:
                raise ValueError(f"metric '{name}' is not a finite number: {value!r}")
            self.metrics[name] = number if math.isfinite(number) else None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` and record its wall time as ``seconds_<name>``.

        ``name`` starts with a stage of :data:`latentcf.core.settings.STAGES`, optionally refined
        (``"flow"``, ``"search_x"``, ``"leap_blackbox"``). Cached models load inside the block, so a
        re-run records the time it really took, not the time of the first training.
        """
        if name.split("_", 1)[0] not in STAGES:
            raise ValueError(f"stage '{name}' does not start with a known stage ({', '.join(STAGES)})")
        started = time.perf_counter()
        yield
        self.record(**{f"seconds_{name}": time.perf_counter() - started})

    def describe(self, **facts: str) -> None:
        """Record named text facts of the run (e.g. ``dataset="galaxy10-synthetic"``) as top-level keys."""
        for name, text in facts.items():
            if name in REQUIRED_KEYS or name in ("date", "settings", "cpu", *OPTION_KEYS) or not isinstance(text, str):
                raise ValueError(f"fact '{name}' must be a string under a name the results file does not use")
            self.facts[name] = text

    def as_dict(self) -> dict[str, Any]:
        """The JSON document of this run (see :data:`REQUIRED_KEYS`)."""
        return {
            "chapter": self.chapter,
            "scale": self.scale,
            "device": device_description(self.device),
            "cpu": cpu_description(),
            "seed": self.seed,
            "runtime_s": round(time.perf_counter() - self.started, 2),
            "git_sha": git_sha(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": package_versions(),
            "settings": dataclasses.asdict(self.settings),
            "metrics": dict(self.metrics),
            **dataclasses.asdict(self.options),
            **self.facts,
        }

    def save(self, folder: Path | None = None) -> Path:
        """Write ``<folder>/<chapter>.json`` (default: :func:`latentcf.core.paths.results_dir`)."""
        folder = Path(folder or results_dir())
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.chapter}.json"
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        return path


def check_scale(scale: str) -> str:
    """Return ``scale`` if it is ``"smoke"`` or ``"paper"``, else raise :class:`LatentcfError`."""
    if scale not in SCALES:
        raise LatentcfError(f"unknown scale '{scale}'; choose one of {', '.join(SCALES)}")
    return scale


def open_run(chapter: str, scale: str, seed: int, device: str, settings: Any) -> Run:
    """Open the run of ``chapter`` at ``scale`` with its ``settings``: seed everything, resolve the device.

    The chapter registry (``latentcf.chapters.registry.start_run``) hands over the settings, so this
    layer never imports a chapter. ``settings.scale`` must be ``scale``; the run's options
    (:func:`latentcf.core.runtime.run_options`: dry run, missing weights allowed) are recorded with it.
    """
    check_scale(scale)
    check_settings(settings)
    if settings.scale != scale:
        raise LatentcfError(f"settings of scale '{settings.scale}' handed to a {scale}-scale run of '{chapter}'")
    options = run_options()
    if options.dry_run and scale != "paper":
        raise LatentcfError("a dry run runs the paper scale's code paths: use it with --scale paper")
    resolved = resolve_device(device)
    configure_device(resolved)
    return Run(chapter=chapter, scale=scale, seed=int(seed), device=resolved, settings=settings,
               generator=seed_everything(int(seed)), options=options)


def load_results(path: Path) -> dict[str, Any]:
    """Read a results JSON and check that it has every required key."""
    if not path.is_file():
        raise LatentcfError(f"no results file at {path}")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise LatentcfError(f"results file {path} is not valid JSON: {err}") from err
    missing = [key for key in REQUIRED_KEYS if key not in document]
    if missing:
        raise LatentcfError(f"results file {path} lacks {', '.join(missing)}")
    return document


def git_sha() -> str:
    """The commit of the book's git checkout; outside one (Colab), where the installed library came from.

    The checkout is the folder with ``_toc.yml`` (:func:`latentcf.core.paths.project_root`); where there is none,
    or it is not a git checkout, :func:`installed_origin` says where ``latentcf`` was installed from.
    """
    root = project_root()
    if not (root / "_toc.yml").is_file():
        return installed_origin()
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return installed_origin()
    return out.stdout.strip()


def short_commit(git_sha_value: str) -> str:
    """A results file's ``git_sha`` for a table: a commit's first 10 hex digits, any other origin whole."""
    return git_sha_value[:10] if re.fullmatch(r"[0-9a-f]{40}", git_sha_value) else git_sha_value


def installed_origin(distribution: str = "latentcf") -> str:
    """Where the installed ``distribution`` came from, from its PEP 610 ``direct_url.json``.

    ``"git+<url>@<commit_id>"`` (with ``#subdirectory=...`` where pip was given one) for an install from a VCS,
    the URL of the archive or the folder for other direct installs (``" (editable)"`` added where it is one),
    ``"latentcf <version> from PyPI"`` where there is no ``direct_url.json`` (installed from a package index),
    and ``"unknown"`` where the distribution is not installed or its ``direct_url.json`` cannot be read.
    """
    try:
        installed = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
    text = installed.read_text("direct_url.json")
    if text is None:
        return f"{distribution} {installed.version} from PyPI"
    try:
        direct = json.loads(text)
        url = direct["url"]
        vcs = direct.get("vcs_info")
        subdirectory = f"#subdirectory={direct['subdirectory']}" if direct.get("subdirectory") else ""
        if vcs is not None:
            return f"{vcs['vcs']}+{url}@{vcs['commit_id']}{subdirectory}"
        editable = " (editable)" if direct.get("dir_info", {}).get("editable") else ""
        return f"{url}{subdirectory}{editable}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages whose behaviour shapes the numbers."""
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
