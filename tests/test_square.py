"""Tests for the square toy of LeapFactual (``latentcf.chapters.square``).

The metrics are checked on :class:`square.StraightLineField`, whose leaps are known in closed form
(replacement keeps the residual exactly, a blending leap has ``alpha = 2^(1 - gamma) - 1``), on a
field that does not move anything, and on hand-made landed points.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from latentcf.chapters import square
from latentcf.core.claims import RELATIONS, check_relation
from latentcf.methods.cfm import condition_vector
from latentcf.methods.leap import Solver

TIGHT = Solver("dopri5", n_steps=4, rtol=1e-7, atol=1e-7)


class StillField:
    """A CE-CFM field that is zero everywhere: no leap moves anything."""

    num_classes = square.NUM_CLASSES

    def __call__(self, t: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(z)


def points(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Square samples and a target class different from each point's own."""
    generator = torch.Generator().manual_seed(seed)
    z, labels = square.sample_square(n, generator)
    return z, square.other_labels(labels, generator)


def in_class(target: int, n: int, seed: int) -> torch.Tensor:
    """``n`` points of the square of class ``target``."""
    z, _ = square.sample_square(n, torch.Generator().manual_seed(seed))
    return square.centres(torch.full((n,), target)) + square.residual(z)


def test_samples_are_centre_plus_residual_with_quadrant_labels() -> None:
    z, labels = square.sample_square(4000, torch.Generator().manual_seed(0))
    assert torch.equal(square.quadrant_label(z), labels)
    relative = square.residual(z, labels)
    assert relative.abs().max() < square.HALF_SIDE
    torch.testing.assert_close(square.CENTRES[labels] + relative, z)
    assert torch.bincount(labels, minlength=4).min() > 900


def test_quadrant_rule_is_the_official_labelling() -> None:
    z = torch.tensor([[-0.3, -0.1], [-0.2, 0.4], [0.1, -0.3], [0.4, 0.2]])
    assert square.quadrant_label(z).tolist() == [0, 1, 2, 3]
    assert torch.equal(square.quadrant_label(square.CENTRES), torch.arange(4))


def test_edge_distance_is_measured_within_the_own_square() -> None:
    z = torch.tensor([[0.25, 0.25], [0.45, 0.3], [-0.01, 0.2], [0.1, -0.49]])
    torch.testing.assert_close(square.edge_distance(z), torch.tensor([0.25, 0.05, 0.01, 0.01]))


def test_other_labels_always_differ() -> None:
    labels = torch.arange(4).repeat(100)
    others = square.other_labels(labels, torch.Generator().manual_seed(0))
    assert (others != labels).all() and set(others.tolist()) == {0, 1, 2, 3}


def test_replacement_with_the_straight_field_keeps_the_residual() -> None:
    z, target = points(256, seed=1)
    landed = square.replacement(square.StraightLineField(), z, target, TIGHT).land[-1]
    torch.testing.assert_close(landed, square.centres(target) + square.residual(z), atol=1e-5, rtol=0)
    assert square.replace_hit_rate(landed, target) == 1.0
    assert square.residual_error(z, landed, target) < 1e-5


def test_hit_rate_and_residual_error_on_hand_made_points() -> None:
    target = torch.tensor([3, 3, 0, 0])
    landed = torch.tensor([[0.3, 0.3], [-0.3, 0.3], [-0.1, -0.1], [0.1, 0.1]])
    assert square.replace_hit_rate(landed, target) == 0.5
    source = torch.tensor([[-0.2, -0.2], [-0.2, -0.2], [0.3, 0.3], [0.3, 0.3]])
    expected = (0.0 + 0.6 + 0.1 * 2**0.5 + 0.3 * 2**0.5) / 4
    assert square.residual_error(source, landed, target) == pytest.approx(expected, abs=1e-6)


def test_lift_collapses_classes_with_the_straight_field_and_not_with_a_still_one() -> None:
    relative = square.residual(points(64, seed=2)[0])
    sources, lifted = square.lift_every_class(square.StraightLineField(), relative, TIGHT)
    assert sources.shape == lifted.shape == (4, 64, 2)
    torch.testing.assert_close(lifted, (2 * relative).expand(4, -1, -1), atol=1e-5, rtol=0)
    assert square.replace_collapse(sources, lifted) < 1e-4
    still_sources, still_lifted = square.lift_every_class(StillField(), relative, TIGHT)
    assert square.replace_collapse(still_sources, still_lifted) == pytest.approx(1.0)


@pytest.mark.parametrize("gamma", square.BLEND_GAMMAS)
def test_blend_alpha_matches_the_closed_form(gamma: float) -> None:
    z, target = points(256, seed=3)
    landed = square.blend(square.StraightLineField(), z, target, gamma, TIGHT)
    assert square.blend_alpha(z, landed, target) == pytest.approx(square.straight_line_alpha(gamma), abs=1e-4)


def test_blend_alpha_recovers_a_hand_made_alpha_and_its_limits() -> None:
    z, target = points(128, seed=4)
    c_s, c_t = square.centres(square.quadrant_label(z)), square.centres(target)
    made = 0.37 * c_s + 0.63 * c_t + square.residual(z)
    assert square.blend_alpha(z, made, target) == pytest.approx(0.37, abs=1e-5)
    assert square.blend_alpha(z, z, target) == pytest.approx(1.0, abs=1e-5)
    assert square.straight_line_alpha(1.0) == 0.0 and square.straight_line_alpha(0.0) == 1.0


