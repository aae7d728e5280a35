"""The scores of counterfactuals on cases with known answers: realism (``metrics.realism``: IM1, nearest
neighbours), closeness (``metrics.proximity``) and the oracle's verdict (``metrics.oracle``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from latentcf.core.errors import LatentcfError
from latentcf.metrics.oracle import flat_numpy, target_agreement, train_svm_oracle
from latentcf.metrics.proximity import l2_to_class, l2_to_source
from latentcf.metrics.realism import balanced_pool, im1, knn_target_fraction, pool_positions


class Scaled(nn.Module):
    """``x -> factor * x``: an autoencoder with a known reconstruction error ``|1 - factor| |x|``."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * x


class LabelOracle:
    """An oracle that answers a fixed label per image, looked up by the image's first pixel."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.rint(x[:, 0] * 10).astype(int)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_im1_of_a_perfect_target_autoencoder_is_zero_and_of_known_errors_their_ratio():
    x = images(3)
    assert torch.allclose(im1(x, Scaled(1.0), Scaled(0.5)), torch.zeros(3))
    assert torch.allclose(im1(x, Scaled(0.0), Scaled(0.5), eps=0.0), torch.full((3,), 2.0))


def test_knn_target_fraction_counts_neighbours_and_skips_the_excluded_source():
    pool = torch.arange(10.0).view(10, 1)
    labels = torch.tensor([9, 9, 9, 4, 4, 4, 4, 4, 4, 4])
    queries = torch.tensor([[0.0], [9.0]])
    assert knn_target_fraction(queries, pool, labels, 9, k=2).tolist() == [1.0, 0.0]
    assert knn_target_fraction(queries, pool, labels, 9, k=4).tolist() == [0.75, 0.0]
    excluded = knn_target_fraction(queries, pool, labels, 9, k=3, exclude=torch.tensor([0, -1]))
    assert excluded.tolist() == pytest.approx([2 / 3, 0.0])


def test_knn_target_fraction_takes_one_target_per_query():
    pool = torch.arange(10.0).view(10, 1)
    labels = torch.tensor([9, 9, 9, 4, 4, 4, 4, 4, 4, 4])
    queries = torch.tensor([[0.0], [9.0], [1.0]])
    assert knn_target_fraction(queries, pool, labels, torch.tensor([9, 4, 4]), k=2).tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(LatentcfError, match="3 integer class indices"):
        knn_target_fraction(queries, pool, labels, torch.tensor([9, 4]), k=2)
    with pytest.raises(LatentcfError, match="unknown target"):
        knn_target_fraction(queries, pool, labels, -1, k=2)


def test_balanced_pool_and_pool_positions():
    labels = torch.arange(10).repeat_interleave(5)
    pool = balanced_pool(labels, 3, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[pool], minlength=10).tolist() == [3] * 10
    positions = pool_positions(pool, torch.tensor([pool[4].item(), 10_000]))
    assert positions.tolist() == [4, -1]
    with pytest.raises(LatentcfError, match="fewer than 6"):
        balanced_pool(labels, 6, torch.Generator().manual_seed(0))


def test_l2_to_source_and_to_class_on_known_vectors():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    b = torch.zeros(2, 2)
    assert l2_to_source(a, b).tolist() == [5.0, 0.0]
    members = torch.tensor([[0.0, 0.0], [6.0, 8.0]])
    assert l2_to_class(a, members).tolist() == pytest.approx([5.0, 5.0])


def test_target_agreement_is_the_share_of_oracle_votes_for_each_images_target():
    x = torch.zeros(4, 1, 28, 28)
    x[:, 0, 0, 0] = torch.tensor([0.9, 0.9, 0.4, 0.9])
    assert target_agreement(LabelOracle(), x, 9) == 0.75
    assert target_agreement(LabelOracle(), x, 4) == 0.25
    assert target_agreement(LabelOracle(), x, torch.tensor([9, 4, 4, 9])) == 0.75
    assert math.isnan(target_agreement(LabelOracle(), x[:0], 9))


@pytest.mark.parametrize("target", [2.0, True, "9", torch.tensor([9, 9]), torch.tensor([9.0, 9.0, 9.0, 9.0])])
def test_target_agreement_refuses_targets_that_are_not_class_indices(target):
    with pytest.raises(LatentcfError, match="target"):
        target_agreement(LabelOracle(), torch.zeros(4, 1, 28, 28), target)


def test_svm_oracle_separates_two_clean_classes_from_a_drawn_subset():
    x = torch.zeros(40, 1, 28, 28)
    y = torch.arange(40) % 2
    x[y == 1, 0, :14] = 1.0
    oracle = train_svm_oracle(x, y, 30, torch.Generator().manual_seed(0))
    assert oracle.shape_fit_ == (30, 784)
    assert (oracle.predict(flat_numpy(x)) == y.numpy()).all()
