"""The cached training of the MNIST networks (``latentcf.models.mnist_training``) and of the CE-CFM field.

The functions moved out of the chapters must find the models that the chapters cached before: same
names, same keys, same architectures (the cache file is named by all three).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from latentcf.chapters import mnist_diffeo, mnist_leap
from latentcf.core.errors import LatentcfError
from latentcf.core.settings import stage_settings
from latentcf.data.mnist import MnistData
from latentcf.methods import cfm
from latentcf.methods.cfm import ConditionalVelocityMLP
from latentcf.models import mnist_training
from latentcf.models.image_flows import mnist_realnvp
from latentcf.models.mnist_nets import ConvVAE, MnistCNN, MorphoClassifier, MorphoVAE
from latentcf.models.mnist_training import l2_penalty, train_morpho_cvae

DEVICE = torch.device("cpu")


def tiny_data() -> MnistData:
    """40 random training images, four of each digit, and ten test images."""
    generator = torch.Generator().manual_seed(0)
    return MnistData(torch.rand(40, 1, 28, 28, generator=generator), torch.arange(40) % 10,
                     torch.rand(10, 1, 28, 28, generator=generator), torch.arange(10), "random")


@pytest.fixture
def cache_requests(monkeypatch) -> dict[str, tuple[dict, str]]:
    """``{name: (key, repr of the built model)}`` of every ``cached_model`` call, with nothing trained."""
    requests: dict[str, tuple[dict, str]] = {}

    def record(name, settings, build, train):
        model = build()
        requests[name] = (settings, repr(model))
        return model.eval(), {"cached": True}

    for module in (mnist_training, cfm, mnist_diffeo):
        monkeypatch.setattr(module, "cached_model", record)
    return requests


def test_the_moved_training_keeps_every_cache_name_key_and_architecture(cache_requests):
    data, leap, diffeo = tiny_data(), mnist_leap.SMOKE, mnist_diffeo.SMOKE
    models = mnist_leap.train_models(data, leap, 0, DEVICE)
    mnist_leap.train_knn_flow(data, leap, 0, DEVICE, vae=models.vae,
                              knn=mnist_leap.KnnClassifier(data.train_x, data.train_y, 3))
    mnist_diffeo.train_flow(data, diffeo, 0, DEVICE)
    mnist_diffeo.train_classifier(data, diffeo, 0, DEVICE)
    mnist_diffeo.train_vae(data, diffeo, 0, DEVICE)
    for digit in (mnist_diffeo.TARGET_CLASS, mnist_diffeo.SOURCE_CLASS):
        mnist_diffeo.train_class_autoencoder(data, diffeo, 0, DEVICE, digit=digit)
    velocity = repr(ConditionalVelocityMLP(32, 10))
    assert cache_requests == {
        "morpho_classifier": (stage_settings(leap, "data", "classifier", seed=0), repr(MorphoClassifier())),
        "morpho_vae": (stage_settings(leap, "data", "vae", seed=0), repr(MorphoVAE())),
        "morpho_cvae": (stage_settings(leap, "data", "classifier", "cvae", seed=0), repr(MorphoVAE(10))),
        "morpho_flow": (stage_settings(leap, "data", "classifier", "vae", "flow", seed=0), velocity),
        "morpho_flow_knn": (stage_settings(leap, "data", "vae", "knn", "flow", seed=0), velocity),
        "mnist_flow": (stage_settings(diffeo, "data", "flow", seed=0),
                       repr(mnist_realnvp(diffeo.flow_width, diffeo.flow_res_blocks))),
        "mnist_cnn": (stage_settings(diffeo, "data", "classifier", seed=0), repr(MnistCNN())),
        "mnist_vae": (stage_settings(diffeo, "data", "vae", seed=0), repr(ConvVAE())),
        "mnist_ae_digit9": (stage_settings(diffeo, "data", "im1", seed=0, digit=9), repr(ConvVAE())),
        "mnist_ae_digit4": (stage_settings(diffeo, "data", "im1", seed=0, digit=4), repr(ConvVAE())),
    }
    assert set(cache_requests["morpho_classifier"][0]) == {
        "data_source", "classifier_epochs", "classifier_batch", "classifier_lr", "classifier_bn_batch",
        "classifier_precision", "seed"}


def test_a_cached_model_is_found_again_and_a_changed_stage_retrains():
    data = tiny_data()
    settings = dataclasses.replace(mnist_leap.SMOKE, vae_epochs=1, vae_batch=20, vae_bn_batch=20)
    first, first_info = mnist_training.train_morpho_vae(data.train_x, settings, 0, DEVICE)
    again, again_info = mnist_training.train_morpho_vae(data.train_x, dataclasses.replace(settings, cvae_lr=1.0), 0,
                                                        DEVICE)
    assert (first_info["cached"], again_info["cached"]) == (False, True) and not again.training
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    _, retrained = mnist_training.train_morpho_vae(data.train_x, dataclasses.replace(settings, vae_lr=1e-2), 0,
                                                   DEVICE)
    assert not retrained["cached"]


def test_the_conditional_vae_needs_one_probability_row_per_training_image():
    data = tiny_data()
    with pytest.raises(LatentcfError, match=r"\(40, 10\), got \(39, 10\)"):
        train_morpho_cvae(data.train_x, torch.full((39, 10), 0.1), mnist_leap.SMOKE, 0, DEVICE)


def test_l2_penalty_gradient_is_coupled_weight_decay():
    layer = nn.Linear(3, 2)
    l2_penalty(layer, 0.1).backward()
    assert torch.allclose(layer.weight.grad, 0.1 * layer.weight.detach())
    assert l2_penalty(layer, 0.0) == 0.0
