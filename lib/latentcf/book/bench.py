"""What a paper-scale run costs: ``python -m latentcf bench CHAPTER... [--device DEVICE]``.

Every chapter has a *work model* (:data:`WORK_MODELS`): the stages of its paper-scale run that cost
real time (each model's training, the searches, the leaps, the long evaluation passes), each with a
unit and the number of units that the chapter's ``PAPER`` settings and the papers' data sizes need
(MNIST 60,000 / 10,000 images, Galaxy10 DECaLS 17,736). A stage's ``measure`` runs the stage's own
code (the chapter's networks built from ``PAPER``, its losses through :func:`latentcf.core.training.fit`
at the paper's precision, its searches, leaps and scores) on synthetic tensors of the paper's shapes,
on the chosen device, for a few seconds after a warm-up, and returns units per second. The projected
time of a stage is units / rate; a chapter's is the sum of its stages'.

Where one step at the paper's batch would take longer than a quarter of the time budget (VGG16-BN on
a CPU), the stage is timed at the largest power-of-two batch that fits and scaled linearly to the
paper's batch; the results file records both batches. The projection is an estimate, not a bound:
searches are timed to their step limit (the paper's stop at the target makes them shorter), the
LeapFactual fields are timed at their initialisation (dopri5 may take other sub-steps on a trained
field), and what costs seconds on any machine (data loading, the scikit-learn oracle, batch-norm
recalibration passes) is left out.

A new chapter gets its work model in :data:`WORK_MODELS`; ``bench all`` refuses a registered chapter
without one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from latentcf.book.reproduce import select_chapters
from latentcf.chapters import galaxy_leap, helix, mnist_compare, mnist_diffeo, mnist_leap, square
from latentcf.chapters.registry import Chapter
from latentcf.core.errors import LatentcfError
from latentcf.core.paths import build_dir, project_root
from latentcf.core.results import git_sha, short_commit
from latentcf.core.runtime import configure_device, device_description, resolve_device
from latentcf.core.training import fit, prefer_channels_last
from latentcf.data import galaxy10
from latentcf.data.mnist import load_mnist
from latentcf.methods.cfm import ConditionalVelocityMLP, cfm_loss, sample_source
from latentcf.methods.leap import leap_counterfactuals, leapfactual
from latentcf.methods.search import opt_counterfactuals, search_in_latent, search_in_x
from latentcf.metrics import morpho
from latentcf.metrics.image_metrics import LPIPS, jpeg_round_trip
from latentcf.models.flows import HELIX_KEEP_MASKS, coupling_flow, flow_nll
from latentcf.models.image_flows import mnist_realnvp
from latentcf.models.mnist_nets import (
    MORPHO_LATENT_DIM,
    NUM_CLASSES,
    ConvVAE,
    MnistCNN,
    MorphoClassifier,
    MorphoVAE,
    morpho_vae_loss,
)
from latentcf.models.mnist_training import FLOW_GAIN_PENALTY, l2_penalty
from latentcf.models.vgg import PerceptualLoss
from latentcf.models.wae import PatchDiscriminator, imq_mmd, lsgan_generator_loss

SECONDS_PER_STAGE = 3.0
"""Timed seconds per stage after its warm-up (``--seconds``)."""
FIRST_BATCH = 2
"""The smallest batch a stage is timed at; it doubles up to the paper's batch while one repetition is fast."""
MAX_REPEATS = 100_000
"""The most repetitions (steps, leaps, batches) one timing runs."""
MNIST_TRAIN = 60_000
"""Images in the official MNIST training set (its test set's 10,000 are the chapters' ``eval_*`` sizes)."""
MNIST_TRAIN_PER_DIGIT = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
"""Training images of each digit in the official MNIST training set."""
GALAXY_SOURCE_SIZE = 256
"""Galaxy10 DECaLS images are 256 x 256 RGB (:mod:`latentcf.data.galaxy10`)."""
TRAINING_STEPS, SEARCHES, LEAPS, IMAGES, JACOBIANS = "training steps", "searches", "leaps", "images", "Jacobians"
"""The units of the stages; a search runs one start to its step limit, a leap is one lift and land of one latent."""
BENCH_FOLDER = "bench"
"""``build/bench`` receives a run's file; ``results/bench`` holds the committed ones."""
MARKER = "<!-- bench-table -->"
"""The line of ``book/reproduce.md`` that the book build replaces with the committed projections."""


@dataclass(frozen=True)
class Probe:
    """Where and how long each stage is timed: ``device``, and ``seconds`` of timing after the warm-up."""

    device: torch.device
    seconds: float = SECONDS_PER_STAGE


@dataclass(frozen=True)
class Rate:
    """A stage's measured speed: ``units_per_s`` at the paper's batch ``full_batch``, timed at ``batch``."""

    units_per_s: float
    batch: int
    full_batch: int


@dataclass(frozen=True)
class Stage:
    """One stage of a paper-scale run: ``units`` of ``unit`` (from ``PAPER``), and ``measure(probe) -> Rate``."""

    name: str
    unit: str
    units: float
    measure: Callable[[Probe], Rate]


# Timing -------------------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work, so that the clock sees it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(run: Callable[[int], float], repeats: int, device: torch.device) -> tuple[float, float]:
    """``(units, seconds)`` of ``run(repeats)``, which returns the units it did."""
    started = time.perf_counter()
    units = run(repeats)
    synchronize(device)
    return units, time.perf_counter() - started


def batched_rate(make_run: Callable[[int], Callable[[int], float]], full_batch: int, probe: Probe,
                 first_batch: int = FIRST_BATCH) -> Rate:
    """Units per second of ``make_run(batch)(repeats)``, timed for ``probe.seconds`` after a warm-up.

    ``make_run(batch)`` prepares the inputs of one batch and returns ``run(repeats)``, which repeats
    the stage's work (steps, leaps, batches) and returns the units it did. The batch doubles from
    ``first_batch`` up to ``full_batch`` while one repetition takes under a quarter of ``probe.seconds``
    (each new batch is run once untimed first: autotuning, allocation); then the repetitions grow
    until one timing lasts ``probe.seconds``.
    """
    batch = min(first_batch, full_batch)
    while True:
        run = make_run(batch)
        timed(run, 1, probe.device)
        units, seconds = timed(run, 1, probe.device)
        if batch == full_batch or seconds > probe.seconds / 4:
            break
        batch = min(2 * batch, full_batch)
    repeats = 1
    while seconds < probe.seconds and repeats < MAX_REPEATS:
        wanted = math.ceil(repeats * 1.2 * probe.seconds / max(seconds, 1e-6))
        repeats = min(max(repeats + 1, wanted), 50 * repeats, MAX_REPEATS)
        units, seconds = timed(run, repeats, probe.device)
    if units <= 0:
        raise LatentcfError("a stage did no measurable work in its timing")
    return Rate(units / seconds, batch, full_batch)


