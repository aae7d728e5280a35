"""The 2-D square toy of LeapFactual (paper Sec. 3.2.2, Fig. 4): data, CE-CFM field, metrics.

The latent space is the data space, the square ``[-0.5, 0.5]^2``. A point is ``z = c_p + r_p``
with a *centre* ``c_p in {+-0.25}^2`` (the class) and a *relative position*
``r_p in (-0.25, 0.25)^2`` (the residual). The class is the quadrant, given by a fixed rule that
is also the (non-differentiable) classifier. A CE-CFM velocity ``v_psi(t, z, c)`` (paper Eq. 3)
transports the uniform source square at ``t = 0`` to the quadrant of class ``c`` at ``t = 1``.
The metrics check what Sec. 3.2.2 says LEAP does: replacement, blending and injection of the
class information. The official code of this toy is ``Toy_Experiment/Experiment_Square.ipynb`` in
https://github.com/caicairay/LeapFactual. Used in ``notebooks/square``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch

from latentcf.core.cache import cached_model
from latentcf.core.runtime import generator, seed_stream
from latentcf.core.settings import stage_settings
from latentcf.core.training import fit
from latentcf.methods.cfm import ConditionalVelocityMLP, cfm_loss, condition_vector, sample_source
from latentcf.methods.leap import (
    ConditionalVelocity,
    IdentityLatentModel,
    LeapFactualResult,
    LeapPaths,
    Solver,
    leap,
    leap_paths,
    leapfactual,
    lift,
)

NUM_CLASSES = 4
DIM = 2
HALF_SIDE = 0.25
"""Half the side of one class square: ``r_p in (-HALF_SIDE, HALF_SIDE)^2``."""
CENTRES = torch.tensor([[-0.25, -0.25], [-0.25, 0.25], [0.25, -0.25], [0.25, 0.25]])
"""Class centres ``c_p`` in the official label order: 0 (-,-), 1 (-,+), 2 (+,-), 3 (+,+)."""
BLEND_GAMMAS = (0.1, 0.3, 0.5, 0.7, 0.9)
"""The blending step sizes whose ``alpha`` is measured (``gamma = 1`` is replacement, ``alpha = 0``)."""
REST_STEP = 1e-3
"""A point is at rest when one leap moves it less than this (a class square's side is 0.5, and the first blending
leap at ``gamma = 0.1`` moves a point about 0.06)."""


@dataclass(frozen=True)
class SquareSettings:
    """Everything the square chapter needs to know about its scale.

    ``flow_*``: the CE-CFM velocity MLP (hidden width, number of hidden layers) and its training
    (steps, fresh points per step, Adam learning rate). ``leap_rtol``, ``leap_atol``: dopri5's
    tolerances; ``leap_solver_steps``: the grid that dopri5 is forced to stop on in every measured
    leap; ``leap_path_steps``: the finer grid of the trajectories that are drawn (the official 100
    points); ``leap_n_blend``, ``leap_gamma_blend``, ``leap_n_inject``, ``leap_gamma_inject_lift``,
    ``leap_gamma_inject_land``: the schedule of Algorithm 2 (Fig. 4 e). ``eval_n``: the points of
    the replacement, blending and injection metrics; ``eval_settle_leaps``: the blending leaps within which
    a point sent to another class must come to rest there (:func:`blend_settle`). ``bench_n``: the points
    of the throughput benchmark; ``bench_rk4_steps``: the fixed grid of its Runge-Kutta 4 solver.

    Paper vs code: the official toy (``Toy_Experiment/Experiment_Square.ipynb`` in
    https://github.com/caicairay/LeapFactual) forces dopri5 onto 100 time points in every leap; 10
    intervals move a replaced point by less than 1e-3 from that (checked on the paper-scale field)
    and run about seven times faster.
    """

    scale: str
    flow_hidden: int
    flow_layers: int
    flow_steps: int
    flow_batch: int
    flow_lr: float
    leap_rtol: float
    leap_atol: float
    leap_solver_steps: int
    leap_path_steps: int
    leap_n_blend: int
    leap_gamma_blend: float
    leap_n_inject: int
    leap_gamma_inject_lift: float
    leap_gamma_inject_land: float
    eval_n: int
    eval_settle_leaps: int
    bench_n: int
    bench_rk4_steps: int


PAPER = SquareSettings(scale="paper", flow_hidden=64, flow_layers=3, flow_steps=30_000, flow_batch=256, flow_lr=1e-3,
                       leap_rtol=1e-4, leap_atol=1e-4, leap_solver_steps=10, leap_path_steps=99, leap_n_blend=8,
                       leap_gamma_blend=0.1, leap_n_inject=3, leap_gamma_inject_lift=0.0, leap_gamma_inject_land=0.1,
                       eval_n=2048, eval_settle_leaps=40, bench_n=10_000, bench_rk4_steps=10)
SMOKE = dataclasses.replace(
    PAPER,
    scale="smoke",
    flow_steps=5_000,  # fewer steps of larger batches: on this toy a field at least as accurate, in CPU minutes
    flow_batch=1024,  # the larger batch of those fewer steps
)
DRY_RUN = dataclasses.replace(PAPER, eval_n=32, bench_n=32)
"""The paper scale cut to a few dozen items, for ``reproduce --dry-run`` (training stops after two steps)."""


@dataclass(frozen=True)
class SquareData:
    """The square toy's distributions: the data, uniform on ``[-0.5, 0.5]^2`` with quadrant labels,
    and the CE-CFM source, uniform on the same square (as in the official toy).

    Training draws fresh batches from both.
    """

    num_classes = NUM_CLASSES
    dim = DIM

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` data points and their labels: :func:`sample_square`. ``-> (n, 2), (n,)`` on the CPU."""
        return sample_square(n, generator)

    def sample_source(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` source points ``z0 ~ U[-0.5, 0.5]^2``. ``-> (n, 2)`` on the CPU."""
        return sample_source(n, self.dim, generator, "uniform")


def load_data(settings: SquareSettings, device: torch.device) -> SquareData:
    """The square toy's distributions (the same at every scale).

    Points are drawn on the CPU with a CPU generator, so a seed gives the same points on every
    device; training moves each batch to ``device``.
    """
    return SquareData()


def solver(settings: SquareSettings, method: str = "dopri5", n_steps: int | None = None) -> Solver:
    """The ODE solver of the chapter: dopri5 with the official tolerances on ``settings.leap_solver_steps``."""
    steps = settings.leap_solver_steps if n_steps is None else n_steps
    return Solver(method=method, n_steps=steps, rtol=settings.leap_rtol, atol=settings.leap_atol)


def blend_metric_name(gamma: float) -> str:
    """The recorded name of the blending ``alpha`` at step size ``gamma``, e.g. ``blend_alpha_g0.3``."""
    return f"blend_alpha_g{gamma:g}"


# Data ---------------------------------------------------------------------------------------------

def quadrant_label(z: torch.Tensor) -> torch.Tensor:
    """The class rule and classifier ``2 [x > 0] + [y > 0]``. Shapes: ``z: (B, 2) -> (B,)`` int64.

    A rule, not a network: it has no gradient, which is all LeapFactual needs. Points exactly on
    an axis (probability zero) count as the left / lower side.
    """
    return 2 * (z[:, 0] > 0).long() + (z[:, 1] > 0).long()


def centres(labels: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """The centre ``c_p`` of each label. Shapes: ``labels: (B,) -> (B, 2)``, on ``like``'s device."""
    table = CENTRES if like is None else CENTRES.to(dtype=like.dtype, device=like.device)
    return table[labels.to(table.device)]


def residual(z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """The relative position ``r_p = z - c_p`` with respect to ``labels`` (default: own quadrant).

    Shapes: ``z: (B, 2)``, ``labels: (B,)`` ``-> (B, 2)``.
    """
    return z - centres(quadrant_label(z) if labels is None else labels, like=z)


def edge_distance(z: torch.Tensor) -> torch.Tensor:
    """Distance of each point to the nearest edge of its own class square. ``(B, 2) -> (B,)``."""
    return (HALF_SIDE - residual(z).abs()).min(dim=1).values


def sample_square(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points ``z = c_p + r_p`` with a uniform class and ``r_p ~ U(-0.25, 0.25)^2``.

    Shapes: ``-> z: (n, 2), labels: (n,)`` on the CPU. This is the uniform distribution on the
    square ``[-0.5, 0.5]^2`` that the official code samples directly, with its quadrant labels.
    """
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    relative = (torch.rand(n, DIM, generator=generator) - 0.5) * 2 * HALF_SIDE
    return centres(labels) + relative, labels


def other_labels(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A uniformly drawn class different from each given one. Shapes: ``(B,) -> (B,)``."""
    shift = torch.randint(1, NUM_CLASSES, labels.shape, generator=generator)
    return (labels + shift.to(labels.device)) % NUM_CLASSES


# The CE-CFM field -----------------------------------------------------------------------------------

def train_velocity(data: SquareData, settings: SquareSettings, seed: int,
                   device: torch.device) -> tuple[ConditionalVelocityMLP, dict]:
    """Train ``v_psi(t, z, c)`` with the CE-CFM loss (paper Eq. 3) on fresh batches, as in the official toy.

    Each step draws ``z1`` uniform on the square with its quadrant label and ``z0`` from the
    uniform source on the same square (``data``; the official ``Toy_Experiment/Experiment_Square.ipynb``
    samples both so); I-CFM with ``sigma = 0``, Adam. Cached by the data and flow settings and the seed.
    """
    batches = generator(seed, "flow/batches")
    times = generator(seed, "flow/times", device)

    def loss(model: ConditionalVelocityMLP) -> torch.Tensor:
        z1, labels = data.sample(settings.flow_batch, batches)
        z0 = data.sample_source(settings.flow_batch, batches)
        return cfm_loss(model, z0.to(device), z1.to(device), labels.to(device), generator=times)

    seed_stream(seed, "flow/init")
    return cached_model("square_velocity", stage_settings(settings, "data", "flow", seed=seed),
                        lambda: ConditionalVelocityMLP(data.dim, data.num_classes, settings.flow_hidden,
                                                       settings.flow_layers).to(device),
                        lambda model: fit(model, lambda _: loss(model), settings.flow_steps, settings.flow_lr,
                                          desc="CE-CFM"))


class StraightLineField:
    """The exact field of the straight-line transport ``z1 = c + z0 / 2`` of each class.

    Shapes: ``t: (B, 1)``, ``z: (B, 2)``, ``c: (B,) or (B, K)`` ``-> (B, 2)``.

    ``z0 -> c + z0 / 2`` pushes the uniform source square onto the quadrant of ``c`` (it is the
    optimal-transport map). Along ``z_t = z0 + t (c - z0 / 2)`` the velocity is constant; solving
    for ``z0`` gives ``v(t, z, c) = (2c - z) / (2 - t)``. With ``gamma`` scaling,
    ``u = z - 2c`` obeys ``u(t) = u(1) (2 - t)^gamma``, so in closed form: replacement maps
    ``c_s + r`` to ``c_t + r``; a blending leap gives ``alpha = 2^(1 - gamma) - 1``; ``n``
    injection leaps (``gamma_lift = 0``) move ``z`` by ``(1 - 2^(-n gamma)) (2 c_t - z)``.
    A reference for the learned field, which follows curved (not straight) paths.
    """

    num_classes = NUM_CLASSES

    def __call__(self, t: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        centre = condition_vector(c, NUM_CLASSES, dtype=z.dtype, device=z.device) @ CENTRES.to(z)
        return (2 * centre - z) / (2 - t)


def straight_line_alpha(gamma: float) -> float:
    """``alpha = 2^(1 - gamma) - 1`` of one blending leap under :class:`StraightLineField`."""
    return 2 ** (1 - gamma) - 1


# Transports -----------------------------------------------------------------------------------------

def replacement(velocity: ConditionalVelocity, z: torch.Tensor, target: torch.Tensor,
                solver: Solver) -> LeapPaths:
    """One replacement LEAP (Algorithm 1, ``gamma_lift = gamma_land = 1``) from the own quadrant.

    Shapes: ``z: (B, 2)``, ``target: (B,)`` ``-> LeapPaths`` with ``(n_steps + 1, B, 2)`` paths.
    """
    return leap_paths(velocity, z, quadrant_label(z), target, 1.0, 1.0, solver)


def blend(velocity: ConditionalVelocity, z: torch.Tensor, target: torch.Tensor, gamma: float,
          solver: Solver) -> torch.Tensor:
    """One blending LEAP (``gamma_lift = gamma_land = gamma``) from the own quadrant. ``(B, 2) -> (B, 2)``."""
    return leap(velocity, z, quadrant_label(z), target, gamma, gamma, solver)


def progressive(velocity: ConditionalVelocity, z: torch.Tensor, target: torch.Tensor, n_blend: int,
                gamma_blend: float, n_inject: int, gamma_inject_lift: float, gamma_inject_land: float,
                solver: Solver) -> LeapFactualResult:
    """LeapFactual (Algorithm 2) with the quadrant rule as classifier and the identity as ``g_phi``.

    Shapes: ``z: (B, 2)``, ``target: (B,)``; the result keeps the trajectory
    ``z_trajectory: (1 + n_blend + n_inject, B, 2)``.
    No stopping mask, as in the official code: a blended point in the target class stays where
    it is because lift and land then cancel.
    """
    return leapfactual(velocity, IdentityLatentModel(), quadrant_label, z, target, n_blend, gamma_blend,
                       n_inject, gamma_inject_lift, gamma_inject_land, solver=solver, return_trajectory=True)


def lift_every_class(velocity: ConditionalVelocity, relative: torch.Tensor,
                     solver: Solver) -> tuple[torch.Tensor, torch.Tensor]:
    """Put each residual in every class square and lift it under its label (Fig. 4 b).

    Shapes: ``relative: (M, 2)`` ``-> sources, lifted: (K, M, 2)``, ``sources[k, m] = c_k + r_m``
    and ``lifted[k, m]`` its point at ``t = 0`` after a full lift (``gamma_lift = 1``).
    """
    labels = torch.arange(NUM_CLASSES, device=relative.device).repeat_interleave(relative.shape[0])
    sources = centres(labels, like=relative) + relative.repeat(NUM_CLASSES, 1)
    lifted = lift(velocity, sources, labels, 1.0, solver)[-1]
    return (sources.reshape(NUM_CLASSES, -1, DIM), lifted.reshape(NUM_CLASSES, -1, DIM))


def with_time(path: torch.Tensor, t_from: float, t_to: float) -> torch.Tensor:
    """Append the flow time as a third coordinate. Shapes: ``(T, B, 2) -> (T, B, 3)``."""
    t = torch.linspace(t_from, t_to, path.shape[0], dtype=path.dtype, device=path.device)
    return torch.cat([path, t[:, None, None].expand(-1, path.shape[1], 1)], dim=2)


def leap_throughput(velocity: ConditionalVelocity, z: torch.Tensor, target: torch.Tensor,
                    solver: Solver) -> tuple[float, torch.Tensor]:
    """Replacement leaps per second on the batch ``z``, and their results.

    Shapes: ``z: (B, 2)``, ``target: (B,)`` ``-> (leaps / s, (B, 2))``. The whole batch is one ODE
    solve; the clock stops once the result is on the CPU.
    """
    started = time.perf_counter()
    landed = leap(velocity, z, quadrant_label(z), target, 1.0, 1.0, solver).cpu()
    return z.shape[0] / (time.perf_counter() - started), landed


# Metrics --------------------------------------------------------------------------------------------

def replace_hit_rate(z_landed: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of replaced points that land in the square of their target class.

    Shapes: ``z_landed: (B, 2)``, ``target: (B,)``.
    """
    return (quadrant_label(z_landed) == target.to(z_landed.device)).float().mean().item()


def replace_collapse(sources: torch.Tensor, lifted: torch.Tensor) -> float:
    """How much class information survives the lift (Theorem 1: none).

    Shapes: ``sources, lifted: (K, M, 2)``: ``sources[k, m] = c_k + r_m`` share the residual
    ``r_m`` across the ``K`` classes, ``lifted[k, m]`` is its lift to ``t = 0`` under label ``k``.
    Returns the mean pairwise distance between the ``K`` lifted points of one residual divided by
    the mean pairwise distance between the ``K`` sources (averaged over residuals). 0 means every
    class lifts to the same source point, as in Fig. 4 (a, b); 1 means the lift kept the classes
    as far apart as they were.
    """
    return (_mean_pairwise_distance(lifted).sum() / _mean_pairwise_distance(sources).sum()).item()


def _mean_pairwise_distance(points: torch.Tensor) -> torch.Tensor:
    """Mean distance over the ``K (K - 1)`` ordered pairs along the first axis. ``(K, M, 2) -> (M,)``."""
    k = points.shape[0]
    distances = (points[:, None] - points[None, :]).norm(dim=-1)
    return distances.sum(dim=(0, 1)) / (k * (k - 1))


def residual_error(z_source: torch.Tensor, z_landed: torch.Tensor, target: torch.Tensor) -> float:
    """Mean ``|r_p(landed) - r_p(source)|`` after replacement: is the residual kept?

    Shapes: ``z_source, z_landed: (B, 2)``, ``target: (B,)``. The source residual is taken from
    its own quadrant, the landed one from the *target* centre, ``z_landed - c_target``, so a
    point that misses the target square counts with its full error.
    """
    kept = residual(z_landed, target.to(z_landed.device)) - residual(z_source).to(z_landed)
    return kept.norm(dim=1).mean().item()


def blend_alpha(z_source: torch.Tensor, z_landed: torch.Tensor, target: torch.Tensor) -> float:
    """The least-squares ``alpha`` of ``z_landed = alpha c_s + (1 - alpha) c_t + r`` (Sec. 3.2.2).

    Shapes: ``z_source, z_landed: (B, 2)``, ``target: (B,)``. ``r`` is the *source* residual and
    ``c_s`` the source centre, so ``z_landed - r - c_t = alpha (c_s - c_t)``, fitted over all
    points and both coordinates:
    ``alpha = sum <z_landed - r - c_t, c_s - c_t> / sum |c_s - c_t|^2``.
    ``alpha = 1``: nothing moved; ``alpha = 0``: full replacement.
    """
    z_landed = z_landed.to(z_source)
    c_s = centres(quadrant_label(z_source), like=z_source)
    c_t = centres(target, like=z_source)
    offset = z_landed - residual(z_source) - c_t
    return ((offset * (c_s - c_t)).sum() / (c_s - c_t).pow(2).sum()).item()


@dataclass(frozen=True)
class BlendSettling:
    """Whether blending stops by itself at the target (Sec. 3.2.2): :func:`blend_settle`'s result.

    ``settle_rate``: the fraction of points that reach the target class within the leaps and then come to
    rest there (every later leap keeps them in the class and moves them less than ``REST_STEP``);
    ``arrival_leaps_median``: the median number of leaps until the classifier first agrees with the
    target (over the points that got there); ``rest_step_max``: the largest step of any arrived point
    after its arrival.
    """

    settle_rate: float
    arrival_leaps_median: float
    rest_step_max: float


def blend_settle(z_trajectory: torch.Tensor, target: torch.Tensor, rest_step: float = REST_STEP) -> BlendSettling:
    """Do points blended leap after leap stop once the classifier agrees with the target?

    Shapes: ``z_trajectory: (1 + L, B, 2)``, the start and the point after each of ``L`` blending
    leaps (:func:`progressive` with ``n_inject = 0``); ``target: (B,)``, a class other than each
    start's. A point *settles* when its quadrant first equals the target after some leap ``k < L``
    and every leap from then on keeps it there and moves it less than ``rest_step``. Lift and land
    under the same label cancel, so a point that has arrived stays; what a wrong field breaks is the
    arrival: a field that ignores the class, or lands in another one, never brings the point there.
    """
    target = target.to(z_trajectory.device)
    n_leaps = z_trajectory.shape[0] - 1
    at_target = quadrant_label(z_trajectory.flatten(0, 1)).view(z_trajectory.shape[:2]) == target
    steps = (z_trajectory[1:] - z_trajectory[:-1]).norm(dim=2)
    first = at_target.int().argmax(dim=0)
    arrived = at_target.any(dim=0) & (first < n_leaps)
    after_arrival = torch.arange(n_leaps, device=steps.device)[:, None] >= first[None, :]
    resting = ((steps < rest_step) & at_target[1:]) | ~after_arrival
    settled = arrived & resting.all(dim=0)
    later_steps = torch.where(after_arrival & arrived[None, :], steps, torch.zeros_like(steps))
    return BlendSettling(settle_rate=settled.float().mean().item(),
                         arrival_leaps_median=first[arrived].float().median().item() if arrived.any() else math.nan,
                         rest_step_max=later_steps.max().item())


def inject_gain(z_start: torch.Tensor, z_end: torch.Tensor, target: torch.Tensor) -> float:
    """Mean outward push along the class direction ``c_t / |c_t|`` from injection leaps.

    Shapes: ``z_start, z_end: (B, 2)``, ``target: (B,)``. Returns the mean of
    ``<z_end - z_start, c_t> / |c_t|``; positive means the target class information was
    amplified, ``z -> (1 + alpha) c_t + (1 - alpha) r`` (Fig. 4 d).
    """
    direction = centres(target, like=z_end)
    direction = direction / direction.norm(dim=1, keepdim=True)
    return ((z_end - z_start.to(z_end)) * direction).sum(dim=1).mean().item()
