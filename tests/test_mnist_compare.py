"""The head-to-head chapter: shared models come from the cache, metrics on closed-form cases, the gradient column
is true, and its relations can fail."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from latentcf.chapters import mnist_compare, mnist_diffeo, mnist_leap
from latentcf.core.claims import check_document, failures
from latentcf.core.errors import LatentcfError
from latentcf.core.settings import stage_settings
from latentcf.data.mnist import MnistData
from latentcf.methods.cfm import ConditionalVelocityMLP
from latentcf.methods.cgm import cgm_counterfactuals
from latentcf.methods.search import opt_counterfactuals
from latentcf.metrics.realism import class_im1
from latentcf.models.image_flows import mnist_realnvp
from latentcf.models.mnist_nets import NUM_CLASSES, ConvVAE, MorphoClassifier, MorphoVAE

SHARED_KEYS = [("data", "classifier"), ("data", "vae"), ("data", "classifier", "cvae"),
               ("data", "classifier", "vae", "flow")]
"""The stages of the LeapFactual chapter's cache keys: classifier, VAE, conditional VAE, CE-CFM field."""


@pytest.mark.parametrize("scale", ["SMOKE", "PAPER", "DRY_RUN"])
@pytest.mark.parametrize("stages", SHARED_KEYS, ids="+".join)
def test_the_leapfactual_chapters_models_have_the_same_cache_keys(scale, stages):
    compare, leap = getattr(mnist_compare, scale), getattr(mnist_leap, scale)
    assert stage_settings(compare, *stages, seed=0) == stage_settings(leap, *stages, seed=0)


@pytest.mark.parametrize("scale", ["SMOKE", "PAPER"])
def test_the_realnvp_is_the_diffeomorphic_chapters_recipe(scale):
    compare, diffeo = getattr(mnist_compare, scale), getattr(mnist_diffeo, scale)
    for name in ("width", "res_blocks", "epochs", "batch", "lr", "weight_decay", "precision"):
        assert getattr(compare, f"realnvp_{name}") == getattr(diffeo, f"flow_{name}"), name
    for name in ("epochs", "batch", "lr", "precision"):
        assert getattr(compare, f"im1_{name}") == getattr(diffeo, f"im1_{name}"), name


class ScaledCopy(nn.Module):
    """An autoencoder stub: ``AE(x) = x * factor``, so ``|x - AE(x)| = |x| (1 - factor)``."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def test_im1_picks_each_images_target_and_source_autoencoder():
    autoencoders = [ScaledCopy(d / 10) for d in range(NUM_CLASSES)]
    images = torch.rand(3, 1, 28, 28)
    target, source = torch.tensor([9, 0, 5]), torch.tensor([4, 9, 5])
    expected = (1 - target / 10) / (1 - source / 10)
    torch.testing.assert_close(class_im1(images, autoencoders, target, source, eps=0.0),
                               expected.float(), rtol=1e-5, atol=1e-6)


def test_best_methods_is_highest_for_validity_and_lowest_for_distances_with_ties():
    mean = {f"acc_{m}": 0.5 for m in mnist_compare.METHODS} | {"acc_leap": 0.9, "acc_cgm": 0.9}
    mean |= {f"l2_{m}_4to9": 3.0 for m in mnist_compare.METHODS} | {"l2_x_4to9": 1.0}
    assert mnist_compare.best_methods(mean, "acc") == ["cgm", "leap"]
    assert mnist_compare.best_methods(mean, "l2", "_4to9") == ["x"]


def tiny_models(seed: int = 0) -> mnist_compare.CompareModels:
    """Untrained models of the chapter's types, small enough for a unit test."""
    torch.manual_seed(seed)
    autoencoders = [ConvVAE().eval() for _ in range(NUM_CLASSES)]
    realnvp = mnist_realnvp(2, 1).eval()
    return mnist_compare.CompareModels(
        classifier=MorphoClassifier().eval(), vae=MorphoVAE().eval(), cvae=MorphoVAE(NUM_CLASSES).eval(),
        velocity=ConditionalVelocityMLP(32, NUM_CLASSES), realnvp=realnvp,
        velocity_z=ConditionalVelocityMLP(784, NUM_CLASSES), autoencoders=autoencoders, oracle=None, info={})


SMALL = dataclasses.replace(mnist_compare.SMOKE, search_max_steps=2, search_opt_steps=2, leap_n_blend=1,
                            leap_n_inject=1, search_chunk=4)


def test_every_method_makes_one_image_per_input_in_the_unit_range():
    x = torch.rand(4, 1, 28, 28)
    target = torch.tensor([0, 3, 9, 9])
    counterfactuals, seconds = mnist_compare.method_counterfactuals(tiny_models(), x, target, SMALL)
    assert list(counterfactuals) == list(mnist_compare.METHODS) and set(seconds) == set(mnist_compare.METHODS)
    for method, x_cf in counterfactuals.items():
        assert x_cf.shape == x.shape, method
        assert float(x_cf.min()) >= 0.0 and float(x_cf.max()) <= 1.0, method
    assert all(value > 0 for value in seconds.values())


