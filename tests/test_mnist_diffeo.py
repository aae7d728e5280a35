"""Tests for ``latentcf.chapters.mnist_diffeo`` on cases with known answers."""

from __future__ import annotations

import dataclasses
import inspect
import math

import numpy as np
import pytest
import torch
from torch import nn

from latentcf.chapters import mnist_diffeo
from latentcf.core.errors import LatentcfError
from latentcf.core.settings import check_settings
from latentcf.data.mnist import MnistData
from latentcf.models.mnist_nets import CONV_VAE_LATENT_DIM, ConvVAE, MnistCNN


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
    return torch.rand(n, *mnist_diffeo.IMAGE_SHAPE, generator=torch.Generator().manual_seed(seed))


def test_im1_of_a_perfect_target_autoencoder_is_zero_and_of_known_errors_their_ratio():
    x = images(3)
    assert torch.allclose(mnist_diffeo.im1(x, Scaled(1.0), Scaled(0.5)), torch.zeros(3))
    assert torch.allclose(mnist_diffeo.im1(x, Scaled(0.0), Scaled(0.5), eps=0.0), torch.full((3,), 2.0))


def test_knn_target_fraction_counts_neighbours_and_skips_the_excluded_source():
    pool = torch.arange(10.0).view(10, 1)
    labels = torch.tensor([9, 9, 9, 4, 4, 4, 4, 4, 4, 4])
    queries = torch.tensor([[0.0], [9.0]])
    assert mnist_diffeo.knn_target_fraction(queries, pool, labels, 9, k=2).tolist() == [1.0, 0.0]
    assert mnist_diffeo.knn_target_fraction(queries, pool, labels, 9, k=4).tolist() == [0.75, 0.0]
    excluded = mnist_diffeo.knn_target_fraction(queries, pool, labels, 9, k=3, exclude=torch.tensor([0, -1]))
    assert excluded.tolist() == pytest.approx([2 / 3, 0.0])


def test_balanced_pool_and_pool_positions():
    labels = torch.arange(10).repeat_interleave(5)
    pool = mnist_diffeo.balanced_pool(labels, 3, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[pool], minlength=10).tolist() == [3] * 10
    positions = mnist_diffeo.pool_positions(pool, torch.tensor([pool[4].item(), 10_000]))
    assert positions.tolist() == [4, -1]
    with pytest.raises(LatentcfError, match="fewer than 6"):
        mnist_diffeo.balanced_pool(labels, 6, torch.Generator().manual_seed(0))


def test_l2_to_source_and_to_class_on_known_vectors():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    b = torch.zeros(2, 2)
    assert mnist_diffeo.l2_to_source(a, b).tolist() == [5.0, 0.0]
    members = torch.tensor([[0.0, 0.0], [6.0, 8.0]])
    assert mnist_diffeo.l2_to_class(a, members).tolist() == pytest.approx([5.0, 5.0])


def test_target_agreement_is_the_share_of_oracle_votes_for_the_target():
    x = torch.zeros(4, *mnist_diffeo.IMAGE_SHAPE)
    x[:, 0, 0, 0] = torch.tensor([0.9, 0.9, 0.4, 0.9])
    assert mnist_diffeo.target_agreement(LabelOracle(), x, 9) == 0.75
    assert mnist_diffeo.target_agreement(LabelOracle(), x, 4) == 0.25


def test_metric_spectrum_of_a_linear_generator_is_its_squared_singular_values():
    scales = torch.tensor([3.0, 0.5, 2.0, 0.1])
    spectrum = mnist_diffeo.metric_spectrum(lambda z: z * scales.view(1, 2, 2), torch.randn(3, 2, 2))
    assert torch.allclose(spectrum, torch.tensor([9.0, 4.0, 0.25, 0.01]).expand(3, 4), atol=1e-5)
    assert mnist_diffeo.effective_dimension(torch.tensor([9.0, 4.0, 0.25, 0.01]), share=0.9) == 2


def test_search_in_x_reaches_the_target_of_a_linear_classifier():
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    result = mnist_diffeo.search_in_x(images(3) * 0.5 + 0.25, classifier, 9, lr=0.05, max_steps=200, chunk=2)
    assert result.success.all() and result.x.shape == (3, 1, 28, 28)
    assert (classifier(result.x).softmax(1)[:, 9] > mnist_diffeo.THRESHOLD).all()
    assert result.x.min() >= 0 and result.x.max() <= 1


