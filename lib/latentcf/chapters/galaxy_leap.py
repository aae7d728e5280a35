"""LeapFactual on Galaxy10 DECaLS: reliable counterfactuals as training data (LeapFactual Sec. 4.2, App. B.1.3).

The official pipeline (https://github.com/caicairay/LeapFactual, ``Galaxy10/`` and ``training_scripts/``):
a residual WAE-MMD autoencoder with perceptual and PatchGAN losses on all training images
(``training_scripts/models/VAE/wae_mmd.py``, ``training_scripts/configs/galaxy10_vae.yaml``); a *weak*
VGG16-BN trained on a class-balanced 20% subset and a *strong* one trained on everything
(``training_scripts/models/classifiers/wraped_vgg.py``, ``training_scripts/configs/galaxy10_vgg_{20,100}.yaml``);
a CE-CFM flow on the weak set's latents with the weak classifier's hard labels
(``Galaxy10/Galaxy10_train_flow_mlp.py``). For every weak-set image and each of the nine targets
``(y + k) mod 10`` LeapFactual makes a counterfactual (``N_b`` blending leaps) and a reliable
counterfactual (then ``N_i`` injection leaps) (``Galaxy10/Galaxy10_generate_data.py``). Table 3
retrains the weak classifier with a fraction of either set added
(``training_scripts/configs/galaxy10_vgg_syn_CE.yaml``, ``galaxy10_vgg_syn_robustCE.yaml``); Tables 5
and 6 (not in the official code: LeapFactual App. B.1.3) score the CEs along ``N_b`` and ``N_i`` with
the weak classifier (ACC, AUC), the strong one (ACC_r, AUC_r) and their similarity to the input (SSIM,
PSNR). Used in ``notebooks/galaxy_leap``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from latentcf.core.batching import in_batches
from latentcf.core.cache import cached_model, cached_tensors
from latentcf.core.errors import LatentcfError, check_targets
from latentcf.core.runtime import generator, seed_stream
from latentcf.core.settings import stage_settings
from latentcf.core.training import epoch_batches, fit, recalibrate_batch_norm
from latentcf.core.weights import PublishedWeights, require_published
from latentcf.data import galaxy10
from latentcf.methods.cfm import ConditionalVelocityMLP, cfm_loss, sample_source
from latentcf.methods.leap import Solver, leapfactual
from latentcf.metrics import image_metrics
from latentcf.metrics.classification import macro_auroc, mean_and_sem, target_accuracy
from latentcf.metrics.image_metrics import (
    LPIPS,
    default_data_range,
    jpeg_round_trip,
    lpips_squeeze,
    pooled_psnr,
    psnr,
    ssim,
)
from latentcf.models.vgg import IMAGENET_WEIGHTS, VGG16BN, PerceptualLoss, imagenet_state_dict
from latentcf.models.wae import (
    PatchDiscriminator,
    ResidualWAE,
    gan_weight,
    imq_mmd,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)

NUM_CLASSES = galaxy10.NUM_CLASSES
LATENT_DIM = 64
DATASETS = ("galaxy10-decals", "galaxy10-synthetic")
CE_KINDS = {"ce": "CEs", "rce": "reliable CEs"}
SUBSET_SEED = 0
"""The seed of the one permutation that picks Table 3's counterfactual subsets, the same in every run and
for every run seed, as the official fixed-seed ``random_split``."""


@dataclass(frozen=True)
class GalaxyLeapSettings:
    """Everything the chapter needs to know about its scale; field prefixes name the stage they belong to.

    ``data_*``: the data set (``galaxy10-decals`` or the offline ``galaxy10-synthetic`` with
    ``data_synthetic_n`` images rendered at ``data_synthetic_size``), the centre crop ``data_crop`` and the size
    ``data_image_size`` it is resized to, the weak subset (``data_weak_per_class`` per class), and the JPEG quality
    at which the data set and the CE sets are stored (``data_jpeg_quality``; 0: not stored as JPEG). ``wae_*``:
    the WAE-MMD (channel widths, bottleneck) and its training (epochs, batch, AdamW lr and weight decay, lr
    factor per epoch, gradient clip; the perceptual loss's VGG width and weight; the MMD weight; the PatchGAN's
    base width and lr, the share of epochs its weight is ramped over and its final weight; its training precision,
    ``"bf16"`` autocast or ``"fp32"``). ``classifier_*``: the VGG16-BN classifiers (width factor, hidden units, ImageNet
    weights and input preset) and their training (epochs, at least ``classifier_min_steps`` steps, batch, AdamW
    lr and weight decay, lr factor per epoch, clip, precision). ``flow_*``: the CE-CFM MLP (width, hidden
    layers) and its training (Adam, lr x0.1 from ``flow_lr_drop_epoch``). ``leap_*``: LeapFactual (``N_b``
    blending leaps at ``gamma_blend``, ``N_i`` injection leaps at ``gamma_inject_lift`` / ``gamma_inject_land``,
    the ODE solver), its sweeps (Tables 5, 6 and Figure 9 on the first ``leap_gamma_sweep_sources`` weak-set
    images) and how many sources are leapt together. ``table3_runs``: how many times the classifiers of Table 3
    are retrained, each run under its own random streams, and ``table3_fractions`` the percentages of the
    counterfactual sets they are retrained with. ``eval_batch``: the chunk size of every evaluation.
    """

    scale: str
    data_dataset: str
    data_synthetic_n: int
    data_synthetic_size: int
    data_synthetic_test_n: int
    data_image_size: int
    data_crop: int
    data_weak_per_class: int
    data_jpeg_quality: int
    wae_widths: tuple[int, ...]
    wae_bottleneck: int
    wae_epochs: int
    wae_batch: int
    wae_lr: float
    wae_weight_decay: float
    wae_lr_decay: float
    wae_clip: float
    wae_perceptual_width: float
    wae_perceptual_weight: float
    wae_mmd_weight: float
    wae_discriminator_base: int
    wae_discriminator_lr: float
    wae_gan_ramp: float
    wae_gan_weight: float
    wae_precision: str
    classifier_width: float
    classifier_hidden: int
    classifier_imagenet: bool
    classifier_epochs: int
    classifier_min_steps: int
    classifier_batch: int
    classifier_lr: float
    classifier_weight_decay: float
    classifier_lr_decay: float
    classifier_clip: float
    classifier_precision: str
    flow_width: int
    flow_layers: int
    flow_epochs: int
    flow_batch: int
    flow_lr: float
    flow_lr_drop_epoch: int
    leap_n_blend: int
    leap_gamma_blend: float
    leap_n_inject: int
    leap_gamma_inject_lift: float
    leap_gamma_inject_land: float
    leap_solver: str
    leap_solver_steps: int
    leap_rtol: float
    leap_atol: float
    leap_blend_sweep: tuple[int, ...]
    leap_inject_sweep: tuple[int, ...]
    leap_gamma_lift_sweep: tuple[float, ...]
    leap_gamma_land_sweep: tuple[float, ...]
    leap_gamma_sweep_inject: tuple[int, ...]
    leap_gamma_sweep_sources: int
    leap_sources_per_batch: int
    table3_runs: int
    table3_fractions: tuple[int, ...]
    eval_batch: int


PAPER = GalaxyLeapSettings(
    scale="paper",
    # The real data, the official crop of 150 of 256 pixels resized to 128, the first 320 training files per class.
    data_dataset="galaxy10-decals", data_synthetic_n=0, data_synthetic_size=0, data_synthetic_test_n=0,
    data_image_size=128, data_crop=150,
    data_weak_per_class=320,
    # convert_split_train_test.py and Galaxy10_generate_data.py store the images and the CE sets as JPEG files at
    # Pillow's default quality 75, which every later stage reads back.
    data_jpeg_quality=75,
    # galaxy10_vae.yaml and wae_mmd.py: widths 16..256, 300 epochs, AdamW 3e-4 with weight decay 1e-3, x0.99 per
    # epoch, clip 0.1; perceptual weight 10 on ImageNet VGG16 features; MMD weight 10; PatchGAN base 64 with AdamW
    # 5e-5, its weight ramped over 30% of the epochs.
    wae_widths=(16, 32, 64, 128, 256), wae_bottleneck=512, wae_epochs=300, wae_batch=128, wae_lr=3e-4,
    wae_weight_decay=1e-3, wae_lr_decay=0.99, wae_clip=0.1, wae_perceptual_width=1.0, wae_perceptual_weight=10.0,
    wae_mmd_weight=10.0, wae_discriminator_base=64, wae_discriminator_lr=5e-5, wae_gan_ramp=0.3, wae_gan_weight=1.0,
    # galaxy10_vgg_{20,100}.yaml and wraped_vgg.py: ImageNet VGG16-BN at width 1 with the ImageNet input preset,
    # AdamW 1e-4, weight decay 0.01, x0.875 per epoch, clip 10, 50 epochs of 256.
    classifier_width=1.0, classifier_hidden=4096, classifier_imagenet=True, classifier_epochs=50,
    classifier_min_steps=0, classifier_batch=256, classifier_lr=1e-4, classifier_weight_decay=0.01,
    classifier_lr_decay=0.875, classifier_clip=10.0,
    # Mixed precision for the convolutional networks on a GPU (bfloat16 autocast).
    wae_precision="bf16", classifier_precision="bf16",
    # Galaxy10_train_flow_mlp.py: width 256, 5 hidden layers, Adam 5e-4, x0.1 at epoch 400 of 500.
    flow_width=256, flow_layers=5, flow_epochs=500, flow_batch=256, flow_lr=5e-4, flow_lr_drop_epoch=400,
    # Galaxy10_generate_data.py: N_b 250 at gamma 0.1, N_i 50 at gamma 1 / 1.025, dopri5 forced onto 15 grid
    # points; the sweeps of Tables 5, 6 and Figure 9 (LeapFactual App. B.1.3).
    leap_n_blend=250, leap_gamma_blend=0.1, leap_n_inject=50, leap_gamma_inject_lift=1.0,
    leap_gamma_inject_land=1.025, leap_solver="dopri5", leap_solver_steps=14, leap_rtol=1e-4, leap_atol=1e-4,
    leap_blend_sweep=(100, 150, 200, 250, 300), leap_inject_sweep=(0, 5, 15, 25, 35),
    leap_gamma_lift_sweep=(0.9, 0.95, 1.0, 1.05), leap_gamma_land_sweep=(1.0125, 1.025, 1.05, 1.1),
    leap_gamma_sweep_inject=(10, 20, 30, 40, 50), leap_gamma_sweep_sources=320, leap_sources_per_batch=128,
    # The paper's 5 runs of Table 3.
    table3_runs=5,
    # Table 3 adds 10, 50 and 100% of the counterfactual set to the weak set.
    table3_fractions=(10, 50, 100),
    eval_batch=256,
)
SMOKE = dataclasses.replace(
    PAPER,
    scale="smoke",
    data_dataset="galaxy10-synthetic",  # offline stand-in: no 2.54 GB download on a 2-core CPU
    data_synthetic_n=3000,  # enough for a weak and a strong classifier that differ; rendered in seconds
    data_synthetic_size=64,  # rendered at 64x64, then cropped and resized as the real 256x256 images are
    data_synthetic_test_n=2000,  # test-only images: the 10% split of 3,000 is ~300, where one image is 0.3 points
    data_image_size=32,  # at 64x64, 6 WAE epochs took 2 min; the classifiers got their reconstructions wrong
    data_crop=38,  # keeps the same 59% of the frame as the official 150 of 256
    data_weak_per_class=30,  # 300 images (11%, not 20%): each costs nine CEs of N_b + N_i leaps
    data_jpeg_quality=0,  # rendered images are not JPEG files; the chapter measures what the round trip would change
    wae_widths=(16, 32, 64),  # a 3-stage WAE for 32x32 images on a CPU
    wae_bottleneck=256,  # narrower, with the narrower WAE
    wae_epochs=20,  # CPU time; at 32x32, 15 epochs took 1.6 minutes and reached SSIM 0.71 to the input
    wae_batch=64,  # more steps per epoch on the 2,705 training images
    wae_lr=1e-3,  # fewer epochs need a larger step
    wae_perceptual_width=1 / 16,  # a narrow random-feature perceptual loss: no ImageNet weights at this width
    wae_discriminator_base=8,  # a PatchGAN as narrow as the WAE
    wae_gan_weight=0.01,  # at weight 1 the GAN term wiped out the first epochs: reconstructions collapsed to one image
    wae_mmd_weight=0.1,  # in 430 steps: the strong classifier got 33% of reconstructions right at weight 10, 72% at 0.1
    classifier_width=1 / 8,  # a narrow VGG16-BN on a CPU, so no ImageNet weights fit; width 1/16 underfitted
    classifier_hidden=128,  # the classifier head, as narrow as the features
    classifier_imagenet=False,  # no ImageNet weights (or input preset) at width 1/8
    classifier_epochs=30,  # CPU time; 20 epochs left the strong classifier unable to tell tight from loose spirals
    classifier_min_steps=1000,  # the weak set has 5 batches per epoch: 200 steps left it at 59% on its own images
    classifier_lr_decay=0.99,  # x0.875 (or x0.97) per 5-batch epoch of the weak set all but stopped its learning
    classifier_batch=64,  # more steps on the small weak set
    classifier_lr=1e-3,  # from random initialisation in few steps
    flow_epochs=300,  # CPU time: 1,500 steps on the 300 weak-set latents
    flow_batch=64,  # more steps per epoch on 300 latents
    flow_lr_drop_epoch=240,  # the official drop at 80% of the epochs
    leap_n_blend=20,  # CPU time: decoding and classifying after every leap dominate
    leap_gamma_blend=0.2,  # 20 leaps, not 250: at 0.1 they would cover 1 - 0.9^20 = 88% of the way, at 0.2 99%
    leap_n_inject=35,  # the largest N_i of Table 6's sweep, which the smoke scale keeps whole
    leap_solver="rk4",  # fixed steps: the official 15-point dopri5 takes at least 84 field evaluations
    leap_solver_steps=4,  # 4 RK4 steps, 16 field evaluations per ODE solve
    leap_blend_sweep=(10, 20, 30, 40),  # to twice the smoke N_b of 20: the weak ACC went 0.86, 0.91, 0.94 at 20, 30, 40
    leap_gamma_lift_sweep=(0.9, 1.0, 1.05),  # three points of Figure 9's left panel, for CPU time
    leap_gamma_land_sweep=(1.0125, 1.025, 1.05),  # three points of Figure 9's right panel, for CPU time
    leap_gamma_sweep_inject=(10, 20),  # up to the smoke sweep's N_i, for CPU time
    leap_gamma_sweep_sources=10,  # 90 CEs per step size, for CPU time
    leap_sources_per_batch=256,  # the 300-image weak set in two chunks of leaps
    table3_runs=3,  # enough for a standard error; 2 minutes a run
    table3_fractions=(100,),  # Table 3's headline column only: each share costs two more classifiers a run
    eval_batch=128,  # a large batch is slower on a CPU
    wae_precision="fp32",  # bf16 autocast is slower than float32 on a CPU (2.4 times on a small network here)
    classifier_precision="fp32",  # the same
)
DRY_RUN = dataclasses.replace(
    PAPER, data_weak_per_class=1, wae_batch=8, classifier_batch=8, flow_batch=8, leap_gamma_sweep_sources=2,
    leap_sources_per_batch=8, table3_runs=2, eval_batch=8,
)
"""The paper scale cut to a few items and batches, and Table 3 to the two runs that give a standard error, for
``reproduce --dry-run`` (training stops after two steps; the data loader keeps a dozen images of each class). The
numbers of leaps stay: the sweeps of Tables 5 and 6 name the metrics that the claims check. Each leap runs VGG16-BN
at 128 x 128 on 90 counterfactuals and 16 VGG16-BN classifiers train under bfloat16 autocast, so this dry run is for
a GPU: on a 2-core CPU it takes hours (``book/reproduce.md`` gives the measured step times)."""


def solver(settings: GalaxyLeapSettings) -> Solver:
    """The ODE solver of every lift and land: officially dopri5 forced onto 15 grid points."""
    return Solver(method=settings.leap_solver, n_steps=settings.leap_solver_steps, rtol=settings.leap_rtol,
                  atol=settings.leap_atol)


# Data ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GalaxyData:
    """Galaxy images with the official split. ``source.read_images(indices)`` gives uint8 ``(B, 3, H, W)``.

    ``labels: (N,)``; ``train``, ``test``, ``weak``: indices into the source (``weak`` is within
    ``train``). Images are read per batch, so the real 2.5 GB file is never held as floats.
    """

    source: galaxy10.Galaxy10File | galaxy10.Galaxy10Subset | galaxy10.SyntheticGalaxies | JpegStoredImages
    labels: torch.Tensor
    train: torch.Tensor
    test: torch.Tensor
    weak: torch.Tensor
    crop: int
    image_size: int
    description: str

    def images(self, indices: torch.Tensor, device: torch.device,
               augment: torch.Generator | None = None) -> torch.Tensor:
        """Float images ``(B, 3, S, S)`` in [0, 1] on ``device``: the test transform, or with ``augment`` the train one.

        The train transform adds a random rotation, drawn from ``augment``, before the crop.
        """
        return transform(self.source.read_images(indices).to(device), self.crop, self.image_size, augment)


def transform(images: torch.Tensor, crop: int, size: int, augment: torch.Generator | None = None) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` to float ``(B, 3, size, size)``: optional random rotation, centre crop, resize.

    As the official transforms (``training_scripts/data/dataset_lit.py``): the crop is 150 of 256
    pixels and the size 128. Counterfactuals (already ``size`` x ``size``, smaller than the crop) are
    only rotated, as officially.
    """
    if augment is not None:
        images = galaxy10.random_rotation(images, augment)
    return galaxy10.preprocess(images, crop=crop, size=size)


