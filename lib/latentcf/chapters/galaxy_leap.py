"""LeapFactual on Galaxy10 DECaLS: reliable counterfactuals as training data (LeapFactual Sec. 4.2, App. B.1.3).

The official pipeline (spec ``leapfactual-official-code.md`` Section 3): a residual WAE-MMD
autoencoder with perceptual and PatchGAN losses on all training images; a *weak* VGG16-BN trained on
a class-balanced 20% subset and a *strong* one trained on everything; a CE-CFM flow on the weak
set's latents with the weak classifier's hard labels. For every weak-set image and each of the nine
targets ``(y + k) mod 10`` LeapFactual makes a counterfactual (``N_b`` blending leaps) and a reliable
counterfactual (then ``N_i`` injection leaps). Table 3 retrains the weak classifier with a fraction of
either set added; Tables 5 and 6 score the CEs along ``N_b`` and ``N_i`` with the weak classifier
(ACC, AUC), the strong one (ACC_r, AUC_r) and their similarity to the input (SSIM, PSNR).
Used in ``notebooks/galaxy_leap``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from latentcf.core.batching import in_batches
from latentcf.core.cache import cached_model, cached_tensors
from latentcf.core.errors import LatentcfError
from latentcf.core.training import epoch_batches, fit, recalibrate_batch_norm
from latentcf.data import galaxy10
from latentcf.methods.cfm import ConditionalVelocityMLP, cfm_loss, sample_source
from latentcf.methods.leap import Solver, leapfactual
from latentcf.metrics.classification import macro_auroc, mean_and_sem, target_accuracy
from latentcf.metrics.image_metrics import LPIPS, lpips_squeeze, psnr, ssim
from latentcf.models.vgg import VGG16BN, PerceptualLoss, imagenet_state_dict
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
CE_FRACTIONS = (10, 50, 100)
"""Percent of the counterfactual set added to the weak set in Table 3."""
CE_KINDS = {"ce": "CEs", "rce": "reliable CEs"}


@dataclass(frozen=True)
class GalaxyLeapSettings:
    """Everything the chapter needs to know about its scale; field prefixes name the stage they belong to.

    ``data_*``: the data set, its image size and the weak subset (320 per class on the real data).
    ``wae_*``: the WAE-MMD and its training (official: widths 16..256, 300 epochs, AdamW 3e-4 with
    weight decay 1e-3, x0.99 per epoch, clip 0.1; perceptual weight 10; PatchGAN base 64 with AdamW
    5e-5, its weight ramped over 30% of the epochs). ``clf_*``: the VGG16-BN classifiers (AdamW 1e-4,
    weight decay 0.01, x0.875 per epoch, clip 10, 50 epochs of 256; ImageNet weights and preset at
    width 1). ``flow_*``: the CE-CFM MLP (width 256, 5 hidden layers, Adam 5e-4, x0.1 at epoch 400 of
    500). ``leap_*``: LeapFactual (``N_b`` 250 at gamma 0.1; the data set's ``N_i`` 50 at gamma
    1 / 1.025; dopri5 on 15 grid points) and its sweeps. ``table3_runs`` runs retrain the classifiers
    of Table 3 under their own seeds (the paper: 5).

    The smoke scale is a 2-core-CPU version on ``galaxy10-synthetic``: 3,000 images rendered at 64x64,
    centre-cropped to 38 and resized to 32 (the official crop keeps the same 59% of the frame, 150 of
    256); a weak set of 30 per class (300 images, 11% of the 2,705 training images rather than 20%:
    every weak-set image costs nine counterfactuals of ``N_b + N_i`` leaps each); narrow networks
    without ImageNet weights (a width-1/16 VGG16-BN, a 3-stage WAE of widths 16..64, a width-1/16
    random-feature perceptual loss); the GAN term at weight 0.01 instead of 1 (at weight 1 it wiped
    out the first epochs: the reconstructions collapsed to one image); fewer epochs, and at least 200
    steps per classifier (a 150-image weak set has 3 batches per epoch: 15 epochs left it at 21% test
    accuracy); ``N_b`` 15 and a sweep of ``N_b`` up to 20, ``N_i`` up to 35 (the sweep of Table 6);
    fixed-step RK4 with 4 steps per ODE solve (16 field evaluations; the official 15-point dopri5
    takes at least 84, and decoding and classifying after every leap already dominate the CPU time).
    Measured on the 2-core CPU: at 64x64 input, 6 WAE epochs took 2 minutes and gave reconstructions
    that the classifiers got right less often than chance; at 32x32 after the crop, 15 epochs took
    1.6 minutes and reached SSIM 0.71 to the input.
    """

    data_dataset: str
    data_synthetic_n: int
    data_synthetic_size: int
    data_image_size: int
    data_crop: int
    data_weak_per_class: int
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
    wae_discriminator_base: int
    wae_discriminator_lr: float
    wae_gan_ramp: float
    wae_gan_weight: float
    clf_width: float
    clf_hidden: int
    clf_imagenet: bool
    clf_epochs: int
    clf_min_steps: int
    clf_batch: int
    clf_lr: float
    clf_weight_decay: float
    clf_lr_decay: float
    clf_clip: float
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
    eval_batch: int


SETTINGS = {
    "paper": GalaxyLeapSettings(
        data_dataset="galaxy10-decals", data_synthetic_n=0, data_synthetic_size=0, data_image_size=128, data_crop=150, data_weak_per_class=320,
        wae_widths=(16, 32, 64, 128, 256), wae_bottleneck=512, wae_epochs=300, wae_batch=128, wae_lr=3e-4,
        wae_weight_decay=1e-3, wae_lr_decay=0.99, wae_clip=0.1, wae_perceptual_width=1.0, wae_perceptual_weight=10.0,
        wae_discriminator_base=64, wae_discriminator_lr=5e-5, wae_gan_ramp=0.3, wae_gan_weight=1.0,
        clf_width=1.0, clf_hidden=4096, clf_imagenet=True, clf_epochs=50, clf_min_steps=0, clf_batch=256, clf_lr=1e-4,
        clf_weight_decay=0.01, clf_lr_decay=0.875, clf_clip=10.0,
        flow_width=256, flow_layers=5, flow_epochs=500, flow_batch=256, flow_lr=5e-4, flow_lr_drop_epoch=400,
        leap_n_blend=250, leap_gamma_blend=0.1, leap_n_inject=50, leap_gamma_inject_lift=1.0,
        leap_gamma_inject_land=1.025, leap_solver="dopri5", leap_solver_steps=14, leap_rtol=1e-4, leap_atol=1e-4,
        leap_blend_sweep=(100, 150, 200, 250, 300), leap_inject_sweep=(0, 5, 15, 25, 35),
        leap_gamma_lift_sweep=(0.9, 0.95, 1.0, 1.05), leap_gamma_land_sweep=(1.0125, 1.025, 1.05, 1.1),
        leap_gamma_sweep_inject=(10, 20, 30, 40, 50), leap_gamma_sweep_sources=320, leap_sources_per_batch=128,
        table3_runs=5, eval_batch=256),
    "smoke": GalaxyLeapSettings(
        data_dataset="galaxy10-synthetic", data_synthetic_n=3000, data_synthetic_size=64, data_image_size=32, data_crop=38, data_weak_per_class=30,
        wae_widths=(16, 32, 64), wae_bottleneck=256, wae_epochs=20, wae_batch=64, wae_lr=1e-3,
        wae_weight_decay=1e-3, wae_lr_decay=0.99, wae_clip=0.1, wae_perceptual_width=1 / 16,
        wae_perceptual_weight=10.0, wae_discriminator_base=8, wae_discriminator_lr=5e-5, wae_gan_ramp=0.3,
        wae_gan_weight=0.01,
        clf_width=1 / 16, clf_hidden=128, clf_imagenet=False, clf_epochs=12, clf_min_steps=200, clf_batch=64, clf_lr=1e-3,
        clf_weight_decay=0.01, clf_lr_decay=0.875, clf_clip=10.0,
        flow_width=256, flow_layers=5, flow_epochs=100, flow_batch=64, flow_lr=5e-4, flow_lr_drop_epoch=80,
        leap_n_blend=15, leap_gamma_blend=0.1, leap_n_inject=35, leap_gamma_inject_lift=1.0,
        leap_gamma_inject_land=1.025, leap_solver="rk4", leap_solver_steps=4, leap_rtol=1e-4, leap_atol=1e-4,
        leap_blend_sweep=(5, 10, 15, 20), leap_inject_sweep=(0, 5, 15, 25, 35),
        leap_gamma_lift_sweep=(0.9, 1.0, 1.05), leap_gamma_land_sweep=(1.0125, 1.025, 1.05),
        leap_gamma_sweep_inject=(10, 20), leap_gamma_sweep_sources=10, leap_sources_per_batch=256,
        table3_runs=2, eval_batch=128),
}


def _fields(settings: GalaxyLeapSettings, *prefixes: str) -> dict:
    """The settings of the named stages (by field prefix): what a cached stage depends on."""
    return {name: value for name, value in asdict(settings).items() if name.startswith(prefixes)}


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

    source: galaxy10.Galaxy10File | galaxy10.SyntheticGalaxies
    labels: torch.Tensor
    train: torch.Tensor
    test: torch.Tensor
    weak: torch.Tensor
    crop: int
    image_size: int
    description: str

    def images(self, indices: torch.Tensor, device: torch.device,
               augment: torch.Generator | None = None) -> torch.Tensor:
        """Float images ``(B, 3, S, S)`` in [0, 1] on ``device``: the test transform, or the train one with ``augment``."""
        return transform(self.source.read_images(indices).to(device), self.crop, self.image_size, augment)


def transform(images: torch.Tensor, crop: int, size: int, augment: torch.Generator | None = None) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` to float ``(B, 3, size, size)``: optional random rotation, centre crop, resize (spec 3.2).

    Officially the crop is 150 of 256 pixels and the size 128. Counterfactuals (already ``size`` x
    ``size``, smaller than the crop) are only rotated, as officially.
    """
    if augment is not None:
        images = galaxy10.random_rotation(images, augment)
    return galaxy10.preprocess(images, crop=crop, size=size)


