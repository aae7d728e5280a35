"""Tests for LEAP (paper Algorithm 1) and LeapFactual (paper Algorithm 2) in ``latentcf.methods.leap``.

Most tests use an exactly known CE-CFM field: the 2-D square toy where class ``c`` is the affine
image ``z1 = SCALE * z0 + CENTRES[c]`` of a source point, transported along straight lines. Its
velocity is ``v(t, z, c) = (SCALE - 1) z0 + b_c`` with ``z0 = (z - t b_c) / (1 - t + t SCALE)``,
so one replacement LEAP maps ``z`` to ``z - b_source + b_target`` in closed form.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from latentcf.core.errors import LatentcfError
from latentcf.methods.cfm import ConditionalVelocityMLP, condition_vector
from latentcf.methods.leap import (
    IdentityLatentModel,
    LatentModel,
    Solver,
    integrate,
    land,
    leap,
    leap_counterfactuals,
    leap_paths,
    leapfactual,
    lift,
)

CENTRES = torch.tensor([[-0.25, -0.25], [-0.25, 0.25], [0.25, -0.25], [0.25, 0.25]])
"""Quadrant centres in the label order of the official toy: 0 (-,-), 1 (-,+), 2 (+,-), 3 (+,+)."""

TIGHT = Solver("dopri5", n_steps=10, rtol=1e-7, atol=1e-7)
COARSE_GRID = Solver("dopri5", n_steps=4)


class AffineClassField:
    """Exact velocity of the per-class straight-line flow ``z1 = scale * z0 + centre_c``.

    A probability condition mixes the centres linearly, so soft labels are valid inputs.
    """

    num_classes = 4

    def __init__(self, scale: float = 0.5) -> None:
        self.scale = scale
        self.calls = 0
        self.times: list[float] = []

    def __call__(self, t: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.times.append(float(t[0, 0]))
        centre = condition_vector(c, self.num_classes, dtype=z.dtype) @ CENTRES.to(z.dtype)
        z0 = (z - t * centre) / (1 - t + t * self.scale)
        return (self.scale - 1) * z0 + centre


def quadrant(x: torch.Tensor) -> torch.Tensor:
    """The official toy labeller: ``2 * [x > 0] + [y > 0]``."""
    return 2 * (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def quadrant_numpy(x: np.ndarray) -> np.ndarray:
    """The same rule written in NumPy, i.e. with no autograd at all."""
    return 2 * (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0).astype(np.int64)


def square_points(n: int, seed: int) -> torch.Tensor:
    """Uniform points of the toy square, kept away from the axes so that labels are unambiguous."""
    generator = torch.Generator().manual_seed(seed)
    centre_index = torch.randint(0, 4, (n,), generator=generator)
    residual = 0.4 * (torch.rand(n, 2, generator=generator) - 0.5)
    return CENTRES[centre_index] + residual


# Algorithm 1: LEAP --------------------------------------------------------------------------------

def test_replacement_leap_moves_every_point_into_the_target_quadrant() -> None:
    z = square_points(64, seed=0)
    y_current = quadrant(z)
    z_cf = leap(AffineClassField(), z, y_current, torch.full((64,), 3), 1.0, 1.0)
    assert torch.allclose(z_cf, z - CENTRES[y_current] + CENTRES[3], atol=1e-3)
    assert torch.equal(quadrant(z_cf), torch.full((64,), 3))


def test_mixed_per_sample_targets_are_all_reached_in_one_batch() -> None:
    z = square_points(48, seed=1)
    y_current = quadrant(z)
    y_target = torch.arange(48) % 4
    one_hot_current = nn.functional.one_hot(y_current, 4).float()
    z_cf = leap(AffineClassField(), z, one_hot_current, y_target.numpy(), 1.0, 1.0)
    assert torch.allclose(z_cf, z - CENTRES[y_current] + CENTRES[y_target], atol=1e-3)
    assert torch.equal(quadrant(z_cf), y_target)


def test_lift_reaches_the_source_point_and_land_starts_from_it() -> None:
    z = square_points(8, seed=2)
    y_current = quadrant(z)
    paths = leap_paths(AffineClassField(), z, y_current, y_current, 1.0, 1.0, Solver(n_steps=4))
    assert paths.lift.shape == paths.land.shape == (5, 8, 2)
    assert torch.equal(paths.lift[0], z)
    assert torch.allclose(paths.lift[-1], (z - CENTRES[y_current]) / 0.5, atol=1e-3)
    assert torch.equal(paths.land[0], paths.lift[-1])


def test_blending_leap_interpolates_centres_on_a_translation_field() -> None:
    z = square_points(16, seed=3)
    y_current = quadrant(z)
    gamma = 0.3
    z_cf = leap(AffineClassField(scale=1.0), z, y_current, torch.full((16,), 3), gamma, gamma)
    expected = z + gamma * (CENTRES[3] - CENTRES[y_current])
    assert torch.allclose(z_cf, expected, atol=1e-4)


def test_injection_leap_without_lift_is_the_landing_map() -> None:
    field = AffineClassField()
    z = square_points(16, seed=4)
    z_cf = leap(field, z, quadrant(z), torch.full((16,), 3), gamma_lift=0.0, gamma_land=1.0)
    assert torch.allclose(z_cf, 0.5 * z + CENTRES[3], atol=1e-4)
    assert all(t >= 0.0 for t in field.times)


def test_zero_gamma_lift_is_a_constant_path_that_never_calls_the_field() -> None:
    field = AffineClassField()
    z = square_points(4, seed=5)
    path = lift(field, z, quadrant(z), 0.0, Solver(n_steps=6))
    assert path.shape == (7, 4, 2)
    assert torch.equal(path, z.expand(7, 4, 2))
    assert field.calls == 0


@pytest.mark.parametrize("gamma", [1.0, 0.3])
def test_lift_and_land_cancel_when_current_and_target_labels_coincide(gamma: float) -> None:
    torch.manual_seed(0)
    velocity = ConditionalVelocityMLP(dim=2, num_classes=4)
    z = square_points(32, seed=6)
    labels = torch.arange(32) % 4
    z_back = leap(velocity, z, labels, labels, gamma, gamma, TIGHT)
    assert torch.allclose(z_back, z, atol=1e-5)
    assert not torch.allclose(lift(velocity, z, labels, gamma, TIGHT)[-1], z, atol=1e-2)


@pytest.mark.parametrize("transport", [lift, land])
def test_adaptive_transports_see_only_true_times_inside_the_unit_interval(transport) -> None:
    field = AffineClassField()
    z = square_points(4, seed=7)
    transport(field, z, quadrant(z), 1.0)
    assert field.calls > 0
    assert min(field.times) >= 0.0 and max(field.times) <= 1.0
    assert field.times[0] == (1.0 if transport is lift else 0.0)


# integrate ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4", "dopri5"])
def test_every_solver_is_exact_on_a_constant_field(method: str) -> None:
    z = square_points(6, seed=8)
    shift = torch.tensor([0.7, -0.2])
    path = integrate(lambda t, state: shift.expand_as(state), z, (0.0, 1.0), Solver(method, n_steps=5))
    assert path.shape == (6, 6, 2)
    assert torch.allclose(path[-1], z + shift, atol=1e-6)
    assert torch.allclose(path[2], z + 0.4 * shift, atol=1e-6)


def test_fixed_grid_and_adaptive_solvers_agree_on_a_linear_field() -> None:
    rate = torch.tensor([[-1.0, 2.0], [-2.0, -0.5]])
    z = square_points(10, seed=9)
    field = lambda t, state: state @ rate.T  # noqa: E731
    exact_forward = z @ torch.linalg.matrix_exp(rate).T
    exact_backward = z @ torch.linalg.matrix_exp(-rate).T
    for solver in (Solver("rk4", n_steps=50), Solver("dopri5", rtol=1e-7, atol=1e-7)):
        assert torch.allclose(integrate(field, z, (0.0, 1.0), solver)[-1], exact_forward, atol=1e-5)
        assert torch.allclose(integrate(field, z, (1.0, 0.0), solver)[-1], exact_backward, atol=1e-5)
    euler = integrate(field, z, (0.0, 1.0), Solver("euler", n_steps=2000))[-1]
    assert torch.allclose(euler, exact_forward, atol=2e-3)


def test_integrate_runs_without_gradients() -> None:
    velocity = ConditionalVelocityMLP(dim=2, num_classes=4)
    z = square_points(4, seed=10).requires_grad_()
    out = lift(velocity, z, torch.zeros(4, dtype=torch.long), 1.0, "euler")
    assert not out.requires_grad


# Algorithm 2: LeapFactual -------------------------------------------------------------------------

def test_leapfactual_blending_reaches_mixed_targets_with_a_numpy_rule() -> None:
    z = square_points(40, seed=11)
    y_target = torch.arange(40) % 4
    result = leapfactual(AffineClassField(), IdentityLatentModel(), lambda x: quadrant_numpy(x.numpy()),
                         z, y_target, n_blend=12, gamma_blend=0.3, return_trajectory=True,
                         solver=COARSE_GRID)
    assert torch.equal(result.label_final, y_target)
    assert torch.equal(quadrant(result.z_cf), y_target)
    assert torch.equal(result.x_cf, result.z_cf)
    assert result.z_trajectory.shape == (13, 40, 2)
    assert torch.equal(result.z_trajectory[0], z)
    assert torch.equal(result.label_trajectory[0], quadrant(z))
    assert torch.equal(result.label_trajectory[-1], y_target)


def test_blending_stops_by_itself_once_the_target_class_is_reached() -> None:
    z = square_points(20, seed=12)
    start_in_target = quadrant(z)
    result = leapfactual(AffineClassField(), IdentityLatentModel(), quadrant, z, start_in_target,
                         n_blend=5, gamma_blend=0.3, solver=COARSE_GRID)
    assert torch.allclose(result.z_cf, z, atol=1e-3)


def test_explicit_stop_freezes_each_sample_from_the_leap_that_reaches_its_target() -> None:
    z = square_points(32, seed=13)
    y_target = (quadrant(z) + torch.arange(32) % 2) % 4
    result = leapfactual(AffineClassField(), IdentityLatentModel(), quadrant, z, y_target, n_blend=10,
                         gamma_blend=0.3, stop_blending_at_target=True, return_trajectory=True,
                         solver=COARSE_GRID)
    reached = result.label_trajectory == y_target
    assert reached[0].any() and not reached[0].all()
    assert reached[-1].all()
    first_reached = reached.long().argmax(dim=0)
    for leap_index in range(1, 11):
        frozen = first_reached < leap_index
        before, after = result.z_trajectory[leap_index - 1], result.z_trajectory[leap_index]
        assert torch.equal(after[frozen], before[frozen])
        assert (after[~frozen] != before[~frozen]).any(dim=1).all()
    assert torch.equal(result.z_cf[reached[0]], z[reached[0]])


def test_injection_leaps_push_towards_the_outer_corner_of_the_target() -> None:
    z = square_points(16, seed=14)
    y_target = torch.full((16,), 3)
    result = leapfactual(AffineClassField(), IdentityLatentModel(), quadrant, z, y_target, n_blend=0,
                         n_inject=3, gamma_inject_lift=0.0, gamma_inject_land=1.0)
    corner = 2 * CENTRES[3]
    assert torch.allclose(result.z_cf, corner + 0.125 * (z - corner), atol=1e-4)


class SoftQuadrantClassifier:
    """A scikit-learn-like model: ``predict_proba`` on NumPy arrays, soft quadrant probabilities."""

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        right = 1 / (1 + np.exp(-20 * x[:, 0]))
        up = 1 / (1 + np.exp(-20 * x[:, 1]))
        return np.stack([(1 - right) * (1 - up), (1 - right) * up, right * (1 - up), right * up], axis=1)


def test_scikit_learn_like_probability_classifier_works_soft_and_hard() -> None:
    z = square_points(24, seed=15)
    y_target = torch.arange(24) % 4
    model = SoftQuadrantClassifier()
    soft = leapfactual(AffineClassField(), IdentityLatentModel(), lambda x: model.predict_proba(x.numpy()),
                       z, y_target, n_blend=12, gamma_blend=0.3, solver=COARSE_GRID)
    hard = leapfactual(AffineClassField(), IdentityLatentModel(), lambda x: model.predict_proba(x.numpy()),
                       z, y_target, n_blend=12, gamma_blend=0.3, hard_current_label=True, solver=COARSE_GRID)
    assert torch.equal(soft.label_final, y_target)
    assert torch.equal(hard.label_final, y_target)
    assert not torch.all((soft.y_final == 0) | (soft.y_final == 1))
    assert torch.all((hard.y_final == 0) | (hard.y_final == 1))


class LinearLatentModel(nn.Module):
    """A latent model with trainable parameters: ``x = W z``, ``z = W^{-1} x`` with ``W = 2 I``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(2 * torch.eye(2))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x @ torch.linalg.inv(self.weight).T

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T


