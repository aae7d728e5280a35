"""Published weights (ImageNet VGG, LPIPS), downloaded quietly into torch's hub cache where possible.

Download chatter goes to the ``latentcf`` logger, not into a notebook's output; a chapter says in one
plain sentence when weights are not available. Introduced in ``notebooks/galaxy_leap``.
"""

from __future__ import annotations

import contextlib
import io
import logging

import torch

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