def load_data(settings: GalaxyLeapSettings, scale: str) -> GalaxyData:
    """The data set of ``settings`` with the official split and weak subset.

    Paper scale refuses the synthetic stand-in: the published numbers need the real data. The
    real file is downloaded (2.54 GB, SHA256-checked) when it is not in the cache yet.
    """
    if settings.data_dataset not in DATASETS:
        raise LatentcfError(f"unknown data set '{settings.data_dataset}'; use one of {', '.join(DATASETS)}")
    if scale == "paper" and settings.data_dataset != "galaxy10-decals":
        raise LatentcfError("the paper scale reproduces published numbers (Tables 3, 5, 6), which need the real "
                            "Galaxy10 DECaLS; galaxy10-synthetic is for the smoke scale only")
    if settings.data_dataset == "galaxy10-decals":
        path = galaxy10.galaxy10_path()
        source = galaxy10.Galaxy10File(path if path.is_file() else galaxy10.download_galaxy10(path))
        description = f"Galaxy10 DECaLS ({len(source)} images, {path})"
    else:
        source = galaxy10.synthetic_galaxy10(settings.data_synthetic_n, settings.data_synthetic_size)
        description = (f"galaxy10-synthetic ({len(source)} images, {settings.data_synthetic_size}x"
                       f"{settings.data_synthetic_size}, seed {source.seed})")
    train, test = galaxy10.official_split(source.labels)
    weak = galaxy10.weak_subset(train, source.labels, settings.data_weak_per_class)
    return GalaxyData(source, source.labels, train, test, weak, settings.data_crop, settings.data_image_size,
                      f"{description}; centre crop {settings.data_crop}, resized to {settings.data_image_size}; "
                      f"train {len(train)}, test {len(test)}, weak set {len(weak)}")


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
    return VGG16BN(NUM_CLASSES, settings.clf_width, settings.clf_hidden, imagenet_input=settings.clf_imagenet)


