"""The model cache: a trained model is stored under a key made from its settings.

Re-running a notebook loads the model instead of retraining it; changing any setting (or the
seed, which is part of the settings) trains a new one. Introduced in ``notebooks/helix``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentcf.core.errors import LatentcfError
from latentcf.core.paths import cache_dir
from latentcf.core.runtime import run_options

CACHE_VERSION = 2
"""Part of every key: bumped when the same settings would give other weights (version 2: models and data
draw from named random streams, ``latentcf.core.runtime.generator``), so an older file is never loaded."""


def settings_key(name: str, settings: dict[str, Any], model: nn.Module) -> str:
    """A short stable hash of a model's name, settings and architecture.

    The architecture enters as the module's ``repr`` and its buffers (e.g. coupling masks), so
    a change of the model code invalidates the cache as a change of a setting does.
    """
    buffers = {key: value.tolist() for key, value in model.state_dict().items()
               if key not in dict(model.named_parameters())}
    return _key({"name": name, **settings, "architecture": repr(model), "buffers": buffers})


def _key(content: dict[str, Any]) -> str:
    """The hash of ``content`` with the cache version, and the dry-run mark in a dry run.

    A dry run's models are trained for a few steps only: marking their keys keeps them from ever
    being loaded by a real run with the same settings (and lets an interrupted dry run resume).
    """
    marks = {"cache_version": CACHE_VERSION, **({"dry_run": True} if run_options().dry_run else {})}
    text = json.dumps({**content, **marks}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(name: str, settings: dict[str, Any], model: nn.Module) -> Path:
    """The file that holds the model ``name`` with this architecture trained with ``settings``."""
    return cache_dir() / f"{name}-{settings_key(name, settings, model)}.pt"


def cached_model(
    name: str,
    settings: dict[str, Any],
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], dict[str, Any]],
) -> tuple[nn.Module, dict[str, Any]]:
    """Build a model and either load its cached weights or train it and cache them.

    Args:
        name: what the model is, e.g. ``"helix_flow"``.
        settings: everything that changes the trained weights (sizes, steps, lr, seed).
        build: returns the untrained model, already on its device.
        train: trains the model in place and returns JSON-able facts about the training
            (loss history, time), which are cached with the weights.

    Returns:
        The model in eval mode and the training facts (``info["cached"]`` says whether the
        weights came from the cache).
    """
    model = build()
    path = cache_path(name, settings, model)
    if path.is_file():
        info = _load_into(model, path)
        info["cached"] = True
    else:
        info = train(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        torch.save({"state_dict": model.state_dict(), "info": info, "settings": settings}, partial)
        partial.replace(path)
        info = {**info, "cached": False}
    return model.eval(), info


def _load_into(model: nn.Module, path: Path) -> dict[str, Any]:
    """Load cached weights into ``model``; a corrupted file raises :class:`LatentcfError`."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LatentcfError(f"cached model {path} is corrupted or stale ({reason}); "
                            f"delete it to retrain") from err
    return dict(checkpoint["info"])


def cached_tensors(name: str, settings: dict[str, Any], make: Callable[[], dict[str, torch.Tensor]],
                   mmap: bool = False) -> dict[str, torch.Tensor]:
    """Generated data (a dict of tensors) stored under a key made from ``name`` and ``settings``.

    The first call makes and stores it; later calls with the same settings load it, memory-mapped
    with ``mmap=True`` (batches are then read from disk as they are indexed, for data sets larger
    than memory). A corrupted file raises :class:`LatentcfError`.
    """
    path = cache_dir() / f"{name}-{_key({'name': name, **settings})}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as err:
            raise LatentcfError(f"cached data {path} is corrupted ({type(err).__name__}); delete it to "
                                f"make it again") from err
    tensors = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(tensors, partial)
    partial.replace(path)
    return tensors
