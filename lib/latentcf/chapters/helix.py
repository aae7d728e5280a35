"""The helix toy of Dombrowski et al. (Sec. 4.1.1, App. B.1): data, models, distance, searches.

Data lie on the helix ``h(t) = (sin t, cos t, t)`` with ``t ~ U(-4, 4)``; the class is the upper
(``x3 > 0``) or lower half. A 12-layer RealNVP flow learns the distribution, a 3-256-1 MLP
classifies, and gradient ascent in X and in Z is compared by the distance of its results to the
helix. The official code of this toy is ``toy_example.ipynb`` in
https://github.com/annahdo/counterfactuals. Used in ``notebooks/helix``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from latentcf.core.cache import cached_model
from latentcf.core.runtime import generator, seed_stream
from latentcf.core.settings import stage_settings
from latentcf.core.training import Validation, fit
from latentcf.methods.geometry import batched_jacobian, induced_metric_eigen
from latentcf.methods.search import AscentResult, gradient_ascent
from latentcf.models.flows import HELIX_KEEP_MASKS, CouplingFlow, coupling_flow, flow_nll

T_RANGE = 4.0
"""The helix parameter is drawn from ``U(-T_RANGE, T_RANGE)``."""


@dataclass(frozen=True)
class HelixSettings:
    """Everything the helix chapter needs to know about its scale.

    ``flow_*``: the RealNVP's hidden width, training steps, batch (fresh helix points per step),
    Adam learning rate, and the held-out helix points and step interval of its validation (the
    weights with the lowest held-out loss are kept); ``classifier_*``: the same for the 3-256-1
    classifier; ``search_n``: the number of starts searched in X and in Z, ``search_lr`` and
    ``search_max_steps`` their Adam learning rate and step limit; ``eval_n``: the fresh helix points on which the flow's
    likelihood and the classifier's accuracy are measured; ``eval_tangent_points``: the helix
    points at which the flow's Jacobian is analysed.
    """

    scale: str
    flow_hidden: int
    flow_steps: int
    flow_batch: int
    flow_lr: float
    flow_val_n: int
    flow_val_every: int
    classifier_hidden: int
    classifier_steps: int
    classifier_batch: int
    classifier_lr: float
    search_n: int
    search_lr: float
    search_max_steps: int
    eval_n: int
    eval_tangent_points: int


PAPER = HelixSettings(scale="paper", flow_hidden=256, flow_steps=5000, flow_batch=500, flow_lr=1e-4,
                      flow_val_n=10_000, flow_val_every=100,
                      classifier_hidden=256, classifier_steps=3000, classifier_batch=500, classifier_lr=1e-4,
                      search_n=1000, search_lr=3e-2, search_max_steps=1000, eval_n=500, eval_tangent_points=24)
SMOKE = dataclasses.replace(
    PAPER,
    scale="smoke",
    flow_hidden=128,  # a narrower flow (about a quarter of the parameters) trains faster on a CPU
    flow_steps=1500,  # under a third of the paper's steps, for CPU minutes; the larger rate makes up for it
    flow_lr=5e-4,  # five times the paper's rate, so that 1,500 steps still reach a thin tube around the helix
    search_n=200,  # a fifth of the starts: enough for the medians, and each ascent in Z runs through the flow
    eval_tangent_points=12,  # half the helix points of Fig. 7 (left): a lighter figure and table
)
DRY_RUN = dataclasses.replace(PAPER, search_n=24, search_max_steps=20, eval_n=24, eval_tangent_points=4)
"""The paper scale cut to a few dozen items and searches of at most 20 steps, for ``reproduce --dry-run``
(training stops after two steps)."""


@dataclass(frozen=True)
class HelixData:
    """The helix distribution: ``h(t)`` with ``t ~ U(-t_range, t_range)``; training draws fresh batches from it."""

    t_range: float = T_RANGE

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` points on the helix, drawn with ``generator``. Returns ``(n, 3)`` on the CPU."""
        t = (torch.rand(n, generator=generator) - 0.5) * 2 * self.t_range
        return helix_point(t)


def load_data(settings: HelixSettings, device: torch.device) -> HelixData:
    """The helix distribution (the same at every scale).

    Points are drawn on the CPU with a CPU generator, so a seed gives the same points on every
    device; training moves each batch to ``device``.
    """
    return HelixData()


def helix_point(t: torch.Tensor) -> torch.Tensor:
    """``h(t) = (sin t, cos t, t)``. Shapes: ``t: (N,) -> (N, 3)``."""
    return torch.stack([torch.sin(t), torch.cos(t), t], dim=-1)