def published_weights(settings: GalaxyLeapSettings) -> list[PublishedWeights]:
    """The published weights the settings' numbers depend on: ImageNet VGG16-BN (the classifiers, at
    width 1), ImageNet VGG16 (the WAE's perceptual loss, at width 1) and LPIPS (SqueezeNet and its heads)."""
    wanted = []
    if settings.classifier_imagenet:
        wanted.append(PublishedWeights("ImageNet VGG16-BN", IMAGENET_WEIGHTS["vgg16_bn"], check_hash=True))
    if settings.wae_perceptual_width == 1:
        wanted.append(PublishedWeights("ImageNet VGG16 features", IMAGENET_WEIGHTS["vgg16_features"],
                                       check_hash=True))
    return [*wanted, PublishedWeights("LPIPS SqueezeNet", image_metrics.SQUEEZENET_URL, check_hash=True),
            PublishedWeights("LPIPS heads", image_metrics.LPIPS_SQUEEZE_URL, "lpips_v0.1_squeeze.pth")]


def load_data(settings: GalaxyLeapSettings, device: torch.device | str) -> GalaxyData:
    """The data set of ``settings`` with the official split and weak subset.

    Paper scale (``settings.scale == "paper"``) refuses the synthetic stand-in: the published
    numbers need the real data; and it refuses to start without the published weights
    (:func:`published_weights`, :func:`latentcf.core.weights.require_published`). The real file is
    downloaded (2.54 GB, SHA256-checked) when it is not in the cache yet. Images stay uint8 on the
    CPU and are read per batch (:meth:`GalaxyData.images` moves them to the device its caller
    names), so ``device`` only serves the common signature.
    """
    if settings.data_dataset not in DATASETS:
        raise LatentcfError(f"unknown data set '{settings.data_dataset}'; use one of {', '.join(DATASETS)}")
    if settings.scale == "paper" and settings.data_dataset != "galaxy10-decals":
        raise LatentcfError("the paper scale reproduces published numbers (Tables 3, 5, 6), which need the real "
                            "Galaxy10 DECaLS; galaxy10-synthetic is for the smoke scale only")
    if settings.scale == "paper":
        require_published(published_weights(settings), "the paper scale of the Galaxy10 chapter (Tables 3, 5, 6)")
    if settings.data_dataset == "galaxy10-decals":
        source, test_only = galaxy10.open_galaxy10(), torch.arange(0)
        description = source.description
    else:
        source, test_only = galaxy10.synthetic_with_test_set(settings.data_synthetic_n, settings.data_synthetic_test_n,
                                                             settings.data_synthetic_size)
        description = (f"galaxy10-synthetic ({settings.data_synthetic_n} images, {settings.data_synthetic_size}x"
                       f"{settings.data_synthetic_size}, seed {source.seed}; {len(test_only)} test-only images, "
                       f"seed {galaxy10.TEST_ONLY_SEED})")
    if settings.data_jpeg_quality:
        source = jpeg_stored(source, settings.data_jpeg_quality, description)
        description = source.description
    pool = len(source) - len(test_only)
    train, test = galaxy10.official_split(source.labels[:pool])
    test = torch.cat([test, test_only])
    weak = galaxy10.weak_subset(train, source.labels, settings.data_weak_per_class)
    return GalaxyData(source, source.labels, train, test, weak, settings.data_crop, settings.data_image_size,
                      f"{description}; centre crop {settings.data_crop}, resized to {settings.data_image_size}; "
                      f"train {len(train)}, test {len(test)}, weak set {len(weak)}")