class WrongClassField:
    """The straight-line field of the *next* class: every land goes to the wrong quadrant."""

    num_classes = square.NUM_CLASSES

    def __call__(self, t: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        labels = condition_vector(c, square.NUM_CLASSES, dtype=z.dtype, device=z.device).argmax(dim=1)
        return square.StraightLineField()(t, z, (labels + 1) % square.NUM_CLASSES)


def settle_verdict(rate: float) -> bool | None:
    """The square relation on blending's settling, evaluated on a document holding only ``rate``."""
    relation = next(r for r in RELATIONS if r.chapter == "square" and "blend_settle_rate" in r.metrics)
    return check_relation(relation, {"scale": "smoke", "metrics": {"blend_settle_rate": rate}}).passed


@pytest.mark.parametrize(("field", "settles"), [(square.StraightLineField(), True), (StillField(), False),
                                                (WrongClassField(), False)])
def test_blending_settles_at_the_target_with_the_right_field_only(field, settles: bool) -> None:
    z, target = points(256, seed=5)
    result = square.progressive(field, z, target, 40, 0.1, 0, 0.0, 0.0, TIGHT)
    assert result.z_trajectory.shape == (41, 256, 2)
    settling = square.blend_settle(result.z_trajectory, target)
    assert settle_verdict(settling.settle_rate) is settles
    if settles:
        assert settling.settle_rate == 1.0 and settling.rest_step_max < 1e-4
        assert 1 <= settling.arrival_leaps_median < 40
    else:
        assert settling.settle_rate < 0.5


def test_settling_needs_arrival_and_rest_on_hand_made_trajectories() -> None:
    start = torch.tensor([[-0.2, -0.2], [-0.2, -0.2], [-0.2, -0.2], [-0.2, -0.2]])
    target = torch.full((4,), 3)
    inside = torch.tensor([0.2, 0.2])
    path = torch.stack([start, start, start])
    path[1:, 0] = inside  # arrives at leap 1, then rests
    path[2, 1] = inside  # arrives only after the last leap: not seen resting
    path[1, 2], path[2, 2] = inside, inside + 0.01  # arrives, then moves 0.014 in one leap
    settling = square.blend_settle(path, target)
    assert settling.settle_rate == 0.25 and settling.arrival_leaps_median == 1.0
    assert settling.rest_step_max == pytest.approx(0.01 * math.sqrt(2), rel=1e-5)


def test_inject_gain_matches_the_closed_form() -> None:
    n_leaps, gamma = 3, 0.1
    z = in_class(3, 64, seed=6)
    target = torch.full((64,), 3)
    result = square.progressive(square.StraightLineField(), z, target, 0, 0.1, n_leaps, 0.0, gamma, TIGHT)
    c = square.CENTRES[3]
    expected = (1 - 2 ** (-n_leaps * gamma)) * ((2 * c - z) @ c / c.norm()).mean()
    assert square.inject_gain(z, result.z_cf, target) == pytest.approx(expected.item(), abs=1e-5)
    assert expected > 0
    assert square.inject_gain(z, z, target) == 0.0


def test_throughput_counts_points_per_second_of_a_replacement() -> None:
    z, target = points(128, seed=7)
    rate, landed = square.leap_throughput(square.StraightLineField(), z, target, TIGHT)
    assert rate > 0 and math.isfinite(rate)
    torch.testing.assert_close(landed, square.centres(target) + square.residual(z), atol=1e-5, rtol=0)


def test_with_time_appends_the_flow_time() -> None:
    path = torch.zeros(5, 3, 2)
    timed = square.with_time(path, 1.0, 0.0)
    assert timed.shape == (5, 3, 3)
    torch.testing.assert_close(timed[:, 0, 2], torch.linspace(1.0, 0.0, 5))


def test_load_data_describes_the_square_and_the_uniform_source() -> None:
    data = square.load_data(square.SMOKE, torch.device("cpu"))
    z, labels = data.sample(500, torch.Generator().manual_seed(0))
    expected_z, expected_labels = square.sample_square(500, torch.Generator().manual_seed(0))
    assert torch.equal(z, expected_z) and torch.equal(labels, expected_labels)
    source = data.sample_source(500, torch.Generator().manual_seed(1))
    assert source.shape == (500, 2) and source.abs().max() <= 0.5


def test_train_velocity_is_cached_and_lowers_the_loss() -> None:
    settings = replace(square.SMOKE, flow_steps=60, flow_hidden=16)
    data = square.load_data(settings, torch.device("cpu"))
    model, info = square.train_velocity(data, settings, 0, torch.device("cpu"))
    assert not info["cached"] and len(info["loss"]) == 60
    assert sum(info["loss"][-10:]) < sum(info["loss"][:10])
    again, cached_info = square.train_velocity(data, settings, 0, torch.device("cpu"))
    assert cached_info["cached"]
    z = torch.zeros(3, 2)
    torch.testing.assert_close(again(0.5, z, torch.arange(3)), model(0.5, z, torch.arange(3)))
    other_seed, other_info = square.train_velocity(data, settings, 1, torch.device("cpu"))
    assert not other_info["cached"]
    assert not torch.allclose(other_seed(0.5, z, torch.arange(3)), model(0.5, z, torch.arange(3)))


def test_the_solver_uses_the_leap_settings() -> None:
    solver = square.solver(square.PAPER)
    assert (solver.method, solver.n_steps, solver.rtol, solver.atol) == ("dopri5", 10, 1e-4, 1e-4)
    assert square.solver(square.PAPER, "rk4", square.PAPER.bench_rk4_steps).n_steps == 10


def test_the_square_relations_name_every_blend_alpha() -> None:
    names = {name for relation in RELATIONS if relation.chapter == "square" for name in relation.metrics}
    assert {square.blend_metric_name(g) for g in square.BLEND_GAMMAS} <= names
    assert {"replace_hit_rate", "replace_collapse", "residual_error", "blend_settle_rate",
            "inject_gain"} <= names
