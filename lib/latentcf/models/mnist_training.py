"""Cached training of the MNIST networks of both papers, for every chapter that uses them.

- LeapFactual (``Morpho_MNIST/Experiment_MorphoMNIST.ipynb`` in ``caicairay/LeapFactual``): the
  classifier ``f_theta``, the VAE ``g_phi`` and the conditional VAE of the CGM baseline (App. B.1.2).
- Dombrowski et al. (``annahdo/counterfactuals``): the multi-scale RealNVP (App. B.3) and the
  convolutional VAE (App. B.10), which also serves as the class autoencoder of IM1.

Every function builds its model under a named random stream (:func:`latentcf.core.runtime.seed_stream`),
draws its batches from another (:func:`latentcf.core.runtime.generator`) and caches the trained weights
with :func:`latentcf.core.cache.cached_model`; it returns the model in eval mode and the training facts.
The LeapFactual functions take any chapter settings with the fields of their stages (``data_*``,
``classifier_*``, ``vae_*``, ``cvae_*``) and key the cache by them. Introduced in ``notebooks/mnist_leap``
and ``notebooks/mnist_diffeo``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from latentcf.core.cache import cached_model
from latentcf.core.errors import LatentcfError
from latentcf.core.runtime import generator, seed_stream
from latentcf.core.settings import stage_settings
from latentcf.core.training import epoch_batches, fit, recalibrate_batch_norm
from latentcf.models.image_flows import MnistRealNVP, mnist_realnvp
from latentcf.models.mnist_nets import NUM_CLASSES, ConvVAE, MorphoClassifier, MorphoVAE, morpho_vae_loss

FLOW_GAIN_PENALTY = 5e-5
"""Weight of the official flow regulariser on weight-norm gains and coupling scales (Dombrowski et al., App. B.3)."""


def l2_penalty(model: nn.Module, weight_decay: float) -> torch.Tensor | float:
    """``weight_decay / 2 * sum theta^2``: its gradient is Adam's coupled weight decay ``weight_decay * theta``."""
    if weight_decay == 0:
        return 0.0
    return 0.5 * weight_decay * sum((p ** 2).sum() for p in model.parameters())


# LeapFactual's networks ---------------------------------------------------------------------------

def train_morpho_classifier(train_x: torch.Tensor, train_y: torch.Tensor, settings: Any, seed: int,
                            device: torch.device) -> tuple[MorphoClassifier, dict]:
    """The CNN ``f_theta``: cross-entropy, Adam lr 1e-2, 10 epochs of batch 256 (App. B.1.2); cached.

    Shapes: ``train_x: (N, 1, 28, 28)`` in ``[0, 1]``, ``train_y: (N,)`` int64. Settings
    ``classifier_epochs``, ``classifier_batch``, ``classifier_lr``, ``classifier_bn_batch`` (the chunks
    of the batch-norm recalibration after training) and ``classifier_precision``. Random streams
    ``classifier/batches`` and ``classifier/init``; cached as ``morpho_classifier`` under the ``data``
    and ``classifier`` settings and the seed.
    """
    batches = epoch_batches(len(train_x), settings.classifier_batch, settings.classifier_epochs,
                            generator(seed, "classifier/batches"))

    def train(classifier: MorphoClassifier) -> dict:
        info = fit(classifier, lambda step: nn.functional.cross_entropy(
            classifier(train_x[batches[step]]), train_y[batches[step]]),
            len(batches), settings.classifier_lr, desc="classifier", precision=settings.classifier_precision)
        recalibrate_batch_norm(classifier, lambda batch: classifier(train_x[batch]),
                               torch.arange(len(train_x), device=device).split(settings.classifier_bn_batch))
        return info

    seed_stream(seed, "classifier/init")
    return cached_model("morpho_classifier", stage_settings(settings, "data", "classifier", seed=seed),
                        lambda: MorphoClassifier().to(device), train)


def train_morpho_vae(train_x: torch.Tensor, settings: Any, seed: int,
                     device: torch.device) -> tuple[MorphoVAE, dict]:
    """The VAE ``g_phi`` (App. B.1.2): MSE plus KLD / 4000, Adam lr 5e-3, 100 epochs of batch 256; cached.

    Shapes: ``train_x: (N, 1, 28, 28)``. Settings ``vae_epochs``, ``vae_batch``, ``vae_lr``,
    ``vae_bn_batch`` and ``vae_precision``. Random streams ``vae/batches``, ``vae/noise`` (the
    reparameterisation) and ``vae/init``; cached as ``morpho_vae`` under the ``data`` and ``vae``
    settings and the seed.
    """
    batches = epoch_batches(len(train_x), settings.vae_batch, settings.vae_epochs, generator(seed, "vae/batches"))
    noise = generator(seed, "vae/noise", device)

    def train(vae: MorphoVAE) -> dict:
        info = fit(vae, lambda step: morpho_vae_loss(vae, train_x[batches[step]], noise),
                   len(batches), settings.vae_lr, desc="VAE", precision=settings.vae_precision)
        recalibrate_batch_norm(vae, lambda batch: morpho_vae_loss(vae, train_x[batch], noise),
                               torch.arange(len(train_x), device=device).split(settings.vae_bn_batch))
        return info

    seed_stream(seed, "vae/init")
    return cached_model("morpho_vae", stage_settings(settings, "data", "vae", seed=seed),
                        lambda: MorphoVAE().to(device), train)