def data_identity(settings: GalaxyLeapSettings) -> str:
    """What the images are, beyond the settings, for the cache keys of everything trained on them: the real
    file's SHA256, or the version of the synthetic renderer (a new renderer retrains every model)."""
    if settings.data_dataset == "galaxy10-decals":
        return f"galaxy10-decals sha256 {galaxy10.SHA256}"
    return f"galaxy10-synthetic renderer {galaxy10.RENDERER_VERSION}"


@dataclass(frozen=True)
class JpegStoredImages:
    """A data set's images as the official pipeline reads them: each written once as a JPEG and read back.

    ``images: (N, 3, H, W)`` uint8 (memory-mapped from the cache), ``labels: (N,)``; read per batch like
    :class:`latentcf.data.galaxy10.Galaxy10File`.
    """

    images: torch.Tensor
    labels: torch.Tensor
    description: str

    def __len__(self) -> int:
        return len(self.labels)

    def read_images(self, indices: torch.Tensor) -> torch.Tensor:
        """The images at ``indices`` as uint8 ``(B, 3, H, W)``."""
        return self.images[torch.as_tensor(indices, dtype=torch.long)]


def jpeg_stored(source: galaxy10.Galaxy10File | galaxy10.Galaxy10Subset | galaxy10.SyntheticGalaxies, quality: int,
                description: str) -> JpegStoredImages:
    """Every image of ``source`` through one JPEG round trip of ``quality``; cached by the description and quality.

    ``Galaxy10/convert_split_train_test.py`` writes the HDF5 images as JPEG files (Pillow's default
    quality 75) and every later stage reads those; the round trip is made once here, not per batch.
    """
    def make() -> dict[str, torch.Tensor]:
        chunks = torch.arange(len(source)).split(256)
        return {"images": torch.cat([jpeg_round_trip(source.read_images(chunk), quality)
                                     for chunk in tqdm(chunks, desc="JPEG round trip", unit="batch")])}

    stored = cached_tensors("galaxy10_jpeg", {"source": description, "images": len(source), "quality": quality},
                            make, mmap=True)
    return JpegStoredImages(stored["images"], source.labels, f"{description}, stored as JPEG of quality {quality}")


