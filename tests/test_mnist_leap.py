"""The MNIST LeapFactual chapter: models, methods and Table 2 metrics on cases with known answers."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import torch

from latentcf.chapters import mnist_leap as ml
from latentcf.core.errors import LatentcfError
from latentcf.core.training import epoch_batches, recalibrate_batch_norm
from latentcf.methods.cfm import ConditionalVelocityMLP
from latentcf.methods.search import gradient_ascent
from latentcf.metrics import morpho

TINY = dataclasses.replace(ml.SETTINGS["smoke"], opt_steps=5, n_blend=2, n_inject=1, eval_batch=3)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_models_have_the_official_shapes():
    torch.manual_seed(0)
    vae, cvae, classifier = ml.MorphoVAE().eval(), ml.MorphoVAE(10).eval(), ml.MorphoClassifier().eval()
    x = images(4)
    z = vae.encode(x)
    assert z.shape == (4, 32)
    x_rec = vae.decode(z)
    assert x_rec.shape == (4, 1, 28, 28) and x_rec.min() >= 0 and x_rec.max() <= 1
    c = torch.eye(10)[:4]
    assert cvae.decode(cvae.encode(x, c), c).shape == (4, 1, 28, 28)
    assert cvae.to_stats.in_features == 138 and cvae.from_latent.in_features == 42
    assert classifier(x).shape == (4, 10)
    assert torch.allclose(classifier.probabilities(x).sum(dim=1), torch.ones(4))


def test_a_conditional_vae_needs_its_condition_and_a_plain_one_refuses_it():
    with pytest.raises(ValueError, match="condition"):
        ml.MorphoVAE(10).encode(images(2))
    with pytest.raises(ValueError, match="condition"):
        ml.MorphoVAE().encode(images(2), torch.eye(10)[:2])


def test_vae_loss_is_mse_plus_weighted_kld():
    torch.manual_seed(0)
    vae = ml.MorphoVAE().eval()
    x = images(3)
    loss = ml.vae_loss(vae, x, torch.Generator().manual_seed(5))
    mu, logvar = vae.encode_stats(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5))
    mse = ((vae.decode(mu + (0.5 * logvar).exp() * eps) - x) ** 2).mean()
    kld = (-0.5 * (1 + logvar - mu**2 - logvar.exp())).sum(dim=1).mean()
    assert torch.isclose(loss, mse + kld / 4000)


def test_bad_images_and_targets_are_refused():
    with pytest.raises(LatentcfError, match=r"\(B, 1, 28, 28\)"):
        ml.opt_counterfactuals(ml.MorphoVAE(), ml.MorphoClassifier().probabilities, torch.rand(2, 28, 28),
                               torch.tensor([0, 1]), TINY)
    with pytest.raises(LatentcfError, match=r"\[0, 1\]"):
        ml.cgm_counterfactuals(ml.MorphoVAE(10), ml.MorphoClassifier(), 255 * images(2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unknown target"):
        ml.check_targets(torch.tensor([3, 10]), 2)
    with pytest.raises(ValueError, match="2 integer"):
        ml.check_targets(torch.tensor([1, 2, 3]), 2)


def test_accuracy_and_macro_auroc_on_known_cases():
    target = torch.arange(10).repeat(3)
    perfect = torch.eye(10)[target]
    assert ml.target_accuracy(perfect, target) == 1.0
    assert ml.macro_auroc(perfect, target) == 1.0
    assert ml.macro_auroc(1 - perfect, target) == 0.0
    half_wrong = perfect.clone()
    half_wrong[:15] = torch.eye(10)[(target[:15] + 1) % 10]
    assert ml.target_accuracy(half_wrong, target) == 0.5


def test_macro_auroc_refuses_a_class_without_positives():
    target = torch.tensor([0, 1, 2] * 4)
    with pytest.raises(ValueError, match=r"class\(es\) \[3, 4, 5, 6, 7, 8, 9\]"):
        ml.macro_auroc(torch.eye(10)[target], target)


def test_mean_and_sem_over_runs():
    mean, sem = ml.mean_and_sem([{"a": 1.0}, {"a": 3.0}])
    assert mean == {"a": 2.0} and sem == {"a": 1.0}
    with pytest.raises(ValueError, match="2 runs"):
        ml.mean_and_sem([{"a": 1.0}])


def test_score_counterfactuals_uses_the_reference_morphometrics():
    digits = torch.zeros(2, 28, 28)
    digits[:, 6:22, 12:16] = 1.0
    wider = digits.clone()
    wider[:, 6:22, 10:18] = 1.0
    reference, cf = morpho.measure(digits), morpho.measure(wider)
    scored = ml.score_counterfactuals(torch.eye(10), torch.arange(10), morpho.measure(wider.repeat(5, 1, 1)),
                                      morpho.measure(digits.repeat(5, 1, 1)), "opt")
    width_ratio = cf.width / reference.width
    assert scored["acc_opt"] == 1.0 and scored["auc_opt"] == 1.0
    assert scored["d_width_opt"] == pytest.approx(float(np.abs(width_ratio - 1).mean()))
    assert set(scored) == {"acc_opt", "auc_opt"} | {f"d_{name}_opt" for name in morpho.NAMES}


def test_epoch_batches_cover_every_sample_once_per_epoch():
    batches = epoch_batches(10, 4, 2, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    assert sorted(torch.cat(batches[:3]).tolist()) == list(range(10))
    assert sorted(torch.cat(batches[3:]).tolist()) == list(range(10))


def test_adamw_weight_decay_shrinks_a_latent_with_zero_gradient_geometrically():
    v_start = torch.full((2, 3), 2.0)

    def flat_score(x, idx):
        return 0.0 * x.sum(dim=1), torch.zeros(len(idx), dtype=torch.bool)

    result = gradient_ascent(v_start, lambda v: v, flat_score, lr=0.2, max_steps=10, weight_decay=0.01)
    assert torch.allclose(result.v, v_start * (1 - 0.2 * 0.01) ** 10)


def test_opt_counterfactuals_move_towards_the_target_and_start_at_the_reconstruction():
    torch.manual_seed(0)
    vae, classifier = ml.MorphoVAE().eval(), ml.MorphoClassifier().eval()
    x, target = images(4), torch.tensor([1, 3, 5, 7])
    unmoved = ml.opt_counterfactuals(vae, classifier.probabilities, x, target,
                                     dataclasses.replace(TINY, opt_steps=0))
    assert torch.allclose(unmoved, vae.decode(vae.encode(x)), atol=1e-6)
    moved = ml.opt_counterfactuals(vae, classifier.probabilities, x, target, dataclasses.replace(TINY, opt_steps=30))
    with torch.no_grad():
        before = classifier.probabilities(unmoved)[torch.arange(4), target]
        after = classifier.probabilities(moved)[torch.arange(4), target]
    assert bool((after > before).all())


def test_opt_counterfactuals_refuse_a_classifier_without_gradients():
    train_x = images(20)
    knn = ml.KnnClassifier(train_x, torch.arange(20) % 10, neighbours=1)
    with pytest.raises(LatentcfError, match="black box"):
        ml.opt_counterfactuals(ml.MorphoVAE().eval(), knn, images(2), torch.tensor([0, 1]), TINY)


def test_knn_classifier_returns_vote_fractions_and_knows_its_training_images():
    train_x, train_y = images(20), torch.arange(20) % 10
    knn = ml.KnnClassifier(train_x, train_y, neighbours=1)
    votes = knn(train_x)
    assert isinstance(votes, np.ndarray) and votes.shape == (20, 10)
    assert (votes.argmax(axis=1) == train_y.numpy()).all()
    with pytest.raises(LatentcfError, match="all 10 classes"):
        ml.KnnClassifier(train_x[:5], train_y[:5], neighbours=1)


def test_leap_counterfactuals_run_with_a_numpy_classifier_and_zero_leaps_give_the_reconstruction():
    torch.manual_seed(0)
    vae = ml.MorphoVAE().eval()
    velocity = ConditionalVelocityMLP(32, 10).eval()
    knn = ml.KnnClassifier(images(20), torch.arange(20) % 10, neighbours=3)
    x, target = images(3, seed=1), torch.tensor([2, 4, 6])
    ces = ml.leap_counterfactuals(velocity, vae, knn, x, target, TINY)
    assert ces.x_cf.shape == ces.x_rcf.shape == (3, 1, 28, 28)
    assert not torch.allclose(ces.x_cf, ces.x_rcf)
    still = ml.leap_counterfactuals(velocity, vae, knn, x, target, dataclasses.replace(TINY, n_blend=0, n_inject=0))
    with torch.no_grad():
        assert torch.allclose(still.x_cf, vae.decode(vae.encode(x)))


def test_cgm_swaps_the_condition_only():
    torch.manual_seed(0)
    cvae, classifier = ml.MorphoVAE(10).eval(), ml.MorphoClassifier().eval()
    x = images(2)
    with torch.no_grad():
        expected = cvae.decode(cvae.encode(x, classifier.probabilities(x)), torch.eye(10)[[4, 8]])
    assert torch.allclose(ml.cgm_counterfactuals(cvae, classifier, x, torch.tensor([4, 8])), expected)


def test_paper_scale_refuses_the_offline_subset():
    offline_paper = dataclasses.replace(ml.SETTINGS["paper"], data_source="offline")
    with pytest.raises(LatentcfError, match="60,000"):
        ml.load_data(offline_paper, "paper", torch.device("cpu"))


def test_a_missing_scikit_learn_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.neighbors", None)
    with pytest.raises(LatentcfError, match="pip install scikit-learn"):
        ml.KnnClassifier(images(20), torch.arange(20) % 10, neighbours=1)


def test_batch_norm_recalibration_gives_the_exact_training_statistics():
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    x = torch.randn(40, 3) * 5 + 2
    recalibrate_batch_norm(network, lambda batch: network(x[batch]), torch.arange(40).split(10))
    with torch.no_grad():
        hidden = network[0](x)
    assert torch.allclose(network[1].running_mean, hidden.mean(dim=0), atol=1e-5)
    assert network[1].momentum == 0.1 and not network.training