def train_morpho_cvae(train_x: torch.Tensor, conditions: torch.Tensor, settings: Any, seed: int,
                      device: torch.device) -> tuple[MorphoVAE, dict]:
    """The conditional VAE of the CGM baseline, trained as the VAE under a condition; cached.

    Shapes: ``train_x: (N, 1, 28, 28)``, ``conditions: (N, 10)``. The condition is, as in the official
    code (``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``), the classifier's softmax probabilities of each
    training image (the paper says one-hot labels), so the cache key (``morpho_cvae``) holds the
    ``data``, ``classifier`` and ``cvae`` settings and the seed. Random streams ``cvae/batches``,
    ``cvae/noise`` and ``cvae/init``.
    """
    if tuple(conditions.shape) != (len(train_x), NUM_CLASSES):
        raise LatentcfError(f"the conditional VAE needs one condition of {NUM_CLASSES} probabilities per training "
                            f"image, {(len(train_x), NUM_CLASSES)}, got {tuple(conditions.shape)}")
    batches = epoch_batches(len(train_x), settings.cvae_batch, settings.cvae_epochs, generator(seed, "cvae/batches"))
    noise = generator(seed, "cvae/noise", device)

    def train(cvae: MorphoVAE) -> dict:
        info = fit(cvae, lambda step: morpho_vae_loss(cvae, train_x[batches[step]], noise, conditions[batches[step]]),
                   len(batches), settings.cvae_lr, desc="conditional VAE", precision=settings.cvae_precision)
        recalibrate_batch_norm(cvae, lambda batch: morpho_vae_loss(cvae, train_x[batch], noise, conditions[batch]),
                               torch.arange(len(train_x), device=device).split(settings.cvae_bn_batch))
        return info

    seed_stream(seed, "cvae/init")
    return cached_model("morpho_cvae", stage_settings(settings, "data", "classifier", "cvae", seed=seed),
                        lambda: MorphoVAE(NUM_CLASSES).to(device), train)


# Dombrowski et al.'s networks ---------------------------------------------------------------------

@dataclass(frozen=True)
class RealNVPRecipe:
    """How to train a multi-scale RealNVP: its ResNet ``width`` and ``res_blocks`` per coupling, ``epochs``
    of ``batch`` images with Adam at ``lr``, the coupled L2 ``weight_decay`` and the training ``precision``
    (``"bf16"`` autocast or ``"fp32"``, :func:`latentcf.core.training.autocast`)."""

    width: int
    res_blocks: int
    epochs: int
    batch: int
    lr: float
    weight_decay: float
    precision: str


def train_realnvp(train_x: torch.Tensor, recipe: RealNVPRecipe, seed: int, device: torch.device, *,
                  name: str, key: dict[str, Any]) -> tuple[MnistRealNVP, dict]:
    """The multi-scale RealNVP (App. B.3; official ``counterfactuals/generative_models/flows/realnvp.py``).

    Shapes: ``train_x: (N, 1, 28, 28)`` in ``[0, 1]``. Trained on dequantised training images; loss per
    image ``-log p(x~) + 5e-5 sum g^2`` (official), batch mean, plus the L2 weight decay. Random streams
    ``flow/batches``, ``flow/dequantise`` and ``flow/init`` (the initial weights). Cached as ``name``
    under ``key`` (what produced the training images, the recipe and the seed).
    """
    batches = epoch_batches(len(train_x), recipe.batch, recipe.epochs, generator(seed, "flow/batches"))
    dequantise = generator(seed, "flow/dequantise", device)

    def loss(flow: MnistRealNVP, step: int) -> torch.Tensor:
        x = train_x[batches[step].to(device)]
        return (-flow.log_prob(x, noise=True, generator=dequantise).mean()
                + FLOW_GAIN_PENALTY * flow.gain_penalty() + l2_penalty(flow, recipe.weight_decay))

    seed_stream(seed, "flow/init")
    return cached_model(name, key, lambda: mnist_realnvp(recipe.width, recipe.res_blocks).to(device),
                        lambda flow: fit(flow, lambda step: loss(flow, step), len(batches), recipe.lr, desc="flow",
                                         precision=recipe.precision))


def train_conv_vae(images: torch.Tensor, *, epochs: int, batch: int, lr: float, precision: str, seed: int,
                   stream: str, device: torch.device, name: str, key: dict[str, Any]) -> tuple[ConvVAE, dict]:
    """A :class:`ConvVAE` (App. B.10) on ``images: (N, 1, 28, 28)``, the negative ELBO with Adam; cached.

    Random streams ``<stream>/batches`` and ``<stream>/init``; the ``init`` stream seeds the initial
    weights and then the reparameterisation noise of training. Cached as ``name`` under ``key``.
    """
    batches = epoch_batches(len(images), batch, epochs, generator(seed, f"{stream}/batches"))
    seed_stream(seed, f"{stream}/init")
    return cached_model(name, key, lambda: ConvVAE().to(device),
                        lambda vae: fit(vae, lambda step: vae.loss(images[batches[step].to(device)]),
                                        len(batches), lr, desc=name, precision=precision))