def stored_images(x: torch.Tensor, jpeg_quality: int) -> torch.Tensor:
    """Generated images as ``Galaxy10/Galaxy10_generate_data.py`` stores them: :func:`to_uint8`, then a JPEG of
    ``jpeg_quality`` read back (0: no JPEG). ``(B, 3, S, S)`` in [0, 1] ``->`` uint8 on the CPU."""
    images = to_uint8(x)
    return jpeg_round_trip(images, jpeg_quality) if jpeg_quality else images


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] to uint8 on the CPU, truncated as the official ``(x * 255).astype(uint8)``."""
    return (x.clamp(0, 1) * 255).to(torch.uint8).cpu()


# Models -------------------------------------------------------------------------------------------

def build_wae(settings: GalaxyLeapSettings) -> ResidualWAE:
    """The residual WAE-MMD of the settings' size (latent 64), channels-last (20-40% faster convolutions on a CPU)."""
    wae = ResidualWAE(settings.data_image_size, LATENT_DIM, settings.wae_widths, settings.wae_bottleneck)
    return wae.to(memory_format=torch.channels_last)


def build_classifier(settings: GalaxyLeapSettings) -> VGG16BN:
    """A VGG16-BN of the settings' width; ImageNet input preset with ImageNet weights (width 1)."""
    return VGG16BN(NUM_CLASSES, settings.classifier_width, settings.classifier_hidden,
                   imagenet_input=settings.classifier_imagenet)


def imagenet_weights(name: str, wanted: bool) -> dict[str, torch.Tensor] | None:
    """torchvision's ImageNet weights ``name`` if ``wanted`` and downloadable; warns when wanted but unavailable."""
    if not wanted:
        return None
    state = imagenet_state_dict(name)
    if state is None:
        warnings.warn(f"ImageNet weights '{name}' cannot be downloaded here: training from random initialisation, "
                      "unlike the official code", stacklevel=2)
    return state


