"""The one exception type that the command line turns into a one-line error message."""

from __future__ import annotations

import importlib
from types import ModuleType

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
    integers = isinstance(target, torch.Tensor) and not target.is_floating_point() and target.dtype != torch.bool
    if not integers or target.dim() != 1 or (n is not None and len(target) != n):
        described = f"{target.dtype} {tuple(target.shape)}" if isinstance(target, torch.Tensor) else repr(target)
        raise LatentcfError(f"targets must be {'' if n is None else f'{n} '}integer class indices in a 1-d tensor, "
                            f"got {described}")
    unknown = (target < 0) | (target >= num_classes)
    if bool(unknown.any()):
        raise LatentcfError(f"unknown target class(es) {target[unknown].unique().tolist()}; "
                            f"use 0..{num_classes - 1}")
    return target