def test_the_gradient_column_is_true_methods_marked_gradient_free_run_on_a_black_box():
    models = tiny_models()
    white_box = models.classifier

    class BlackBox(nn.Module):
        """The classifier's probabilities as NumPy: no gradient can pass."""

        def forward(self, x):
            return white_box.probabilities(x).detach().numpy()

        def probabilities(self, x):
            return torch.from_numpy(self(x))

    models.classifier = BlackBox()
    x, target = torch.rand(2, 1, 28, 28), torch.tensor([1, 7])
    leaps, _ = mnist_compare.timed_leaps(models, x, target, SMALL)
    assert not any(mnist_compare.NEEDS_GRADIENT[m] for m in leaps)
    assert cgm_counterfactuals(models.cvae, models.classifier.probabilities, x, target,
                                             NUM_CLASSES).shape == x.shape
    assert not mnist_compare.NEEDS_GRADIENT["cgm"]
    with pytest.raises(LatentcfError):
        opt_counterfactuals(models.vae.encode, models.vae.decode, models.classifier, x, target,
                                          steps=2, lr=0.1, distance_weight=0.0, weight_decay=0.0)
    assert mnist_compare.NEEDS_GRADIENT["vae"] and mnist_compare.NEEDS_GRADIENT["x"]
    assert mnist_compare.NEEDS_GRADIENT["z"]


def fake_data(n_per_class: int = 3) -> MnistData:
    labels = torch.arange(NUM_CLASSES).repeat_interleave(n_per_class)
    images = torch.rand(len(labels), 1, 28, 28)
    return MnistData(images, labels, images.clone(), labels.clone(), "random")


def test_the_4to9_task_takes_only_4s_that_the_classifier_calls_4():
    data = fake_data()

    class CallsEverything4(nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), 4), NUM_CLASSES).float()

    task = mnist_compare.four_to_nine_task(CallsEverything4(), data, 2, torch.Generator().manual_seed(0))
    assert (task.label == 4).all() and (task.target == 9).all() and task.suffix == "_4to9"
    with pytest.raises(LatentcfError, match="only 3 test images"):
        mnist_compare.four_to_nine_task(CallsEverything4(), data, 4, torch.Generator().manual_seed(0))


def test_random_targets_cover_the_inputs_and_refuse_too_many():
    data = fake_data()
    task = mnist_compare.random_target_task(data, 30, torch.Generator().manual_seed(0))
    assert task.suffix == "" and len(task.x) == 30 and int(task.target.max()) < NUM_CLASSES
    with pytest.raises(LatentcfError):
        mnist_compare.random_target_task(data, 31, torch.Generator().manual_seed(0))


def document(**overrides):
    metrics = {"oracle_z_4to9": 0.6, "oracle_x_4to9": 0.1, "knn_z_4to9": 0.5, "knn_x_4to9": 0.05,
               "im1_z_4to9": 0.9, "im1_x_4to9": 1.1, "acc_leap": 0.95, "acc_vae": 0.7, **overrides}
    return {"chapter": "mnist_compare", "scale": "smoke", "settings": {}, "metrics": metrics}


def _not_holding(verdicts):
    """The relations a run does not satisfy, whether its scale is gated on them or only reports them."""
    return [verdict for verdict in verdicts if verdict.passed is False]


def test_the_papers_statements_pass_on_a_run_that_shows_them():
    assert _not_holding(check_document(document())) == []


@pytest.mark.parametrize("broken", [{"oracle_z_4to9": 0.1}, {"knn_x_4to9": 0.9}, {"im1_z_4to9": 1.2},
                                    {"acc_vae": 0.99}])
def test_each_statement_fails_on_a_run_built_to_break_it(broken):
    assert len(_not_holding(check_document(document(**broken)))) == 1
    assert len(failures(check_document({**document(**broken), "scale": "paper"}))) == 1



def test_a_tuning_task_draws_training_digits_and_a_bad_split_is_refused():
    data = fake_data()
    data = MnistData(data.train_x, data.train_y, data.test_x[:5], data.test_y[:5], "random")
    assert len(mnist_compare.random_target_task(data, 30, torch.Generator().manual_seed(0), split="train").x) == 30
    with pytest.raises(LatentcfError, match="split"):
        mnist_compare.random_target_task(data, 3, torch.Generator().manual_seed(0), split="validation")


def test_the_auroc_of_targets_that_miss_a_class_is_undefined_in_a_dry_run_and_an_error_otherwise(monkeypatch):
    probabilities = torch.softmax(torch.randn(4, NUM_CLASSES), 1)
    target = torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match="no positives"):
        mnist_compare.target_auroc(probabilities, target)
    monkeypatch.setenv("LATENTCF_RUN_OPTIONS", '{"dry_run": true}')
    assert math.isnan(mnist_compare.target_auroc(probabilities, target))


def test_best_methods_can_be_restricted_to_some_methods():
    mean = {f"l2_{m}": float(i) for i, m in enumerate(mnist_compare.METHODS)}
    assert mnist_compare.best_methods(mean, "l2", among=("leap", "leap_r")) == ["leap"]
