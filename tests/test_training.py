"""The training loop's validation: the weights with the lowest held-out loss are the ones kept."""

import pytest
import torch
from torch import nn

from latentcf.core.errors import LatentcfError
from latentcf.core.training import Validation, fit


class Scalar(nn.Module):
    """One trainable number ``w``, starting at 0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))


def test_validation_restores_the_weights_with_the_lowest_held_out_loss():
    model = Scalar()
    # Training pushes w up forever (Adam: about lr per step); the held-out loss is lowest at w = 1.
    info = fit(model, lambda _: -model.w, steps=30, lr=0.1, desc="test",
               validation=Validation(lambda: (model.w - 1.0) ** 2, every=1))
    visited = torch.tensor(info["val_loss"])
    assert info["val_step"] == list(range(1, 31))
    assert info["best_step"] == info["val_step"][int(visited.argmin())]
    assert 5 <= info["best_step"] <= 15
    assert (model.w.item() - 1.0) ** 2 == pytest.approx(visited.min().item())
    assert not model.training


def test_without_validation_the_last_iterate_is_kept():
    model = Scalar()
    info = fit(model, lambda _: -model.w, steps=30, lr=0.1, desc="test")
    assert model.w.item() > 2.5
    assert "best_step" not in info


def test_validation_runs_every_n_steps_and_after_the_last():
    model = Scalar()
    info = fit(model, lambda _: -model.w, steps=25, lr=0.1, desc="test",
               validation=Validation(lambda: model.w.detach() * 0, every=10))
    assert info["val_step"] == [10, 20, 25]
    assert info["best_step"] == 10  # ties keep the earliest


def test_a_held_out_loss_that_is_never_finite_is_an_error():
    model = Scalar()
    with pytest.raises(LatentcfError, match="no held-out loss was finite"):
        fit(model, lambda _: -model.w, steps=5, lr=0.1, desc="test",
            validation=Validation(lambda: torch.tensor(float("nan")), every=1))


def test_a_validation_interval_below_one_is_refused():
    with pytest.raises(ValueError, match="every must be >= 1"):
        Validation(lambda: torch.zeros(()), every=0)


def test_fit_takes_the_same_steps_as_pytorchs_default_cpu_adamw():
    def trained(use_fit: bool) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2))
        x, y = torch.randn(64, 4), torch.randn(64, 2)

        def loss(_: int) -> torch.Tensor:
            return ((model(x) - y) ** 2).mean()

        if use_fit:
            fit(model, loss, 20, 1e-2, desc="test", weight_decay=0.1)
            return model
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
        for step in range(20):
            optimizer.zero_grad()
            loss(step).backward()
            optimizer.step()
        return model

    for mine, reference in zip(trained(True).parameters(), trained(False).parameters()):
        assert torch.equal(mine, reference)
