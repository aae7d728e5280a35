"""Diffeomorphic counterfactuals on MNIST (Dombrowski et al., Sec. 4.1.2, 4.1.3, 4.2, App. B.2-B.11).

Test images of a '4' are pushed towards '9' by gradient ascent in three coordinate systems: the
pixels themselves (X, an adversarial search), the latent space of a multi-scale RealNVP (Z, an
exact diffeomorphic counterfactual) and the latent space of a convolutional VAE (an approximate
one). The results are judged by an independent linear SVM (the oracle), by the labels of their
nearest test neighbours, by IM1 with class-specific autoencoders and by Euclidean distances in X
and in Z; the spectrum of the flow's inverse induced metric ``J J^T`` shows why Z stays on the
data manifold. The official code is https://github.com/annahdo/counterfactuals (the search:
``counterfactuals/adv.py``); its MNIST evaluations (oracle, nearest neighbours, IM1, distances,
spectra) are not in it and follow the paper (Sec. 4.1.3, 4.2, App. B.6-B.11).

What another chapter needs too lives in the layers below: the training of the flow and of the VAEs
(:mod:`latentcf.models.mnist_training`), the searches (:mod:`latentcf.methods.search`), the oracle
(:mod:`latentcf.metrics.oracle`), nearest neighbours and IM1 (:mod:`latentcf.metrics.realism`) and the
distances (:mod:`latentcf.metrics.proximity`). This module holds the chapter's settings, its data, the
classifier, the choice of the searched images and the flow's geometry. Used in ``notebooks/mnist_diffeo``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from latentcf.core.batching import in_batches
from latentcf.core.cache import cached_model
from latentcf.core.errors import LatentcfError, check_targets
from latentcf.core.runtime import generator, seed_stream
from latentcf.core.settings import stage_settings
from latentcf.core.training import epoch_batches, fit
from latentcf.data.mnist import MnistData, load_mnist, mnist_data, require_full_mnist
from latentcf.methods.geometry import batched_jacobian, induced_metric_eigen
from latentcf.metrics.classification import recognised_examples
from latentcf.metrics.oracle import Oracle, train_svm_oracle
from latentcf.models.image_flows import MnistRealNVP
from latentcf.models.mnist_nets import NUM_CLASSES, ConvVAE, MnistCNN
from latentcf.models.mnist_training import RealNVPRecipe, l2_penalty, train_conv_vae, train_realnvp

SOURCE_CLASS = 4
"""The paper starts from test images of the digit 4 (Sec. 4.1.3) ..."""
TARGET_CLASS = 9
"""... and asks for a 9."""
IMAGE_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class MnistDiffeoSettings:
    """Everything the MNIST chapter needs to know about its scale.

    Every field but ``scale`` starts with its stage (:data:`latentcf.core.settings.STAGES`); a
    model's cache key holds the fields of its stage and of ``data``
    (:func:`latentcf.core.settings.stage_settings`).

    - ``data_source``: ``"full"`` (the official MNIST files) or ``"offline"`` (the official test set
      and 5,000 training images), see :mod:`latentcf.data.mnist`.
    - ``flow_*``, ``classifier_*``, ``vae_*``, ``im1_*``: size, epochs, batch and Adam learning rate
      of the RealNVP, the CNN, the VAE of Sec. 4.2 and the IM1 class autoencoders;
      ``*_weight_decay`` is Adam's coupled L2 penalty, added to the loss; ``*_precision`` is the
      training precision (``"bf16"`` autocast or ``"fp32"``, :func:`latentcf.core.training.autocast`).
    - ``oracle_train_size``: training images of the linear SVM oracle.
    - ``search_n``: how many test 4s are searched from; ``search_chunk``: how many run at once;
      ``search_lr_x``, ``search_lr_z``, ``search_lr_vae``: Adam's step in X, in the flow's Z and in
      the VAE latent; ``search_max_steps`` (X and Z) and ``search_max_steps_vae``: the step budget.
    - ``knn_per_class``: test images per class in the nearest-neighbour pool.
    - ``eval_bpd_images``, ``eval_class_images``, ``eval_spectrum_points``: how many test images the
      bits per dimension, the distances to the source class and the ``J J^T`` spectrum use.
    """

    scale: str
    data_source: str
    flow_width: int
    flow_res_blocks: int
    flow_epochs: int
    flow_batch: int
    flow_lr: float
    flow_weight_decay: float
    flow_precision: str
    classifier_epochs: int
    classifier_batch: int
    classifier_lr: float
    classifier_weight_decay: float
    classifier_precision: str
    vae_epochs: int
    vae_batch: int
    vae_lr: float
    vae_precision: str
    im1_epochs: int
    im1_batch: int
    im1_lr: float
    im1_precision: str
    oracle_train_size: int
    search_n: int
    search_chunk: int
    search_lr_x: float
    search_lr_z: float
    search_max_steps: int
    search_lr_vae: float
    search_max_steps_vae: int
    knn_per_class: int
    eval_class_images: int
    eval_bpd_images: int
    eval_spectrum_points: int


PAPER = MnistDiffeoSettings(
    scale="paper", data_source="full",
    flow_width=64, flow_res_blocks=4, flow_epochs=30, flow_batch=64, flow_lr=1e-4, flow_weight_decay=5e-4,
    classifier_epochs=4, classifier_batch=128, classifier_lr=1e-3, classifier_weight_decay=5e-4,
    vae_epochs=80, vae_batch=128, vae_lr=5e-3,
    im1_epochs=100, im1_batch=128, im1_lr=5e-3,
    oracle_train_size=10_000,
    search_n=500, search_chunk=250, search_lr_x=5e-4, search_lr_z=5e-2, search_max_steps=2000,
    search_lr_vae=5e-3, search_max_steps_vae=1000,
    knn_per_class=892,  # the size of the smallest class of the test set (the 5s)
    eval_class_images=2000, eval_bpd_images=10_000, eval_spectrum_points=100,
    # Mixed precision for the convolutional networks on a GPU; the flow stays float32: its bits per dimension
    # (App. B.3) are sums of 784 log-determinant terms.
    flow_precision="fp32", classifier_precision="bf16", vae_precision="bf16", im1_precision="bf16",
)
SMOKE = dataclasses.replace(
    PAPER, scale="smoke",
    data_source="offline",  # runs without internet: the official test set and 5,000 training images
    flow_width=8,  # a flow small enough to train on a CPU in minutes ...
    flow_res_blocks=1,  # ... with one residual block per coupling ...
    flow_epochs=3,  # ... for three passes over the 5,000 images
    flow_lr=1e-3,  # a short training needs a larger step
    flow_weight_decay=0.0,  # the small flow underfits; weight decay would only slow it down
    classifier_epochs=3,  # three passes over the small training set already reach about 97% test accuracy
    classifier_batch=64,  # more steps per epoch on 5,000 images
    vae_epochs=10,  # minutes on a CPU; the chapter notes how weak this VAE is
    vae_batch=64,  # more steps per epoch on 5,000 images
    im1_epochs=40,  # about 500 training images per digit: 40 epochs are 320 steps
    im1_batch=64,  # more steps per epoch on about 500 images
    oracle_train_size=5000,  # all the offline training images
    search_n=48,  # margins of the relations that do not hinge on a few images, in minutes on a CPU
    search_chunk=48,  # all searches in one batch
    search_lr_vae=5e-2,  # reach the threshold within the smaller step budget below
    search_max_steps_vae=300,  # the VAE search is an aside; the X and Z searches keep the paper's budget
    knn_per_class=300,  # a smaller pool for 48 queries
    eval_class_images=500,  # distances to 500 test 4s are a stable mean
    eval_bpd_images=1000,  # bits per dimension on 1,000 test images: seconds on a CPU
    eval_spectrum_points=4,  # each 784 x 784 Jacobian costs 784 backward passes of the flow
    classifier_precision="fp32",  # bf16 autocast is slower than float32 on a CPU (2.4 times on a small network here)
    vae_precision="fp32",  # the same
    im1_precision="fp32",  # the same
)
DRY_RUN = dataclasses.replace(
    PAPER, flow_batch=4, classifier_batch=16, vae_batch=16, im1_batch=16, oracle_train_size=60, search_n=2,
    search_chunk=2, search_max_steps=3, search_max_steps_vae=20, knn_per_class=6, eval_class_images=4,
    eval_bpd_images=4,
    eval_spectrum_points=0,  # one J J^T of the paper's 8.6M-parameter flow is 784 backward passes: CPU hours
)
"""The paper scale cut to a few items and batches, searches to a few steps and no spectrum, for ``reproduce --dry-run``
(training stops after two steps; the data loader keeps a dozen images of each digit)."""


# ----------------------------------------------------------------------------------------- data


def load_data(settings: MnistDiffeoSettings, device: torch.device) -> MnistData:
    """MNIST train and test splits from ``settings.data_source`` ("offline" or "full").

    The paper scale refuses the offline subset (:func:`latentcf.data.mnist.require_full_mnist`).
    """
    if settings.scale == "paper":
        require_full_mnist(settings.data_source, "the paper scale of the MNIST diffeomorphic chapter")
    train = load_mnist("train", source=settings.data_source)
    test = load_mnist("test", source=settings.data_source)
    return mnist_data(train, test, device)


def class_index(target: int) -> int:
    """``target`` as one class index, checked by :func:`latentcf.core.errors.check_targets`.

    A bool, float or string raises :class:`LatentcfError` too (``check_targets`` takes a tensor).
    """
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise LatentcfError(f"the target class must be an integer class index, got {target!r}")
    return int(check_targets(torch.tensor([int(target)]), NUM_CLASSES)[0])


# --------------------------------------------------------------------------------------- models


def train_flow(data: MnistData, settings: MnistDiffeoSettings, seed: int,
               device: torch.device) -> tuple[MnistRealNVP, dict]:
    """The multi-scale RealNVP (App. B.3) on all training images (:func:`latentcf.models.mnist_training.train_realnvp`).

    Random streams ``flow/batches``, ``flow/dequantise`` and ``flow/init``. Cached as ``mnist_flow`` by the
    data and flow settings and the seed.
    """
    recipe = RealNVPRecipe(width=settings.flow_width, res_blocks=settings.flow_res_blocks, epochs=settings.flow_epochs,
                           batch=settings.flow_batch, lr=settings.flow_lr, weight_decay=settings.flow_weight_decay,
                           precision=settings.flow_precision)
    return train_realnvp(data.train_x, recipe, seed, device, name="mnist_flow",
                         key=stage_settings(settings, "data", "flow", seed=seed))


def train_classifier(data: MnistData, settings: MnistDiffeoSettings, seed: int,
                     device: torch.device) -> tuple[MnistCNN, dict]:
    """The CNN (App. B.4; official ``counterfactuals/classifiers/cnn.py``), epochs over the training set.

    Cross-entropy with Adam and L2 weight decay. Random streams ``classifier/batches`` and
    ``classifier/init`` (the initial weights, then dropout).
    """
    batches = epoch_batches(len(data.train_x), settings.classifier_batch, settings.classifier_epochs,
                            generator(seed, "classifier/batches"))

    def loss(cnn: MnistCNN, step: int) -> torch.Tensor:
        idx = batches[step].to(device)
        return (F.cross_entropy(cnn(data.train_x[idx]), data.train_y[idx])
                + l2_penalty(cnn, settings.classifier_weight_decay))

    seed_stream(seed, "classifier/init")
    return cached_model("mnist_cnn", stage_settings(settings, "data", "classifier", seed=seed),
                        lambda: MnistCNN().to(device),
                        lambda cnn: fit(cnn, lambda step: loss(cnn, step), len(batches),
                                        settings.classifier_lr, desc="classifier",
                                        precision=settings.classifier_precision))


def train_vae(data: MnistData, settings: MnistDiffeoSettings, seed: int,
              device: torch.device) -> tuple[ConvVAE, dict]:
    """The VAE of the approximate counterfactuals (Sec. 4.2, App. B.10), on all training images.

    The official architecture (``counterfactuals/generative_models/vaes/vae.py``); random streams
    ``vae/batches`` and ``vae/init``; cached as ``mnist_vae``.
    """
    return train_conv_vae(data.train_x, epochs=settings.vae_epochs, batch=settings.vae_batch, lr=settings.vae_lr,
                          precision=settings.vae_precision, seed=seed, stream="vae", device=device, name="mnist_vae",
                          key=stage_settings(settings, "data", "vae", seed=seed))


def train_class_autoencoder(data: MnistData, settings: MnistDiffeoSettings, seed: int, device: torch.device, *,
                            digit: int) -> tuple[ConvVAE, dict]:
    """An IM1 autoencoder: the VAE trained only on the training images of ``digit`` (App. B.10).

    Random streams ``im1/digit<digit>/batches`` and ``im1/digit<digit>/init``; cached as ``mnist_ae_digit<digit>``.
    """
    images = data.train_x[data.train_y == class_index(digit)]
    return train_conv_vae(images, epochs=settings.im1_epochs, batch=settings.im1_batch, lr=settings.im1_lr,
                          precision=settings.im1_precision, seed=seed, stream=f"im1/digit{digit}", device=device,
                          name=f"mnist_ae_digit{digit}",
                          key=stage_settings(settings, "data", "im1", seed=seed, digit=digit))


def train_oracle(data: MnistData, settings: MnistDiffeoSettings, seed: int, device: torch.device) -> Oracle:
    """The 10-class linear SVM oracle (Sec. 4.1.3), by :func:`latentcf.metrics.oracle.train_svm_oracle`.

    Trained on ``settings.oracle_train_size`` training images drawn from the stream ``oracle/subset``;
    scikit-learn fits it on the CPU whatever ``device`` is. Not cached (seconds on a CPU).
    """
    return train_svm_oracle(data.train_x, data.train_y, settings.oracle_train_size, generator(seed, "oracle/subset"))


def select_sources(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, n: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Indices of ``n`` random test images of class 4 that the classifier predicts as 4 (Sec. 4.1.3).

    :func:`latentcf.metrics.classification.recognised_examples` (in a dry run, any test 4s).

    Shapes: ``images: (N, 1, 28, 28)``, ``labels: (N,)`` -> ``(n,)`` int64 on the CPU.
    """
    return recognised_examples(classifier, images, labels, SOURCE_CLASS, n, generator)


