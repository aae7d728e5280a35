"""Galaxy10 DECaLS (Leung and Bovy; Walmsley et al.) and its offline stand-in, ``galaxy10-synthetic``.

The real data set is one HDF5 file of 17,736 colour images (256 x 256 x 3 uint8, the g, r, z bands
of the DESI Legacy Surveys rendered as RGB) with one of ten morphology classes each. It is 2.54 GB:
:func:`download_galaxy10` fetches it once (resumable, SHA256-checked) and :class:`Galaxy10File`
reads it lazily with ``h5py``, a batch of images at a time, never the whole file as floats.
Train/test split and the weak classifier's class-balanced "20%" subset follow the official code of
LeapFactual (``Galaxy10/galaxy10_data/convert_split_train_test.py``) exactly.

Offline, :func:`synthetic_galaxy10` renders a Galaxy10-like set with a batched torch renderer:
Sersic bulges, exponential disks, log-spiral arms, bars, edge-on disks, mergers with tidal tails,
clumpy disturbed disks, colour per component, a Gaussian PSF, an asinh stretch and sky noise. The
classes share nuisance variables (size, brightness, position angle, PSF, noise) and neighbouring
classes overlap in their defining parameters (axis ratio of the smooth classes, pitch angle and bar
strength of the spirals, bulge fraction of the edge-on disks), so they are not trivially separable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from latentcf.core.cache import cached_tensors
from latentcf.core.download import download_file, known_digest
from latentcf.core.errors import LatentcfError, optional_import
from latentcf.core.paths import cache_dir
from latentcf.core.runtime import run_options
from latentcf.data.dry_run import fabricated_folder, first_per_class, is_fabricated, skip_checksum

CLASS_NAMES = ("Disturbed", "Merging", "Round Smooth", "In-between Round Smooth", "Cigar-shaped Smooth",
               "Barred Spiral", "Unbarred Tight Spiral", "Unbarred Loose Spiral", "Edge-on without Bulge",
               "Edge-on with Bulge")
CLASS_COUNTS = (1081, 1853, 2645, 2027, 334, 2043, 1829, 2628, 1423, 1873)
"""Images per class in Galaxy10 DECaLS (17,736 in all)."""
NUM_CLASSES = 10
RENDERER_VERSION = 4
"""Bumped whenever :func:`render_galaxies` changes, so that cached synthetic sets, and every model the Galaxy10
chapter trains on them (its cache keys name the version), are made again."""
FILENAME = "Galaxy10_DECals.h5"
URL = "https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5"
SHA256 = "19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571"
H5_KEYS = ("images", "ans")
WEAK_PER_CLASS = 320
"""The weak classifier's subset: the first 320 training files of each class (class 4 has 301)."""
CROP, SIZE = 150, 128
"""Official preprocessing: centre crop 150 x 150 of the 256 x 256 image, resized to 128 x 128."""


# The real data ------------------------------------------------------------------------------------

def galaxy10_path() -> Path:
    """Where the real file is expected: ``cache_dir() / "galaxy10" / "Galaxy10_DECals.h5"``."""
    return cache_dir() / "galaxy10" / FILENAME


def download_galaxy10(path: Path | None = None) -> Path:
    """Download the real file once (2.54 GB, from :data:`URL`) and check its SHA256; return its path.

    A file already there with the right checksum is kept (its digest is computed once,
    :func:`latentcf.core.download.known_digest`); a damaged one is replaced only once a new download has the
    right checksum. A cut transfer resumes where it stopped, within this call and in the next one
    (:func:`latentcf.core.download.download_file`).
    """
    path = galaxy10_path() if path is None else Path(path)
    if path.is_file() and known_digest(path, "sha256") == SHA256:
        return path
    return download_file([URL], path, SHA256, "sha256",
                         fix=f"Without internet, put {FILENAME} (SHA256 {SHA256}) at {path}.")