def refuse_gradients(x: torch.Tensor) -> torch.Tensor:
    """A classifier that must never be part of an autograd graph."""
    if x.requires_grad:
        raise RuntimeError("the classifier was called on a tensor that requires grad")
    return quadrant(x / 2)


def test_classifier_is_never_called_with_gradients() -> None:
    model = LinearLatentModel()
    assert isinstance(model, LatentModel) and isinstance(IdentityLatentModel(), LatentModel)
    z = model.encode(2 * square_points(12, seed=16))
    assert model.decode(z).requires_grad
    y_target = torch.arange(12) % 4
    result = leapfactual(AffineClassField(), model, refuse_gradients, z, y_target, n_blend=12,
                         gamma_blend=0.3, solver=COARSE_GRID)
    assert torch.equal(result.label_final, y_target)
    assert torch.allclose(result.x_cf, model.decode(result.z_cf))


# LeapFactual and LeapFactual_R on images -------------------------------------------------------------

class FlatImages:
    """A latent model whose latent is the image itself, flattened: ``(B, 1, 28, 28) <-> (B, 784)``."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(-1, 1, 28, 28)


class ShiftToClassBrightness:
    """A velocity that moves every pixel towards the brightness ``(c + 1) / 10`` of its class ``c``."""

    num_classes = 10

    def __call__(self, t: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        brightness = condition_vector(c, self.num_classes, dtype=z.dtype) @ torch.linspace(0.1, 1.0, 10)
        return brightness[:, None] - z


def brightness_classifier(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """NumPy probabilities: one-hot of the class whose brightness ``(c + 1) / 10`` is nearest the mean pixel."""
    mean = np.asarray(x).reshape(len(x), -1).mean(axis=1)
    return np.eye(10, dtype=np.float32)[np.clip(np.rint(mean * 10 - 1), 0, 9).astype(int)]


LEAP_IMAGES = {"n_blend": 3, "gamma_blend": 0.5, "n_inject": 2, "gamma_inject": 0.5, "solver": COARSE_GRID}


def test_leap_counterfactuals_blend_then_inject_and_no_leap_is_the_reconstruction() -> None:
    x = torch.full((2, 1, 28, 28), 0.25)
    target = torch.tensor([7, 1])
    ces = leap_counterfactuals(ShiftToClassBrightness(), FlatImages(), brightness_classifier, x, target,
                               **LEAP_IMAGES)
    assert ces.x_cf.shape == ces.x_rcf.shape == (2, 1, 28, 28)
    reached = brightness_classifier(ces.x_rcf.numpy()).argmax(axis=1)
    assert reached.tolist() == target.tolist()
    assert not torch.allclose(ces.x_cf, ces.x_rcf)
    still = leap_counterfactuals(ShiftToClassBrightness(), FlatImages(), brightness_classifier, x, target,
                                 **{**LEAP_IMAGES, "n_blend": 0, "n_inject": 0})
    assert torch.equal(still.x_cf, x) and torch.equal(still.x_rcf, x)


@pytest.mark.parametrize("x, target, message", [
    (torch.full((2, 28, 28), 0.25), torch.tensor([7, 1]), "shape"),
    (torch.full((2, 1, 28, 28), 2.0), torch.tensor([7, 1]), r"\[0, 1\]"),
    (torch.full((2, 1, 28, 28), 0.25), torch.tensor([7, 10]), "unknown target"),
    (torch.full((2, 1, 28, 28), 0.25), torch.tensor([7]), "2 integer"),
])
def test_leap_counterfactuals_refuse_bad_images_and_targets(x, target, message) -> None:
    with pytest.raises(LatentcfError, match=message):
        leap_counterfactuals(ShiftToClassBrightness(), FlatImages(), brightness_classifier, x, target, **LEAP_IMAGES)


# validation --------------------------------------------------------------------------------------

Z4 = square_points(4, seed=17)
LABELS4 = torch.tensor([0, 1, 2, 3])


@pytest.mark.parametrize("call, message", [
    (lambda: leap(AffineClassField(), Z4, LABELS4, torch.tensor([0, 1, 2, 4])), "unknown class label"),
    (lambda: leap(AffineClassField(), Z4, torch.tensor([0, -1, 2, 3]), LABELS4), "unknown class label"),
    (lambda: leap(AffineClassField(), Z4, LABELS4, LABELS4, gamma_lift=-0.1), "gamma_lift"),
    (lambda: leap(AffineClassField(), Z4, LABELS4, LABELS4, gamma_land=float("nan")), "gamma_land"),
    (lambda: leap(AffineClassField(), Z4, LABELS4[:3], LABELS4), "3 samples but z has 4"),
    (lambda: leap(AffineClassField(), Z4, LABELS4, torch.full((4, 3), 1 / 3)), r"shape \(B, 4\)"),
    (lambda: leap(AffineClassField(), Z4, LABELS4, torch.randn(4, 4)), "softmax"),
    (lambda: leap(AffineClassField(), Z4[0], LABELS4, LABELS4), r"\(B, D\)"),
    (lambda: leap(AffineClassField(), Z4, LABELS4, LABELS4, solver="heun"), "unknown solver"),
    (lambda: Solver(n_steps=0), "n_steps"),
    (lambda: Solver(rtol=0.0), "rtol"),
    (lambda: leapfactual(AffineClassField(), IdentityLatentModel(), quadrant, Z4, LABELS4, n_blend=-1),
     "n_blend"),
    (lambda: leapfactual(AffineClassField(), IdentityLatentModel(), quadrant, Z4, LABELS4, n_inject=-2),
     "n_inject"),
    (lambda: leapfactual(AffineClassField(), IdentityLatentModel(), quadrant, Z4, LABELS4, gamma_blend=-1.0),
     "gamma_blend"),
    (lambda: leapfactual(AffineClassField(), IdentityLatentModel(), quadrant, Z4, LABELS4,
                         gamma_inject_land=-0.5), "gamma_inject_land"),
    (lambda: leapfactual(AffineClassField(), IdentityLatentModel(), quadrant, Z4, LABELS4[:2]),
     "2 samples but z has 4"),
    (lambda: leapfactual(AffineClassField(), IdentityLatentModel(), lambda x: quadrant(x)[:3], Z4, LABELS4),
     "classifier output describe 3 samples"),
    (lambda: leapfactual(AffineClassField(), IdentityLatentModel(), lambda x: x, Z4, LABELS4),
     r"shape \(B, 4\)"),
])
def test_bad_inputs_raise_value_error_with_a_message(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
