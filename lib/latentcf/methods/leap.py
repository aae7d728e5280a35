"""LEAP (paper Algorithm 1) and LeapFactual (paper Algorithm 2) on a trained CE-CFM field.

A *lift* integrates the class-conditional velocity backwards from the data end ``t = 1`` to the
source end ``t = 0`` under the current label, which removes class information (Theorem 1); a
*land* integrates forwards from ``t = 0`` to ``t = 1`` under the target label, which puts class
information back. Both are scaled by a step size ``gamma``. Nothing here uses gradients: the
classifier and the generative model are only ever called under ``torch.no_grad``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torchdiffeq import odeint
from tqdm import tqdm

from latentcf.core.errors import check_targets, check_unit_images
from latentcf.methods.cfm import LabelLike, condition_vector

FIXED_GRID_METHODS = ("euler", "midpoint", "rk4")
ADAPTIVE_METHODS = ("dopri5",)


@runtime_checkable
class LatentModel(Protocol):
    """A generative model ``g_phi`` seen through its latent space at flow time ``t = 1``.

    Shapes: ``encode: x -> (B, D)``, ``decode: (B, D) -> x``.
    """

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs to latents ``z = g_phi^{-1}(x)``."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents back to inputs ``x = g_phi(z)``."""


class IdentityLatentModel:
    """The latent space *is* the data space, as in the 2-D square toy.

    Shapes: ``x: (B, D) -> z: (B, D)`` and back.
    """

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` itself."""
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Return ``z`` itself."""
        return z


class ConditionalVelocity(Protocol):
    """A trained CE-CFM field ``v_psi(t, z, c)`` that knows its number of classes.

    Shapes: ``t: (B, 1)``, ``z: (B, D)``, ``c: (B, K)`` ``-> (B, D)``.
    :class:`latentcf.methods.cfm.ConditionalVelocityMLP` satisfies it.
    """

    num_classes: int

    def __call__(self, t: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Evaluate the velocity."""


Classifier = Callable[[torch.Tensor], "torch.Tensor | np.ndarray"]
"""Any callable from decoded inputs to labels ``(B,)`` or probabilities ``(B, K)``; no gradients used."""


@dataclass(frozen=True)
class Solver:
    """ODE solver settings for every lift and land.

    ``method`` is ``'dopri5'`` (adaptive, controlled by ``rtol`` / ``atol``) or one of the
    fixed-grid ``'euler'``, ``'midpoint'``, ``'rk4'``. ``n_steps`` splits ``[0, 1]`` into equal
    intervals: the fixed-grid solvers take exactly these steps; ``dopri5`` is forced to stop on
    the grid points (as torchdyn does in the official code) and adapts its steps in between.
    The official code counts grid *points* (``n_steps`` = 100 toy, 5 Morpho-MNIST, 15 Galaxy10 in
    its notebooks and ``Galaxy10/Galaxy10_generate_data.py``); that is ``n_steps + 1`` here.
    Defaults: dopri5 with ``rtol = atol = 1e-4`` as in all official experiments.
    """

    method: Literal["dopri5", "euler", "midpoint", "rk4"] = "dopri5"
    n_steps: int = 20
    rtol: float = 1e-4
    atol: float = 1e-4

    def __post_init__(self) -> None:
        if self.method not in FIXED_GRID_METHODS + ADAPTIVE_METHODS:
            raise ValueError(f"unknown solver {self.method!r}; use one of "
                             f"{ADAPTIVE_METHODS + FIXED_GRID_METHODS}")
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {self.n_steps}")
        if self.rtol <= 0 or self.atol <= 0:
            raise ValueError(f"rtol and atol must be > 0, got {self.rtol} and {self.atol}")


SolverLike = Solver | str


def as_solver(solver: SolverLike) -> Solver:
    """Accept a :class:`Solver` or just its method name."""
    return solver if isinstance(solver, Solver) else Solver(method=solver)


@torch.no_grad()
def integrate(field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], z: torch.Tensor,
              t_span: tuple[float, float], solver: SolverLike = "dopri5") -> torch.Tensor:
    """Solve ``dz/dt = field(t, z)`` from ``t_span[0]`` to ``t_span[1]`` (either direction).

    Shapes: ``z: (B, D) -> (n_steps + 1, B, D)``, the states on
    ``linspace(t_span[0], t_span[1], n_steps + 1)``; the last row is the end point.

    ``field`` receives the true (0-dim) time, also when integrating backwards. dopri5 is made to
    step onto every grid point, the end included: torchdiffeq would otherwise step past the end
    and interpolate back, evaluating the field at times outside ``[0, 1]`` where a learned CE-CFM
    field was never trained.
    """
    settings = as_solver(solver)
    grid = torch.linspace(t_span[0], t_span[1], settings.n_steps + 1, dtype=z.dtype, device=z.device)
    if settings.method in FIXED_GRID_METHODS:
        return odeint(field, z, grid, method=settings.method)
    return odeint(field, z, grid, method=settings.method, rtol=settings.rtol, atol=settings.atol,
                  options={"step_t": grid[1:]})


class ScaledConditionalField:
    """The ODE right-hand side ``gamma * v_psi(t, z, c)`` with a fixed per-sample condition.

    Shapes: ``t: ()``, ``z: (B, D)`` ``-> (B, D)``; ``condition: (B, K)``.

    As in the vector-field wrapper of the official LeapFactual code (``caicairay/LeapFactual``),
    ``gamma`` multiplies the velocity while the time still runs over the whole of ``[0, 1]``;
    this is not the same as integrating over a
    shorter interval ``[1 - gamma, 1]``.
    """

    def __init__(self, velocity: ConditionalVelocity, condition: torch.Tensor, gamma: float) -> None:
        self.velocity = velocity
        self.condition = condition
        self.gamma = gamma

    def __call__(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        t_column = t.reshape(1, 1).expand(z.shape[0], 1)
        return self.gamma * self.velocity(t_column, z, self.condition)


@dataclass(frozen=True)
class LeapPaths:
    """The two transports of one LEAP, for plotting.

    Shapes: ``lift: (n_steps + 1, B, D)`` from ``t = 1`` down to ``t = 0``;
    ``land: (n_steps + 1, B, D)`` from ``t = 0`` up to ``t = 1``. ``land[-1]`` is the LEAP result.
    """

    lift: torch.Tensor
    land: torch.Tensor


def lift(velocity: ConditionalVelocity, z: torch.Tensor, y_current: LabelLike, gamma_lift: float,
         solver: SolverLike = "dopri5") -> torch.Tensor:
    """Lifting transport (Algorithm 1, step 1): ``dz/dt = gamma_lift v(t, z, y_c)`` from 1 to 0.

    Shapes: ``z: (B, D)``, ``y_current: (B,) or (B, K)`` ``-> (n_steps + 1, B, D)``.

    ``gamma_lift = 0`` is the identity and is not integrated (as in the official ``leap`` function).
    """
    return _transport(velocity, z, y_current, gamma_lift, (1.0, 0.0), solver, "gamma_lift")


def land(velocity: ConditionalVelocity, z: torch.Tensor, y_target: LabelLike, gamma_land: float,
         solver: SolverLike = "dopri5") -> torch.Tensor:
    """Landing transport (Algorithm 1, step 2): ``dz/dt = gamma_land v(t, z, y_hat)`` from 0 to 1.

    Shapes: ``z: (B, D)``, ``y_target: (B,) or (B, K)`` ``-> (n_steps + 1, B, D)``.
    """
    return _transport(velocity, z, y_target, gamma_land, (0.0, 1.0), solver, "gamma_land")


def _transport(velocity: ConditionalVelocity, z: torch.Tensor, labels: LabelLike, gamma: float,
               t_span: tuple[float, float], solver: SolverLike, gamma_name: str) -> torch.Tensor:
    """Integrate ``gamma * v(t, z, labels)`` over ``t_span``; a zero ``gamma`` returns a constant path."""
    _check_latents(z)
    _check_gamma(gamma, gamma_name)
    settings = as_solver(solver)
    condition = batch_condition(labels, velocity.num_classes, z)
    if gamma == 0:
        return z.unsqueeze(0).expand(settings.n_steps + 1, *z.shape).clone()
    return integrate(ScaledConditionalField(velocity, condition, gamma), z, t_span, settings)


def leap_paths(velocity: ConditionalVelocity, z: torch.Tensor, y_current: LabelLike,
               y_target: LabelLike, gamma_lift: float = 1.0, gamma_land: float = 1.0,
               solver: SolverLike = "dopri5") -> LeapPaths:
    """One LEAP (paper Algorithm 1) keeping both transport trajectories.

    Shapes: ``z: (B, D)``, ``y_current, y_target: (B,) indices or (B, K) probabilities``.
    """
    z_lift_path = lift(velocity, z, y_current, gamma_lift, solver)
    z_land_path = land(velocity, z_lift_path[-1], y_target, gamma_land, solver)
    return LeapPaths(lift=z_lift_path, land=z_land_path)


def leap(velocity: ConditionalVelocity, z: torch.Tensor, y_current: LabelLike, y_target: LabelLike,
         gamma_lift: float = 1.0, gamma_land: float = 1.0, solver: SolverLike = "dopri5") -> torch.Tensor:
    """One LEAP (paper Algorithm 1): lift under the current label, land under the target label.

    Shapes: ``z: (B, D)``, ``y_current, y_target: (B,) indices or (B, K) probabilities``
    ``-> z_land: (B, D)``.

    ``z_lift = z + int_1^0 gamma_lift v(t, z(t), y_c) dt`` and
    ``z_land = z_lift + int_0^1 gamma_land v(t, z(t), y_hat) dt``. Every sample has its own pair
    of labels and the whole batch is solved as one ODE (so dopri5's step size is shared, as in
    the official code). ``gamma_lift = gamma_land = 1`` replaces the class
    information, ``gamma_lift = gamma_land < 1`` blends it, ``gamma_lift < gamma_land`` injects it.

    Paper vs code: the paper writes the step size as ``int gamma u_t dt``; the official code
    multiplies the velocity by gamma and keeps the full time range (the official wrapper), which is
    what is done here. The official code skips the lift when ``gamma_lift = 0``, so does this.
    """
    return leap_paths(velocity, z, y_current, y_target, gamma_lift, gamma_land, solver).land[-1]


@dataclass(frozen=True)
class LeapFactualResult:
    """The outcome of :func:`leapfactual`.

    Shapes: ``z_cf: (B, D)``; ``x_cf = model.decode(z_cf)``; ``y_final: (B, K)``, the current-label
    condition of the counterfactual as the classifier sees it; with ``return_trajectory``,
    ``z_trajectory: (1 + n_blend + n_inject, B, D)`` (the start, then the latent after every leap)
    and ``label_trajectory: (1 + n_blend + n_inject, B)`` (the predicted class at each of those).
    """

    z_cf: torch.Tensor
    x_cf: torch.Tensor
    y_final: torch.Tensor
    z_trajectory: torch.Tensor | None = None
    label_trajectory: torch.Tensor | None = None

    @property
    def label_final(self) -> torch.Tensor:
        """The predicted class of the counterfactual. Shapes: ``(B,)``."""
        return self.y_final.argmax(dim=1)


@torch.no_grad()
def leapfactual(velocity: ConditionalVelocity, model: LatentModel, classifier: Classifier,
                z: torch.Tensor, y_target: LabelLike, n_blend: int = 15, gamma_blend: float = 0.1,
                n_inject: int = 0, gamma_inject_lift: float = 0.0, gamma_inject_land: float = 0.1, *,
                stop_blending_at_target: bool = False, hard_current_label: bool = False,
                solver: SolverLike = "dopri5", return_trajectory: bool = False,
                desc: str | None = None) -> LeapFactualResult:
    """LeapFactual (paper Algorithm 2): ``n_blend`` blending leaps, then ``n_inject`` injection leaps.

    Shapes: ``z: (B, D)`` latents of the inputs (``model.encode(x)``), ``y_target: (B,) or (B, K)``.

    Before the first leap and after every leap the current label of each sample is
    ``classifier(model.decode(z))``; the classifier may return indices ``(B,)`` or probabilities
    ``(B, K)`` as a tensor or a NumPy array and is never differentiated. Blending leaps use
    ``gamma_lift = gamma_land = gamma_blend``, injection leaps use ``gamma_inject_lift`` and
    ``gamma_inject_land`` (the paper asks for ``gamma_inject_lift < gamma_inject_land``; it is not
    enforced). Defaults are the Morpho-MNIST settings (``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``).

    Stopping: the official code has no explicit stop: every sample gets all
    leaps and blending halts by itself once the current label equals the target, because lift and
    land then cancel. That is the default. ``stop_blending_at_target=True`` makes the paper's
    "stops as soon as the target class is reached" exact: during blending, samples whose
    predicted class equals the target class are frozen by a mask. Injection never stops.

    Labels: a probability output is used as a soft condition (Morpho-MNIST, as the official notebook);
    ``hard_current_label=True`` turns it into one-hot of its argmax first (Galaxy10, Section 3.6).
    With ``desc`` a progress bar counts the leaps.
    """
    _check_latents(z)
    _check_leap_count(n_blend, "n_blend")
    _check_leap_count(n_inject, "n_inject")
    for gamma, name in ((gamma_blend, "gamma_blend"), (gamma_inject_lift, "gamma_inject_lift"),
                        (gamma_inject_land, "gamma_inject_land")):
        _check_gamma(gamma, name)
    target = batch_condition(y_target, velocity.num_classes, z)
    target_class = target.argmax(dim=1)
    x_current = model.decode(z)
    y_current = _current_label(classifier, x_current, velocity.num_classes, z, hard_current_label)
    z_path, label_path = [z], [y_current.argmax(dim=1)]
    for leap_index in tqdm(range(n_blend + n_inject), desc=desc, disable=desc is None, leave=False):
        blending = leap_index < n_blend
        if blending:
            moving = _not_at_target(y_current, target_class, stop_blending_at_target)
            z = _leap_moving(velocity, z, y_current, target, moving, gamma_blend, gamma_blend, solver)
        else:
            z = leap(velocity, z, y_current, target, gamma_inject_lift, gamma_inject_land, solver)
        x_current = model.decode(z)
        y_current = _current_label(classifier, x_current, velocity.num_classes, z, hard_current_label)
        z_path.append(z)
        label_path.append(y_current.argmax(dim=1))
    if not return_trajectory:
        return LeapFactualResult(z_cf=z, x_cf=x_current, y_final=y_current)
    return LeapFactualResult(z_cf=z, x_cf=x_current, y_final=y_current,
                             z_trajectory=torch.stack(z_path), label_trajectory=torch.stack(label_path))


@dataclass(frozen=True)
class LeapCounterfactuals:
    """LeapFactual's counterfactuals and reliable counterfactuals. Shapes: each ``(B, 1, 28, 28)``."""

    x_cf: torch.Tensor
    x_rcf: torch.Tensor


@torch.no_grad()
def leap_counterfactuals(velocity: ConditionalVelocity, model: LatentModel, classifier: Classifier, x: torch.Tensor,
                         target: torch.Tensor, *, n_blend: int, gamma_blend: float, n_inject: int, gamma_inject: float,
                         solver: SolverLike) -> LeapCounterfactuals:
    """LeapFactual (``n_blend`` blending leaps) and LeapFactual_R (then ``n_inject`` injection leaps), Algorithm 2.

    Shapes: ``x: (B, 1, 28, 28)`` in ``[0, 1]``, ``target: (B,)`` classes ``0..velocity.num_classes-1``.
    ``classifier`` is any callable from images to probabilities (torch or NumPy); it is never
    differentiated. The current label is the classifier's soft output on the decoded latent,
    recomputed before every leap, and the injection leaps land with ``gamma_inject`` without a lift, as
    in ``Morpho_MNIST/Experiment_MorphoMNIST.ipynb`` (official: 15 leaps at 0.1, then 5 at 0.1).
    """
    check_unit_images(x)
    check_targets(target, velocity.num_classes, len(x))
    z = model.encode(x)
    blended = leapfactual(velocity, model, classifier, z, target, n_blend=n_blend, gamma_blend=gamma_blend,
                          solver=solver)
    injected = leapfactual(velocity, model, classifier, blended.z_cf, target, n_blend=0, n_inject=n_inject,
                           gamma_inject_lift=0.0, gamma_inject_land=gamma_inject, solver=solver)
    return LeapCounterfactuals(blended.x_cf, injected.x_cf)


def _not_at_target(y_current: torch.Tensor, target_class: torch.Tensor, stop_at_target: bool) -> torch.Tensor:
    """Mask of samples that still move: all of them, or those not yet predicted as the target."""
    if stop_at_target:
        return y_current.argmax(dim=1) != target_class
    return torch.ones_like(target_class, dtype=torch.bool)


def _leap_moving(velocity: ConditionalVelocity, z: torch.Tensor, y_current: torch.Tensor,
                 target: torch.Tensor, moving: torch.Tensor, gamma_lift: float, gamma_land: float,
                 solver: SolverLike) -> torch.Tensor:
    """LEAP only the rows selected by ``moving``; the others keep their latent exactly."""
    if bool(moving.all()):
        return leap(velocity, z, y_current, target, gamma_lift, gamma_land, solver)
    z_next = z.clone()
    if bool(moving.any()):
        z_next[moving] = leap(velocity, z[moving], y_current[moving], target[moving],
                              gamma_lift, gamma_land, solver)
    return z_next


def _current_label(classifier: Classifier, x: torch.Tensor, num_classes: int, z: torch.Tensor,
                   hard: bool) -> torch.Tensor:
    """``classifier(x)`` as a ``(B, K)`` condition on ``z``'s device, optionally made one-hot."""
    y_current = batch_condition(classifier(x), num_classes, z, source="classifier output")
    if not hard:
        return y_current
    return torch.nn.functional.one_hot(y_current.argmax(dim=1), num_classes).to(z.dtype)


def batch_condition(labels: LabelLike, num_classes: int, z: torch.Tensor,
                    source: str = "labels") -> torch.Tensor:
    """Normalise labels to a ``(B, K)`` condition matching the batch of ``z``.

    Shapes: ``labels: (B,) or (B, 1) or (B, K)``, ``z: (B, D)`` ``-> (B, K)``.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.detach()
    condition = condition_vector(labels, num_classes, dtype=z.dtype, device=z.device)
    if condition.shape[0] != z.shape[0]:
        raise ValueError(f"{source} describe {condition.shape[0]} samples but z has {z.shape[0]}")
    return condition


def _check_latents(z: torch.Tensor) -> None:
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        raise ValueError(f"z must be a (B, D) tensor, got {getattr(z, 'shape', type(z))}")


def _check_gamma(gamma: float, name: str) -> None:
    if not np.isfinite(gamma) or gamma < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {gamma}")


def _check_leap_count(count: int, name: str) -> None:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {count!r}")
