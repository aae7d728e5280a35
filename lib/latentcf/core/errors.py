"""The one exception type that the command line turns into a one-line error message, and the input checks
that several layers share (class targets, unit images), which raise it."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import torch


class LatentcfError(Exception):
    """A user-facing error: bad input, a missing file, an unavailable device.

    The command line prints ``error: <message>`` and exits with status 2; in a notebook it
    surfaces as an ordinary exception with the same message.
    """


def optional_import(module: str, package: str, purpose: str) -> ModuleType:
    """Import ``module`` of an optional dependency, or raise :class:`LatentcfError` naming ``package``.

    ``purpose`` says what needs it, e.g. ``"the k-NN classifier of the MNIST LeapFactual chapter"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise LatentcfError(f"{purpose} needs the package '{package}', which is not installed: "
                            f"pip install {package}") from exc


def check_targets(target: torch.Tensor, num_classes: int, n: int | None = None) -> torch.Tensor:
    """Return ``target`` if it holds integer class indices in ``0..num_classes-1`` (``n`` of them), else raise.

    Shapes: ``target: (n,)``. A wrong dtype, shape or an unknown class raises :class:`LatentcfError`.
    """
    _check_index_tensor(target, n)
    unknown = (target < 0) | (target >= num_classes)
    if bool(unknown.any()):
        raise LatentcfError(f"unknown target class(es) {target[unknown].unique().tolist()}; "
                            f"use 0..{num_classes - 1}")
    return target


def _check_index_tensor(target: torch.Tensor, n: int | None) -> None:
    """Raise :class:`LatentcfError` unless ``target`` is a 1-d integer tensor (of ``n`` entries)."""
    integers = isinstance(target, torch.Tensor) and not target.is_floating_point() and target.dtype != torch.bool
    if not integers or target.dim() != 1 or (n is not None and len(target) != n):
        described = f"{target.dtype} {tuple(target.shape)}" if isinstance(target, torch.Tensor) else repr(target)
        raise LatentcfError(f"targets must be {'' if n is None else f'{n} '}integer class indices in a 1-d tensor, "
                            f"got {described}")


def target_vector(target: int | torch.Tensor, n: int) -> torch.Tensor:
    """One class index per item: an int ``target`` repeated ``n`` times, or ``target`` itself if it is a tensor.

    Shapes: ``-> (n,)``. For scores that compare labels with targets and know no number of classes: a bool,
    float or string, a tensor of another shape or dtype, or a negative index raises :class:`LatentcfError`;
    an index that no item has is allowed (no item agrees with it).
    """
    if isinstance(target, torch.Tensor):
        vector = target
    elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        vector = torch.full((n,), int(target))
    else:
        raise LatentcfError(f"the target class must be an integer class index or a 1-d tensor of them, "
                            f"got {target!r}")
    _check_index_tensor(vector, n)
    if bool((vector < 0).any()):
        raise LatentcfError(f"unknown target class(es) {vector[vector < 0].unique().tolist()}; class indices "
                            f"start at 0")
    return vector


def check_unit_images(images: torch.Tensor) -> None:
    """Refuse anything but a float batch ``(B, 1, 28, 28)`` with values in ``[0, 1]`` (:class:`LatentcfError`)."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise LatentcfError(f"expected a float tensor of images, got {type(images).__name__} "
                            f"{getattr(images, 'dtype', '')}")
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28) or len(images) == 0:
        raise LatentcfError(f"expected images of shape (B, 1, 28, 28) with B >= 1, got {tuple(images.shape)}")
    low, high = images.min().item(), images.max().item()
    if low < 0.0 or high > 1.0:
        raise LatentcfError(f"expected pixel values in [0, 1], got values in [{low:.3g}, {high:.3g}]; "
                            f"divide uint8 images by 255")