def training_rate(model: nn.Module, loss: Callable[[int], torch.Tensor], full_batch: int, probe: Probe, *,
                  lr: float, precision: str = "fp32", clip_norm: float | None = None,
                  weight_decay: float = 0.0) -> Rate:
    """Training steps per second at the paper's batch ``full_batch`` of :func:`fit` on ``loss(batch)``.

    ``loss(batch)`` returns the scalar loss of one batch of ``batch`` items, as the chapter's
    ``loss_fn`` does. A step timed at a smaller batch counts as ``batch / full_batch`` of a paper step.
    """
    def make_run(batch: int) -> Callable[[int], float]:
        def run(steps: int) -> float:
            fit(model, lambda _: loss(batch), steps, lr, "bench", precision=precision, clip_norm=clip_norm,
                weight_decay=weight_decay)
            return steps * batch / full_batch
        return run

    return batched_rate(make_run, full_batch, probe)


def field_training(dim: int, batch_size: int, lr: float) -> Callable[[Probe], Rate]:
    """The measure of a CE-CFM field's training (LeapFactual Eq. 3) on ``dim``-dim latents with probability
    conditions, as the MNIST chapters train it (the official MLP, Adam at ``lr``, batch ``batch_size``)."""
    def measure(probe: Probe) -> Rate:
        model = ConditionalVelocityMLP(dim, NUM_CLASSES).to(probe.device)
        latents = torch.randn(batch_size, dim, device=probe.device)
        conditions = random_probabilities(batch_size, probe.device)
        noise = torch.Generator(device=probe.device).manual_seed(0)

        def loss(batch: int) -> torch.Tensor:
            z0 = sample_source(batch, dim, noise, device=probe.device)
            return cfm_loss(model, z0, latents[:batch], conditions[:batch], generator=noise)

        return training_rate(model, loss, batch_size, probe, lr=lr)
    return measure


def steps_per_epoch(n: int, batch: int) -> int:
    """Mini-batches of one pass over ``n`` items, the last one partial (as ``epoch_batches`` makes them)."""
    return math.ceil(n / batch)


def unit_images(n: int, device: torch.device, shape: tuple[int, ...]) -> torch.Tensor:
    """``n`` uniform random images in [0, 1]. Shapes: ``-> (n, *shape)``."""
    return torch.rand(n, *shape, device=device)


