"""Batched gradient ascent (Algorithm 1 of Dombrowski et al.), the searches on MNIST images and LeapFactual's
Opt-based baseline in ``latentcf.methods.search``."""

import numpy as np
import pytest
import torch
from torch import nn

from latentcf.core.errors import LatentcfError
from latentcf.methods.search import (
    THRESHOLD,
    gradient_ascent,
    opt_counterfactuals,
    search_in_latent,
    search_in_x,
    target_score,
)
from latentcf.models.mnist_nets import MorphoClassifier, MorphoVAE


def _distance_score(targets, tolerance=0.05):
    def score(x, idx):
        distance = (x - targets[idx]).norm(dim=1)
        return distance**2, distance < tolerance
    return score


def _problem():
    generator = torch.Generator().manual_seed(0)
    v_start = torch.randn(6, 2, generator=generator, dtype=torch.float64)
    targets = v_start + torch.tensor([[0.0, 0.0], [0.3, 0.0], [1.0, -1.0], [3.0, 2.0], [0.0, 0.2], [50.0, 50.0]],
                                     dtype=torch.float64)
    return v_start, targets


def test_batched_ascent_equals_one_sample_at_a_time():
    v_start, targets = _problem()
    batched = gradient_ascent(v_start, torch.tanh, _distance_score(targets),
                              lr=0.05, max_steps=300)
    for i in range(len(v_start)):
        alone = gradient_ascent(v_start[i:i + 1], torch.tanh, _distance_score(targets[i:i + 1]),
                                lr=0.05, max_steps=300)
        assert alone.steps.item() == batched.steps[i].item()
        assert alone.success.item() == batched.success[i].item()
        torch.testing.assert_close(alone.v[0], batched.v[i])


def test_each_sample_stops_when_it_reaches_its_target():
    v_start, targets = _problem()
    result = gradient_ascent(v_start, lambda v: v, _distance_score(targets), lr=0.05, max_steps=200,
                             record_trajectory=True)
    assert result.steps[0] == 0 and result.success[0]
    assert result.steps[1] < result.steps[2] < result.steps[3]
    assert not result.success[5] and result.steps[5] == 200
    reached = result.success
    assert ((result.x[reached] - targets[reached]).norm(dim=1) < 0.05).all()
    assert result.trajectory.shape == (201, 6, 2)
    stopped_at = result.steps[1].item()
    assert (result.trajectory[stopped_at:, 1] == result.trajectory[-1, 1]).all()


def test_a_stopped_sample_does_not_move_while_others_continue():
    v_start, targets = _problem()
    result = gradient_ascent(v_start, lambda v: v, _distance_score(targets), lr=0.05, max_steps=50)
    torch.testing.assert_close(result.v[0], v_start[0])
    torch.testing.assert_close(result.x[0], v_start[0])


def test_the_networks_weights_get_no_gradient_and_the_search_is_unchanged_by_it():
    """Only the searched variable is differentiated: a generator's weights keep ``.grad = None``, and the
    result equals that of the same search with the weights frozen."""
    v_start, targets = _problem()
    torch.manual_seed(0)
    generator = nn.Linear(2, 2).double()
    result = gradient_ascent(v_start, generator, _distance_score(targets), lr=0.05, max_steps=100)
    assert all(p.grad is None for p in generator.parameters())
    frozen = gradient_ascent(v_start, generator.requires_grad_(False), _distance_score(targets), lr=0.05,
                             max_steps=100)
    assert torch.equal(result.v, frozen.v) and torch.equal(result.steps, frozen.steps)


# Searches on MNIST images -------------------------------------------------------------------------

def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def linear_classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def test_search_in_x_reaches_the_target_of_a_linear_classifier():
    classifier = linear_classifier()
    result = search_in_x(images(3) * 0.5 + 0.25, classifier, torch.full((3,), 9), lr=0.05, max_steps=200, chunk=2)
    assert result.success.all() and result.x.shape == (3, 1, 28, 28)
    assert (classifier(result.x).softmax(1)[:, 9] > THRESHOLD).all()
    assert result.x.min() >= 0 and result.x.max() <= 1


def test_search_in_latent_decodes_through_the_generator():
    classifier = linear_classifier()
    result = search_in_latent(images(2) * 0.5 + 0.25, classifier, lambda x: x.flatten(1),
                              lambda z: z.view(-1, 1, 28, 28), torch.full((2,), 9), lr=0.05, max_steps=200)
    assert result.success.all() and result.v.shape == (2, 784)
    assert torch.allclose(result.x, result.v.view(-1, 1, 28, 28).clamp(0, 1))


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_each_image_of_one_batch_stops_at_its_own_target(chunk):
    classifier = linear_classifier()
    x_start, targets = images(3) * 0.5 + 0.25, torch.tensor([2, 7, 2])
    in_x = search_in_x(x_start, classifier, targets, lr=0.05, max_steps=300, chunk=chunk)
    in_z = search_in_latent(x_start, classifier, lambda x: x.flatten(1), lambda z: z.view(-1, 1, 28, 28), targets,
                            lr=0.05, max_steps=300, chunk=chunk)
    for result in (in_x, in_z):
        with torch.no_grad():
            probabilities = classifier(result.x).softmax(1)
        assert result.success.all() and torch.equal(probabilities.argmax(1), targets)
        assert (probabilities[torch.arange(3), targets] > THRESHOLD).all()
    for i in range(3):
        alone = search_in_x(x_start[i:i + 1], classifier, targets[i:i + 1], lr=0.05, max_steps=300)
        assert alone.steps.item() == in_x.steps[i].item()
        torch.testing.assert_close(alone.x[0], in_x.x[i])