def _epoch_factor(decay: float, steps_per_epoch: int) -> Callable[[int], float]:
    """Learning-rate factor ``decay ** epoch`` (PyTorch's ExponentialLR stepped once per epoch)."""
    return lambda step: decay ** (step // steps_per_epoch)


def discriminator_step(discriminator: PatchDiscriminator, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                       x_rec: torch.Tensor, clip: float) -> torch.Tensor:
    """One LSGAN step of the PatchGAN on real ``x`` and detached reconstructions ``x_rec``; returns its loss."""
    loss = lsgan_discriminator_loss(discriminator(x), discriminator(x_rec.detach()))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(discriminator.parameters(), clip)
    optimizer.step()
    return loss.detach()


def train_wae(data: GalaxyData, settings: GalaxyLeapSettings, seed: int,
              device: torch.device) -> tuple[ResidualWAE, dict]:
    """The WAE-MMD on all training images with the train augmentation; cached.

    As ``training_scripts/models/VAE/wae_mmd.py`` with ``training_scripts/configs/galaxy10_vae.yaml``.
    Per batch: one discriminator step, then the generator loss ``MSE + w_p * perceptual + MMD +
    w_G(epoch) * LSGAN``, whose AdamW step :func:`latentcf.core.training.fit` takes (the official code
    steps the generator first; the order within a batch is the only difference). BatchNorm statistics
    are recalibrated afterwards. Random streams: ``wae/batches``, ``wae/augment``, ``wae/prior`` (on
    ``device``), and ``wae/perceptual/init``, ``wae/init``, ``wae/discriminator/init`` for the
    initialisations.
    """
    batches = epoch_batches(len(data.train), settings.wae_batch, settings.wae_epochs, generator(seed, "wae/batches"))
    steps_per_epoch = math.ceil(len(data.train) / settings.wae_batch)
    augment, noise = generator(seed, "wae/augment"), generator(seed, "wae/prior", device)
    seed_stream(seed, "wae/perceptual/init")
    perceptual = PerceptualLoss(settings.wae_perceptual_width).to(device)
    perceptual_weights = imagenet_weights("vgg16_features", settings.wae_perceptual_width == 1)
    if perceptual_weights is not None:
        perceptual.load_imagenet(perceptual_weights)
    perceptual.eval()
    ramp_epochs = round(settings.wae_gan_ramp * settings.wae_epochs)

    def train(wae: ResidualWAE) -> dict:
        seed_stream(seed, "wae/discriminator/init")
        discriminator = PatchDiscriminator(settings.wae_discriminator_base).to(device)
        optimizer = torch.optim.AdamW(discriminator.parameters(), lr=settings.wae_discriminator_lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _epoch_factor(settings.wae_lr_decay, steps_per_epoch))
        discriminator_losses = []

        def loss(step: int) -> torch.Tensor:
            x = data.images(data.train[batches[step]], device, augment)
            x_rec, z = wae(x)
            discriminator_losses.append(discriminator_step(discriminator, optimizer, x, x_rec, settings.wae_clip))
            schedule.step()
            prior = torch.randn(z.shape, generator=noise, device=device)
            return (F.mse_loss(x_rec, x) + settings.wae_perceptual_weight * perceptual(x_rec, x)
                    + imq_mmd(z, prior, weight=settings.wae_mmd_weight)
                    + settings.wae_gan_weight * gan_weight(step // steps_per_epoch, ramp_epochs)
                    * lsgan_generator_loss(discriminator(x_rec)))

        info = fit(wae, loss, len(batches), settings.wae_lr, "WAE-MMD", weight_decay=settings.wae_weight_decay,
                   precision=settings.wae_precision,
                   lr_factor=_epoch_factor(settings.wae_lr_decay, steps_per_epoch), clip_norm=settings.wae_clip)
        recalibrate_batch_norm(wae, lambda batch: wae(data.images(data.train[batch], device, augment)),
                               list(torch.arange(len(data.train)).split(settings.eval_batch)))
        return {**info, "discriminator_loss": torch.stack(discriminator_losses).cpu().tolist()}

    key = stage_settings(settings, "data", "wae", seed=seed, images=data_identity(settings),
                         imagenet_perceptual=perceptual_weights is not None,
                         batch_norm="recalibrated after training")

    def build() -> ResidualWAE:
        seed_stream(seed, "wae/init")
        return build_wae(settings).to(device)

    wae, info = cached_model("galaxy_wae", key, build, train)
    return wae, {**info, "imagenet_perceptual": perceptual_weights is not None}


@dataclass(frozen=True)
class CounterfactualImages:
    """Generated training images: uint8 ``images (M, 3, S, S)`` labelled with their ``target (M,)``."""

    images: torch.Tensor
    target: torch.Tensor
    provenance: dict


def classifier_stream(name: str, run: int, what: str) -> str:
    """The random stream ``what`` of classifier ``name`` in Table 3 run ``run``: ``"classifier/weak/run0/init"``.

    Run 0 holds the chapter's weak and strong classifiers, so Table 3's first run reuses them; a
    classifier retrained with counterfactuals draws from the streams of its run's weak classifier
    (same initialisation, as the official code's fixed seed gives).
    """
    return f"classifier/{name}/run{run}/{what}"


def train_classifier(data: GalaxyData, settings: GalaxyLeapSettings, seed: int, device: torch.device, *,
                     indices: torch.Tensor, name: str, extra: CounterfactualImages | None = None,
                     run: int = 0) -> tuple[VGG16BN, dict]:
    """A VGG16-BN on the images ``indices`` (train augmentation) plus optionally generated images ``extra``.

    As ``training_scripts/models/classifiers/wraped_vgg.py`` with ``training_scripts/configs/galaxy10_vgg_20.yaml``
    (the weak set), ``galaxy10_vgg_100.yaml`` (all training images) and, with ``extra``,
    ``galaxy10_vgg_syn_CE.yaml`` / ``galaxy10_vgg_syn_robustCE.yaml``: cross-entropy, AdamW (lr
    ``classifier_lr``, weight decay 0.01), x0.875 per epoch, gradient norm clipped at 10,
    ``classifier_epochs`` epochs or as many as make ``classifier_min_steps`` steps (smoke scale: the
    300-image weak set has 5 batches per epoch). Generated images get the rotation only, as
    officially. ImageNet weights at width 1 when they can be had. BatchNorm statistics are
    recalibrated afterwards. ``name`` (``"weak"``, ``"strong"``) and Table 3's ``run`` name the random
    streams (:func:`classifier_stream`: ``batches``, ``augment``, ``batch_norm``, ``init``). Cached.
    """
    n_original = len(indices)
    n_total = n_original + (0 if extra is None else len(extra.target))
    steps_per_epoch = math.ceil(n_total / settings.classifier_batch)
    epochs = max(settings.classifier_epochs, math.ceil(settings.classifier_min_steps / steps_per_epoch))
    batches = epoch_batches(n_total, settings.classifier_batch, epochs,
                            generator(seed, classifier_stream(name, run, "batches")))
    augment = generator(seed, classifier_stream(name, run, "augment"))
    weights = imagenet_weights("vgg16_bn", settings.classifier_imagenet)

    def batch(items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        original, generated = items[items < n_original], items[items >= n_original] - n_original
        x, y = [], []
        if len(original):  # a batch of counterfactuals only has no original image to read
            x.append(data.images(indices[original], device, augment))
            y.append(data.labels[indices[original]])
        if extra is not None and len(generated):
            x.append(transform(extra.images[generated].to(device), data.crop, data.image_size, augment))
            y.append(extra.target[generated])
        return torch.cat(x), torch.cat(y).to(device)

    def train(classifier: VGG16BN) -> dict:
        if weights is not None:
            classifier.load_imagenet(weights)

        def loss(step: int) -> torch.Tensor:
            x, y = batch(batches[step])
            return F.cross_entropy(classifier(x), y)

        info = fit(classifier, loss, len(batches), settings.classifier_lr, f"VGG16-BN {name}",
                   weight_decay=settings.classifier_weight_decay,
                   lr_factor=_epoch_factor(settings.classifier_lr_decay, steps_per_epoch),
                   clip_norm=settings.classifier_clip, precision=settings.classifier_precision)
        order = torch.randperm(n_total, generator=generator(seed, classifier_stream(name, run, "batch_norm")))
        recalibrate_batch_norm(classifier, lambda items: classifier(batch(items)[0]),
                               list(order.split(settings.eval_batch)))
        return info

    def build() -> VGG16BN:
        seed_stream(seed, classifier_stream(name, run, "init"))
        return build_classifier(settings).to(device)

    key = stage_settings(settings, "data", "classifier", seed=seed, images=data_identity(settings), run=run,
                         trained_on=name, imagenet=weights is not None,
                         extra=None if extra is None else extra.provenance,
                         batch_norm="recalibrated after training")
    classifier, info = cached_model("galaxy_vgg", key, build, train)
    return classifier, {**info, "imagenet": weights is not None}


def probabilities(classifier: VGG16BN, x: torch.Tensor, batch: int) -> torch.Tensor:
    """``softmax(classifier(x))`` in chunks. ``(N, 3, S, S) -> (N, 10)``."""
    return in_batches(lambda chunk: classifier(chunk).softmax(dim=1), x, batch)


@torch.no_grad()
def test_scores(classifier: VGG16BN, data: GalaxyData, device: torch.device, batch: int) -> dict[str, float]:
    """``{"acc", "auc"}`` of a classifier on the test set: micro accuracy and macro one-vs-rest AUROC.

    The official validation (``training_scripts/data/dataset_lit.py``, ``drop_last``) sees a random
    1,664 of the 1,769 test images per epoch; this scores all of them, reading them in chunks.
    """
    p = torch.cat([probabilities(classifier, data.images(chunk, device), batch)
                   for chunk in data.test.split(batch)])
    labels = data.labels[data.test]
    return {"acc": target_accuracy(p, labels), "auc": macro_auroc(p, labels, NUM_CLASSES)}


def train_velocity(data: GalaxyData, settings: GalaxyLeapSettings, seed: int, device: torch.device, *,
                   wae: ResidualWAE, weak: VGG16BN, pretrained: dict[str, bool]) -> tuple[ConditionalVelocityMLP, dict]:
    """The CE-CFM field on the weak set's latents, conditioned on the weak classifier's hard labels.

    As ``Galaxy10/Galaxy10_train_flow_mlp.py``: each batch is freshly augmented, encoded by the
    (frozen) WAE and labelled ``argmax`` of the (frozen) weak classifier; ``sigma = 0``, ``N(0, I)``
    source; Adam, lr x0.1 from ``flow_lr_drop_epoch``. ``pretrained`` (``{"imagenet": ...,
    "imagenet_perceptual": ...}``: whether the weak classifier and the WAE's perceptual loss started
    from ImageNet weights) enters the cache key with the data, WAE, classifier and flow settings.
    Random streams: ``flow/batches``, ``flow/augment``, ``flow/noise`` (on ``device``), ``flow/init``.
    """
    batches = epoch_batches(len(data.weak), settings.flow_batch, settings.flow_epochs, generator(seed, "flow/batches"))
    steps_per_epoch = math.ceil(len(data.weak) / settings.flow_batch)
    augment, noise = generator(seed, "flow/augment"), generator(seed, "flow/noise", device)

    def loss(velocity: ConditionalVelocityMLP, step: int) -> torch.Tensor:
        with torch.no_grad():
            x = data.images(data.weak[batches[step]], device, augment)
            z1, label = wae.encode(x), weak(x).argmax(dim=1)
        z0 = sample_source(len(z1), LATENT_DIM, noise, device=device)
        return cfm_loss(velocity, z0, z1, label, generator=noise)

    def train(velocity: ConditionalVelocityMLP) -> dict:
        return fit(velocity, lambda step: loss(velocity, step), len(batches), settings.flow_lr, "CE-CFM flow",
                   lr_factor=lambda step: 0.1 if step // steps_per_epoch >= settings.flow_lr_drop_epoch else 1.0)

    def build() -> ConditionalVelocityMLP:
        seed_stream(seed, "flow/init")
        return ConditionalVelocityMLP(LATENT_DIM, NUM_CLASSES, settings.flow_width, settings.flow_layers).to(device)

    key = stage_settings(settings, "data", "wae", "classifier", "flow", seed=seed, images=data_identity(settings),
                         **pretrained)
    return cached_model("galaxy_flow", key, build, train)


@dataclass
class GalaxyModels:
    """The trained networks of the chapter and what their training reported."""

    wae: ResidualWAE
    weak: VGG16BN
    strong: VGG16BN
    velocity: ConditionalVelocityMLP
    info: dict[str, dict]
    batch: int = 256
    lpips: LPIPS | None = None

    def weak_label(self, x: torch.Tensor) -> torch.Tensor:
        """The weak classifier's hard label ``argmax f(x)``, the current label of every leap. ``-> (B,)``."""
        return in_batches(lambda chunk: self.weak(chunk).argmax(dim=1), x, self.batch)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """WAE latents in chunks of ``batch`` images. ``(B, 3, S, S) -> (B, 64)``."""
        return in_batches(self.wae.encode, x, self.batch)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """WAE images in chunks of ``batch`` latents (a large batch is slower on a CPU). ``(B, 64) -> (B, 3, S, S)``."""
        return in_batches(self.wae.decode, z, self.batch)


@torch.no_grad()
def reconstruction_accuracy(models: GalaxyModels, data: GalaxyData, device: torch.device,
                            batch: int) -> dict[str, float]:
    """Does the WAE keep the class? Test accuracy of both classifiers on the WAE's reconstructions of the test images.

    Keys ``acc_rec_test_weak`` and ``acc_rec_test_strong``, to set beside :func:`test_scores`: every
    counterfactual is a decoded latent, so a class the decoder loses is a class no leap can show.
    """
    p = {"weak": [], "strong": []}
    for chunk in data.test.split(batch):
        x_rec = models.decode(models.encode(data.images(chunk, device)))
        for name in p:
            p[name].append(probabilities(getattr(models, name), x_rec, batch))
    labels = data.labels[data.test]
    return {f"acc_rec_test_{name}": target_accuracy(torch.cat(values), labels) for name, values in p.items()}


def _untimed(name: str) -> AbstractContextManager:
    return contextlib.nullcontext()


def train_models(data: GalaxyData, settings: GalaxyLeapSettings, seed: int, device: torch.device, *,
                 stage: Callable[[str], AbstractContextManager] = _untimed) -> GalaxyModels:
    """Train (or load) the WAE, the weak (20%) and strong (100%) classifiers and the flow; load LPIPS if it can be had.

    Each training runs inside ``stage("wae")``, ``stage("classifier_weak")``,
    ``stage("classifier_strong")``, ``stage("flow")``: pass a run's :meth:`~latentcf.core.results.Run.stage`
    to record their times as ``seconds_<stage>``.
    """
    with stage("wae"):
        wae, wae_info = train_wae(data, settings, seed, device)
    with stage("classifier_weak"):
        weak, weak_info = train_classifier(data, settings, seed, device, indices=data.weak, name="weak")
    with stage("classifier_strong"):
        strong, strong_info = train_classifier(data, settings, seed, device, indices=data.train, name="strong")
    pretrained = {"imagenet": weak_info["imagenet"], "imagenet_perceptual": wae_info["imagenet_perceptual"]}
    with stage("flow"):
        velocity, velocity_info = train_velocity(data, settings, seed, device, wae=wae, weak=weak,
                                                 pretrained=pretrained)
    lpips = lpips_squeeze()
    return GalaxyModels(wae, weak, strong, velocity,
                        {"wae": wae_info, "weak": weak_info, "strong": strong_info, "flow": velocity_info},
                        settings.eval_batch, None if lpips is None else lpips.to(device))


# Counterfactuals ----------------------------------------------------------------------------------

def shifted_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every source towards the nine other classes: ``target = (y + k) mod 10`` for ``k = 1..9``.

    As ``Galaxy10/Galaxy10_generate_data.py``.

    Shapes: ``labels: (n,) -> (source (9n,), target (9n,))``, ``source`` indexing ``labels``.
    """
    shifts = torch.arange(1, NUM_CLASSES)
    source = torch.arange(len(labels)).repeat_interleave(len(shifts))
    return source, (labels[source] + shifts.repeat(len(labels))) % NUM_CLASSES


def checkpoint_names(settings: GalaxyLeapSettings) -> list[str]:
    """The evaluated points of a LeapFactual run: ``nb<N>`` after N blending leaps, ``ni<N>`` after N injections."""
    return ([f"nb{n}" for n in settings.leap_blend_sweep] + [f"ni{n}" for n in settings.leap_inject_sweep])


@torch.no_grad()
def leap_checkpoints(models: GalaxyModels, z: torch.Tensor, target: torch.Tensor, settings: GalaxyLeapSettings,
                     gamma_lift: float, gamma_land: float, blend_at: tuple[int, ...],
                     inject_at: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Latents after ``n_blend`` blending leaps and after further injection leaps, at the requested counts.

    Shapes: ``z: (B, 64)``, ``target: (B,)`` ``-> {"nb<N>" or "ni<N>": (B, 64)}``. Current labels
    are the weak classifier's hard labels, recomputed before every leap (as
    ``Galaxy10/Galaxy10_generate_data.py``). One trajectory gives every count: the state after ``N``
    leaps of a longer run is the result of a run with ``N``. Blending counts beyond
    ``settings.leap_n_blend`` continue blending from there; injection always starts from
    ``settings.leap_n_blend``. A target outside ``0..9`` raises :class:`LatentcfError`.
    """
    check_targets(target, NUM_CLASSES, len(z))
    n_blend = settings.leap_n_blend
    run = leapfactual(models.velocity, models, models.weak_label, z, target, n_blend=n_blend,
                      gamma_blend=settings.leap_gamma_blend, n_inject=max(inject_at, default=0),
                      gamma_inject_lift=gamma_lift, gamma_inject_land=gamma_land, hard_current_label=True,
                      solver=solver(settings), return_trajectory=True, desc="leaps")
    latents = {f"ni{n}": run.z_trajectory[n_blend + n] for n in inject_at}
    latents.update({f"nb{n}": run.z_trajectory[n] for n in blend_at if n <= n_blend})
    if max(blend_at, default=0) > n_blend:
        more = leapfactual(models.velocity, models, models.weak_label, run.z_trajectory[n_blend], target,
                           n_blend=max(blend_at) - n_blend, gamma_blend=settings.leap_gamma_blend,
                           hard_current_label=True, solver=solver(settings), return_trajectory=True,
                           desc="more blending leaps")
        latents.update({f"nb{n}": more.z_trajectory[n - n_blend] for n in blend_at if n > n_blend})
    return latents


@torch.no_grad()
def score_images(models: GalaxyModels, x_cf: torch.Tensor, x_input: torch.Tensor,
                 batch: int) -> dict[str, torch.Tensor]:
    """Per-sample scores of counterfactuals: weak and strong probabilities ``(B, 10)``; SSIM, PSNR and
    (where its weights could be downloaded) LPIPS ``(B,)`` to the input, LPIPS both with the [0, 1] images as
    they are (``lpips``, torchmetrics' default) and mapped to [-1, 1] (``lpips_normalized``)."""
    pairs = torch.arange(len(x_cf))
    scores = {"p_weak": probabilities(models.weak, x_cf, batch).cpu(),
              "p_strong": probabilities(models.strong, x_cf, batch).cpu(),
              "ssim": in_batches(lambda idx: ssim(x_cf[idx], x_input[idx]), pairs, batch).cpu(),
              "psnr": in_batches(lambda idx: psnr(x_cf[idx], x_input[idx]), pairs, batch).cpu()}
    if models.lpips is not None:
        scores["lpips"] = in_batches(lambda idx: models.lpips(x_cf[idx], x_input[idx]), pairs, batch).cpu()
        scores["lpips_normalized"] = in_batches(lambda idx: models.lpips(x_cf[idx], x_input[idx], normalize=True),
                                                pairs, batch).cpu()
    return scores


def counterfactual_key(models: GalaxyModels, settings: GalaxyLeapSettings, seed: int) -> dict:
    """What the counterfactual set depends on: the data, model and leap settings, the seed, the initialisations,
    and how its stored scores were computed (LPIPS or not, the SSIM convention)."""
    return stage_settings(settings, "data", "wae", "classifier", "flow", "leap", seed=seed,
                          images=data_identity(settings),
                          imagenet=models.info["weak"]["imagenet"],
                          imagenet_perceptual=models.info["wae"]["imagenet_perceptual"], lpips=models.lpips is not None,
                          ssim=image_metrics.SSIM_CONVENTION)


def generate_counterfactuals(models: GalaxyModels, data: GalaxyData, settings: GalaxyLeapSettings, seed: int,
                             device: torch.device) -> dict[str, torch.Tensor]:
    """CEs and reliable CEs of every weak-set image towards its nine other classes, with the sweep scores; cached.

    Sources are the weak set under the train augmentation (a random rotation from the stream
    ``leap/augment``), as in the official generation script (``Galaxy10/Galaxy10_generate_data.py``).
    Returns flat tensors: ``x_input (n, 3, S, S)`` uint8 and ``label (n,)`` of the sources;
    ``source (M,)`` and ``target (M,)`` per pair (``M = 9 n``); ``x_ce`` (``N_b`` blending leaps) and
    ``x_rce`` (then ``N_i`` injection leaps), uint8 ``(M, 3, S, S)``; and for every checkpoint ``c`` of
    :func:`checkpoint_names` the scores ``c/p_weak``, ``c/p_strong``, ``c/ssim``, ``c/psnr`` (and
    ``c/lpips``) of :func:`score_images`, plus ``rec/...`` for the plain reconstruction.
    Memory-mapped when loaded.
    """
    def make() -> dict[str, torch.Tensor]:
        augment = generator(seed, "leap/augment")
        parts: dict[str, list[torch.Tensor]] = {}
        sources = data.weak.split(settings.leap_sources_per_batch)
        inject_at = tuple(sorted({0, *settings.leap_inject_sweep, settings.leap_n_inject}))
        scored, reliable = ("rec", *checkpoint_names(settings)), f"ni{settings.leap_n_inject}"
        offset = 0
        for chunk in tqdm(sources, desc="LeapFactual CEs", unit="batch"):
            x = data.images(chunk, device, augment)
            source, target = shifted_targets(data.labels[chunk])
            z, x_pairs = models.encode(x)[source], x[source]
            latents = leap_checkpoints(models, z, target.to(device), settings, settings.leap_gamma_inject_lift,
                                       settings.leap_gamma_inject_land, settings.leap_blend_sweep, inject_at)
            latents["rec"] = z
            decoded = {name: models.decode(latents[name]) for name in {*scored, "ni0", reliable}}
            for name in scored:
                for score, values in score_images(models, decoded[name], x_pairs, settings.eval_batch).items():
                    parts.setdefault(f"{name}/{score}", []).append(values)
            parts.setdefault("x_ce", []).append(stored_images(decoded["ni0"], settings.data_jpeg_quality))
            parts.setdefault("x_rce", []).append(stored_images(decoded[reliable], settings.data_jpeg_quality))
            parts.setdefault("x_input", []).append(to_uint8(x))
            parts.setdefault("label", []).append(data.labels[chunk])
            parts.setdefault("source", []).append(source + offset)
            parts.setdefault("target", []).append(target)
            offset += len(chunk)
        return {name: torch.cat(values) for name, values in parts.items()}

    return cached_tensors("galaxy_counterfactuals", counterfactual_key(models, settings, seed), make, mmap=True)


def sweep_metrics(generated: dict[str, torch.Tensor], names: list[str]) -> dict[str, float]:
    """Tables 5 and 6 from stored scores: ``acc/auc`` (weak), ``acc_r/auc_r`` (strong), ``ssim``, ``psnr`` per point.

    Not in the official code: LeapFactual App. B.1.3, Tables 5 and 6, computed with torchmetrics' defaults
    (App. B.2.2). ``psnr`` is torchmetrics' default PSNR of the whole set
    (:func:`latentcf.metrics.image_metrics.pooled_psnr`: squared errors pooled over every image, the data
    range taken from the input images, here from their stored uint8 copies, which can lower it by less
    than 1/255, 0.03 dB of PSNR for a range near 1); ``psnr_mean`` is the mean of the per-image PSNRs, always
    at least as high. ``lpips`` takes the [0, 1] images as they are, as torchmetrics' default
    ``normalize=False`` does; ``lpips_normalized`` maps them to [-1, 1] first.

    Keys: ``<metric>_<checkpoint>``, e.g. ``acc_r_ni25``, ``ssim_nb250``, ``psnr_mean_ni0``;
    ``lpips_<checkpoint>`` and ``lpips_normalized_<checkpoint>`` where LPIPS was computed.
    """
    target = generated["target"]
    data_range = default_data_range(generated["x_input"]) / 255
    metrics = {}
    for name in names:
        metrics.update({f"acc_{name}": target_accuracy(generated[f"{name}/p_weak"], target),
                        f"auc_{name}": macro_auroc(generated[f"{name}/p_weak"], target, NUM_CLASSES),
                        f"acc_r_{name}": target_accuracy(generated[f"{name}/p_strong"], target),
                        f"auc_r_{name}": macro_auroc(generated[f"{name}/p_strong"], target, NUM_CLASSES),
                        f"ssim_{name}": float(generated[f"{name}/ssim"].mean()),
                        f"psnr_{name}": pooled_psnr(generated[f"{name}/psnr"], data_range),
                        f"psnr_mean_{name}": float(generated[f"{name}/psnr"].mean())})
        if f"{name}/lpips" in generated:
            metrics[f"lpips_{name}"] = float(generated[f"{name}/lpips"].mean())
        if f"{name}/lpips_normalized" in generated:
            metrics[f"lpips_normalized_{name}"] = float(generated[f"{name}/lpips_normalized"].mean())
    return metrics


def gamma_key(gamma: float) -> str:
    """A metric-name-safe form of a step size: ``1.025 -> "1p025"``."""
    return f"{gamma:g}".replace(".", "p")


@torch.no_grad()
def gamma_sweep(models: GalaxyModels, data: GalaxyData, settings: GalaxyLeapSettings, seed: int,
                device: torch.device) -> dict[str, float]:
    """Figure 9: ACC_r and SSIM of reliable CEs for other injection step sizes, along ``N_i``.

    Left panel: ``gamma_lift`` in ``leap_gamma_lift_sweep`` with ``gamma_land = gamma_lift + 0.025``;
    right panel: ``gamma_land`` in ``leap_gamma_land_sweep`` with ``gamma_lift = 1``. On the first
    ``leap_gamma_sweep_sources`` weak-set images (rotated from the stream ``leap/augment``, as in
    :func:`generate_counterfactuals`), towards their nine other classes. Not in the official code:
    LeapFactual App. B.1.3. Keys:
    ``acc_r_lift<g>_ni<N>``, ``ssim_lift<g>_ni<N>``, ``acc_r_land<g>_ni<N>``, ``ssim_land<g>_ni<N>``.
    """
    chunk = data.weak[:settings.leap_gamma_sweep_sources]
    x = data.images(chunk, device, generator(seed, "leap/augment"))
    source, target = shifted_targets(data.labels[chunk])
    z, x_pairs = models.encode(x)[source], x[source]
    panels = {f"lift{gamma_key(g)}": (g, g + 0.025) for g in settings.leap_gamma_lift_sweep}
    panels.update({f"land{gamma_key(g)}": (1.0, g) for g in settings.leap_gamma_land_sweep})
    metrics = {}
    for panel, (gamma_lift, gamma_land) in tqdm(panels.items(), desc="gamma sweep"):
        latents = leap_checkpoints(models, z, target.to(device), settings, gamma_lift, gamma_land, (),
                                   settings.leap_gamma_sweep_inject)
        for name, z_point in latents.items():
            scores = score_images(models, models.decode(z_point), x_pairs, settings.eval_batch)
            metrics[f"acc_r_{panel}_{name}"] = target_accuracy(scores["p_strong"], target)
            metrics[f"ssim_{panel}_{name}"] = float(scores["ssim"].mean())
    return metrics


# Table 3: counterfactuals as training data --------------------------------------------------------

def counterfactual_subset(generated: dict[str, torch.Tensor], kind: str, percent: int,
                          provenance: dict) -> CounterfactualImages:
    """``percent`` % of the CEs (``kind="ce"``) or reliable CEs (``"rce"``) as labelled training images.

    The subset is the first ``percent`` % of one fixed permutation, so the CE and reliable-CE subsets
    hold the same (source, target) pairs and the smaller subsets lie inside the larger ones, as the
    official fixed-seed ``random_split`` gives; the permutation is the stream
    ``table3/counterfactual_subset`` of :data:`SUBSET_SEED`, whatever the run's seed.
    """
    if kind not in CE_KINDS:
        raise LatentcfError(f"unknown counterfactual kind '{kind}'; use one of {', '.join(CE_KINDS)}")
    if not 0 < percent <= 100:
        raise LatentcfError(f"the share of counterfactuals must be in (0, 100] percent, got {percent}")
    n = len(generated["target"])
    order = torch.randperm(n, generator=generator(SUBSET_SEED, "table3/counterfactual_subset"))
    chosen = order[:round(n * percent / 100)].sort().values
    return CounterfactualImages(generated[f"x_{kind}"][chosen], generated["target"][chosen],
                                {**provenance, "kind": kind, "percent": percent})


def table3_run(data: GalaxyData, generated: dict[str, torch.Tensor], settings: GalaxyLeapSettings, seed: int,
               device: torch.device, *, run: int, provenance: dict) -> dict[str, float]:
    """Run ``run`` of Table 3: the weak and strong baselines and the weak set plus each share of CEs or reliable CEs.

    The classifiers draw from the random streams of ``run`` (:func:`classifier_stream`); run 0's
    baselines are the chapter's weak and strong classifiers. ``provenance`` (:func:`counterfactual_key`)
    names the counterfactual set in the classifiers' cache keys.

    Returns ``acc_weak, auc_weak, acc_strong, auc_strong`` and ``acc_<kind>_<percent>``,
    ``auc_<kind>_<percent>`` for ``kind`` in ``ce, rce`` and ``percent`` in ``settings.table3_fractions``:
    test-set scores of the last epoch.
    """
    metrics = {}
    for name, indices in (("weak", data.weak), ("strong", data.train)):
        classifier, _ = train_classifier(data, settings, seed, device, indices=indices, name=name, run=run)
        metrics.update({f"{score}_{name}": value
                        for score, value in test_scores(classifier, data, device, settings.eval_batch).items()})
    for kind in CE_KINDS:
        for percent in settings.table3_fractions:
            extra = counterfactual_subset(generated, kind, percent, provenance)
            classifier, _ = train_classifier(data, settings, seed, device, indices=data.weak, name="weak",
                                             extra=extra, run=run)
            metrics.update({f"{score}_{kind}_{percent}": value
                            for score, value in test_scores(classifier, data, device, settings.eval_batch).items()})
    return metrics


def table3(data: GalaxyData, generated: dict[str, torch.Tensor], settings: GalaxyLeapSettings, seed: int,
           device: torch.device, *, provenance: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Table 3 over ``settings.table3_runs`` runs (random streams of runs 0, 1, ...): mean and SEM per metric.

    As the retraining configs ``training_scripts/configs/galaxy10_vgg_syn_CE.yaml`` and
    ``galaxy10_vgg_syn_robustCE.yaml``. Runs differ in the classifiers' initialisation, batches and
    augmentation; the counterfactuals are made once, as in the official code.
    """
    runs = [table3_run(data, generated, settings, seed, device, run=run, provenance=provenance)
            for run in range(settings.table3_runs)]
    return mean_and_sem(runs)