def random_labels(n: int, device: torch.device, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """``n`` uniform random class indices. Shapes: ``-> (n,)`` int64."""
    return torch.randint(0, num_classes, (n,), device=device)


def random_probabilities(n: int, device: torch.device, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """``n`` random probability vectors, a classifier's soft output. Shapes: ``-> (n, num_classes)``."""
    return torch.randn(n, num_classes, device=device).softmax(dim=1)


# Helix (Dombrowski et al. Sec. 4.1.1) -------------------------------------------------------------

def helix_work(settings: helix.HelixSettings) -> list[Stage]:
    """The helix chapter: flow and classifier training on fresh batches, then both searches from ``search_n`` starts."""
    data = helix.HelixData()

    def flow(probe: Probe) -> Rate:
        model = coupling_flow(HELIX_KEEP_MASKS, settings.flow_hidden).to(probe.device)
        draws = torch.Generator().manual_seed(0)
        return training_rate(model, lambda b: flow_nll(model, data.sample(b, draws).to(probe.device)),
                             settings.flow_batch, probe, lr=settings.flow_lr)

    def classifier(probe: Probe) -> Rate:
        model = helix.HelixClassifier(settings.classifier_hidden).to(probe.device)
        draws = torch.Generator().manual_seed(0)

        def loss(batch: int) -> torch.Tensor:
            x = data.sample(batch, draws).to(probe.device)
            return F.binary_cross_entropy(model(x), helix.helix_labels(x))

        return training_rate(model, loss, settings.classifier_batch, probe, lr=settings.classifier_lr)

    def search(in_z: bool) -> Callable[[Probe], Rate]:
        def measure(probe: Probe) -> Rate:
            model = helix.HelixClassifier(settings.classifier_hidden).to(probe.device).eval()
            generator = coupling_flow(HELIX_KEEP_MASKS, settings.flow_hidden).to(probe.device).eval()

            def make_run(batch: int) -> Callable[[int], float]:
                x = data.sample(batch, torch.Generator().manual_seed(0)).to(probe.device)

                def run(steps: int) -> float:
                    limited = dataclasses.replace(settings, search_max_steps=steps)
                    result = (helix.search_in_z(x, model, generator, limited) if in_z
                              else helix.search_in_x(x, model, limited))
                    return float(result.steps.sum()) / settings.search_max_steps
                return run

            return batched_rate(make_run, settings.search_n, probe)
        return measure

    return [Stage("flow (RealNVP)", TRAINING_STEPS, settings.flow_steps, flow),
            Stage("classifier", TRAINING_STEPS, settings.classifier_steps, classifier),
            Stage("search in X", SEARCHES, settings.search_n, search(in_z=False)),
            Stage("search in Z", SEARCHES, settings.search_n, search(in_z=True))]


# Square (LeapFactual Sec. 3.2.2) ------------------------------------------------------------------

def square_leaps(settings: square.SquareSettings) -> int:
    """Leaps of one square run: replacement, the lift of every class (half a leap each), the blending
    step sizes, injection, settling, LeapFactual, and both solvers of the throughput benchmark."""
    per_point = (1 + square.NUM_CLASSES / 2 + len(square.BLEND_GAMMAS) + settings.leap_n_inject
                 + settings.eval_settle_leaps + settings.leap_n_blend + settings.leap_n_inject)
    return round(settings.eval_n * per_point + 2 * settings.bench_n)


def square_work(settings: square.SquareSettings) -> list[Stage]:
    """The square chapter: the CE-CFM field on fresh batches, then its leaps on ``eval_n`` points at once."""
    data = square.SquareData()

    def field(probe: Probe) -> Rate:
        model = ConditionalVelocityMLP(data.dim, data.num_classes, settings.flow_hidden,
                                       settings.flow_layers).to(probe.device)
        draws, times = torch.Generator().manual_seed(0), torch.Generator(device=probe.device).manual_seed(0)

        def loss(batch: int) -> torch.Tensor:
            z1, labels = data.sample(batch, draws)
            z0 = data.sample_source(batch, draws)
            return cfm_loss(model, z0.to(probe.device), z1.to(probe.device), labels.to(probe.device),
                            generator=times)

        return training_rate(model, loss, settings.flow_batch, probe, lr=settings.flow_lr)

    def leaps(probe: Probe) -> Rate:
        model = ConditionalVelocityMLP(data.dim, data.num_classes, settings.flow_hidden,
                                       settings.flow_layers).to(probe.device).eval()

        def make_run(batch: int) -> Callable[[int], float]:
            draws = torch.Generator().manual_seed(0)
            z, labels = data.sample(batch, draws)
            target = square.other_labels(labels, draws)

            def run(repeats: int) -> float:
                square.progressive(model, z.to(probe.device), target, repeats, settings.leap_gamma_blend, 0,
                                   settings.leap_gamma_inject_lift, settings.leap_gamma_inject_land,
                                   square.solver(settings))
                return batch * repeats
            return run

        return batched_rate(make_run, settings.eval_n, probe)

    return [Stage("CE-CFM field", TRAINING_STEPS, settings.flow_steps, field),
            Stage("leaps (dopri5)", LEAPS, square_leaps(settings), leaps)]


# MNIST, diffeomorphic counterfactuals (Dombrowski et al. Sec. 4.1.2-4.2) -----------------------------

def mnist_diffeo_work(settings: mnist_diffeo.MnistDiffeoSettings) -> list[Stage]:
    """The MNIST diffeomorphic chapter: flow, CNN, VAE and the two IM1 autoencoders; bits per dimension; the
    searches in X, in the flow's Z and in the VAE's latent; the ``J J^T`` spectra."""
    shape, target = mnist_diffeo.IMAGE_SHAPE, mnist_diffeo.TARGET_CLASS
    im1_images = MNIST_TRAIN_PER_DIGIT[target] + MNIST_TRAIN_PER_DIGIT[mnist_diffeo.SOURCE_CLASS]

    def flow(probe: Probe) -> Rate:
        model = mnist_realnvp(settings.flow_width, settings.flow_res_blocks).to(probe.device)
        images = unit_images(settings.flow_batch, probe.device, shape)
        dequantise = torch.Generator(device=probe.device).manual_seed(0)

        def loss(batch: int) -> torch.Tensor:
            return (-model.log_prob(images[:batch], noise=True, generator=dequantise).mean()
                    + FLOW_GAIN_PENALTY * model.gain_penalty() + l2_penalty(model, settings.flow_weight_decay))

        return training_rate(model, loss, settings.flow_batch, probe, lr=settings.flow_lr,
                             precision=settings.flow_precision)

    def bits_per_dim(probe: Probe) -> Rate:
        model = mnist_realnvp(settings.flow_width, settings.flow_res_blocks).to(probe.device).eval()
        dequantise = torch.Generator(device=probe.device).manual_seed(0)

        def make_run(batch: int) -> Callable[[int], float]:
            images = unit_images(batch, probe.device, shape)

            def run(repeats: int) -> float:
                for _ in range(repeats):
                    mnist_diffeo.bits_per_dim(model, images, dequantise)
                return batch * repeats
            return run

        return batched_rate(make_run, settings.eval_bpd_images, probe)

    def classifier(probe: Probe) -> Rate:
        model = MnistCNN().to(probe.device)
        images, labels = unit_images(settings.classifier_batch, probe.device, shape), random_labels(
            settings.classifier_batch, probe.device)
        return training_rate(model, lambda b: F.cross_entropy(model(images[:b]), labels[:b])
                             + l2_penalty(model, settings.classifier_weight_decay),
                             settings.classifier_batch, probe, lr=settings.classifier_lr,
                             precision=settings.classifier_precision)

    def autoencoder(batch_size: int, lr: float, precision: str) -> Callable[[Probe], Rate]:
        def measure(probe: Probe) -> Rate:
            model = ConvVAE().to(probe.device)
            images = unit_images(batch_size, probe.device, shape)
            return training_rate(model, lambda b: model.loss(images[:b]), batch_size, probe, lr=lr,
                                 precision=precision)
        return measure

    def search(space: str, lr: float, max_steps: int) -> Callable[[Probe], Rate]:
        def measure(probe: Probe) -> Rate:
            model = MnistCNN().to(probe.device).eval()
            generator = (mnist_realnvp(settings.flow_width, settings.flow_res_blocks) if space == "flow"
                         else ConvVAE()).to(probe.device).eval()

            def make_run(batch: int) -> Callable[[int], float]:
                x = unit_images(batch, probe.device, shape)
                targets = torch.full((batch,), target, device=probe.device)

                def run(steps: int) -> float:
                    result = (search_in_x(x, model, targets, lr, steps, chunk=batch) if space == "x"
                              else search_in_latent(x, model, generator.encode, generator.decode, targets, lr, steps,
                                                    chunk=batch))
                    return float(result.steps.sum()) / max_steps
                return run

            return batched_rate(make_run, settings.search_chunk, probe)
        return measure

    def spectrum(probe: Probe) -> Rate:
        model = mnist_realnvp(settings.flow_width, settings.flow_res_blocks).to(probe.device).eval()
        outputs = math.prod(shape)

        def make_run(batch: int) -> Callable[[int], float]:
            z = mnist_diffeo.flow_latents(model, unit_images(batch, probe.device, shape))

            def run(passes: int) -> float:
                rows = min(passes, outputs)
                mnist_diffeo.metric_spectrum(lambda latent: model.decode(latent).flatten(1)[:, :rows], z)
                return batch * rows / outputs
            return run

        return batched_rate(make_run, settings.eval_spectrum_points, probe)

    def epochs(count: int, batch: int) -> int:
        return count * steps_per_epoch(MNIST_TRAIN, batch)

    return [
        Stage("flow (RealNVP)", TRAINING_STEPS, epochs(settings.flow_epochs, settings.flow_batch), flow),
        Stage("bits per dimension", IMAGES, settings.eval_bpd_images, bits_per_dim),
        Stage("classifier (CNN)", TRAINING_STEPS, epochs(settings.classifier_epochs, settings.classifier_batch),
              classifier),
        Stage("search in X", SEARCHES, settings.search_n, search("x", settings.search_lr_x, settings.search_max_steps)),
        Stage("search in Z (flow)", SEARCHES, settings.search_n,
              search("flow", settings.search_lr_z, settings.search_max_steps)),
        Stage("IM1 autoencoders (two digits)", TRAINING_STEPS,
              settings.im1_epochs * steps_per_epoch(im1_images, settings.im1_batch),
              autoencoder(settings.im1_batch, settings.im1_lr, settings.im1_precision)),
        Stage("J J^T spectrum (784 backward passes each)", JACOBIANS, settings.eval_spectrum_points, spectrum),
        Stage("VAE", TRAINING_STEPS, epochs(settings.vae_epochs, settings.vae_batch),
              autoencoder(settings.vae_batch, settings.vae_lr, settings.vae_precision)),
        Stage("search in the VAE latent", SEARCHES, settings.search_n,
              search("vae", settings.search_lr_vae, settings.search_max_steps_vae)),
    ]


# MNIST, LeapFactual (LeapFactual Sec. 4.1, Table 2) -----------------------------------------------

def mnist_leap_work(settings: mnist_leap.MnistLeapSettings) -> list[Stage]:
    """The Morpho-MNIST LeapFactual chapter: classifier, VAE, conditional VAE and CE-CFM field for every run
    (and a field for the k-NN); per run the Opt-based searches, LeapFactual's leaps and the morphometrics of
    the reference and four methods; the k-NN's votes and LeapFactual's leaps on the k-NN."""
    shape = mnist_leap.IMAGE_SHAPE
    trainings = settings.eval_runs if settings.eval_retrain else 1
    leaps_per_image = settings.leap_n_blend + settings.leap_n_inject

    def training(build: Callable[[], nn.Module], batch_size: int, lr: float, precision: str,
                 loss: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
                 ) -> Callable[[Probe], Rate]:
        def measure(probe: Probe) -> Rate:
            model = build().to(probe.device)
            images = unit_images(batch_size, probe.device, shape)
            conditions = random_probabilities(batch_size, probe.device)
            noise = torch.Generator(device=probe.device).manual_seed(0)
            return training_rate(model, lambda b: loss(model, images[:b], conditions[:b], noise), batch_size,
                                 probe, lr=lr, precision=precision)
        return measure

    def networks(probe: Probe) -> tuple[MorphoClassifier, MorphoVAE, ConditionalVelocityMLP]:
        return (MorphoClassifier().to(probe.device).eval(), MorphoVAE().to(probe.device).eval(),
                ConditionalVelocityMLP(MORPHO_LATENT_DIM, NUM_CLASSES).to(probe.device).eval())

    def opt_search(probe: Probe) -> Rate:
        classifier, vae, _ = networks(probe)

        def make_run(batch: int) -> Callable[[int], float]:
            x, target = unit_images(batch, probe.device, shape), random_labels(batch, probe.device)

            def run(steps: int) -> float:
                opt_counterfactuals(vae.encode, vae.decode, classifier.probabilities, x, target, steps=steps,
                                    lr=settings.search_lr, distance_weight=settings.search_distance_weight,
                                    weight_decay=settings.search_weight_decay)
                return batch * steps / settings.search_steps
            return run

        return batched_rate(make_run, settings.eval_batch, probe)

    def leaps(on_knn: bool) -> Callable[[Probe], Rate]:
        def measure(probe: Probe) -> Rate:
            classifier, vae, velocity = networks(probe)
            black_box = knn() if on_knn else classifier.probabilities

            def make_run(batch: int) -> Callable[[int], float]:
                x, target = unit_images(batch, probe.device, shape), random_labels(batch, probe.device)

                def run(repeats: int) -> float:
                    leap_counterfactuals(velocity, vae, black_box, x, target, n_blend=repeats,
                                         gamma_blend=settings.leap_gamma_blend, n_inject=0,
                                         gamma_inject=settings.leap_gamma_inject, solver=mnist_leap.solver(settings))
                    return batch * repeats
                return run

            return batched_rate(make_run, settings.eval_batch, probe)
        return measure

    def knn() -> mnist_leap.KnnClassifier:
        return mnist_leap.KnnClassifier(unit_images(MNIST_TRAIN, torch.device("cpu"), shape),
                                        torch.arange(MNIST_TRAIN) % NUM_CLASSES, settings.knn_neighbours)

    def knn_votes(probe: Probe) -> Rate:
        classifier = knn()

        def make_run(batch: int) -> Callable[[int], float]:
            x = unit_images(batch, probe.device, shape)

            def run(repeats: int) -> float:
                for _ in range(repeats):
                    classifier(x)
                return batch * repeats
            return run

        return batched_rate(make_run, settings.eval_batch, probe)

    def morphometrics(probe: Probe) -> Rate:
        digits = load_mnist("test", source="offline").images

        def make_run(batch: int) -> Callable[[int], float]:
            images = digits[torch.arange(batch) % len(digits)]

            def run(repeats: int) -> float:
                for _ in range(repeats):
                    morpho.measure(images, workers=settings.eval_morpho_workers, progress=False)
                return batch * repeats
            return run

        return batched_rate(make_run, settings.eval_n, probe,
                            first_batch=morpho.CHUNK_SIZE * settings.eval_morpho_workers)

    def epochs(count: int, batch: int) -> int:
        return count * steps_per_epoch(MNIST_TRAIN, batch)

    return [
        Stage("classifier (every run)", TRAINING_STEPS,
              trainings * epochs(settings.classifier_epochs, settings.classifier_batch),
              training(MorphoClassifier, settings.classifier_batch, settings.classifier_lr,
                       settings.classifier_precision, lambda model, x, c, noise: F.cross_entropy(
                           model(x), c.argmax(dim=1)))),
        Stage("VAE (every run)", TRAINING_STEPS, trainings * epochs(settings.vae_epochs, settings.vae_batch),
              training(MorphoVAE, settings.vae_batch, settings.vae_lr, settings.vae_precision,
                       lambda model, x, c, noise: morpho_vae_loss(model, x, noise))),
        Stage("conditional VAE (every run)", TRAINING_STEPS,
              trainings * epochs(settings.cvae_epochs, settings.cvae_batch),
              training(lambda: MorphoVAE(NUM_CLASSES), settings.cvae_batch, settings.cvae_lr,
                       settings.cvae_precision, lambda model, x, c, noise: morpho_vae_loss(model, x, noise, c))),
        Stage("CE-CFM fields (every run, and the k-NN's)", TRAINING_STEPS,
              (trainings + 1) * epochs(settings.flow_epochs, settings.flow_batch),
              field_training(MORPHO_LATENT_DIM, settings.flow_batch, settings.flow_lr)),
        Stage("Opt-based search (every run)", SEARCHES, settings.eval_runs * settings.eval_n, opt_search),
        Stage("LeapFactual leaps (every run)", LEAPS, settings.eval_runs * settings.eval_n * leaps_per_image,
              leaps(on_knn=False)),
        Stage("morphometrics (every run)", IMAGES,
              settings.eval_runs * (1 + len(mnist_leap.METHODS)) * settings.eval_n, morphometrics),
        Stage("k-NN votes on the training set", IMAGES, MNIST_TRAIN, knn_votes),
        Stage("LeapFactual leaps on the k-NN", LEAPS, settings.eval_n * leaps_per_image, leaps(on_knn=True)),
    ]


# MNIST, both papers head to head -----------------------------------------------------------------

def mnist_compare_work(settings: mnist_compare.MnistCompareSettings) -> list[Stage]:
    """The head-to-head chapter: the LeapFactual chapter's four models and the diffeomorphic chapter's RealNVP and
    IM1 autoencoders (ten digits here) for every run, a CE-CFM field on the RealNVP's 784-dim latents; per run and
    image (random targets and 4 -> 9) the searches in X and Z, the Opt-based search, the leaps in the VAE latent and
    in Z, and the morphometrics and bits per dimension of the inputs and seven methods.

    The stages shared with the two MNIST chapters are theirs, measured at this chapter's settings; the searches in X
    and Z are timed with the diffeomorphic chapter's CNN, a larger network than the explained one (an upper bound).
    """
    images = settings.eval_runs * (settings.eval_n + settings.eval_n_4to9)
    trainings = settings.eval_runs if settings.eval_retrain else 1
    scored = images * (1 + len(mnist_compare.METHODS))
    leap_stages = {stage.name: stage for stage in mnist_leap_work(dataclasses.replace(
        mnist_leap.PAPER, **{name: getattr(settings, name) for name in SHARED_LEAP_FIELDS},
        search_steps=settings.search_opt_steps, search_lr=settings.search_opt_lr,
        search_distance_weight=settings.search_opt_distance_weight,
        search_weight_decay=settings.search_opt_weight_decay,
        eval_n=settings.eval_n + settings.eval_n_4to9))}
    diffeo_stages = {stage.name: stage for stage in mnist_diffeo_work(dataclasses.replace(
        mnist_diffeo.PAPER, **{f"flow_{name}": getattr(settings, f"realnvp_{name}") for name in REALNVP_FIELDS},
        im1_epochs=settings.im1_epochs, im1_batch=settings.im1_batch, im1_lr=settings.im1_lr,
        im1_precision=settings.im1_precision, search_lr_x=settings.search_lr_x, search_lr_z=settings.search_lr_z,
        search_max_steps=settings.search_max_steps, search_chunk=settings.search_chunk, search_n=images,
        eval_bpd_images=scored))}
    field_steps = settings.flow_epochs * steps_per_epoch(MNIST_TRAIN, settings.flow_batch)
    realnvp_steps = settings.realnvp_epochs * steps_per_epoch(MNIST_TRAIN, settings.realnvp_batch)
    im1_steps = settings.im1_epochs * sum(steps_per_epoch(n, settings.im1_batch) for n in MNIST_TRAIN_PER_DIGIT)
    flat = math.prod(mnist_compare.IMAGE_SHAPE)

    def exact_leaps(probe: Probe) -> Rate:
        classifier = MorphoClassifier().to(probe.device).eval()
        latent_model = mnist_compare.FlowLatents(
            mnist_realnvp(settings.realnvp_width, settings.realnvp_res_blocks).to(probe.device).eval())
        velocity = ConditionalVelocityMLP(flat, NUM_CLASSES).to(probe.device).eval()

        def make_run(batch: int) -> Callable[[int], float]:
            x, target = unit_images(batch, probe.device, mnist_compare.IMAGE_SHAPE), random_labels(batch, probe.device)

            def run(repeats: int) -> float:
                with torch.no_grad():
                    leapfactual(velocity, latent_model, classifier.probabilities, latent_model.encode(x), target,
                                n_blend=repeats, gamma_blend=settings.leap_z_gamma_blend,
                                solver=mnist_compare.solver(settings))
                return batch * repeats
            return run

        return batched_rate(make_run, settings.eval_batch, probe)

    def renamed(stage: Stage, name: str, units: float) -> Stage:
        return dataclasses.replace(stage, name=name, units=units)

    return [
        leap_stages["classifier (every run)"],
        leap_stages["VAE (every run)"],
        leap_stages["conditional VAE (every run)"],
        renamed(leap_stages["CE-CFM fields (every run, and the k-NN's)"], "CE-CFM field on VAE latents (every run)",
                trainings * field_steps),
        renamed(diffeo_stages["flow (RealNVP)"], "RealNVP (every run)", trainings * realnvp_steps),
        Stage("CE-CFM field on RealNVP latents (every run)", TRAINING_STEPS, trainings * field_steps,
              field_training(flat, settings.flow_batch, settings.flow_lr)),
        renamed(diffeo_stages["IM1 autoencoders (two digits)"], "IM1 autoencoders (ten digits, every run)",
                trainings * im1_steps),
        renamed(diffeo_stages["search in X"], "search in X", images),
        renamed(diffeo_stages["search in Z (flow)"], "search in Z (RealNVP)", images),
        renamed(leap_stages["Opt-based search (every run)"], "Opt-based search in the VAE latent", images),
        renamed(leap_stages["LeapFactual leaps (every run)"], "LeapFactual leaps in the VAE latent",
                images * (settings.leap_n_blend + settings.leap_n_inject)),
        Stage("LeapFactual leaps in Z (RealNVP)", LEAPS, images * settings.leap_n_blend, exact_leaps),
        renamed(leap_stages["morphometrics (every run)"], "morphometrics (inputs and seven methods)", scored),
        renamed(diffeo_stages["bits per dimension"], "bits per dimension (inputs and seven methods)", scored),
    ]


SHARED_LEAP_FIELDS = tuple(name for name in (f.name for f in dataclasses.fields(mnist_leap.MnistLeapSettings))
                           if name.split("_")[0] in ("data", "classifier", "vae", "cvae", "flow", "leap")
                           or name in ("eval_runs", "eval_retrain", "eval_batch", "eval_morpho_workers"))
"""The head-to-head chapter's settings that mean the same as the LeapFactual chapter's."""
REALNVP_FIELDS = ("width", "res_blocks", "epochs", "batch", "lr", "weight_decay", "precision")
"""``realnvp_<name>`` of the head-to-head chapter is the diffeomorphic chapter's ``flow_<name>``."""


# Galaxy10 (LeapFactual Sec. 4.2, Tables 3, 5, 6) --------------------------------------------------

@dataclass(frozen=True)
class GalaxySizes:
    """Galaxy10 DECaLS as the chapter splits it (:func:`latentcf.data.galaxy10.official_split`, ``weak_subset``):
    ``images`` in all, ``train`` and ``test`` images, the ``weak`` set, and ``counterfactuals`` (nine per
    weak-set image)."""

    images: int
    train: int
    test: int
    weak: int
    counterfactuals: int


def galaxy_sizes(settings: galaxy_leap.GalaxyLeapSettings) -> GalaxySizes:
    """The sizes of :class:`GalaxySizes` from the published class counts and ``settings.data_weak_per_class``."""
    tests = [count // 10 for count in galaxy10.CLASS_COUNTS]
    trains = [count - test for count, test in zip(galaxy10.CLASS_COUNTS, tests)]
    weak = sum(min(settings.data_weak_per_class, train) for train in trains)
    return GalaxySizes(sum(galaxy10.CLASS_COUNTS), sum(trains), sum(tests), weak, (galaxy10.NUM_CLASSES - 1) * weak)


def galaxy_classifier_images(settings: galaxy_leap.GalaxyLeapSettings) -> list[int]:
    """The training-set size of every VGG16-BN the chapter trains: the weak and strong classifiers, then in each
    Table 3 run (run 0 reuses those two) the weak set plus each share of CEs and of reliable CEs."""
    sizes = galaxy_sizes(settings)
    extra = [sizes.weak + round(sizes.counterfactuals * percent / 100)
             for _ in galaxy_leap.CE_KINDS for percent in settings.table3_fractions]
    return [sizes.weak, sizes.train] + [n for run in range(settings.table3_runs)
                                        for n in ([sizes.weak, sizes.train] if run else []) + extra]


def galaxy_classifier_steps(settings: galaxy_leap.GalaxyLeapSettings, n: int) -> int:
    """Training steps of a VGG16-BN on ``n`` images: ``classifier_epochs``, or enough for ``classifier_min_steps``."""
    per_epoch = steps_per_epoch(n, settings.classifier_batch)
    return max(settings.classifier_epochs, math.ceil(settings.classifier_min_steps / per_epoch)) * per_epoch


def galaxy_leaps(settings: galaxy_leap.GalaxyLeapSettings) -> int:
    """Leaps of the CE set (``N_b`` blending, the injections up to the largest of Table 6, the blending beyond
    ``N_b`` of Table 5) and of Figure 9's step-size sweep on its sources."""
    sizes = galaxy_sizes(settings)
    inject = max(0, *settings.leap_inject_sweep, settings.leap_n_inject)
    more_blending = max(0, max(settings.leap_blend_sweep) - settings.leap_n_blend)
    panels = len(settings.leap_gamma_lift_sweep) + len(settings.leap_gamma_land_sweep)
    sweep_ces = (galaxy10.NUM_CLASSES - 1) * min(settings.leap_gamma_sweep_sources, sizes.weak)
    return (sizes.counterfactuals * (settings.leap_n_blend + inject + more_blending)
            + panels * sweep_ces * (settings.leap_n_blend + max(settings.leap_gamma_sweep_inject)))


def galaxy_scored_images(settings: galaxy_leap.GalaxyLeapSettings) -> int:
    """Decoded and scored images: every checkpoint of every CE (Tables 5 and 6) and of Figure 9's sweep."""
    sizes = galaxy_sizes(settings)
    panels = len(settings.leap_gamma_lift_sweep) + len(settings.leap_gamma_land_sweep)
    sweep_ces = (galaxy10.NUM_CLASSES - 1) * min(settings.leap_gamma_sweep_sources, sizes.weak)
    return (sizes.counterfactuals * (1 + len(galaxy_leap.checkpoint_names(settings)))
            + panels * len(settings.leap_gamma_sweep_inject) * sweep_ces)


def galaxy_sources(n: int) -> torch.Tensor:
    """``n`` random uint8 images of Galaxy10's shape, on the CPU as the chapter reads them. ``-> (n, 3, 256, 256)``."""
    return torch.randint(0, 256, (n, 3, GALAXY_SOURCE_SIZE, GALAXY_SOURCE_SIZE), dtype=torch.uint8)


def galaxy_models(settings: galaxy_leap.GalaxyLeapSettings, device: torch.device) -> galaxy_leap.GalaxyModels:
    """The chapter's networks at the settings' sizes, in eval mode and in the layout :func:`fit` leaves them in,
    with LPIPS (its published weights change no cost)."""
    velocity = ConditionalVelocityMLP(galaxy_leap.LATENT_DIM, galaxy_leap.NUM_CLASSES, settings.flow_width,
                                      settings.flow_layers)
    networks = [galaxy_leap.build_wae(settings), galaxy_leap.build_classifier(settings),
                galaxy_leap.build_classifier(settings), velocity]
    wae, weak, strong, velocity = (prefer_channels_last(network.to(device)).eval() for network in networks)
    return galaxy_leap.GalaxyModels(wae, weak, strong, velocity, {}, settings.eval_batch, LPIPS().to(device).eval())


def galaxy_leap_work(settings: galaxy_leap.GalaxyLeapSettings) -> list[Stage]:
    """The Galaxy10 chapter: the JPEG copy of the data set; the WAE-MMD; every VGG16-BN (weak, strong, Table 3)
    and their forward passes (batch-norm recalibration, test scores); the CE-CFM field; the leaps and the
    scores of the CE set and of Figure 9's sweep."""
    sizes = galaxy_sizes(settings)
    counterfactual_batch = (galaxy10.NUM_CLASSES - 1) * settings.leap_sources_per_batch

    def transformed(sources: torch.Tensor, device: torch.device,
                    augment: torch.Generator | None = None) -> torch.Tensor:
        """Source images as the chapter reads them (:meth:`GalaxyData.images`). ``(B, 3, 256, 256) -> (B, 3, S, S)``."""
        return galaxy_leap.transform(sources.to(device), settings.data_crop, settings.data_image_size, augment)

    def jpeg(probe: Probe) -> Rate:
        def make_run(batch: int) -> Callable[[int], float]:
            labels = torch.arange(batch) % galaxy10.NUM_CLASSES
            rendered = galaxy10.render_galaxies(labels, GALAXY_SOURCE_SIZE, torch.Generator().manual_seed(0))

            def run(repeats: int) -> float:
                for _ in range(repeats):
                    jpeg_round_trip(rendered, settings.data_jpeg_quality)
                return batch * repeats
            return run

        return batched_rate(make_run, sizes.images, probe)

    def wae(probe: Probe) -> Rate:
        model = galaxy_leap.build_wae(settings).to(probe.device)
        perceptual = PerceptualLoss(settings.wae_perceptual_width).to(probe.device).eval()
        discriminator = PatchDiscriminator(settings.wae_discriminator_base).to(probe.device)
        optimizer = torch.optim.AdamW(discriminator.parameters(), lr=settings.wae_discriminator_lr)
        sources, augment = galaxy_sources(settings.wae_batch), torch.Generator().manual_seed(0)

        def loss(batch: int) -> torch.Tensor:
            x = transformed(sources[:batch], probe.device, augment)
            x_rec, z = model(x)
            galaxy_leap.discriminator_step(discriminator, optimizer, x, x_rec, settings.wae_clip)
            return (F.mse_loss(x_rec, x) + settings.wae_perceptual_weight * perceptual(x_rec, x)
                    + imq_mmd(z, torch.randn_like(z))
                    + settings.wae_gan_weight * lsgan_generator_loss(discriminator(x_rec)))

        return training_rate(model, loss, settings.wae_batch, probe, lr=settings.wae_lr,
                             precision=settings.wae_precision, clip_norm=settings.wae_clip,
                             weight_decay=settings.wae_weight_decay)

    def classifier(probe: Probe) -> Rate:
        model = galaxy_leap.build_classifier(settings).to(probe.device)
        sources, augment = galaxy_sources(settings.classifier_batch), torch.Generator().manual_seed(0)
        labels = random_labels(settings.classifier_batch, probe.device)
        return training_rate(model, lambda b: F.cross_entropy(model(transformed(sources[:b], probe.device, augment)),
                                                              labels[:b]),
                             settings.classifier_batch, probe, lr=settings.classifier_lr,
                             precision=settings.classifier_precision, clip_norm=settings.classifier_clip,
                             weight_decay=settings.classifier_weight_decay)

    def forward_passes(probe: Probe) -> Rate:
        model = prefer_channels_last(galaxy_leap.build_classifier(settings).to(probe.device)).eval()

        def make_run(batch: int) -> Callable[[int], float]:
            sources = galaxy_sources(batch)

            def run(repeats: int) -> float:
                for _ in range(repeats):
                    galaxy_leap.probabilities(model, transformed(sources, probe.device), settings.eval_batch)
                return batch * repeats
            return run

        return batched_rate(make_run, sizes.test, probe)

    def field(probe: Probe) -> Rate:
        models = galaxy_models(settings, probe.device)
        velocity = ConditionalVelocityMLP(galaxy_leap.LATENT_DIM, galaxy_leap.NUM_CLASSES, settings.flow_width,
                                          settings.flow_layers).to(probe.device)
        sources, augment = galaxy_sources(settings.flow_batch), torch.Generator().manual_seed(0)
        noise = torch.Generator(device=probe.device).manual_seed(0)

        def loss(batch: int) -> torch.Tensor:
            with torch.no_grad():
                x = transformed(sources[:batch], probe.device, augment)
                z1, label = models.wae.encode(x), models.weak(x).argmax(dim=1)
            z0 = sample_source(len(z1), galaxy_leap.LATENT_DIM, noise, device=probe.device)
            return cfm_loss(velocity, z0, z1, label, generator=noise)

        return training_rate(velocity, loss, settings.flow_batch, probe, lr=settings.flow_lr)

    def leaps(probe: Probe) -> Rate:
        models = galaxy_models(settings, probe.device)

        def make_run(batch: int) -> Callable[[int], float]:
            z = torch.randn(batch, galaxy_leap.LATENT_DIM, device=probe.device)
            target = random_labels(batch, probe.device)

            def run(repeats: int) -> float:
                galaxy_leap.leap_checkpoints(models, z, target, dataclasses.replace(settings, leap_n_blend=repeats),
                                             settings.leap_gamma_inject_lift, settings.leap_gamma_inject_land,
                                             (), ())
                return batch * repeats
            return run

        return batched_rate(make_run, counterfactual_batch, probe)

    def scores(probe: Probe) -> Rate:
        models = galaxy_models(settings, probe.device)

        def make_run(batch: int) -> Callable[[int], float]:
            z = torch.randn(batch, galaxy_leap.LATENT_DIM, device=probe.device)
            x_input = transformed(galaxy_sources(batch), probe.device)

            def run(repeats: int) -> float:
                for _ in range(repeats):
                    galaxy_leap.score_images(models, models.decode(z), x_input, settings.eval_batch)
                return batch * repeats
            return run

        return batched_rate(make_run, counterfactual_batch, probe)

    classifier_images = galaxy_classifier_images(settings)
    tested = 2 + settings.table3_runs * (2 + len(galaxy_leap.CE_KINDS) * len(settings.table3_fractions))
    stages = [Stage("JPEG copy of the data set", IMAGES, sizes.images, jpeg)] if settings.data_jpeg_quality else []
    return stages + [
        Stage("WAE-MMD with perceptual loss and PatchGAN", TRAINING_STEPS,
              settings.wae_epochs * steps_per_epoch(sizes.train, settings.wae_batch), wae),
        Stage(f"VGG16-BN classifiers ({len(classifier_images)})", TRAINING_STEPS,
              sum(galaxy_classifier_steps(settings, n) for n in classifier_images), classifier),
        Stage(f"VGG16-BN forward passes (batch norm; {tested} test scores)", IMAGES,
              sum(classifier_images) + tested * sizes.test, forward_passes),
        Stage("CE-CFM field", TRAINING_STEPS, settings.flow_epochs * steps_per_epoch(sizes.weak, settings.flow_batch),
              field),
        Stage("leaps (CEs, Tables 5 and 6, Figure 9)", LEAPS, galaxy_leaps(settings), leaps),
        Stage("decoding and scores of the checkpoints", IMAGES, galaxy_scored_images(settings), scores),
    ]


# The work models and the projection ---------------------------------------------------------------

WORK_MODELS: dict[str, Callable[[Any], list[Stage]]] = {
    "helix": helix_work,
    "mnist_diffeo": mnist_diffeo_work,
    "square": square_work,
    "mnist_leap": mnist_leap_work,
    "galaxy_leap": galaxy_leap_work,
    "mnist_compare": mnist_compare_work,
}
"""The work model of every chapter: ``WORK_MODELS[name](chapter.module.PAPER) -> [Stage, ...]``."""


def work_models(chapters: list[Chapter]) -> dict[str, list[Stage]]:
    """The stages of each chapter's paper-scale run; chapters without a work model raise :class:`LatentcfError`."""
    missing = [f"'{chapter.name}'" for chapter in chapters if chapter.name not in WORK_MODELS]
    if missing:
        raise LatentcfError(f"no work model for chapter {', '.join(missing)}: add one to WORK_MODELS in "
                            f"latentcf/book/bench.py before benchmarking it")
    return {chapter.name: WORK_MODELS[chapter.name](chapter.settings("paper")) for chapter in chapters}


def measure_stage(chapter: str, stage: Stage, probe: Probe) -> dict[str, Any]:
    """Time one stage (seeded; the inner progress bars silenced) and return its row of the results file."""
    torch.manual_seed(0)
    with contextlib.redirect_stderr(io.StringIO()):
        rate = stage.measure(probe)
    return {"chapter": chapter, "stage": stage.name, "unit": stage.unit, "units": stage.units,
            "units_per_s": rate.units_per_s, "measured_batch": rate.batch, "paper_batch": rate.full_batch,
            "projected_s": stage.units / rate.units_per_s}


def project(work: dict[str, list[Stage]], probe: Probe) -> dict[str, Any]:
    """Measure every stage of ``work`` (chapter -> stages) and project its time; one progress line per stage.

    Returns ``{"stages": [row, ...], "chapters": {name: seconds}, "total_s": seconds}``.
    """
    rows, out = [], sys.stderr
    for chapter, stages in work.items():
        for stage in tqdm(stages, desc=f"bench {chapter}", unit="stage", file=out):
            row = measure_stage(chapter, stage, probe)
            tqdm.write(f"{chapter}: {stage.name}: {stage.units:,.0f} {stage.unit} at {row['units_per_s']:.3g}/s "
                       f"-> {duration(row['projected_s'])}", file=out)
            rows.append(row)
    chapters = {name: sum(row["projected_s"] for row in rows if row["chapter"] == name) for name in work}
    return {"stages": rows, "chapters": chapters, "total_s": sum(chapters.values())}


def device_name(device: torch.device) -> str:
    """The file name of a device's projection: ``cpu``, ``mps``, ``cuda-nvidia-h100-80gb-hbm3``."""
    if device.type != "cuda":
        return device.type
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def bench(names: list[str], device: str = "auto", seconds: float = SECONDS_PER_STAGE, note: str = "",
          out: Path | None = None) -> tuple[dict[str, Any], Path]:
    """Project the paper-scale time of the chapters ``names`` (``["all"]``: every chapter) on ``device``.

    Writes ``build/bench/<device name>.json`` (or ``out/<device name>.json``) with the device, torch's
    version and thread count, the date, the commit, ``note`` (which machine), every stage's numbers and the
    totals, and returns ``(document, path)``. An unknown chapter or device, and a registered chapter
    without a work model, raise :class:`LatentcfError` before anything is measured.
    """
    chosen = resolve_device(device)
    work = work_models(select_chapters(names))
    configure_device(chosen)
    document = {"device": device_description(chosen), "note": note, "torch": torch.__version__,
                "threads": torch.get_num_threads(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "git_sha": git_sha(), "seconds_per_stage": seconds,
                **project(work, Probe(chosen, seconds))}
    path = (out or build_dir() / BENCH_FOLDER) / f"{device_name(chosen)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return document, path


# Tables -------------------------------------------------------------------------------------------

def duration(seconds: float) -> str:
    """A wall time in words: ``"42 s"``, ``"12 min"``, ``"3.4 h"``, ``"2.1 days"``."""
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def table_rows(document: dict[str, Any]) -> list[list[str]]:
    """The projection as rows of text: a header, each stage, each chapter's total, the total.

    The batch column reads ``"2 of 256"`` where a stage was timed at a smaller batch than the paper's.
    """
    rows = [["chapter", "stage", "unit", "units", "batch", "units/s", "projected"]]
    for chapter, total in document["chapters"].items():
        rows += [[chapter, row["stage"], row["unit"], f"{row['units']:,.0f}", batch_text(row),
                  f"{row['units_per_s']:.3g}", duration(row["projected_s"])]
                 for row in document["stages"] if row["chapter"] == chapter]
        rows.append([chapter, "total", "", "", "", "", duration(total)])
    return rows + [["all", "total", "", "", "", "", duration(document["total_s"])]]


def batch_text(row: dict[str, Any]) -> str:
    """The batch a stage was timed at: ``"256"``, or ``"2 of 256"`` below the paper's batch."""
    if row["measured_batch"] == row["paper_batch"]:
        return f"{row['paper_batch']:,}"
    return f"{row['measured_batch']:,} of {row['paper_batch']:,}"


def format_table(document: dict[str, Any]) -> str:
    """The projection as an aligned plain-text table."""
    rows = table_rows(document)
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def provenance(document: dict[str, Any]) -> str:
    """One sentence on where and when a projection was measured."""
    machine = document["device"] + (f" ({document['note']})" if document["note"] else "")
    return (f"Measured on {machine} with torch {document['torch']} on {document['threads']} thread(s), "
            f"{document['date']}, commit `{short_commit(document['git_sha'])}`, "
            f"{document['seconds_per_stage']:g} s timed per stage.")


def markdown_table(document: dict[str, Any]) -> str:
    """The projection as a Markdown table with its provenance line; chapter totals in bold."""
    header, *rows = table_rows(document)
    lines = [provenance(document), "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"**{cell}**" if row[1] == "total" and cell else cell for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def committed_dir() -> Path:
    """The tracked folder of committed projections, one ``<device name>.json`` per machine."""
    return project_root() / "results" / BENCH_FOLDER


def render_projections(folder: Path) -> str:
    """Markdown of every committed projection in ``folder`` (``*.json``), or a sentence that there is none."""
    documents = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    if not documents:
        return "No projection has been committed yet: run `make bench` and copy its file to `results/bench/`.\n"
    return "\n".join(f"### {document['device']}\n\n{markdown_table(document)}" for document in documents)


def fill_projections_page(page: Path, folder: Path) -> None:
    """Replace the :data:`MARKER` line of ``page`` with :func:`render_projections` of ``folder``."""
    text = page.read_text()
    if MARKER not in text:
        raise LatentcfError(f"{page} has no '{MARKER}' line to fill")
    page.write_text(text.replace(MARKER, render_projections(folder)))