def helix_tangent(t: torch.Tensor) -> torch.Tensor:
    """Unit tangent ``h'(t) / |h'(t)| = (cos t, -sin t, 1) / sqrt(2)``. ``t: (N,) -> (N, 3)``."""
    return torch.stack([torch.cos(t), -torch.sin(t), torch.ones_like(t)], dim=-1) / 2**0.5


def sample_helix(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` points on the helix with ``t ~ U(-4, 4)``: :meth:`HelixData.sample`. Returns ``(n, 3)`` on the CPU."""
    return HelixData().sample(n, generator)


def helix_labels(x: torch.Tensor) -> torch.Tensor:
    """Ground truth: 1.0 on the upper half (``x3 > 0``), 0.0 below. ``x: (N, 3) -> (N,)``."""
    return (x[:, 2] > 0).float()


def distance_to_helix(points: torch.Tensor, grid: int = 512, newton_steps: int = 8) -> torch.Tensor:
    """Euclidean distance from each point to the (infinite) helix, as in the official ``toy_example.ipynb``.

    ``d(p)^2 = min_t (p1 - sin t)^2 + (p2 - cos t)^2 + (p3 - t)^2``. At a minimiser
    ``t - p3 = p1 cos t - p2 sin t``, whose right side is bounded by ``rho = |(p1, p2)|``, so the
    global minimum lies in ``[p3 - rho, p3 + rho]``: a dense grid there, then Newton steps on the
    stationarity condition, all vectorised over points, in float64.
    Shapes: ``points: (N, 3) -> (N,)``.
    """
    p = points.detach().to(torch.float64).cpu()
    rho = p[:, :2].norm(dim=1, keepdim=True)
    t = p[:, 2:3] + rho * torch.linspace(-1.0, 1.0, grid, dtype=torch.float64)
    t_best = t.gather(1, _squared_distance(p, t).argmin(dim=1, keepdim=True)).squeeze(1)
    t_newton = t_best.clone()
    for _ in range(newton_steps):
        slope = t_newton - p[:, 2] - p[:, 0] * torch.cos(t_newton) + p[:, 1] * torch.sin(t_newton)
        curvature = 1.0 + p[:, 0] * torch.sin(t_newton) + p[:, 1] * torch.cos(t_newton)
        step = torch.where(curvature > 0, slope / curvature.clamp_min(1e-12), torch.zeros_like(slope))
        t_newton = torch.clamp(t_newton - step, p[:, 2] - rho[:, 0], p[:, 2] + rho[:, 0])
    d2 = torch.minimum(_squared_distance(p, t_best[:, None]), _squared_distance(p, t_newton[:, None]))
    return d2.squeeze(1).sqrt().to(points.dtype)


def _squared_distance(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``|p - h(t)|^2`` for a grid of ``t`` per point. ``p: (N, 3), t: (N, G) -> (N, G)``."""
    return (p[:, :1] - torch.sin(t)) ** 2 + (p[:, 1:2] - torch.cos(t)) ** 2 + (p[:, 2:3] - t) ** 2


class HelixClassifier(nn.Module):
    """``f(x) = sigmoid(W2 relu(W1 x + b1) + b2)``, the paper's 3-256-1 classifier (App. B.1).

    Shapes: ``x: (B, 3) -> p: (B,)``, the probability of the upper half.
    """

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def train_flow(data: HelixData, settings: HelixSettings, seed: int, device: torch.device) -> tuple[CouplingFlow, dict]:
    """The 12-coupling RealNVP flow, trained by maximum likelihood on fresh helix batches.

    Each step draws a new batch from ``data`` (as in the official notebook); Adam,
    ``settings.flow_lr``. Every ``settings.flow_val_every`` steps the NLL of a fixed held-out set of
    ``settings.flow_val_n`` helix points is measured, and the weights with the lowest one are kept,
    as the official notebook keeps its best model (it validates on 100 fresh batches of 500 instead
    of one fixed set). Cached by the data and flow settings and the seed.
    """
    batches = generator(seed, "flow/batches")
    x_val = data.sample(settings.flow_val_n, generator(seed, "flow/validation")).to(device)

    def train(flow: CouplingFlow) -> dict:
        return fit(flow, lambda _: flow_nll(flow, data.sample(settings.flow_batch, batches).to(device)),
                   settings.flow_steps, settings.flow_lr, desc="flow",
                   validation=Validation(lambda: flow_nll(flow, x_val), settings.flow_val_every))

    seed_stream(seed, "flow/init")
    return cached_model("helix_flow", stage_settings(settings, "data", "flow", seed=seed, t_range=data.t_range),
                        lambda: coupling_flow(HELIX_KEEP_MASKS, settings.flow_hidden).to(device), train)


def train_classifier(data: HelixData, settings: HelixSettings, seed: int,
                     device: torch.device) -> tuple[HelixClassifier, dict]:
    """The 3-256-1 classifier, trained with binary cross-entropy on fresh batches from ``data``."""
    batches = generator(seed, "classifier/batches")

    def loss(classifier: HelixClassifier) -> torch.Tensor:
        x = data.sample(settings.classifier_batch, batches).to(device)
        return nn.functional.binary_cross_entropy(classifier(x), helix_labels(x))

    seed_stream(seed, "classifier/init")
    return cached_model("helix_classifier",
                        stage_settings(settings, "data", "classifier", seed=seed, t_range=data.t_range),
                        lambda: HelixClassifier(settings.classifier_hidden).to(device),
                        lambda clf: fit(clf, lambda _: loss(clf), settings.classifier_steps,
                                        settings.classifier_lr, desc="classifier"))


def target_values(p_start: torch.Tensor) -> torch.Tensor:
    """The official target rule: ``T = 0.9`` if ``f(x) < 0.5`` else ``T = 0.1``. ``(B,) -> (B,)``."""
    return torch.where(p_start < 0.5, 0.9, 0.1)


def target_score(classifier: nn.Module, targets: torch.Tensor):
    """Squared error ``(f(x) - T)^2`` and the stopping rule (``f >= T`` if ``T >= 0.5`` else ``f <= T``)."""

    def score(x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, target = classifier(x), targets[idx]
        reached = torch.where(target >= 0.5, p >= target, p <= target)
        return (p - target) ** 2, reached

    return score


def search_in_x(x_start: torch.Tensor, classifier: nn.Module, settings: HelixSettings,
                record_trajectory: bool = False) -> AscentResult:
    """Gradient ascent on the input itself: the adversarial search of Sec. 4.1.1."""
    with torch.no_grad():
        targets = target_values(classifier(x_start))
    return gradient_ascent(x_start, lambda x: x, target_score(classifier, targets), settings.search_lr,
                           settings.search_max_steps, record_trajectory, desc="ascent in X")


def search_in_z(x_start: torch.Tensor, classifier: nn.Module, flow: CouplingFlow, settings: HelixSettings,
                record_trajectory: bool = False) -> AscentResult:
    """Gradient ascent on ``z = g^{-1}(x)`` with ``x = g(z)``: the diffeomorphic counterfactual."""
    with torch.no_grad():
        targets = target_values(classifier(x_start))
        z_start = flow.encode(x_start)
    return gradient_ascent(z_start, flow.decode, target_score(classifier, targets),
                           settings.search_lr, settings.search_max_steps, record_trajectory,
                           desc="ascent in Z")


def classifier_accuracy(classifier: nn.Module, x: torch.Tensor) -> float:
    """Accuracy of ``round(f(x))`` against the ``x3 > 0`` rule, evaluated on ``x`` itself."""
    with torch.no_grad():
        return ((classifier(x) > 0.5).float() == helix_labels(x)).float().mean().item()


def sample_flow(flow: CouplingFlow, n: int, device: torch.device) -> torch.Tensor:
    """``n`` samples ``g(z)``, ``z ~ N(0, I)``. Returns ``(n, 3)``."""
    with torch.no_grad():
        return flow.sample(n).to(device)


@dataclass
class TangentSpace:
    """The inverse induced metric ``J J^T`` at helix points ``h(t)``.

    Shapes: ``t: (P,)``, ``x: (P, 3)``, ``eigenvalues: (P, 3)`` descending, ``eigenvectors: (P, 3, 3)``
    (column ``i`` belongs to eigenvalue ``i``).
    """

    t: torch.Tensor
    x: torch.Tensor
    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor

    @property
    def singular_ratio(self) -> torch.Tensor:
        """``sigma_min / sigma_max`` of the flow Jacobian per point, ``(P,)``."""
        return (self.eigenvalues[:, -1] / self.eigenvalues[:, 0]).sqrt()

    @property
    def alignment(self) -> torch.Tensor:
        """``|cos|`` between the dominant eigenvector and the helix tangent per point, ``(P,)``."""
        return (self.eigenvectors[:, :, 0] * helix_tangent(self.t)).sum(dim=1).abs()


def tangent_space(flow: CouplingFlow, t: torch.Tensor) -> TangentSpace:
    """SVD of ``J = dg/dz`` at ``z = g^{-1}(h(t))`` (Sec. 4.1.2): eigenpairs of ``J J^T``."""
    device = next(flow.parameters()).device
    x = helix_point(t).to(device)
    with torch.no_grad():
        z = flow.encode(x)
    jac = batched_jacobian(flow.decode, z)
    eigenvalues, eigenvectors = induced_metric_eigen(jac)
    return TangentSpace(t=t.cpu(), x=x.cpu(), eigenvalues=eigenvalues.detach().cpu(),
                        eigenvectors=eigenvectors.detach().cpu())
