"""The MNIST LeapFactual chapter: models, methods and Table 2 metrics on cases with known answers."""

from __future__ import annotations

import dataclasses
import inspect
import sys

import numpy as np
import pytest
import torch

from latentcf.chapters import mnist_leap
from latentcf.core.errors import LatentcfError, check_targets
from latentcf.core.paths import CACHE_DIR_ENV
from latentcf.core.runtime import RUN_OPTIONS_ENV, RunOptions
from latentcf.core.settings import STAGES, check_settings
from latentcf.core.training import epoch_batches, recalibrate_batch_norm
from latentcf.data.mnist import MnistData
from latentcf.methods.cfm import ConditionalVelocityMLP
from latentcf.methods.cgm import cgm_counterfactuals
from latentcf.methods.leap import leap_counterfactuals
from latentcf.methods.search import gradient_ascent, opt_counterfactuals
from latentcf.metrics import morpho
from latentcf.metrics.classification import macro_auroc, mean_and_sem, recognised_examples, target_accuracy
from latentcf.models.mnist_nets import MorphoClassifier, MorphoVAE, morpho_vae_loss

TINY = dataclasses.replace(mnist_leap.SMOKE, search_steps=5, leap_n_blend=2, leap_n_inject=1, eval_batch=3)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def opt_options(settings: mnist_leap.MnistLeapSettings) -> dict:
    """The Opt-based baseline's keywords at ``settings``, as the chapter passes them."""
    return {"steps": settings.search_steps, "lr": settings.search_lr,
            "distance_weight": settings.search_distance_weight, "weight_decay": settings.search_weight_decay}


def leap_options(settings: mnist_leap.MnistLeapSettings) -> dict:
    """LeapFactual's keywords at ``settings``, as the chapter passes them."""
    return {"n_blend": settings.leap_n_blend, "gamma_blend": settings.leap_gamma_blend,
            "n_inject": settings.leap_n_inject, "gamma_inject": settings.leap_gamma_inject,
            "solver": mnist_leap.solver(settings)}


def test_models_have_the_official_shapes():
    torch.manual_seed(0)
    vae, cvae, classifier = MorphoVAE().eval(), MorphoVAE(10).eval(), MorphoClassifier().eval()
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
        MorphoVAE(10).encode(images(2))
    with pytest.raises(ValueError, match="condition"):
        MorphoVAE().encode(images(2), torch.eye(10)[:2])


def test_vae_loss_is_mse_plus_weighted_kld():
    torch.manual_seed(0)
    vae = MorphoVAE().eval()
    x = images(3)
    loss = morpho_vae_loss(vae, x, torch.Generator().manual_seed(5))
    mu, logvar = vae.encode_stats(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5))
    mse = ((vae.decode(mu + (0.5 * logvar).exp() * eps) - x) ** 2).mean()
    kld = (-0.5 * (1 + logvar - mu**2 - logvar.exp())).sum(dim=1).mean()
    assert torch.isclose(loss, mse + kld / 4000)


def test_bad_images_and_targets_are_refused():
    vae, cvae, classifier = MorphoVAE(), MorphoVAE(10), MorphoClassifier()
    with pytest.raises(LatentcfError, match=r"\(B, 1, 28, 28\)"):
        opt_counterfactuals(vae.encode, vae.decode, classifier.probabilities, torch.rand(2, 28, 28),
                            torch.tensor([0, 1]), **opt_options(TINY))
    with pytest.raises(LatentcfError, match=r"\[0, 1\]"):
        cgm_counterfactuals(cvae, classifier.probabilities, 255 * images(2), torch.tensor([0, 1]), 10)
    with pytest.raises(LatentcfError, match="unknown target"):
        cgm_counterfactuals(cvae, classifier.probabilities, images(2), torch.tensor([3, 10]), 10)
    with pytest.raises(LatentcfError, match="2 integer"):
        opt_counterfactuals(vae.encode, vae.decode, classifier.probabilities, images(2), torch.tensor([1, 2, 3]),
                            **opt_options(TINY))
    with pytest.raises(LatentcfError, match="unknown target"):
        leap_counterfactuals(ConditionalVelocityMLP(32, 10), vae, classifier.probabilities, images(2),
                             torch.tensor([3, 10]), **leap_options(TINY))
    with pytest.raises(LatentcfError, match="integer class indices"):
        check_targets(torch.tensor([0.0, 1.0]), 10, 2)


def test_accuracy_and_macro_auroc_on_known_cases():
    target = torch.arange(10).repeat(3)
    perfect = torch.eye(10)[target]
    assert target_accuracy(perfect, target) == 1.0
    assert macro_auroc(perfect, target, 10) == 1.0
    assert macro_auroc(1 - perfect, target, 10) == 0.0
    half_wrong = perfect.clone()
    half_wrong[:15] = torch.eye(10)[(target[:15] + 1) % 10]
    assert target_accuracy(half_wrong, target) == 0.5


