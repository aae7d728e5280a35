"""Fabricated stand-ins of the paper scale's data files, in their official formats, for a dry run.

:func:`fabricate_data` writes, for each data set whose real files are not on the machine, tiny
files that the real loaders read through the same code (see :mod:`latentcf.data.dry_run`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from latentcf.core.errors import LatentcfError, optional_import
from latentcf.data.dry_run import DRY_RUN_PER_CLASS, FABRICATED_MARK, first_per_class
from latentcf.data.galaxy10 import FILENAME, NUM_CLASSES, galaxy10_path, render_galaxies
from latentcf.data.mnist import OFFICIAL_MD5, load_mnist, mnist_dir, write_idx

GALAXY_FILE_SIZE = 256
"""Galaxy10 DECaLS images are 256 x 256 x 3."""


def _mark(folder: Path, what: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FABRICATED_MARK).write_text(f"{what}: fabricated by latentcf for a dry run; not the real data.\n")


def fabricate_mnist(folder: Path, per_class: int = DRY_RUN_PER_CLASS) -> Path:
    """The four official MNIST ``.gz`` IDX files with ``per_class`` images of each digit, in ``folder``.

    The images are real MNIST digits: the first of each class of the offline training subset and of
    the shipped official test set (:func:`latentcf.data.mnist.load_mnist` with ``source="offline"``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        data = load_mnist(split, source="offline")
        kept = first_per_class(data.labels, per_class)
        write_idx(data.images[kept].numpy(), folder / f"{prefix}-images-idx3-ubyte.gz")
        write_idx(data.labels[kept].numpy().astype(np.uint8), folder / f"{prefix}-labels-idx1-ubyte.gz")
    missing = [name for name in OFFICIAL_MD5 if not (folder / name).is_file()]
    if missing:
        raise LatentcfError(f"fabricating MNIST in {folder} left out {', '.join(missing)}")
    _mark(folder, "MNIST")
    return folder


def fabricate_galaxy10(folder: Path, per_class: int = DRY_RUN_PER_CLASS) -> Path:
    """A ``Galaxy10_DECals.h5`` in ``folder``: ``images`` ``(N, 256, 256, 3)`` uint8 and ``ans`` ``(N,)``.

    ``per_class`` rendered stand-in galaxies of each class (:func:`latentcf.data.galaxy10.render_galaxies`).
    """
    h5py = optional_import("h5py", "h5py", "fabricating a Galaxy10 file for a dry run")
    labels = torch.arange(NUM_CLASSES).repeat(per_class)
    images = render_galaxies(labels, GALAXY_FILE_SIZE, torch.Generator().manual_seed(0))
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / FILENAME, "w") as handle:
        handle.create_dataset("images", data=images.permute(0, 2, 3, 1).contiguous().numpy())
        handle.create_dataset("ans", data=labels.numpy().astype(np.uint8))
    _mark(folder, "Galaxy10 DECaLS")
    return folder


DATA_SETS = ("mnist", "galaxy10")
"""The data sets of the paper scale that a dry run can fabricate."""


def fabricate_data(root: Path, data_sets: tuple[str, ...], per_class: int = DRY_RUN_PER_CLASS) -> list[str]:
    """Fabricate, under ``root``, the files of ``data_sets`` (of :data:`DATA_SETS`) that are not on this machine.

    Returns one sentence per data set saying which files the dry run reads. The real files are
    looked for where the paper scale reads them (:func:`latentcf.data.mnist.mnist_dir`,
    :func:`latentcf.data.galaxy10.galaxy10_path`).
    """
    unknown = sorted(set(data_sets) - set(DATA_SETS))
    if unknown:
        raise LatentcfError(f"unknown data set(s) {', '.join(unknown)}; known: {', '.join(DATA_SETS)}")
    sentences = []
    if "mnist" in data_sets and all((mnist_dir() / name).is_file() for name in OFFICIAL_MD5):
        sentences.append(f"MNIST: the real files in {mnist_dir()}, {per_class} images of each digit")
    elif "mnist" in data_sets:
        folder = fabricate_mnist(Path(root) / "mnist", per_class)
        sentences.append(f"MNIST: not in {mnist_dir()}; fabricated IDX files of {per_class} real digits per class "
                         f"in {folder}")
    if "galaxy10" in data_sets and galaxy10_path().is_file():
        sentences.append(f"Galaxy10: the real file {galaxy10_path()}, {per_class} images of each class")
    elif "galaxy10" in data_sets:
        folder = fabricate_galaxy10(Path(root) / "galaxy10", per_class)
        sentences.append(f"Galaxy10: not at {galaxy10_path()}; a fabricated HDF5 file of {per_class} rendered "
                         f"256x256 galaxies per class in {folder}")
    return sentences
