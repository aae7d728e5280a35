"""Published weights (ImageNet VGG, LPIPS), downloaded quietly into torch's hub cache where possible.

Download chatter goes to the ``latentcf`` logger, not into a notebook's output; a chapter says in one
plain sentence when weights are not available. Introduced in ``notebooks/galaxy_leap``.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from latentcf.core.errors import LatentcfError
from latentcf.core.runtime import run_options

LOG = logging.getLogger("latentcf")


def published_state_dict(url: str, file_name: str | None = None,
                         check_hash: bool = False) -> dict[str, torch.Tensor] | None:
    """The state dict at ``url`` (cached under ``$TORCH_HOME/hub/checkpoints``), or ``None`` without network.

    ``check_hash`` compares the file with the hash prefix in its name, as torchvision's URLs carry one.
    """
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            state = torch.hub.load_state_dict_from_url(url, file_name=file_name, progress=False,
                                                       check_hash=check_hash, map_location="cpu")
    except (OSError, RuntimeError) as err:
        LOG.info("weights %s are not available here (%s)", url, type(err).__name__)
        return None
    finally:
        if chatter.getvalue().strip():
            LOG.info(chatter.getvalue().strip())
    return state


@dataclass(frozen=True)
class PublishedWeights:
    """Weights that a paper-scale number depends on: what they are, where they come from, where they are kept."""

    name: str
    url: str
    file_name: str | None = None
    check_hash: bool = False

    @property
    def path(self) -> Path:
        """The file under ``$TORCH_HOME/hub/checkpoints`` that torch.hub downloads to and reads from."""
        return Path(torch.hub.get_dir()) / "checkpoints" / (self.file_name or Path(urlparse(self.url).path).name)

    def load(self) -> dict[str, torch.Tensor] | None:
        """The state dict, or ``None`` where it can be neither read nor downloaded (:func:`published_state_dict`)."""
        return published_state_dict(self.url, self.file_name, self.check_hash)


def require_published(weights: list[PublishedWeights], purpose: str) -> list[str]:
    """Refuse ``purpose`` when one of ``weights`` cannot be had, unless the run allows missing weights.

    Weights already in torch's hub cache are not loaded here (the chapter loads them once, when it
    builds its networks); the others are downloaded into it, or found missing.

    Called before any training: a paper-scale number computed without the published weights is
    not the paper's number. The error names each file and the exact path to copy it to on a
    machine without internet. With ``--allow-missing-weights``
    (:attr:`latentcf.core.runtime.RunOptions.allow_missing_weights`) it returns the names of the
    missing weights instead, and the results file records the option.
    """
    missing = [entry for entry in weights if not entry.path.is_file() and entry.load() is None]
    if missing and not run_options().allow_missing_weights:
        where = "; ".join(f"{entry.name}: {entry.url} -> {entry.path}" for entry in missing)
        raise LatentcfError(f"{purpose} needs published weights that cannot be downloaded here. Without internet, "
                            f"copy each file to its path ({where}; the folder is $TORCH_HOME/hub/checkpoints), or "
                            f"pass --allow-missing-weights to run without them (recorded in the results)")
    return [entry.name for entry in missing]
