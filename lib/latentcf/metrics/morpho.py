"""Morpho-MNIST morphometrics of digit images, computed for a whole batch at once.

Castro, Tan, Kainz, Konukoglu and Glocker (2019), "Morpho-MNIST: Quantitative assessment and
diagnostics for representation learning", JMLR 20(178), define six shape measurements of a
handwritten digit. LeapFactual (Table 2) reports how far a counterfactual's measurements are from
those of the VAE reconstruction it started from. This module re-implements the measurements of the
reference code (dccastro/Morpho-MNIST, ``measure_image`` with its defaults: threshold 0.5,
upscaling 4, bounding fraction 0.02, medial-axis seed 42) in vectorised numpy:

1. *Upscaling.* Each image is enlarged ``scale`` times with a bicubic spline (mirror boundary,
   clipped to the image's own range) and smoothed with a Gaussian of ``sigma = 2 * scale / 6``
   (edge-repeating boundary), which is what ``skimage.transform.pyramid_expand(order=3)`` does.
   The spline step is linear and separable, so the batch goes through two matrix products. The
   result is scaled to ``[0, 255]`` and, for uint8 input, truncated to uint8 as the reference does.
2. *Binarisation* at ``min + threshold * (max - min)`` of each high-resolution image.
3. *Medial axis* (skeleton and Euclidean distance map) exactly as
   ``skimage.morphology.medial_axis(binary, return_distance=True, rng=42)``, but for all images of
   a chunk together (see :func:`medial_axis`).
4. *Measurements* (all in original-pixel units): area, skeleton length, mean thickness along the
   skeleton, slant from the second-order moments of the greyscale high-resolution image, and the
   width and height of a bounding parallelogram that leaves out 1 % of the mass on each side.

Images must be non-negative with a zero background (uint8, or floats in ``[0, 1]``): slant, width
and height use the intensities as mass, so a ``[-1, 1]`` image gives wrong values.
"""

from __future__ import annotations

import math
import multiprocessing
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from functools import cache, lru_cache
from itertools import repeat

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from latentcf.core.errors import LatentcfError

THRESHOLD = 0.5
"""Relative binarisation threshold between each upscaled image's minimum and maximum."""
SCALE = 4
"""Upscaling factor of the published Morpho-MNIST tables."""
BOUND_FRAC = 0.02
"""Fraction of the image mass left outside the bounding parallelogram (half on each side)."""
MEDIAL_AXIS_SEED = 42
"""Seed of the medial axis's tie-breaking order, as in Morpho-MNIST since January 2025."""
CHUNK_SIZE = 500
"""Images measured together: bounds the memory to a few hundred MB per chunk."""
NAMES = ("area", "length", "thickness", "slant", "width", "height")
"""The six morphometrics, in the column order of Morpho-MNIST's ``*-morpho.csv``."""

_NEIGHBOUR_BITS = np.array([1, 2, 4, 8, 32, 64, 128, 256], dtype=np.int64)
"""Weight of each of the 8 neighbours in a 3x3 configuration code (the centre has weight 16)."""