# ------------------------------------------------------------------------------------ the flow's geometry


def flow_latents(flow: MnistRealNVP, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """``z = g^{-1}(x)`` in batches, eval mode, no dequantisation. ``(N, 1, 28, 28) -> (N, 1, 28, 28)``."""
    return in_batches(flow.encode, images, batch)


def bits_per_dim(flow: MnistRealNVP, images: torch.Tensor, dequantise: torch.Generator | None = None,
                 batch: int = 500) -> float:
    """Mean bits per dimension of dequantised images (App. B.3; paper 1.21 on the test set).

    ``dequantise`` draws the uniform dequantisation noise (a generator on the images' device).
    """
    return in_batches(lambda chunk: flow.bits_per_dim(chunk, noise=True, generator=dequantise), images,
                      batch).mean().item()


def metric_spectrum(decode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of the inverse induced metric ``J J^T``, ``J = d decode / dz`` (Eq. 23, Fig. 7 right).

    One Jacobian per latent, via :func:`latentcf.methods.geometry.batched_jacobian` on flattened latents.
    Shapes: ``z: (P, *Z)`` with ``D = prod(Z)`` -> ``(P, min(D_out, D))``, descending per row.
    """
    shape = z.shape[1:]
    jacobian = batched_jacobian(lambda flat: decode(flat.view(-1, *shape)), z.flatten(1))
    eigenvalues, _ = induced_metric_eigen(jacobian)
    return eigenvalues.detach()


def mean_metric_spectrum(flow: MnistRealNVP, images: torch.Tensor) -> torch.Tensor:
    """The mean of :func:`metric_spectrum` at the latents of ``images`` (Fig. 7 right). ``(P, 1, 28, 28) -> (784,)``.

    NaN everywhere for no image (a dry run skips the Jacobians), which a run records as undefined.
    """
    if len(images) == 0:
        return torch.full((math.prod(images.shape[1:]),), math.nan)
    return metric_spectrum(flow.decode, flow_latents(flow, images)).mean(0).cpu()


def effective_dimension(spectrum: torch.Tensor, share: float = 0.9) -> float:
    """How many of the largest eigenvalues of a mean spectrum ``(D,)`` hold ``share`` of its sum.

    NaN for a spectrum that is not finite (the mean over no image), which a run records as undefined.
    """
    if not bool(torch.isfinite(spectrum).all()):
        return math.nan
    cumulative = spectrum.sort(descending=True).values.cumsum(0) / spectrum.sum()
    return int((cumulative < share).sum().item()) + 1
