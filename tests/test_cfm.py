"""Tests for the CE-CFM objective (paper Eq. 2-3) in ``latentcf.methods.cfm``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from latentcf.core.errors import LatentcfError
from latentcf.methods.cfm import (
    ConditionalVelocityMLP,
    cfm_loss,
    cfm_path,
    condition_vector,
    sample_source,
    sample_time,
    train_velocity,
)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# condition_vector -------------------------------------------------------------------------------

def test_condition_vector_one_hot_encodes_indices_of_every_accepted_form() -> None:
    expected = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert torch.equal(condition_vector(torch.tensor([2, 0]), 3), expected)
    assert torch.equal(condition_vector(torch.tensor([[2], [0]]), 3), expected)
    assert torch.equal(condition_vector(np.array([2, 0]), 3), expected)


def test_condition_vector_keeps_one_hot_and_probability_rows() -> None:
    probabilities = torch.tensor([[0.2, 0.5, 0.3], [0.0, 0.0, 1.0]])
    assert torch.equal(condition_vector(probabilities, 3), probabilities)
    from_numpy = condition_vector(probabilities.double().numpy(), 3, dtype=torch.float64)
    assert from_numpy.dtype == torch.float64
    assert torch.allclose(from_numpy, probabilities.double())


@pytest.mark.parametrize("labels, message", [
    (torch.tensor([0, 3]), "unknown class label"),
    (torch.tensor([-1, 0]), "unknown class label"),
    (torch.tensor([[0.5, 0.5]]), r"shape \(B, 3\)"),
    (torch.tensor([0.0, 1.0]), r"shape \(B, 3\)"),
    (torch.zeros(2, 3, dtype=torch.long), r"\(B,\) or \(B, 1\)"),
    (torch.tensor([[2.0, -1.0, 0.0]]), "softmax"),
    (torch.tensor([[0.1, 0.1, 0.1]]), "softmax"),
    (torch.tensor([True, False]), "bool"),
])
def test_condition_vector_rejects_bad_labels_with_a_message(labels: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        condition_vector(labels, 3)


# cfm_path ---------------------------------------------------------------------------------------

def test_cfm_path_hits_both_ends_and_interpolates_linearly() -> None:
    z0, z1 = torch.randn(5, 3, generator=seeded(1)), torch.randn(5, 3, generator=seeded(2))
    z_start, u_start = cfm_path(z0, z1, torch.zeros(5))
    z_end, u_end = cfm_path(z0, z1, torch.ones(5, 1))
    z_quarter, _ = cfm_path(z0, z1, torch.tensor(0.25))
    assert torch.equal(z_start, z0)
    assert torch.equal(z_end, z1)
    assert torch.allclose(z_quarter, 0.25 * z1 + 0.75 * z0)
    assert torch.equal(u_start, z1 - z0)
    assert torch.equal(u_end, z1 - z0)


def test_cfm_path_adds_sigma_times_the_generators_noise() -> None:
    z0, z1 = torch.randn(4, 2, generator=seeded(1)), torch.randn(4, 2, generator=seeded(2))
    z_t, u_t = cfm_path(z0, z1, torch.zeros(4), sigma=0.3, generator=seeded(7))
    assert torch.allclose(z_t, z0 + 0.3 * torch.randn(4, 2, generator=seeded(7)))
    assert torch.equal(u_t, z1 - z0)


def test_cfm_path_noise_has_standard_deviation_sigma() -> None:
    z0 = torch.zeros(20000, 2)
    z_t, _ = cfm_path(z0, torch.ones(20000, 2), torch.zeros(20000), sigma=0.1, generator=seeded(3))
    assert z_t.std().item() == pytest.approx(0.1, rel=0.03)


def test_cfm_path_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="equal shapes"):
        cfm_path(torch.zeros(3, 2), torch.zeros(4, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="sigma"):
        cfm_path(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3), sigma=-0.1)
    with pytest.raises(ValueError, match="t must"):
        cfm_path(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2))


# cfm_loss ---------------------------------------------------------------------------------------

CLASS_SHIFTS = torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]])


class ExactShiftModel(nn.Module):
    """Returns ``z1 - z0`` for data built as ``z1 = z0 + CLASS_SHIFTS[c]``."""

    def forward(self, t: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return condition_vector(c, 3) @ CLASS_SHIFTS


def test_cfm_loss_is_zero_for_the_exact_target_field_without_noise() -> None:
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    z0 = torch.randn(6, 2, generator=seeded(4))
    z1 = z0 + CLASS_SHIFTS[labels]
    assert cfm_loss(ExactShiftModel(), z0, z1, labels, sigma=0.0, generator=seeded(5)).item() < 1e-12


def test_cfm_loss_is_the_mean_squared_error_over_batch_and_dimensions() -> None:
    labels = torch.tensor([0, 1, 2])
    z0 = torch.zeros(3, 2)
    z1 = CLASS_SHIFTS[labels]
    zero_model = lambda t, z, c: torch.zeros_like(z)  # noqa: E731
    assert cfm_loss(zero_model, z0, z1, labels).item() == pytest.approx(CLASS_SHIFTS.pow(2).mean().item())


def test_training_on_cfm_loss_learns_the_class_shifts() -> None:
    torch.manual_seed(0)
    model = ConditionalVelocityMLP(dim=2, num_classes=3, hidden_width=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = seeded(6)

    def batch_loss() -> torch.Tensor:
        labels = torch.randint(0, 3, (64,), generator=generator)
        z0 = sample_source(64, 2, generator)
        return cfm_loss(model, z0, z0 + CLASS_SHIFTS[labels], labels, generator=generator)

    initial = batch_loss().item()
    for _ in range(150):
        loss = batch_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert batch_loss().item() < 0.05 * initial


# ConditionalVelocityMLP -------------------------------------------------------------------------

def test_default_mlp_matches_the_official_toy_network() -> None:
    model = ConditionalVelocityMLP(dim=2, num_classes=4)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(7, 64), (64, 64), (64, 64), (64, 2)]
    assert sum(isinstance(m, nn.SELU) for m in model.modules()) == 3


def test_mlp_width_depth_and_activation_are_configurable() -> None:
    model = ConditionalVelocityMLP(dim=64, num_classes=10, hidden_width=256, n_hidden_layers=5,
                                   activation=nn.SiLU)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6
    assert (linears[0].in_features, linears[-1].out_features) == (75, 64)
    assert sum(isinstance(m, nn.SiLU) for m in model.modules()) == 5


def test_mlp_accepts_indices_one_hot_and_probabilities_and_any_time_shape() -> None:
    torch.manual_seed(0)
    model = ConditionalVelocityMLP(dim=3, num_classes=4)
    z = torch.randn(5, 3)
    labels = torch.tensor([0, 3, 1, 2, 3])
    from_indices = model(torch.full((5, 1), 0.3), z, labels)
    assert from_indices.shape == (5, 3)
    assert torch.equal(model(torch.full((5,), 0.3), z, labels), from_indices)
    assert torch.equal(model(torch.tensor(0.3), z, labels), from_indices)
    assert torch.equal(model(0.3, z, nn.functional.one_hot(labels, 4).float()), from_indices)
    mixed = torch.full((5, 4), 0.25)
    assert not torch.allclose(model(0.3, z, mixed), from_indices)


def test_mlp_rejects_a_condition_for_another_batch() -> None:
    model = ConditionalVelocityMLP(dim=2, num_classes=4)
    with pytest.raises(ValueError, match="rows"):
        model(0.5, torch.zeros(3, 2), torch.tensor([0, 1]))


# sampling ---------------------------------------------------------------------------------------

def test_normal_source_is_standard_normal_and_reproducible() -> None:
    z0 = sample_source(50000, 2, seeded(8))
    assert z0.shape == (50000, 2)
    assert z0.mean().abs().item() < 0.02
    assert z0.std().item() == pytest.approx(1.0, abs=0.02)
    assert torch.equal(sample_source(50000, 2, seeded(8)), z0)


def test_uniform_source_covers_the_toy_square() -> None:
    z0 = sample_source(20000, 2, seeded(9), "uniform")
    assert z0.min().item() >= -0.5 and z0.max().item() <= 0.5
    assert z0.mean().abs().item() < 0.01
    with pytest.raises(ValueError, match="unknown source"):
        sample_source(4, 2, distribution="laplace")  # type: ignore[arg-type]


def test_sample_time_is_one_uniform_time_per_sample() -> None:
    t = sample_time(10000, seeded(10))
    assert t.shape == (10000, 1)
    assert t.min().item() >= 0.0 and t.max().item() <= 1.0
    assert t.mean().item() == pytest.approx(0.5, abs=0.02)


# train_velocity ---------------------------------------------------------------------------------

def shifted_latents(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents ``(n, 2)`` of three classes around their shifts and one-hot conditions ``(n, 3)``."""
    labels = torch.arange(n) % 3
    return CLASS_SHIFTS[labels] + 0.1 * torch.randn(n, 2, generator=seeded(11)), condition_vector(labels, 3)