class Galaxy10File:
    """Lazy access to a Galaxy10 HDF5 file: labels in memory, images read per batch.

    The file is checked on opening: it must exist, have the expected SHA256 (``sha256=None`` skips
    the check, for files made by tests; the file is hashed once for each size and modification time,
    :func:`latentcf.core.download.known_digest`) and hold the keys ``images`` ``(N, H, W, 3)`` uint8 and
    ``ans`` ``(N,)``. Any failure raises :class:`LatentcfError` saying where the file belongs and
    how to get it.
    """

    def __init__(self, path: Path | str | None = None, sha256: str | None = SHA256) -> None:
        self.path = galaxy10_path() if path is None else Path(path)
        how = (f"Download it with latentcf.data.galaxy10.download_galaxy10() (2.54 GB from {URL}) or copy "
               f"{FILENAME} to {self.path}.")
        if not self.path.is_file():
            raise LatentcfError(f"Galaxy10 DECaLS not found at {self.path}. {how}")
        if sha256 is not None and (actual := known_digest(self.path, "sha256")) != sha256:
            raise LatentcfError(f"{self.path} is damaged or incomplete (SHA256 {actual}, expected {sha256}). "
                                f"Delete it. {how}")
        h5py = optional_import("h5py", "h5py", "reading Galaxy10 DECaLS")
        try:
            self.handle = h5py.File(self.path, "r")
        except OSError as exc:
            raise LatentcfError(f"{self.path} is not a readable HDF5 file ({exc}). {how}") from exc
        missing = [key for key in H5_KEYS if key not in self.handle]
        if missing:
            raise LatentcfError(f"{self.path} lacks the key(s) {missing} of Galaxy10 DECaLS. {how}")
        self.labels = torch.from_numpy(np.asarray(self.handle["ans"]).astype(np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def description(self) -> str:
        """What the images are, in words."""
        return f"Galaxy10 DECaLS ({len(self)} images, {self.path})"

    def read_images(self, indices: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The images at ``indices``, in that order, as uint8 ``(B, 3, H, W)``; only they are read."""
        order = np.asarray(indices, dtype=np.int64)
        unique, inverse = np.unique(order, return_inverse=True)
        images = np.asarray(self.handle["images"][unique])[inverse]
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    def close(self) -> None:
        """Close the HDF5 file."""
        self.handle.close()


class Galaxy10Subset:
    """Some images of a :class:`Galaxy10File`, renumbered ``0..len - 1``: a dry run's few per class."""

    def __init__(self, source: Galaxy10File, indices: torch.Tensor) -> None:
        self.source, self.indices = source, indices
        self.labels = source.labels[indices]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def description(self) -> str:
        """What the images are, in words."""
        kind = "fabricated stand-in" if is_fabricated(self.source.path.parent) else "Galaxy10 DECaLS"
        return f"dry run: {len(self)} of the {len(self.source)} images of the {kind} file {self.source.path}"

    def read_images(self, indices: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The images at ``indices`` of the subset as uint8 ``(B, 3, H, W)``."""
        return self.source.read_images(self.indices[torch.as_tensor(indices, dtype=torch.long)])


def open_galaxy10() -> Galaxy10File | Galaxy10Subset:
    """The real Galaxy10 DECaLS file, downloaded once if it is not in :func:`galaxy10_path` yet.

    In a dry run: the fabricated stand-in where the real file is not on the machine (its checksum
    skipped, :func:`latentcf.data.dry_run.skip_checksum`), and only the first
    :data:`latentcf.data.dry_run.DRY_RUN_PER_CLASS` images of each class.
    """
    fabricated = fabricated_folder("galaxy10")
    if fabricated is not None:
        source = Galaxy10File(fabricated / FILENAME, sha256=None if skip_checksum(fabricated) else SHA256)
    else:
        path = galaxy10_path()
        source = Galaxy10File(path if path.is_file() else download_galaxy10(path))
    if run_options().dry_run:
        return Galaxy10Subset(source, first_per_class(source.labels))
    return source


def official_split(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official deterministic split: per class, the first ``floor(n_c / 10)`` images (file order) are test.

    Shapes: ``labels: (N,) -> (train indices, test indices)``, each sorted. On the real file this
    gives 15,967 training and 1,769 test images.
    """
    train, test = [], []
    for label in range(NUM_CLASSES):
        members = (labels == label).nonzero().squeeze(1)
        n_test = len(members) // 10
        test.append(members[:n_test])
        train.append(members[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def weak_subset(train_indices: torch.Tensor, labels: torch.Tensor, per_class: int = WEAK_PER_CLASS) -> torch.Tensor:
    """The weak classifier's class-balanced subset, as the official ``split_fraction.sh`` picks it.

    The official code stores training image ``i`` as ``img_{i}.jpeg`` and copies the first
    ``per_class`` files of each class in *lexicographic* file-name order (so ``img_1000`` comes
    before ``img_2``); a class with fewer images gives all of them. On the real file: 3,181 images.
    """
    chosen = []
    for label in range(NUM_CLASSES):
        members = train_indices[labels[train_indices] == label].tolist()
        chosen += sorted(members, key=lambda index: f"img_{index}.jpeg")[:per_class]
    return torch.tensor(sorted(chosen), dtype=torch.long)


def preprocess(images: torch.Tensor, crop: int = CROP, size: int = SIZE) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` to float ``(B, 3, size, size)`` in [0, 1]: centre crop, then resize.

    As the official test transform (the Lightning data module of ``training_scripts/``): crop 150
    of 256, bilinear antialiased resize to 128, no normalisation.
    For images smaller than ``crop`` only the resize is applied.
    """
    x = images.float() / 255.0
    height, width = x.shape[-2:]
    if height > crop and width > crop:
        top, left = (height - crop) // 2, (width - crop) // 2
        x = x[..., top:top + crop, left:left + crop]
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1)


def random_rotation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rotate each image by its own angle, uniform in (-180, 180) degrees, about the image centre.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``. Nearest-neighbour sampling and zero fill, as the
    official augmentation (torchvision ``RandomAffine(degrees=180)``). The angles
    are drawn on the CPU from ``generator``; the images stay on their device.
    """
    angle = (torch.rand(len(x), generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    cos, sin = angle.cos().float(), angle.sin().float()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).to(x.dtype)


# The synthetic stand-in ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SyntheticGalaxies:
    """A ``galaxy10-synthetic`` set: ``images`` uint8 ``(N, 3, size, size)``, ``labels`` ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor
    seed: int

    def __len__(self) -> int:
        return len(self.labels)

    def read_images(self, indices: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The images at ``indices`` as uint8 ``(B, 3, size, size)``, as :meth:`Galaxy10File.read_images`."""
        return self.images[torch.as_tensor(indices, dtype=torch.long)]


BULGE_COLOUR = (1.4, 1.0, 0.5)
DISK_COLOUR = (0.8, 1.0, 1.15)
CLUMP_COLOUR = (0.6, 1.0, 1.4)
"""Relative flux in the (R, G, B) = (z, r, g) channels: red bulges, bluer disks, bluest star-forming clumps."""


def class_balanced_labels(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` labels in the proportions of Galaxy10 DECaLS (class 4 stays rare), shuffled. ``-> (n,)``."""
    shares = torch.tensor(CLASS_COUNTS, dtype=torch.float64) / sum(CLASS_COUNTS)
    counts = torch.floor(shares * n).long()
    remainder = n - int(counts.sum())
    counts[torch.argsort(shares * n - counts, descending=True)[:remainder]] += 1
    labels = torch.repeat_interleave(torch.arange(NUM_CLASSES), counts)
    return labels[torch.randperm(n, generator=generator)]


def _uniform(low: torch.Tensor | float, high: torch.Tensor | float, n: int, generator: torch.Generator) -> torch.Tensor:
    return low + (torch.as_tensor(high) - low) * torch.rand(n, generator=generator, dtype=torch.float64).float()


def _per_class(values: dict[int, tuple[float, float]], labels: torch.Tensor, default: tuple[float, float],
               generator: torch.Generator) -> torch.Tensor:
    """Draw one value per galaxy, uniform in its class's range (``default`` for classes not listed)."""
    table = torch.tensor([values.get(label, default) for label in range(NUM_CLASSES)], dtype=torch.float32)
    low, high = table[labels, 0], table[labels, 1]
    return _uniform(low, high, len(labels), generator)


SMOOTH, SPIRALS, EDGE_ON = (2, 3, 4), (5, 6, 7), (8, 9)


def draw_parameters(labels: torch.Tensor, size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The physical parameters of each galaxy, class by class. Every value is ``(N,)``.

    Lengths are in pixels of a ``size`` image. Overlaps between neighbouring classes: axis ratio
    ``q`` of round (0.75-1) / in-between (0.45-0.85) / cigar (0.15-0.5); pitch angle of tight
    (8-18 deg) / loose (16-40 deg) / barred (12-30 deg) spirals, with weak bars allowed in the
    unbarred classes; bulge fraction of the edge-on classes (0-0.15 / 0.1-0.5); spiral arms in some
    disturbed galaxies and clumps in some mergers.
    """
    n = len(labels)
    smooth = sum(labels == c for c in SMOOTH).bool()
    edge_on = sum(labels == c for c in EDGE_ON).bool()
    p = {
        "angle": _uniform(0.0, math.pi, n, generator),
        "scale": _uniform(0.13, 0.19, n, generator) * size,
        "brightness": _uniform(0.7, 1.0, n, generator),
        "centre_x": _uniform(-0.03, 0.03, n, generator) * size,
        "centre_y": _uniform(-0.03, 0.03, n, generator) * size,
        "psf_sigma": _uniform(1.2, 2.0, n, generator) * size / 64,
        "noise": _uniform(0.01, 0.025, n, generator),
        "sersic_n": _per_class({2: (2.5, 4.0), 3: (2.0, 4.0), 4: (1.0, 2.5)}, labels, (2.0, 4.0), generator),
        "q": _per_class({2: (0.78, 1.0), 3: (0.5, 0.82), 4: (0.2, 0.52), 8: (0.06, 0.2), 9: (0.06, 0.2)},
                        labels, (0.55, 1.0), generator),
        "bulge_fraction": _per_class({2: (1.0, 1.0), 3: (1.0, 1.0), 4: (1.0, 1.0), 8: (0.0, 0.12), 9: (0.08, 0.6),
                                      5: (0.05, 0.25), 6: (0.1, 0.35), 7: (0.05, 0.25)}, labels, (0.1, 0.4),
                                     generator),
        "arm_amplitude": _per_class({5: (0.7, 1.0), 6: (0.7, 1.0), 7: (0.7, 1.0), 0: (0.0, 0.5)}, labels,
                                    (0.0, 0.0), generator),
        "pitch": _per_class({5: (12.0, 30.0), 6: (8.0, 17.0), 7: (15.0, 40.0)}, labels, (20.0, 30.0), generator),
        "bar_strength": _per_class({5: (0.6, 1.0), 6: (0.0, 0.2), 7: (0.0, 0.2)}, labels, (0.0, 0.0), generator),
        "clumps": _per_class({0: (10.0, 25.0), 1: (0.0, 6.0)}, labels, (0.0, 0.0), generator).round(),
        "plume": _per_class({0: (0.2, 0.4)}, labels, (0.0, 0.0), generator),
        "companion": _per_class({1: (0.5, 0.9)}, labels, (0.0, 0.0), generator),
        "separation": _uniform(0.18, 0.3, n, generator) * size,
        "tail": _per_class({1: (0.15, 0.3)}, labels, (0.0, 0.0), generator),
    }
    p["bulge_scale"] = torch.where(smooth, p["scale"], _uniform(0.25, 0.45, n, generator) * p["scale"])
    p["bulge_q"] = torch.where(smooth, p["q"], _uniform(0.7, 1.0, n, generator))
    p["disk_scale"] = torch.where(edge_on, 1.4 * p["scale"], p["scale"])
    return p


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``(1, size, size)`` with the origin at the image centre."""
    axis = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    return axis.view(1, 1, size).expand(1, size, size), axis.view(1, size, 1).expand(1, size, size)


def _elliptical(x: torch.Tensor, y: torch.Tensor, angle: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Major/minor-axis coordinates and elliptical radius. ``x, y: (N, S, S)``; ``angle, q: (N,)``."""
    cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    major, minor = x * cos + y * sin, -x * sin + y * cos
    return major, minor, torch.sqrt(major**2 + (minor / q.view(-1, 1, 1))**2 + 1e-6)


def sersic(radius: torch.Tensor, half_light: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """The Sersic profile ``exp(-b_n ((r / r_e)^(1/n) - 1))`` with ``b_n ~ 2n - 1/3 + 4/(405 n)``.

    Shapes: ``radius: (N, S, S)``, ``half_light, n: (N,)`` ``-> (N, S, S)``; ``n = 1`` is an exponential disk.
    """
    n = n.view(-1, 1, 1)
    b_n = 2 * n - 1 / 3 + 4 / (405 * n)
    return torch.exp(-b_n * ((radius / half_light.view(-1, 1, 1)) ** (1 / n) - 1))


def _unit_flux(image: torch.Tensor) -> torch.Tensor:
    return image / image.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)


def _spiral_modulation(major: torch.Tensor, minor: torch.Tensor, radius: torch.Tensor, p: dict,
                       phase: torch.Tensor) -> torch.Tensor:
    """``1 + A cos(2 (theta - phi0) - 2 ln r / tan(pitch))``: a two-armed logarithmic spiral."""
    theta = torch.atan2(minor / p["q"].view(-1, 1, 1), major)
    winding = 2 * torch.log(radius.clamp_min(0.5)) / torch.tan(torch.deg2rad(p["pitch"])).view(-1, 1, 1)
    arms = torch.cos(2 * (theta - phase.view(-1, 1, 1)) - winding)
    return (1 + p["arm_amplitude"].view(-1, 1, 1) * arms).clamp_min(0)


def _clump_map(p: dict, size: int, generator: torch.Generator, max_clumps: int = 25) -> torch.Tensor:
    """Point-like knots inside the disk, ``p["clumps"]`` per galaxy, as a unit-flux map ``(N, S, S)``."""
    n = len(p["clumps"])
    radius = _uniform(0.0, 1.6, n * max_clumps, generator).view(n, max_clumps) * p["scale"].view(-1, 1)
    angle = _uniform(0.0, 2 * math.pi, n * max_clumps, generator).view(n, max_clumps)
    column = (size / 2 + p["centre_x"].view(-1, 1) + radius * angle.cos()).long().clamp(0, size - 1)
    row = (size / 2 + p["centre_y"].view(-1, 1) + radius * angle.sin()).long().clamp(0, size - 1)
    weight = (torch.arange(max_clumps).view(1, -1) < p["clumps"].view(-1, 1)).float()
    weight = weight * _uniform(0.3, 1.0, n * max_clumps, generator).view(n, max_clumps)
    flat = torch.zeros(n, size * size)
    flat.scatter_add_(1, row * size + column, weight)
    return _unit_flux(flat.view(n, size, size))


def _blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur. ``images: (N, C, S, S)``, ``sigma: (N,)`` in pixels."""
    n, channels, size, _ = images.shape
    half = math.ceil(3 * float(sigma.max()))
    offsets = torch.arange(-half, half + 1, dtype=torch.float32)
    kernel_1d = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.view(-1, 1)) ** 2)
    kernel_1d = kernel_1d / kernel_1d.sum(dim=1, keepdim=True)
    kernel = (kernel_1d[:, :, None] * kernel_1d[:, None, :]).repeat_interleave(channels, dim=0).unsqueeze(1)
    flat = images.reshape(1, n * channels, size, size)
    return F.conv2d(F.pad(flat, (half,) * 4, mode="reflect"), kernel, groups=n * channels).view_as(images)


def render_galaxies(labels: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Render one galaxy per label, all at once. ``labels: (N,) -> (N, 3, size, size)`` uint8.

    Components (each normalised to unit flux, then weighted): a Sersic bulge, an exponential disk
    (thin for edge-on classes) modulated by spiral arms, a bar, clumps, an off-centre plume, a
    companion bulge+disk and a tidal tail for mergers. Bulge, disk and clumps get their own colour.
    Then PSF blur, an asinh stretch to [0, 1] (as survey colour images), sky noise and 8-bit rounding.
    """
    if labels.ndim != 1 or bool(((labels < 0) | (labels >= NUM_CLASSES)).any()):
        raise LatentcfError(f"labels must be a (N,) tensor of classes 0..{NUM_CLASSES - 1}")
    if size < 16:
        raise LatentcfError(f"galaxy images must be at least 16 pixels wide, got {size}")
    p = draw_parameters(labels, size, generator)
    x_grid, y_grid = _grid(size)
    x, y = x_grid - p["centre_x"].view(-1, 1, 1), y_grid - p["centre_y"].view(-1, 1, 1)
    _, _, bulge_radius = _elliptical(x, y, p["angle"], p["bulge_q"])
    bulge = _unit_flux(sersic(bulge_radius, p["bulge_scale"], p["sersic_n"]))
    major, minor, disk_radius = _elliptical(x, y, p["angle"], p["q"])
    spiral_phase = _uniform(0.0, math.pi, len(labels), generator)
    disk = _unit_flux(sersic(disk_radius, p["disk_scale"], torch.ones(len(labels)))
                      * _spiral_modulation(major, minor, disk_radius, p, spiral_phase))
    _, _, bar_radius = _elliptical(x, y, spiral_phase, torch.full((len(labels),), 0.25))
    bar = _unit_flux(sersic(bar_radius, 0.6 * p["scale"], torch.full((len(labels),), 0.5)))
    offset = p["separation"].view(-1, 1, 1)
    companion_angle = p["angle"] + _uniform(-0.6, 0.6, len(labels), generator)
    cx, cy = offset * companion_angle.cos().view(-1, 1, 1), offset * companion_angle.sin().view(-1, 1, 1)
    _, _, companion_radius = _elliptical(x - cx, y - cy, companion_angle, p["bulge_q"])
    companion = _unit_flux(sersic(companion_radius, 0.7 * p["scale"], torch.full((len(labels),), 1.5)))
    _, _, tail_radius = _elliptical(x - 0.6 * cx, y + 0.6 * cy, companion_angle + 0.5, torch.full((len(labels),), 0.15))
    tail = _unit_flux(sersic(tail_radius, 1.2 * p["scale"], torch.full((len(labels),), 0.5)))
    _, _, plume_radius = _elliptical(x - 0.8 * cx, y - 0.8 * cy, p["angle"] + 1.0, torch.full((len(labels),), 0.3))
    plume = _unit_flux(sersic(plume_radius, p["scale"], torch.full((len(labels),), 0.5)))
    clumps = _blur(_clump_map(p, size, generator).unsqueeze(1), torch.full((len(labels),), size / 48)).squeeze(1)

    def weight(name: str) -> torch.Tensor:
        return p[name].view(-1, 1, 1)

    red_light = weight("bulge_fraction") * bulge + weight("companion") * companion
    blue_light = ((1 - weight("bulge_fraction")) * (disk + 0.8 * weight("bar_strength") * bar)
                  + weight("tail") * tail + weight("plume") * plume)
    clump_light = 0.02 * weight("clumps") * clumps
    colours = [torch.tensor(colour).view(1, 3, 1, 1) for colour in (BULGE_COLOUR, DISK_COLOUR, CLUMP_COLOUR)]
    flux = sum(c * light.unsqueeze(1) for c, light in zip(colours, (red_light, blue_light, clump_light)))
    flux = _blur(flux, p["psf_sigma"])
    peak = flux.amax(dim=(1, 2, 3), keepdim=True)
    stretched = torch.asinh(flux / (0.08 * peak)) / math.asinh(1 / 0.08) * weight("brightness").unsqueeze(1)
    noisy = stretched + weight("noise").unsqueeze(1) * torch.randn(stretched.shape, generator=generator)
    return (noisy.clamp(0, 1) * 255).round().to(torch.uint8)


def synthetic_galaxy10(n: int, size: int = 64, seed: int = 0, batch: int = 512) -> SyntheticGalaxies:
    """``n`` seeded ``galaxy10-synthetic`` images in Galaxy10's class proportions; cached by ``(n, size, seed)``.

    Rendered on the CPU in batches of ``batch``, with a progress bar; the same ``(n, size, seed)``
    gives the same images on any machine.
    """
    if n < NUM_CLASSES:
        raise LatentcfError(f"ask for at least {NUM_CLASSES} images (one per class), got {n}")

    def make() -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        labels = class_balanced_labels(n, generator)
        chunks = labels.split(batch)
        images = [render_galaxies(chunk, size, generator)
                  for chunk in tqdm(chunks, desc="galaxy10-synthetic", unit="batch", disable=len(chunks) < 4)]
        return {"images": torch.cat(images), "labels": labels}

    data = cached_tensors("galaxy10_synthetic", {"n": n, "size": size, "seed": seed, "batch": batch,
                                                 "renderer": RENDERER_VERSION}, make)
    return SyntheticGalaxies(data["images"], data["labels"], seed)


TEST_ONLY_SEED = 1
"""The seed of the synthetic images rendered for the test set only (the training pool is seed 0)."""


def synthetic_with_test_set(n: int, test_n: int, size: int = 64) -> tuple[SyntheticGalaxies, torch.Tensor]:
    """``n`` synthetic images that :func:`official_split` divides, followed by ``test_n`` rendered for testing only.

    The rendered set is small, so its official 10% test split is a few hundred images, and one image
    is a third of a percentage point of accuracy; images are cheap to render and score, so the test
    set grows by a second seeded draw (:data:`TEST_ONLY_SEED`) that no model trains on. Returns the
    joined set (``n + test_n`` images, the first ``n`` as :func:`synthetic_galaxy10` renders them) and
    the indices of the test-only images, ``(test_n,)``.
    """
    pool = synthetic_galaxy10(n, size)
    if test_n == 0:
        return pool, torch.arange(0)
    extra = synthetic_galaxy10(test_n, size, seed=TEST_ONLY_SEED)
    joined = SyntheticGalaxies(torch.cat([pool.images, extra.images]), torch.cat([pool.labels, extra.labels]),
                               pool.seed)
    return joined, torch.arange(n, n + test_n)