def test_target_score_looks_up_each_samples_target_by_its_index():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    score = target_score(lambda x: x, torch.tensor([0, 1, 2]), threshold=0.9)
    loss, reached = score(logits, torch.tensor([0, 2]))
    assert reached.tolist() == [True, True]
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2]), reduction="none"))
    _, reached = score(logits, torch.tensor([1, 2]))
    assert reached.tolist() == [False, True]


@pytest.mark.parametrize("bad, message", [
    (torch.rand(2, 28, 28), "shape"),
    (torch.rand(2, 3, 28, 28), "shape"),
    (torch.rand(2, 1, 28, 28) * 255, "values in"),
    (torch.randint(0, 255, (2, 1, 28, 28), dtype=torch.uint8), "float tensor"),
])
def test_searches_refuse_images_of_the_wrong_shape_or_range(bad, message):
    classifier = linear_classifier()
    with pytest.raises(LatentcfError, match=message):
        search_in_x(bad, classifier, torch.full((2,), 9), lr=0.1, max_steps=1)
    with pytest.raises(LatentcfError, match=message):
        search_in_latent(bad, classifier, lambda x: x, lambda z: z, torch.full((2,), 9), lr=0.1, max_steps=1)


@pytest.mark.parametrize("target, message", [
    (torch.tensor([-1]), "unknown target class"),
    (torch.tensor([10]), "unknown target class"),
    (torch.tensor([2.0]), "integer class indices"),
    (torch.tensor([True]), "integer class indices"),
    (torch.tensor([1, 2]), "1 integer class indices"),
    (9, "integer class indices"),
])
def test_searches_refuse_targets_that_are_not_one_class_per_image(target, message):
    classifier = linear_classifier()
    with pytest.raises(LatentcfError, match=message):
        search_in_x(images(1), classifier, target, lr=0.1, max_steps=1)
    with pytest.raises(LatentcfError, match=message):
        search_in_latent(images(1), classifier, lambda x: x, lambda z: z, target, lr=0.1, max_steps=1)


# LeapFactual's Opt-based baseline ------------------------------------------------------------------

OPT = {"lr": 0.2, "distance_weight": 6e-4, "weight_decay": 0.01}


def test_opt_counterfactuals_start_at_the_reconstruction_and_move_towards_the_target():
    torch.manual_seed(0)
    vae, classifier = MorphoVAE().eval(), MorphoClassifier().eval()
    x, target = images(4), torch.tensor([1, 3, 5, 7])
    unmoved = opt_counterfactuals(vae.encode, vae.decode, classifier.probabilities, x, target, steps=0, **OPT)
    with torch.no_grad():
        assert torch.allclose(unmoved, vae.decode(vae.encode(x)), atol=1e-6)
    moved = opt_counterfactuals(vae.encode, vae.decode, classifier.probabilities, x, target, steps=30, **OPT)
    with torch.no_grad():
        before = classifier.probabilities(unmoved)[torch.arange(4), target]
        after = classifier.probabilities(moved)[torch.arange(4), target]
    assert bool((after > before).all())


def test_opt_counterfactuals_take_the_number_of_classes_from_the_classifier():
    vae = MorphoVAE().eval()
    three_classes = nn.Sequential(nn.Flatten(), nn.Linear(784, 3), nn.Softmax(dim=1))
    assert opt_counterfactuals(vae.encode, vae.decode, three_classes, images(2), torch.tensor([0, 2]), steps=1,
                               **OPT).shape == (2, 1, 28, 28)
    with pytest.raises(LatentcfError, match=r"unknown target class\(es\) \[3\]"):
        opt_counterfactuals(vae.encode, vae.decode, three_classes, images(2), torch.tensor([0, 3]), steps=1, **OPT)


def test_opt_counterfactuals_refuse_bad_inputs_and_a_classifier_without_gradients():
    vae, classifier = MorphoVAE().eval(), MorphoClassifier().eval()
    with pytest.raises(LatentcfError, match=r"\(B, 1, 28, 28\)"):
        opt_counterfactuals(vae.encode, vae.decode, classifier.probabilities, torch.rand(2, 28, 28),
                            torch.tensor([0, 1]), steps=1, **OPT)
    with pytest.raises(LatentcfError, match="2 integer"):
        opt_counterfactuals(vae.encode, vae.decode, classifier.probabilities, images(2), torch.tensor([1, 2, 3]),
                            steps=1, **OPT)
    black_box = lambda x: np.full((len(x), 10), 0.1, dtype=np.float32)  # noqa: E731
    with pytest.raises(LatentcfError, match="black box"):
        opt_counterfactuals(vae.encode, vae.decode, black_box, images(2), torch.tensor([0, 1]), steps=1, **OPT)