@dataclass(frozen=True)
class Morphometrics:
    """Morpho-MNIST measurements of ``N`` images, each field a ``(N,)`` float64 array.

    ``area`` in px², ``length``, ``thickness``, ``width`` and ``height`` in px, ``slant`` in
    radians (positive = leaning right). Blank images (constant intensity) measure NaN throughout.
    """

    area: np.ndarray
    length: np.ndarray
    thickness: np.ndarray
    slant: np.ndarray
    width: np.ndarray
    height: np.ndarray

    def __len__(self) -> int:
        return len(self.area)

    def as_dict(self) -> dict[str, np.ndarray]:
        """The six arrays by name, in :data:`NAMES` order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def measure(images: np.ndarray | torch.Tensor, *, threshold: float = THRESHOLD, scale: int = SCALE,
            bound_frac: float = BOUND_FRAC, chunk_size: int = CHUNK_SIZE,
            progress: bool | None = None, workers: int = 1) -> Morphometrics:
    """Morpho-MNIST morphometrics of a batch of digits (Castro et al. 2019).

    ``images``: ``(N, H, W)`` or ``(N, 1, H, W)``, uint8 in ``[0, 255]`` or float in ``[0, 1]``
    (numpy or torch). Chunks of ``chunk_size`` images are measured each fully vectorised, one after
    the other or, with ``workers > 1``, in that many processes (the official code uses a pool of
    32); a tqdm bar shows them when there is more than one chunk (``progress=None``).
    """
    array = _as_batch(images)
    if scale < 1 or int(scale) != scale:
        raise LatentcfError(f"the upscaling factor must be a positive integer, got {scale}")
    if workers < 1:
        raise LatentcfError(f"workers must be >= 1, got {workers}")
    chunks = [array[s:s + chunk_size] for s in range(0, len(array), chunk_size)]
    show = len(chunks) > 1 if progress is None else progress
    parts = list(tqdm(_measure_chunks(chunks, threshold, int(scale), bound_frac, workers), total=len(chunks),
                      desc="morphometrics", unit="chunk", disable=not show))
    if not parts:
        return Morphometrics(*(np.zeros(0) for _ in NAMES))
    return Morphometrics(*(np.concatenate([getattr(p, name) for p in parts]) for name in NAMES))


def _measure_chunks(chunks: list[np.ndarray], threshold: float, scale: int, bound_frac: float,
                    workers: int) -> Iterator[Morphometrics]:
    """:func:`_measure_chunk` of every chunk, in order; in a pool of fresh ("spawn") processes if ``workers > 1``."""
    arguments = (chunks, repeat(threshold), repeat(scale), repeat(bound_frac))
    if workers == 1 or len(chunks) < 2:
        yield from map(_measure_chunk, *arguments)
        return
    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(_measure_chunk, *arguments)


def relative_errors(ref: Morphometrics, other: Morphometrics) -> Morphometrics:
    """Per-image ``|(other - ref) / ref|`` for each morphometric: the D(.) of LeapFactual Table 2.

    In LeapFactual ``ref`` is the unconditional VAE reconstruction of the test image and ``other``
    the counterfactual. As there, nothing guards the division: a zero reference value gives
    ``inf`` (``nan`` if both are zero). Slant near 0 rad makes D(Slant) heavy-tailed, see
    :func:`slant_difference_degrees`.
    """
    if len(ref) != len(other):
        raise LatentcfError(f"cannot compare {len(ref)} reference measurements with {len(other)}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return Morphometrics(*(np.abs((getattr(other, n) - getattr(ref, n)) / getattr(ref, n))
                               for n in NAMES))


def relative_morphometric_error(ref: Morphometrics, other: Morphometrics) -> dict[str, float]:
    """Mean over images of :func:`relative_errors`, by morphometric name (LeapFactual's D(.)).

    As the official pandas ``mean``, images whose error is NaN (a blank image has no
    morphometrics) are left out; an ``inf`` (zero reference) is kept and makes the mean ``inf``.
    """
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {name: float(np.nanmean(values)) for name, values in relative_errors(ref, other).as_dict().items()}


def relative_morphometric_sem(ref: Morphometrics, other: Morphometrics) -> dict[str, float]:
    """Standard error (ddof = 1, as pandas' ``sem``, NaN left out) over images of :func:`relative_errors`."""
    errors = relative_errors(ref, other).as_dict()
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {name: float(np.nanstd(v, ddof=1) / math.sqrt(np.count_nonzero(~np.isnan(v))))
                for name, v in errors.items()}


def slant_difference_degrees(ref: Morphometrics, other: Morphometrics) -> np.ndarray:
    """Per-image ``|slant_other - slant_ref|`` in degrees, ``(N,)``: a robust companion of D(Slant)."""
    return np.degrees(np.abs(other.slant - ref.slant))


def upscale(images: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """High-resolution images as Morpho-MNIST makes them: ``(N, H, W)`` to ``(N, s*H, s*W)``.

    Same values as ``255 * skimage.transform.pyramid_expand(image, scale, order=3)`` per image up
    to rounding, cast back to uint8 (truncating) for uint8 input and float64 otherwise.
    """
    if scale == 1:
        return images.copy() if images.dtype == np.uint8 else images.astype(np.float64)
    x = images.astype(np.float64) / 255.0 if images.dtype == np.uint8 else images.astype(np.float64)
    zoomed = _separable(x, _zoom_matrix(images.shape[1], scale), _zoom_matrix(images.shape[2], scale))
    np.clip(zoomed, x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True), out=zoomed)
    hires = 255.0 * _smooth(zoomed, scale)
    return hires.astype(np.uint8) if images.dtype == np.uint8 else hires


def binarise(hires: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Foreground masks ``(N, h, w)`` bool: at least ``min + threshold * (max - min)`` per image."""
    low = hires.min(axis=(1, 2), keepdims=True)
    high = hires.max(axis=(1, 2), keepdims=True)
    return hires >= low + (high - low) * threshold


def downscale(binary: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """High-resolution masks ``(N, s*H, s*W)`` bool back to ``(N, H, W)`` uint8.

    Same values as ``(255 * skimage.transform.pyramid_reduce(mask, scale, order=3)).astype(uint8)``
    per image up to rounding: Gaussian smoothing (edge-repeating boundary), then bicubic resampling
    (mirror boundary) clipped to the smoothed image's range. This is how Morpho-MNIST writes its
    "plain" and perturbed datasets.
    """
    x = binary.astype(np.float64)
    if scale == 1:
        return (255.0 * x).astype(np.uint8)
    smooth = _smooth(x, scale)
    small = _separable(smooth, _reduce_matrix(x.shape[1], scale), _reduce_matrix(x.shape[2], scale))
    np.clip(small, smooth.min(axis=(1, 2), keepdims=True), smooth.max(axis=(1, 2), keepdims=True),
            out=small)
    return (255.0 * small).astype(np.uint8)


def medial_axis(binary: np.ndarray, seed: int = MEDIAL_AXIS_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Skeletons ``(N, h, w)`` bool and distance maps ``(N, h, w)`` float64 of binary images.

    Gives what ``skimage.morphology.medial_axis(image, return_distance=True, rng=seed)`` gives for
    each image, in one pass over the batch. scikit-image rebuilds a 512-entry lookup table in
    Python on every call (0.03 to 0.1 s, nearly all of a per-image measurement), and its thinning
    loop is sequential within an image. Here the table is built once, and the thinning loop runs
    over the pixel ranks: step ``k`` visits the ``k``-th pixel of every image at once. The images
    never interact, so the result is the same as one image at a time.

    The algorithm (scikit-image's): foreground pixels are visited by increasing distance to the
    background, then by decreasing "cornerness" (background pixels in the 3x3 neighbourhood), then
    in a seeded random order; a pixel is removed unless removing it would split its neighbourhood
    or it has at most one foreground neighbour.
    """
    n, height, width = binary.shape
    distance = _distance_map(binary)
    padded = np.zeros((n, height + 2, width + 2), dtype=np.uint8)
    padded[:, 1:-1, 1:-1] = binary
    image_idx, rows, cols = np.nonzero(binary)
    counts = np.bincount(image_idx, minlength=n)
    tiebreak = np.concatenate([_tiebreak(int(c), seed) for c in counts]) if n else np.zeros(0, int)
    # One integer sort key: image, then squared distance (an integer, ordered like the distance),
    # then cornerness (0..8), then the tie-break rank.
    squared = np.rint(distance[image_idx, rows, cols] ** 2).astype(np.int64)
    corner = _cornerness(padded)[image_idx, rows, cols]
    key = (image_idx * (height ** 2 + width ** 2 + 1) + squared) * 9 + corner
    order = np.argsort(key * (height * width) + tiebreak)
    flat = (image_idx * (height + 2) + rows + 1) * (width + 2) + cols + 1
    _thin(padded.reshape(-1), flat[order], counts, width + 2)
    return padded[:, 1:-1, 1:-1].astype(bool), distance


def _measure_chunk(images: np.ndarray, threshold: float, scale: int, bound_frac: float) -> Morphometrics:
    """The six morphometrics of ``(n, H, W)`` images (uint8 or float64), fully vectorised.

    Blank high-resolution images (no background after binarisation) are left out and get NaN.
    """
    hires = upscale(images, scale)
    inked = hires.min(axis=(1, 2)) < hires.max(axis=(1, 2))
    values = np.full((len(NAMES), len(images)), np.nan)
    values[:, inked] = _measure_hires(hires[inked], threshold, scale, bound_frac)
    return Morphometrics(*values)


def _measure_hires(hires: np.ndarray, threshold: float, scale: int, bound_frac: float) -> np.ndarray:
    """``(6, n)`` morphometrics, rows in :data:`NAMES` order, of non-blank high-resolution images."""
    binary = binarise(hires, threshold)
    skeleton, distance = medial_axis(binary)
    mass = hires.astype(np.float64)
    area = binary.sum(axis=(1, 2)) / scale ** 2
    length = _skeleton_length(skeleton) / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        thickness = 2.0 * (distance * skeleton).sum(axis=(1, 2)) / skeleton.sum(axis=(1, 2)) / scale
        y_mid, shear = _centroid_row_and_shear(mass)
        slant = np.arctan(-shear)
        width, height = _parallelogram_size(mass, y_mid, shear, bound_frac)
    return np.stack([area, length, thickness, slant, width / scale, height / scale])


def _as_batch(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(N, H, W)`` numpy array (uint8 kept, anything else float64); ``(N, 1, H, W)`` is squeezed."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    array = np.asarray(images)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise LatentcfError(f"expected images of shape (N, H, W) or (N, 1, H, W), got {array.shape}")
    if array.dtype != np.uint8:
        array = array.astype(np.float64)
        if array.size and array.min() < 0:
            raise LatentcfError(
                f"morphometrics need non-negative images with a zero background (uint8 or floats in "
                f"[0, 1]); the smallest value here is {array.min():.3g}. Map [-1, 1] images to [0, 1] "
                f"with (x + 1) / 2 first: slant, width and height use intensities as mass.")
    return array


@cache
def _zoom_matrix(size: int, scale: int) -> np.ndarray:
    """``(scale*size, size)`` bicubic-spline upsampling matrix (``scipy.ndimage.zoom``, mirror, grid mode)."""
    basis = np.eye(size)
    return np.stack([ndimage.zoom(e, scale, order=3, mode="mirror", grid_mode=True) for e in basis], axis=1)


@cache
def _reduce_matrix(size: int, scale: int) -> np.ndarray:
    """``(ceil(size/scale), size)`` bicubic-spline downsampling matrix (mirror, grid mode)."""
    basis = np.eye(size)
    return np.stack([ndimage.zoom(e, 1.0 / scale, order=3, mode="mirror", grid_mode=True) for e in basis],
                    axis=1)


def _smooth(images: np.ndarray, scale: int) -> np.ndarray:
    """Each image of ``(N, h, w)`` smoothed by the pyramid's Gaussian, ``sigma = 2 * scale / 6``.

    The boundary is ``scipy.ndimage``'s "reflect" (edge pixel repeated): scikit-image's pyramids
    hand their "reflect" mode to ``skimage.filters.gaussian`` unchanged, not translated to "mirror".
    A zero sigma on the batch axis keeps the images apart.
    """
    sigma = 2.0 * scale / 6.0
    return ndimage.gaussian_filter(images, (0.0, sigma, sigma), mode="reflect", truncate=4.0)


def _separable(x: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ x[i] @ right.T`` for every image: ``(N, h, w)`` to ``(N, H, W)`` float64."""
    return np.einsum("ij,njk,lk->nil", left, x, right, optimize=True)


def _distance_map(binary: np.ndarray) -> np.ndarray:
    """Per-image Euclidean distance of each foreground pixel to the nearest background pixel.

    One call of scipy's C transform per image: it has no batch axis, and a single 3-D transform
    with a large spacing between the images (the alternative) measured three times slower.
    """
    return np.stack([ndimage.distance_transform_edt(mask) for mask in binary]) if len(binary) \
        else np.zeros(binary.shape)


def _cornerness(padded: np.ndarray) -> np.ndarray:
    """``9 -`` foreground count of each pixel's 3x3 neighbourhood, ``(N, h, w)`` (outside = background)."""
    h, w = padded.shape[1] - 2, padded.shape[2] - 2
    count = sum(padded[:, di:di + h, dj:dj + w].astype(np.int64) for di in range(3) for dj in range(3))
    return 9 - count


@cache
def _keep_table() -> np.ndarray:
    """``(512,)`` uint8: 1 where the medial axis keeps a foreground centre of that 3x3 configuration.

    Bit ``k`` of a configuration code is the pixel at row ``k // 3``, column ``k % 3``; the centre is
    bit 4. A centre is kept when removing it changes the number of 8-connected components, or when
    the configuration has fewer than three foreground pixels.
    """
    eight = np.ones((3, 3), dtype=bool)
    table = np.zeros(512, dtype=np.uint8)
    for code in range(512):
        pattern = ((code >> np.arange(9)) & 1).astype(bool).reshape(3, 3)
        if not pattern[1, 1]:
            continue
        without = pattern.copy()
        without[1, 1] = False
        splits = ndimage.label(pattern, eight)[1] != ndimage.label(without, eight)[1]
        table[code] = splits or pattern.sum() < 3
    return table


@lru_cache(maxsize=4096)
def _tiebreak(count: int, seed: int) -> np.ndarray:
    """The seeded random tie-breaking ranks of ``count`` foreground pixels, as scikit-image draws them.

    Drawn per image (the stream restarts at the seed for every image), so cached by pixel count.
    """
    return np.random.default_rng(seed).permutation(count)


def _thin(flat: np.ndarray, visit: np.ndarray, counts: np.ndarray, row_stride: int) -> None:
    """Sequential thinning of all images at once, in place on the flattened padded masks.

    ``visit`` holds every foreground pixel's flat index, grouped by image in image order and in
    visiting order within an image; ``counts[i]`` is image ``i``'s number of foreground pixels.
    """
    if not len(visit):
        return
    table = _keep_table()
    offsets = np.array([-row_stride - 1, -row_stride, -row_stride + 1, -1, 1,
                        row_stride - 1, row_stride, row_stride + 1])
    by_size = np.argsort(-counts, kind="stable")
    sizes = counts[by_size]
    row_of_image = np.empty_like(by_size)
    row_of_image[by_size] = np.arange(len(counts))
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(visit)) - np.repeat(starts, counts)
    ranks = np.full((len(counts), sizes[0]), -1, dtype=np.int64)
    ranks[np.repeat(row_of_image, counts), rank] = visit
    active = np.searchsorted(-sizes, -np.arange(sizes[0]), side="left")
    columns = np.ascontiguousarray(ranks.T)
    for step in range(sizes[0]):
        pixels = columns[step, :active[step]]
        codes = 16 + flat[pixels[:, None] + offsets] @ _NEIGHBOUR_BITS
        flat[pixels] = table[codes]


def _skeleton_length(skeleton: np.ndarray) -> np.ndarray:
    """``(N,)`` polyline length of skeletons in high-resolution px.

    Every pair of adjacent skeleton pixels counts once: right and down neighbours at 1, the two
    lower diagonals at sqrt(2) (Morpho-MNIST's 3x3 correlation mask).
    """
    s = skeleton
    straight = (s[:, :, :-1] & s[:, :, 1:]).sum(axis=(1, 2)) + (s[:, :-1, :] & s[:, 1:, :]).sum(axis=(1, 2))
    diagonal = ((s[:, :-1, :-1] & s[:, 1:, 1:]).sum(axis=(1, 2))
                + (s[:, :-1, 1:] & s[:, 1:, :-1]).sum(axis=(1, 2)))
    return straight + math.sqrt(2.0) * diagonal


def _centroid_row_and_shear(mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid row ``(N,)`` and horizontal shear ``mu11 / mu02`` ``(N,)`` of greyscale images.

    x is the column and y the row index (y grows downwards); intensities are the mass.
    """
    y = np.arange(mass.shape[1], dtype=np.float64)[None, :, None]
    x = np.arange(mass.shape[2], dtype=np.float64)[None, None, :]
    total = mass.sum(axis=(1, 2))
    x_mean = (x * mass).sum(axis=(1, 2)) / total
    y_mean = (y * mass).sum(axis=(1, 2)) / total
    mu11 = (x * y * mass).sum(axis=(1, 2)) / total - x_mean * y_mean
    mu02 = (y ** 2 * mass).sum(axis=(1, 2)) / total - y_mean ** 2
    return y_mean, mu11 / mu02


def _parallelogram_size(mass: np.ndarray, y_mid: np.ndarray, shear: np.ndarray,
                        bound_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """Width and height ``(N,)`` in high-resolution px of the bounding parallelogram.

    Its sides are sheared by ``shear`` about the centroid row; the edges are where the cumulative
    mass left of (above) them crosses ``bound_frac / 2`` and ``1 - bound_frac / 2``, linearly
    interpolated between integer positions.
    """
    n, height, width = mass.shape
    total = mass.sum(axis=(1, 2))
    y = np.arange(height, dtype=np.float64)[None, :, None]
    x = np.arange(width, dtype=np.float64)[None, None, :]
    # A pixel lies left of the sheared line through column t when x + 0.5 - shear*(y - y_mid) < t,
    # i.e. for every integer t from floor(.) + 1 on.
    position = x + 0.5 - shear[:, None, None] * (y - y_mid[:, None, None])
    first = np.clip(np.floor(position) + 1, 0, width).astype(np.int64)
    bins = (np.arange(n)[:, None, None] * (width + 1) + first).reshape(-1)
    per_column = np.bincount(bins, weights=mass.reshape(-1), minlength=n * (width + 1))
    horizontal = np.cumsum(per_column.reshape(n, width + 1)[:, :width], axis=1) / total[:, None]
    above = np.cumsum(mass.sum(axis=2), axis=1) - mass.sum(axis=2)
    vertical = above / total[:, None]
    half = bound_frac / 2.0
    left, right = _interp_rows(np.array([half, 1.0 - half]), horizontal)
    top, bottom = _interp_rows(np.array([half, 1.0 - half]), vertical)
    return right - left, bottom - top


def _interp_rows(levels: np.ndarray, cdfs: np.ndarray) -> tuple[np.ndarray, ...]:
    """``np.interp(level, cdf, arange(len(cdf)))`` for each row of non-decreasing ``cdfs`` ``(N, T)``.

    One ``(N,)`` array per level: below the first value it is 0, above the last ``T - 1``.
    """
    n, length = cdfs.shape
    rows = np.arange(n)
    results = []
    for level in levels:
        below = (cdfs <= level).sum(axis=1)
        j = np.clip(below - 1, 0, length - 2)
        lo, hi = cdfs[rows, j], cdfs[rows, j + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(hi > lo, (level - lo) / (hi - lo), 0.0)
        value = j + t
        value = np.where(below == 0, 0.0, np.where(below >= length, length - 1.0, value))
        results.append(value)
    return tuple(results)