def test_macro_auroc_refuses_a_class_without_positives():
    target = torch.tensor([0, 1, 2] * 4)
    with pytest.raises(ValueError, match=r"class\(es\) \[3, 4, 5, 6, 7, 8, 9\]"):
        macro_auroc(torch.eye(10)[target], target, 10)


def test_mean_and_sem_over_runs():
    mean, sem = mean_and_sem([{"a": 1.0}, {"a": 3.0}])
    assert mean == {"a": 2.0} and sem == {"a": 1.0}
    with pytest.raises(ValueError, match="2 runs"):
        mean_and_sem([{"a": 1.0}])


class _CallsOddIndicesFour(torch.nn.Module):
    """Predicts class 4 for the images whose single pixel is odd, class 0 for the others."""

    def forward(self, x):
        return torch.nn.functional.one_hot(torch.where(x.flatten(1)[:, 0] % 2 == 1, 4, 0), 10).float()


def test_recognised_examples_are_of_the_class_and_called_so_except_in_a_dry_run(monkeypatch):
    images, labels = torch.arange(12.0).view(12, 1), torch.tensor([4] * 8 + [0] * 4)
    chosen = recognised_examples(_CallsOddIndicesFour(), images, labels, 4, 3, torch.Generator().manual_seed(0))
    assert len(chosen) == 3 and set(chosen.tolist()) <= {1, 3, 5, 7}
    again = recognised_examples(_CallsOddIndicesFour(), images, labels, 4, 3, torch.Generator().manual_seed(0))
    assert torch.equal(chosen, again)
    with pytest.raises(LatentcfError, match="only 4 test images of class 4 are predicted as 4, 6 requested"):
        recognised_examples(_CallsOddIndicesFour(), images, labels, 4, 6, torch.Generator().manual_seed(0))
    monkeypatch.setenv(RUN_OPTIONS_ENV, RunOptions(dry_run=True).environment()[RUN_OPTIONS_ENV])
    fallback = recognised_examples(_CallsOddIndicesFour(), images, labels, 4, 6, torch.Generator().manual_seed(0))
    assert len(fallback) == 6 and set(fallback.tolist()) <= set(range(8))