def test_search_in_latent_decodes_through_the_generator():
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    result = mnist_diffeo.search_in_latent(images(2) * 0.5 + 0.25, classifier, lambda x: x.flatten(1),
                                 lambda z: z.view(-1, 1, 28, 28), 9, lr=0.05, max_steps=200)
    assert result.success.all() and result.v.shape == (2, 784)
    assert torch.allclose(result.x, result.v.view(-1, 1, 28, 28).clamp(0, 1))


@pytest.mark.parametrize("bad, message", [
    (torch.rand(2, 28, 28), "shape"),
    (torch.rand(2, 3, 28, 28), "shape"),
    (torch.rand(2, 1, 28, 28) * 255, "values in"),
    (torch.randint(0, 255, (2, 1, 28, 28), dtype=torch.uint8), "float tensor"),
])
def test_searches_refuse_images_of_the_wrong_shape_or_range(bad, message):
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(LatentcfError, match=message):
        mnist_diffeo.search_in_x(bad, classifier, 9, lr=0.1, max_steps=1)
    with pytest.raises(LatentcfError, match=message):
        mnist_diffeo.search_in_latent(bad, classifier, lambda x: x, lambda z: z, 9, lr=0.1, max_steps=1)


@pytest.mark.parametrize("target", [-1, 10, 2.0, True, "9"])
def test_searches_refuse_a_target_class_out_of_range(target):
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(LatentcfError, match="target class"):
        mnist_diffeo.search_in_x(images(1), classifier, target, lr=0.1, max_steps=1)


def test_l2_penalty_gradient_is_coupled_weight_decay():
    layer = nn.Linear(3, 2)
    mnist_diffeo.l2_penalty(layer, 0.1).backward()
    assert torch.allclose(layer.weight.grad, 0.1 * layer.weight.detach())
    assert mnist_diffeo.l2_penalty(layer, 0.0) == 0.0


def test_official_architectures_have_the_official_parameter_counts():
    assert sum(p.numel() for p in MnistCNN().parameters()) == 1_800_426
    vae = ConvVAE()
    assert sum(p.numel() for p in vae.parameters()) == 20_773
    x = images(2)
    assert vae.encode(x).shape == (2, CONV_VAE_LATENT_DIM) and vae(x).shape == x.shape
    assert math.isfinite(vae.loss(x).item())


def test_paper_scale_refuses_the_offline_subset():
    offline_paper = dataclasses.replace(mnist_diffeo.PAPER, data_source="offline")
    with pytest.raises(LatentcfError, match="60,000"):
        mnist_diffeo.load_data(offline_paper, torch.device("cpu"))


def test_settings_are_stage_prefixed_and_smoke_only_shrinks_the_paper_scale():
    check_settings(mnist_diffeo.PAPER)
    check_settings(mnist_diffeo.SMOKE)
    assert (mnist_diffeo.PAPER.scale, mnist_diffeo.SMOKE.scale) == ("paper", "smoke")
    assert mnist_diffeo.SMOKE.search_max_steps == mnist_diffeo.PAPER.search_max_steps


@pytest.mark.parametrize("train", [mnist_diffeo.train_flow, mnist_diffeo.train_classifier, mnist_diffeo.train_vae,
                                   mnist_diffeo.train_class_autoencoder, mnist_diffeo.train_oracle])
def test_training_functions_take_data_settings_seed_device_first(train):
    parameters = list(inspect.signature(train).parameters.values())
    assert [p.name for p in parameters[:4]] == ["data", "settings", "seed", "device"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[4:])


def test_oracle_is_trained_on_a_seeded_subset_and_separates_two_clean_classes():
    x = torch.zeros(40, *mnist_diffeo.IMAGE_SHAPE)
    y = torch.arange(40) % 2
    x[y == 1, 0, :14] = 1.0
    data = MnistData(x, y, x, y, "two synthetic classes")
    settings = dataclasses.replace(mnist_diffeo.SMOKE, oracle_train_size=30)
    oracle = mnist_diffeo.train_oracle(data, settings, 0, torch.device("cpu"))
    assert (oracle.predict(mnist_diffeo.flat_numpy(x)) == y.numpy()).all()