def imagenet_weights(name: str, wanted: bool) -> dict[str, torch.Tensor] | None:
    """torchvision's ImageNet weights ``name`` if ``wanted`` and downloadable; warns when wanted but unavailable."""
    if not wanted:
        return None
    state = imagenet_state_dict(name)
    if state is None:
        warnings.warn(f"ImageNet weights '{name}' cannot be downloaded here: training from random initialisation, "
                      "unlike the official code", stacklevel=2)
    return state


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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
    """The WAE-MMD on all training images with the train augmentation (spec 3.3); cached.

    Per batch: one discriminator step, then the generator loss ``MSE + w_p * perceptual + MMD +
    w_G(epoch) * LSGAN``, whose AdamW step :func:`latentcf.core.training.fit` takes (the official code
    steps the generator first; the order within a batch is the only difference). BatchNorm statistics
    are recalibrated afterwards.
    """
    batches = epoch_batches(len(data.train), settings.wae_batch, settings.wae_epochs, _generator(seed))
    steps_per_epoch = math.ceil(len(data.train) / settings.wae_batch)
    augment, noise = _generator(seed + 1), torch.Generator(device=device).manual_seed(seed + 2)
    torch.manual_seed(seed)
    perceptual = PerceptualLoss(settings.wae_perceptual_width).to(device)
    perceptual_weights = imagenet_weights("vgg16_features", settings.wae_perceptual_width == 1)
    if perceptual_weights is not None:
        perceptual.load_imagenet(perceptual_weights)
    perceptual.eval()
    ramp_epochs = round(settings.wae_gan_ramp * settings.wae_epochs)

    def train(wae: ResidualWAE) -> dict:
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
            return (F.mse_loss(x_rec, x) + settings.wae_perceptual_weight * perceptual(x_rec, x) + imq_mmd(z, prior)
                    + settings.wae_gan_weight * gan_weight(step // steps_per_epoch, ramp_epochs)
                    * lsgan_generator_loss(discriminator(x_rec)))

        info = fit(wae, loss, len(batches), settings.wae_lr, "WAE-MMD", weight_decay=settings.wae_weight_decay,
                   lr_factor=_epoch_factor(settings.wae_lr_decay, steps_per_epoch), clip_norm=settings.wae_clip)
        recalibrate_batch_norm(wae, lambda batch: wae(data.images(data.train[batch], device, augment)),
                               list(torch.arange(len(data.train)).split(settings.eval_batch)))
        return {**info, "discriminator_loss": torch.stack(discriminator_losses).cpu().tolist()}

    key = {"seed": seed, **_fields(settings, "data_dataset", "data_synthetic", "data_image", "data_crop", "wae_"),
           "imagenet_perceptual": perceptual_weights is not None,
           "batch_norm": "recalibrated after training"}
    wae, info = cached_model("galaxy_wae", key, lambda: build_wae(settings).to(device), train)
    return wae, {**info, "imagenet_perceptual": perceptual_weights is not None}


@dataclass(frozen=True)
class CounterfactualImages:
    """Generated training images: uint8 ``images (M, 3, S, S)`` labelled with their ``target (M,)``."""

    images: torch.Tensor
    target: torch.Tensor
    provenance: dict


def train_classifier(data: GalaxyData, indices: torch.Tensor, settings: GalaxyLeapSettings, seed: int,
                     device: torch.device, name: str,
                     extra: CounterfactualImages | None = None) -> tuple[VGG16BN, dict]:
    """A VGG16-BN on the images ``indices`` (train augmentation) plus optionally generated images ``extra``.

    Cross-entropy, AdamW (lr ``clf_lr``, weight decay 0.01), x0.875 per epoch, gradient norm clipped
    at 10 (spec 3.4, 3.7), ``clf_epochs`` epochs or as many as make ``clf_min_steps`` steps (smoke
    scale: the 300-image weak set has 5 batches per epoch). Generated images get the rotation only, as
    officially. ImageNet weights at width 1 when they can be had. BatchNorm statistics are recalibrated
    afterwards. Cached.
    """
    n_original = len(indices)
    n_total = n_original + (0 if extra is None else len(extra.target))
    steps_per_epoch = math.ceil(n_total / settings.clf_batch)
    epochs = max(settings.clf_epochs, math.ceil(settings.clf_min_steps / steps_per_epoch))
    batches = epoch_batches(n_total, settings.clf_batch, epochs, _generator(seed))
    augment = _generator(seed + 1)
    weights = imagenet_weights("vgg16_bn", settings.clf_imagenet)

    def batch(items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        original, generated = items[items < n_original], items[items >= n_original] - n_original
        x = [data.images(indices[original], device, augment)]
        y = [data.labels[indices[original]]]
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

        info = fit(classifier, loss, len(batches), settings.clf_lr, f"VGG16-BN {name}",
                   weight_decay=settings.clf_weight_decay,
                   lr_factor=_epoch_factor(settings.clf_lr_decay, steps_per_epoch), clip_norm=settings.clf_clip)
        recalibrate_batch_norm(classifier, lambda items: classifier(batch(items)[0]),
                               list(torch.randperm(n_total, generator=_generator(seed + 2)).split(settings.eval_batch)))
        return info

    key = {"seed": seed, "trained_on": name, **_fields(settings, "data_", "clf_"),
           "imagenet": weights is not None, "extra": None if extra is None else extra.provenance,
           "batch_norm": "recalibrated after training"}
    torch.manual_seed(seed)
    classifier, info = cached_model("galaxy_vgg", key, lambda: build_classifier(settings).to(device), train)
    return classifier, {**info, "imagenet": weights is not None}


def probabilities(classifier: VGG16BN, x: torch.Tensor, batch: int) -> torch.Tensor:
    """``softmax(classifier(x))`` in chunks. ``(N, 3, S, S) -> (N, 10)``."""
    return in_batches(lambda chunk: classifier(chunk).softmax(dim=1), x, batch)


@torch.no_grad()
def test_scores(classifier: VGG16BN, data: GalaxyData, device: torch.device, batch: int) -> dict[str, float]:
    """``{"acc", "auc"}`` of a classifier on the test set: micro accuracy and macro one-vs-rest AUROC (spec 3.4).

    The official validation sees a random 1,664 of the 1,769 test images per epoch (``drop_last``);
    this scores all of them, reading them in chunks.
    """
    p = torch.cat([probabilities(classifier, data.images(chunk, device), batch)
                   for chunk in data.test.split(batch)])
    labels = data.labels[data.test]
    return {"acc": target_accuracy(p, labels), "auc": macro_auroc(p, labels, NUM_CLASSES)}


def train_velocity(wae: ResidualWAE, weak: VGG16BN, data: GalaxyData, settings: GalaxyLeapSettings, seed: int,
                   device: torch.device, trained_on: dict) -> tuple[ConditionalVelocityMLP, dict]:
    """The CE-CFM field on the weak set's latents, conditioned on the weak classifier's hard labels (spec 3.5).

    Each batch is freshly augmented, encoded by the (frozen) WAE and labelled ``argmax`` of the
    (frozen) weak classifier; ``sigma = 0``, ``N(0, I)`` source; Adam, lr x0.1 from
    ``flow_lr_drop_epoch``. ``trained_on`` (the WAE's and classifier's keys) enters the cache key.
    """
    batches = epoch_batches(len(data.weak), settings.flow_batch, settings.flow_epochs, _generator(seed + 3))
    steps_per_epoch = math.ceil(len(data.weak) / settings.flow_batch)
    augment, noise = _generator(seed + 4), torch.Generator(device=device).manual_seed(seed + 5)

    def loss(velocity: ConditionalVelocityMLP, step: int) -> torch.Tensor:
        with torch.no_grad():
            x = data.images(data.weak[batches[step]], device, augment)
            z1, label = wae.encode(x), weak(x).argmax(dim=1)
        z0 = sample_source(len(z1), LATENT_DIM, noise, device=device)
        return cfm_loss(velocity, z0, z1, label, generator=noise)

    def train(velocity: ConditionalVelocityMLP) -> dict:
        return fit(velocity, lambda step: loss(velocity, step), len(batches), settings.flow_lr, "CE-CFM flow",
                   lr_factor=lambda step: 0.1 if step // steps_per_epoch >= settings.flow_lr_drop_epoch else 1.0)

    torch.manual_seed(seed + 3)
    return cached_model("galaxy_flow", {"seed": seed, **_fields(settings, "data_", "flow_"), **trained_on},
                        lambda: ConditionalVelocityMLP(LATENT_DIM, NUM_CLASSES, settings.flow_width,
                                                       settings.flow_layers).to(device), train)


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


def train_models(data: GalaxyData, settings: GalaxyLeapSettings, seed: int, device: torch.device) -> GalaxyModels:
    """Train (or load) the WAE, the weak (20%) and strong (100%) classifiers and the flow; load LPIPS if it can be had."""
    wae, wae_info = train_wae(data, settings, seed, device)
    weak, weak_info = train_classifier(data, data.weak, settings, seed, device, "weak")
    strong, strong_info = train_classifier(data, data.train, settings, seed, device, "strong")
    trained_on = {"wae": _fields(settings, "wae_"), "weak": _fields(settings, "clf_"),
                  "imagenet": weak_info["imagenet"], "imagenet_perceptual": wae_info["imagenet_perceptual"]}
    velocity, velocity_info = train_velocity(wae, weak, data, settings, seed, device, trained_on)
    lpips = lpips_squeeze()
    return GalaxyModels(wae, weak, strong, velocity,
                        {"wae": wae_info, "weak": weak_info, "strong": strong_info, "flow": velocity_info},
                        settings.eval_batch, None if lpips is None else lpips.to(device))


# Counterfactuals ----------------------------------------------------------------------------------

def shifted_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every source towards the nine other classes: ``target = (y + k) mod 10`` for ``k = 1..9`` (spec 3.6).

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
    are the weak classifier's hard labels, recomputed before every leap (spec 3.6). One trajectory
    gives every count: the state after ``N`` leaps of a longer run is the result of a run with ``N``.
    Blending counts beyond ``settings.leap_n_blend`` continue blending from there; injection always
    starts from ``settings.leap_n_blend``.
    """
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
    (where its weights could be downloaded) LPIPS ``(B,)`` to the input."""
    pairs = torch.arange(len(x_cf))
    scores = {"p_weak": probabilities(models.weak, x_cf, batch).cpu(),
              "p_strong": probabilities(models.strong, x_cf, batch).cpu(),
              "ssim": in_batches(lambda idx: ssim(x_cf[idx], x_input[idx]), pairs, batch).cpu(),
              "psnr": in_batches(lambda idx: psnr(x_cf[idx], x_input[idx]), pairs, batch).cpu()}
    if models.lpips is not None:
        scores["lpips"] = in_batches(lambda idx: models.lpips(x_cf[idx], x_input[idx]), pairs, batch).cpu()
    return scores


def counterfactual_key(models: GalaxyModels, settings: GalaxyLeapSettings, seed: int) -> dict:
    """What the counterfactual set depends on: every setting of data, models and leaps, the seed, the initialisations."""
    return {"seed": seed, **_fields(settings, "data_", "wae_", "clf_", "flow_", "leap_"),
            "imagenet": models.info["weak"]["imagenet"], "imagenet_perceptual": models.info["wae"]["imagenet_perceptual"],
            "lpips": models.lpips is not None}


def generate_counterfactuals(models: GalaxyModels, data: GalaxyData, settings: GalaxyLeapSettings, seed: int,
                             device: torch.device) -> dict[str, torch.Tensor]:
    """CEs and reliable CEs of every weak-set image towards its nine other classes, with the sweep scores; cached.

    Sources are the weak set under the train augmentation (a random rotation), as in the official
    generation script. Returns flat tensors: ``x_input (n, 3, S, S)`` uint8 and ``label (n,)`` of the
    sources; ``source (M,)`` and ``target (M,)`` per pair (``M = 9 n``); ``x_ce`` (``N_b`` blending leaps)
    and ``x_rce`` (then ``N_i`` injection leaps), uint8 ``(M, 3, S, S)``; and for every checkpoint
    ``c`` of :func:`checkpoint_names` the scores ``c/p_weak``, ``c/p_strong``, ``c/ssim``, ``c/psnr``
    (and ``c/lpips``) of :func:`score_images`, plus ``rec/...`` for the plain reconstruction.
    Memory-mapped when loaded.
    """
    def make() -> dict[str, torch.Tensor]:
        augment = _generator(seed + 6)
        parts: dict[str, list[torch.Tensor]] = {}
        sources = data.weak.split(settings.leap_sources_per_batch)
        inject_at = tuple(sorted({0, *settings.leap_inject_sweep, settings.leap_n_inject}))
        scored, reliable = ("rec", *checkpoint_names(settings)), f"ni{settings.leap_n_inject}"
        offset, started = 0, time.perf_counter()
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
            parts.setdefault("x_ce", []).append(to_uint8(decoded["ni0"]))
            parts.setdefault("x_rce", []).append(to_uint8(decoded[reliable]))
            parts.setdefault("x_input", []).append(to_uint8(x))
            parts.setdefault("label", []).append(data.labels[chunk])
            parts.setdefault("source", []).append(source + offset)
            parts.setdefault("target", []).append(target)
            offset += len(chunk)
        tensors = {name: torch.cat(values) for name, values in parts.items()}
        return {**tensors, "seconds": torch.tensor(time.perf_counter() - started)}

    return cached_tensors("galaxy_counterfactuals", counterfactual_key(models, settings, seed), make, mmap=True)


def sweep_metrics(generated: dict[str, torch.Tensor], names: list[str]) -> dict[str, float]:
    """Tables 5 and 6 from stored scores: ``acc/auc`` (weak), ``acc_r/auc_r`` (strong), ``ssim``, ``psnr`` per checkpoint.

    Keys: ``<metric>_<checkpoint>``, e.g. ``acc_r_ni25``, ``ssim_nb250``; ``lpips_<checkpoint>`` where
    LPIPS was computed.
    """
    target = generated["target"]
    metrics = {}
    for name in names:
        metrics.update({f"acc_{name}": target_accuracy(generated[f"{name}/p_weak"], target),
                        f"auc_{name}": macro_auroc(generated[f"{name}/p_weak"], target, NUM_CLASSES),
                        f"acc_r_{name}": target_accuracy(generated[f"{name}/p_strong"], target),
                        f"auc_r_{name}": macro_auroc(generated[f"{name}/p_strong"], target, NUM_CLASSES),
                        f"ssim_{name}": float(generated[f"{name}/ssim"].mean()),
                        f"psnr_{name}": float(generated[f"{name}/psnr"].mean())})
        if f"{name}/lpips" in generated:
            metrics[f"lpips_{name}"] = float(generated[f"{name}/lpips"].mean())
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
    ``leap_gamma_sweep_sources`` weak-set images, towards their nine other classes. Keys:
    ``acc_r_lift<g>_ni<N>``, ``ssim_lift<g>_ni<N>``, ``acc_r_land<g>_ni<N>``, ``ssim_land<g>_ni<N>``.
    """
    chunk = data.weak[:settings.leap_gamma_sweep_sources]
    x = data.images(chunk, device, _generator(seed + 6))
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
    official fixed-seed ``random_split`` gives.
    """
    if kind not in CE_KINDS:
        raise LatentcfError(f"unknown counterfactual kind '{kind}'; use one of {', '.join(CE_KINDS)}")
    if not 0 < percent <= 100:
        raise LatentcfError(f"the share of counterfactuals must be in (0, 100] percent, got {percent}")
    n = len(generated["target"])
    chosen = torch.randperm(n, generator=_generator(0))[:round(n * percent / 100)].sort().values
    return CounterfactualImages(generated[f"x_{kind}"][chosen], generated["target"][chosen],
                                {**provenance, "kind": kind, "percent": percent})


def table3_run(data: GalaxyData, generated: dict[str, torch.Tensor], settings: GalaxyLeapSettings, seed: int,
               device: torch.device, provenance: dict) -> dict[str, float]:
    """One run of Table 3: the weak and strong baselines and the weak set plus 10/50/100% CEs or reliable CEs.

    ``provenance`` (:func:`counterfactual_key`) names the counterfactual set in the classifiers' cache keys.

    Returns ``acc_weak, auc_weak, acc_strong, auc_strong`` and ``acc_<kind>_<percent>``,
    ``auc_<kind>_<percent>`` for ``kind`` in ``ce, rce``: test-set scores of the last epoch.
    """
    metrics = {}
    for name, indices in (("weak", data.weak), ("strong", data.train)):
        classifier, _ = train_classifier(data, indices, settings, seed, device, name)
        metrics.update({f"{score}_{name}": value
                        for score, value in test_scores(classifier, data, device, settings.eval_batch).items()})
    for kind in CE_KINDS:
        for percent in CE_FRACTIONS:
            extra = counterfactual_subset(generated, kind, percent, provenance)
            classifier, _ = train_classifier(data, data.weak, settings, seed, device, "weak", extra)
            metrics.update({f"{score}_{kind}_{percent}": value
                            for score, value in test_scores(classifier, data, device, settings.eval_batch).items()})
    return metrics


def table3(data: GalaxyData, generated: dict[str, torch.Tensor], settings: GalaxyLeapSettings, seed: int,
           device: torch.device, provenance: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Table 3 over ``settings.table3_runs`` runs (seeds ``seed``, ``seed + 1``, ...): mean and SEM per metric.

    Runs differ in the classifiers' initialisation, batches and augmentation; the counterfactuals are
    made once, as in the official code.
    """
    runs = [table3_run(data, generated, settings, seed + run, device, provenance)
            for run in range(settings.table3_runs)]
    return mean_and_sem(runs)
