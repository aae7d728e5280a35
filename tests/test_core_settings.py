"""Settings, named random streams and target checks of ``latentcf.core``."""

import dataclasses

import pytest
import torch

from latentcf.core.errors import LatentcfError, check_targets
from latentcf.core.runtime import generator, seed_stream, stream_seed
from latentcf.core.settings import check_settings, stage_of, stage_settings


@dataclasses.dataclass(frozen=True)
class ToySettings:
    scale: str
    data_n: int
    flow_lr: float
    flow_steps: int
    search_lr: float


TOY = ToySettings(scale="smoke", data_n=10, flow_lr=1e-3, flow_steps=5, search_lr=0.1)


def test_stage_settings_hold_the_named_stages_the_seed_and_extras():
    key = stage_settings(TOY, "data", "flow", seed=3, architecture="mlp")
    assert key == {"data_n": 10, "flow_lr": 1e-3, "flow_steps": 5, "seed": 3, "architecture": "mlp"}
    assert stage_settings(dataclasses.replace(TOY, search_lr=9.0), "data", "flow", seed=3, architecture="mlp") == key
    assert stage_settings(dataclasses.replace(TOY, flow_steps=6), "data", "flow", seed=3, architecture="mlp") != key


def test_unknown_stages_and_unprefixed_fields_are_refused():
    with pytest.raises(LatentcfError, match="unknown stage 'training'"):
        stage_settings(TOY, "training", seed=0)
    with pytest.raises(LatentcfError, match="'n_eval' does not start with a known stage"):
        stage_of("n_eval")

    @dataclasses.dataclass(frozen=True)
    class Unprefixed:
        scale: str
        hidden: int

    with pytest.raises(LatentcfError, match="'hidden'"):
        check_settings(Unprefixed("smoke", 4))
    check_settings(TOY)


def test_named_streams_are_reproducible_and_independent():
    assert stream_seed(0, "wae/augment") == stream_seed(0, "wae/augment")
    assert len({stream_seed(seed, name) for seed in (0, 1) for name in ("a", "b")}) == 4
    first = torch.rand(4, generator=generator(0, "targets"))
    torch.testing.assert_close(torch.rand(4, generator=generator(0, "targets")), first)
    assert not torch.equal(torch.rand(4, generator=generator(1, "targets")), first)
    seed_stream(0, "flow/init")
    drawn = torch.rand(2)
    seed_stream(0, "flow/init")
    torch.testing.assert_close(torch.rand(2), drawn)


def test_check_targets_accepts_class_indices_and_refuses_the_rest():
    target = torch.tensor([0, 9, 3])
    assert check_targets(target, 10, 3) is target
    with pytest.raises(LatentcfError, match="unknown target class"):
        check_targets(torch.tensor([0, 10]), 10)
    with pytest.raises(LatentcfError, match="integer class indices"):
        check_targets(torch.tensor([0.0, 1.0]), 10)
    with pytest.raises(LatentcfError, match="3 integer class indices"):
        check_targets(torch.tensor([0, 1]), 10, 3)
    with pytest.raises(LatentcfError, match="integer class indices"):
        check_targets(torch.tensor([True, False]), 10)