def test_train_velocity_sizes_the_mlp_from_the_data_and_caches_it_under_its_name_and_key() -> None:
    latents, conditions = shifted_latents(30)
    training = {"epochs": 2, "batch": 10, "lr": 1e-2, "seed": 0, "device": torch.device("cpu")}
    velocity, info = train_velocity(latents, conditions, name="toy_flow", key={"what": "toy"}, hidden_width=16,
                                    n_hidden_layers=2, **training)
    linears = [m for m in velocity.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 16), (16, 16), (16, 2)]
    assert not info["cached"] and len(info["loss"]) == 6 and not velocity.training
    again, again_info = train_velocity(latents, conditions, name="toy_flow", key={"what": "toy"}, hidden_width=16,
                                       n_hidden_layers=2, **training)
    assert again_info["cached"]
    assert all(torch.equal(a, b) for a, b in zip(velocity.state_dict().values(), again.state_dict().values()))
    renamed, renamed_info = train_velocity(latents, conditions, name="other_flow", key={"what": "toy"},
                                           hidden_width=16, n_hidden_layers=2, **training)
    assert not renamed_info["cached"]
    assert not torch.equal(renamed.network[0].weight, velocity.network[0].weight), "other name, other streams"


def test_train_velocity_refuses_latents_and_conditions_that_do_not_pair_up() -> None:
    latents, conditions = shifted_latents(30)
    key = {"what": "toy"}
    with pytest.raises(LatentcfError, match=r"\(N, D\) and conditions \(N, K\)"):
        train_velocity(latents, conditions[:20], epochs=1, batch=10, lr=1e-2, seed=0, device=torch.device("cpu"),
                       name="toy_flow", key=key)
    with pytest.raises(LatentcfError, match=r"\(N, D\) and conditions \(N, K\)"):
        train_velocity(latents, torch.arange(30) % 3, epochs=1, batch=10, lr=1e-2, seed=0,
                       device=torch.device("cpu"), name="toy_flow", key=key)