def test_score_counterfactuals_uses_the_reference_morphometrics():
    digits = torch.zeros(2, 28, 28)
    digits[:, 6:22, 12:16] = 1.0
    wider = digits.clone()
    wider[:, 6:22, 10:18] = 1.0
    reference, cf = morpho.measure(digits), morpho.measure(wider)
    scored = mnist_leap.score_counterfactuals(torch.eye(10), torch.arange(10), morpho.measure(wider.repeat(5, 1, 1)),
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


def test_opt_counterfactuals_refuse_a_classifier_without_gradients():
    train_x = images(20)
    knn = mnist_leap.KnnClassifier(train_x, torch.arange(20) % 10, neighbours=1)
    vae = MorphoVAE().eval()
    with pytest.raises(LatentcfError, match="black box"):
        opt_counterfactuals(vae.encode, vae.decode, knn, images(2), torch.tensor([0, 1]), **opt_options(TINY))


def test_knn_classifier_returns_vote_fractions_and_knows_its_training_images():
    train_x, train_y = images(20), torch.arange(20) % 10
    knn = mnist_leap.KnnClassifier(train_x, train_y, neighbours=1)
    votes = knn(train_x)
    assert isinstance(votes, np.ndarray) and votes.shape == (20, 10)
    assert (votes.argmax(axis=1) == train_y.numpy()).all()
    with pytest.raises(LatentcfError, match="all 10 classes"):
        mnist_leap.KnnClassifier(train_x[:5], train_y[:5], neighbours=1)


def test_leap_counterfactuals_run_with_a_numpy_classifier_and_zero_leaps_give_the_reconstruction():
    torch.manual_seed(0)
    vae = MorphoVAE().eval()
    velocity = ConditionalVelocityMLP(32, 10).eval()
    knn = mnist_leap.KnnClassifier(images(20), torch.arange(20) % 10, neighbours=3)
    x, target = images(3, seed=1), torch.tensor([2, 4, 6])
    ces = leap_counterfactuals(velocity, vae, knn, x, target, **leap_options(TINY))
    assert ces.x_cf.shape == ces.x_rcf.shape == (3, 1, 28, 28)
    assert not torch.allclose(ces.x_cf, ces.x_rcf)
    still = leap_counterfactuals(velocity, vae, knn, x, target,
                                 **leap_options(dataclasses.replace(TINY, leap_n_blend=0, leap_n_inject=0)))
    with torch.no_grad():
        assert torch.allclose(still.x_cf, vae.decode(vae.encode(x)))


def test_cgm_swaps_the_condition_only():
    torch.manual_seed(0)
    cvae, classifier = MorphoVAE(10).eval(), MorphoClassifier().eval()
    x = images(2)
    with torch.no_grad():
        expected = cvae.decode(cvae.encode(x, classifier.probabilities(x)), torch.eye(10)[[4, 8]])
    assert torch.allclose(cgm_counterfactuals(cvae, classifier.probabilities, x, torch.tensor([4, 8]), 10), expected)


def test_paper_scale_refuses_the_offline_subset():
    offline_paper = dataclasses.replace(mnist_leap.PAPER, data_source="offline")
    with pytest.raises(LatentcfError, match="60,000"):
        mnist_leap.load_data(offline_paper, torch.device("cpu"))


def test_a_missing_scikit_learn_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.neighbors", None)
    with pytest.raises(LatentcfError, match="pip install scikit-learn"):
        mnist_leap.KnnClassifier(images(20), torch.arange(20) % 10, neighbours=1)


def test_batch_norm_recalibration_gives_the_exact_training_statistics():
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    x = torch.randn(40, 3) * 5 + 2
    recalibrate_batch_norm(network, lambda batch: network(x[batch]), torch.arange(40).split(10))
    with torch.no_grad():
        hidden = network[0](x)
    assert torch.allclose(network[1].running_mean, hidden.mean(dim=0), atol=1e-5)
    assert network[1].momentum == 0.1 and not network.training


def test_settings_follow_the_chapter_contract():
    check_settings(mnist_leap.PAPER)
    check_settings(mnist_leap.SMOKE)
    assert (mnist_leap.PAPER.scale, mnist_leap.SMOKE.scale) == ("paper", "smoke")
    assert mnist_leap.PAPER.data_source == "full" and mnist_leap.SMOKE.data_source == "offline"
    assert (mnist_leap.PAPER.search_steps, mnist_leap.PAPER.leap_n_blend, mnist_leap.PAPER.eval_n) == (1000, 15, 9728)


def test_training_functions_take_data_settings_seed_device_then_keywords():
    for train in (mnist_leap.train_flow, mnist_leap.train_knn_flow, mnist_leap.train_models):
        parameters = list(inspect.signature(train).parameters.values())
        assert [p.name for p in parameters[:4]] == ["data", "settings", "seed", "device"]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[4:])


def test_counterfactual_timings_are_keyed_by_stage():
    torch.manual_seed(0)
    vae = MorphoVAE().eval()
    models = mnist_leap.ChapterModels(MorphoClassifier().eval(), vae, MorphoVAE(10).eval(),
                                      ConditionalVelocityMLP(32, 10).eval(), {})
    ces, seconds = mnist_leap.all_counterfactuals(models, images(4), torch.tensor([1, 3, 5, 7]), TINY)
    assert set(ces) == set(mnist_leap.METHODS) and all(x.shape == (4, 1, 28, 28) for x in ces.values())
    assert set(seconds) == {"seconds_search_opt", "seconds_cvae_cgm", "seconds_leap"}
    assert all(name.removeprefix("seconds_").split("_")[0] in STAGES for name in seconds)


def test_cached_models_retrain_exactly_when_a_stage_they_depend_on_changes(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    data = MnistData(images(20), torch.arange(20) % 10, images(10, seed=1), torch.arange(10), "random")
    settings = dataclasses.replace(mnist_leap.SMOKE, classifier_epochs=1, vae_epochs=1, cvae_epochs=1,
                                   flow_epochs=1, classifier_batch=10, vae_batch=10, cvae_batch=10, flow_batch=10)
    device = torch.device("cpu")
    first = mnist_leap.train_models(data, settings, 0, device)
    assert not any(info["cached"] for info in first.info.values())
    unchanged = mnist_leap.train_models(data, dataclasses.replace(settings, search_steps=7, eval_n=3), 0, device)
    assert all(info["cached"] for info in unchanged.info.values())
    new_classifier = mnist_leap.train_models(data, dataclasses.replace(settings, classifier_lr=1e-3), 0, device)
    assert {name: info["cached"] for name, info in new_classifier.info.items()} == \
        {"classifier": False, "vae": True, "cvae": False, "flow": False}
    new_data = mnist_leap.train_models(data, dataclasses.replace(settings, data_source="full"), 0, device)
    assert not any(info["cached"] for info in new_data.info.values())
    new_seed = mnist_leap.train_models(data, settings, 1, device)
    assert not any(info["cached"] for info in new_seed.info.values())
