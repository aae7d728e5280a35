"""Data for a dry run of the paper scale: tiny files in the official formats, and the dry run's cut.

A dry run (``python -m latentcf reproduce ... --scale paper --dry-run``) goes through every
paper-scale code path, data loaders included. Where the real files are not on the machine,
:func:`fabricate_data` writes stand-ins in the official formats (the four MNIST IDX ``.gz`` files,
``Galaxy10_DECals.h5``) into a folder of their own, marked as fabricated; the real loaders read them
through the same code and skip the checksum for marked files, in a dry run only. Where the real
files are there, the loaders read them and keep :data:`DRY_RUN_PER_CLASS` images of each class
(:func:`first_per_class`). The fabrication itself is :mod:`latentcf.data.fabricate`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from latentcf.core.runtime import run_options

DRY_RUN_PER_CLASS = 12
"""Images per class that a dry run keeps of each split (120 of MNIST's, 10 classes)."""
FABRICATED_MARK = "FABRICATED"
"""The file that marks a folder of fabricated stand-ins."""


def first_per_class(labels: torch.Tensor, per_class: int = DRY_RUN_PER_CLASS) -> torch.Tensor:
    """Indices of the first ``per_class`` items of every class, in file order.

    Shapes: ``labels: (N,) -> (at most classes x per_class,)``, sorted.
    """
    keep = torch.zeros(len(labels), dtype=torch.bool)
    for label in labels.unique():
        keep[(labels == label).nonzero().squeeze(1)[:per_class]] = True
    return keep.nonzero().squeeze(1)


def is_fabricated(folder: Path) -> bool:
    """Whether ``folder`` holds fabricated stand-ins (made by :func:`latentcf.data.fabricate.fabricate_data`)."""
    return (Path(folder) / FABRICATED_MARK).is_file()


def skip_checksum(folder: Path) -> bool:
    """Skip a data file's checksum only for fabricated files, and only in a dry run."""
    return run_options().dry_run and is_fabricated(folder)


def fabricated_folder(name: str) -> Path | None:
    """The folder of the fabricated stand-in ``name`` ("mnist", "galaxy10") of this dry run, if there is one."""
    root = run_options().fabricated_data
    folder = Path(root) / name if root else None
    return folder if run_options().dry_run and folder is not None and is_fabricated(folder) else None
