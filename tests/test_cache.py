import pytest
import torch

from latentcf.core.cache import cache_path, cached_model
from latentcf.core.errors import LatentcfError


def _train_counter(calls):
    def train(model):
        calls.append(1)
        torch.nn.init.constant_(model.weight, 0.5)
        return {"loss": [1.0, 0.5]}
    return train


def test_a_cached_model_is_trained_once_and_reloaded():
    calls = []
    first, info = cached_model("lin", {"width": 2}, lambda: torch.nn.Linear(2, 1), _train_counter(calls))
    second, info_again = cached_model("lin", {"width": 2}, lambda: torch.nn.Linear(2, 1), _train_counter(calls))
    assert len(calls) == 1 and not info["cached"] and info_again["cached"]
    assert info_again["loss"] == [1.0, 0.5]
    torch.testing.assert_close(second.weight, first.weight)


def test_a_changed_setting_retrains():
    calls = []
    cached_model("lin", {"width": 2, "lr": 1e-3}, lambda: torch.nn.Linear(2, 1), _train_counter(calls))
    cached_model("lin", {"width": 2, "lr": 1e-4}, lambda: torch.nn.Linear(2, 1), _train_counter(calls))
    assert len(calls) == 2


def test_a_corrupted_cache_file_is_a_clear_error():
    settings = {"width": 3}
    cached_model("lin", settings, lambda: torch.nn.Linear(2, 1), _train_counter([]))
    cache_path("lin", settings, torch.nn.Linear(2, 1)).write_bytes(b"not a checkpoint")
    with pytest.raises(LatentcfError, match="corrupted or stale.*delete it"):
        cached_model("lin", settings, lambda: torch.nn.Linear(2, 1), _train_counter([]))


def test_a_changed_architecture_retrains():
    calls = []
    cached_model("lin", {"lr": 1e-3}, lambda: torch.nn.Linear(2, 1), _train_counter(calls))
    cached_model("lin", {"lr": 1e-3}, lambda: torch.nn.Linear(2, 1, bias=False), _train_counter(calls))
    assert len(calls) == 2
