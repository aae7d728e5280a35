"""The one exception type that the command line turns into a one-line error message."""

from __future__ import annotations

import importlib
from types import ModuleType


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
