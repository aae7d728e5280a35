"""Tests for ``latentcf.chapters.mnist_diffeo`` on cases with known answers."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest
import torch

from latentcf.chapters import mnist_diffeo
from latentcf.core.errors import LatentcfError
from latentcf.core.settings import check_settings
from latentcf.data.mnist import MnistData
from latentcf.metrics.oracle import flat_numpy
from latentcf.models.mnist_nets import CONV_VAE_LATENT_DIM, ConvVAE, MnistCNN


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *mnist_diffeo.IMAGE_SHAPE, generator=torch.Generator().manual_seed(seed))


def test_metric_spectrum_of_a_linear_generator_is_its_squared_singular_values():
    scales = torch.tensor([3.0, 0.5, 2.0, 0.1])
    spectrum = mnist_diffeo.metric_spectrum(lambda z: z * scales.view(1, 2, 2), torch.randn(3, 2, 2))
    assert torch.allclose(spectrum, torch.tensor([9.0, 4.0, 0.25, 0.01]).expand(3, 4), atol=1e-5)
    assert mnist_diffeo.effective_dimension(torch.tensor([9.0, 4.0, 0.25, 0.01]), share=0.9) == 2


def test_official_architectures_have_the_official_parameter_counts():
    assert sum(p.numel() for p in MnistCNN().parameters()) == 1_800_426
    vae = ConvVAE()
    assert sum(p.numel() for p in vae.parameters()) == 20_773
    x = images(2)
    assert vae.encode(x).shape == (2, CONV_VAE_LATENT_DIM) and vae(x).shape == x.shape
    assert math.isfinite(vae.loss(x).item())


@pytest.mark.parametrize("digit", [-1, 10, 2.0, True, "9"])
def test_a_class_autoencoder_refuses_a_digit_out_of_range(digit):
    data = MnistData(images(4), torch.arange(4), images(2), torch.arange(2), "random")
    with pytest.raises(LatentcfError, match="target class"):
        mnist_diffeo.train_class_autoencoder(data, mnist_diffeo.SMOKE, 0, torch.device("cpu"), digit=digit)


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
    assert (oracle.predict(flat_numpy(x)) == y.numpy()).all()
