"""The Galaxy10 LeapFactual pipeline: targets, augmentation, CE subsets, refusals, and a tiny end-to-end run."""

from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext

import pytest
import torch

from latentcf.chapters import galaxy_leap
from latentcf.core.errors import LatentcfError
from latentcf.core.runtime import RunOptions
from latentcf.core.settings import check_settings
from latentcf.core.training import fit
from latentcf.data import galaxy10
from latentcf.metrics import image_metrics

TINY = dataclasses.replace(
    galaxy_leap.SMOKE, data_synthetic_n=600, data_synthetic_size=40, data_synthetic_test_n=100, data_weak_per_class=2,
    wae_widths=(4, 8),
    wae_bottleneck=16, wae_epochs=1, wae_batch=32, wae_discriminator_base=4, classifier_width=1 / 64,
    classifier_hidden=8, classifier_epochs=1, classifier_min_steps=0, classifier_batch=32, flow_width=16,
    flow_layers=2, flow_epochs=2, flow_batch=16, flow_lr_drop_epoch=1, leap_n_blend=2, leap_n_inject=3,
    leap_blend_sweep=(1, 2, 3), leap_inject_sweep=(0, 1, 3), leap_gamma_lift_sweep=(1.0,),
    leap_gamma_land_sweep=(1.025,), leap_gamma_sweep_inject=(1,), leap_gamma_sweep_sources=3,
    leap_sources_per_batch=8, leap_solver_steps=1, table3_runs=2, eval_batch=64)


def test_the_smoke_test_set_adds_images_no_model_trains_on_to_the_official_split():
    data = galaxy_leap.load_data(TINY, "cpu")
    pool = galaxy10.synthetic_galaxy10(600, 40)
    official_train, official_test = galaxy10.official_split(pool.labels)
    test_only = torch.arange(600, 700)
    assert torch.equal(data.train, official_train) and torch.equal(data.test, torch.cat([official_test, test_only]))
    assert not set(data.weak.tolist()) & set(test_only.tolist()) and len(data.labels) == 700
    assert torch.equal(data.source.read_images(torch.arange(600)), pool.images)
    extra = galaxy10.synthetic_galaxy10(100, 40, seed=galaxy10.TEST_ONLY_SEED)
    assert torch.equal(data.source.read_images(test_only), extra.images)
    assert torch.equal(data.labels[test_only], extra.labels) and "100 test-only images" in data.description


def test_targets_are_the_nine_other_classes_of_every_source():
    labels = torch.tensor([0, 7, 9])
    source, target = galaxy_leap.shifted_targets(labels)
    assert source.tolist() == [0] * 9 + [1] * 9 + [2] * 9
    for index, label in enumerate(labels.tolist()):
        assert sorted(target[source == index].tolist()) == sorted(set(range(10)) - {label})


def test_rotation_keeps_a_centred_disk_fills_corners_with_zero_and_is_seeded():
    y, x = torch.meshgrid(torch.arange(32) - 15.5, torch.arange(32) - 15.5, indexing="ij")
    disk = ((x ** 2 + y ** 2) < 8 ** 2).to(torch.uint8).mul(255).expand(6, 3, 32, 32).contiguous()
    rotated = galaxy10.random_rotation(disk, torch.Generator().manual_seed(0))
    assert rotated.dtype == torch.uint8 and (rotated != disk).float().mean() < 0.03
    ones = torch.full((6, 3, 32, 32), 255, dtype=torch.uint8)
    assert (galaxy10.random_rotation(ones, torch.Generator().manual_seed(0))[:, :, 0, 0] == 0).any()
    again = galaxy10.random_rotation(disk, torch.Generator().manual_seed(0))
    assert torch.equal(rotated, again)


def test_counterfactual_subsets_are_nested_and_pair_ces_with_reliable_ces():
    generated = {"x_ce": torch.arange(40).view(40, 1, 1, 1).to(torch.uint8),
                 "x_rce": torch.arange(40).view(40, 1, 1, 1).to(torch.uint8) + 100,
                 "target": torch.arange(40) % 10}
    small = galaxy_leap.counterfactual_subset(generated, "ce", 10, {})
    large = galaxy_leap.counterfactual_subset(generated, "ce", 50, {})
    reliable = galaxy_leap.counterfactual_subset(generated, "rce", 10, {})
    assert len(small.target) == 4 and len(large.target) == 20
    assert set(small.images.flatten().tolist()) <= set(large.images.flatten().tolist())
    assert torch.equal(reliable.images - 100, small.images) and torch.equal(reliable.target, small.target)
    with pytest.raises(LatentcfError, match="unknown counterfactual kind"):
        galaxy_leap.counterfactual_subset(generated, "adversarial", 10, {})
    with pytest.raises(LatentcfError, match="percent"):
        galaxy_leap.counterfactual_subset(generated, "ce", 0, {})


def test_settings_are_stage_prefixed_and_the_smoke_scale_only_overrides_the_paper_one():
    check_settings(galaxy_leap.PAPER)
    check_settings(galaxy_leap.SMOKE)
    assert (galaxy_leap.PAPER.scale, galaxy_leap.SMOKE.scale) == ("paper", "smoke")
    assert galaxy_leap.SMOKE.leap_inject_sweep == galaxy_leap.PAPER.leap_inject_sweep  # Table 6 keeps its sweep


def test_paper_scale_refuses_the_synthetic_stand_in_and_unknown_data_sets_are_refused():
    paper_on_synthetic = dataclasses.replace(galaxy_leap.SMOKE, scale="paper")
    with pytest.raises(LatentcfError, match="need the real"):
        galaxy_leap.load_data(paper_on_synthetic, "cpu")
    with pytest.raises(LatentcfError, match="unknown data set"):
        galaxy_leap.load_data(dataclasses.replace(galaxy_leap.SMOKE, data_dataset="galaxy10-fake"), "cpu")


def test_the_real_data_set_is_named_with_its_location_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(*RunOptions(allow_missing_weights=True).environment().popitem())
    monkeypatch.setattr(galaxy10, "download_galaxy10", lambda path: (_ for _ in ()).throw(
        LatentcfError(f"could not download; put {galaxy10.FILENAME} at {path}")))
    with pytest.raises(LatentcfError, match=galaxy10.FILENAME):
        galaxy_leap.load_data(galaxy_leap.PAPER, "cpu")


def test_classifier_streams_name_the_classifier_and_the_table3_run():
    assert galaxy_leap.classifier_stream("weak", 0, "init") == "classifier/weak/run0/init"
    streams = {galaxy_leap.classifier_stream(name, run, what) for name in ("weak", "strong") for run in (0, 1)
               for what in ("init", "batches", "augment", "batch_norm")}
    assert len(streams) == 16


class _KeyRecorded(Exception):
    pass


def test_every_trained_model_is_cached_under_the_identity_of_its_images(monkeypatch):
    keys = []

    def record_key(name, key, build, train):
        keys.append(key)
        raise _KeyRecorded

    monkeypatch.setattr(galaxy_leap, "cached_model", record_key)
    data = galaxy_leap.load_data(TINY, "cpu")
    for version in (galaxy10.RENDERER_VERSION, galaxy10.RENDERER_VERSION + 1):
        monkeypatch.setattr(galaxy10, "RENDERER_VERSION", version)
        for train in (lambda: galaxy_leap.train_wae(data, TINY, 0, torch.device("cpu")),
                      lambda: galaxy_leap.train_classifier(data, TINY, 0, torch.device("cpu"), indices=data.weak,
                                                           name="weak")):
            with pytest.raises(_KeyRecorded):
                train()
    wae_key, classifier_key, new_wae_key, new_classifier_key = keys
    assert wae_key != new_wae_key and classifier_key != new_classifier_key
    assert new_wae_key == {**wae_key, "images": new_wae_key["images"]}
    assert galaxy10.SHA256 in galaxy_leap.data_identity(galaxy_leap.PAPER)


class _PerfectAutoencoder(torch.nn.Module):
    def encode(self, x):
        return x.flatten(1)

    def decode(self, z):
        return z.view(len(z), 3, 32, 32)


def test_with_a_perfect_autoencoder_reconstructions_score_as_the_test_images():
    data = galaxy_leap.load_data(TINY, "cpu")
    torch.manual_seed(0)
    weak, strong = (galaxy_leap.build_classifier(TINY).eval() for _ in range(2))
    models = galaxy_leap.GalaxyModels(_PerfectAutoencoder(), weak, strong, None, {}, 64)
    kept = galaxy_leap.reconstruction_accuracy(models, data, torch.device("cpu"), 16)
    for name, classifier in (("weak", weak), ("strong", strong)):
        assert kept[f"acc_rec_test_{name}"] == galaxy_leap.test_scores(classifier, data, torch.device("cpu"), 16)["acc"]


def test_leaps_refuse_targets_outside_the_ten_classes():
    with pytest.raises(LatentcfError, match="unknown target"):
        galaxy_leap.leap_checkpoints(None, torch.zeros(2, galaxy_leap.LATENT_DIM), torch.tensor([3, 10]),
                                     TINY, 1.0, 1.025, (), (1,))


def test_fit_follows_the_learning_rate_factor_and_clips_the_gradient():
    layer = torch.nn.Linear(3, 1)
    before = layer.weight.detach().clone()
    x = torch.randn(16, 3)
    fit(layer, lambda step: (layer(x) * 1e3).pow(2).mean(), 3, 0.1, "test", lr_factor=lambda step: 0.0,
        clip_norm=1e-3)
    assert torch.equal(layer.weight, before)
    gradient_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in layer.parameters()))
    assert gradient_norm <= 1e-3 + 1e-9


def test_the_pipeline_runs_end_to_end_on_a_tiny_synthetic_set(monkeypatch):
    monkeypatch.setattr(galaxy_leap, "lpips_squeeze", image_metrics.LPIPS)  # random weights: the code path only
    data = galaxy_leap.load_data(TINY, "cpu")
    assert len(data.weak) == 20 and set(data.weak.tolist()) <= set(data.train.tolist())
    device = torch.device("cpu")
    timed = []
    models = galaxy_leap.train_models(data, TINY, 0, device, stage=lambda name: timed.append(name) or nullcontext())
    assert timed == ["wae", "classifier_weak", "classifier_strong", "flow"]
    assert not models.info["weak"]["imagenet"] and not models.info["wae"]["imagenet_perceptual"]
    kept = galaxy_leap.reconstruction_accuracy(models, data, device, 7)
    assert set(kept) == {"acc_rec_test_weak", "acc_rec_test_strong"} and all(0 <= v <= 1 for v in kept.values())
    generated = galaxy_leap.generate_counterfactuals(models, data, TINY, 0, device)
    assert generated["x_ce"].shape == (180, 3, 32, 32) and generated["x_rce"].dtype == torch.uint8
    assert bool((generated["label"][generated["source"]] != generated["target"]).all())
    sweep = galaxy_leap.sweep_metrics(generated, ["rec", *galaxy_leap.checkpoint_names(TINY)])
    assert {"acc_r_ni3", "auc_r_ni0", "ssim_ni1", "psnr_nb3", "ssim_rec", "lpips_ni3"} <= set(sweep)
    assert all(0 <= sweep[f"acc_{name}"] <= 1 for name in galaxy_leap.checkpoint_names(TINY))
    again = galaxy_leap.generate_counterfactuals(models, data, TINY, 0, device)
    assert torch.equal(again["x_rce"], generated["x_rce"])
    gamma = galaxy_leap.gamma_sweep(models, data, TINY, 0, device)
    assert set(gamma) == {"acc_r_lift1_ni1", "ssim_lift1_ni1", "acc_r_land1p025_ni1", "ssim_land1p025_ni1"}
    mean, sem = galaxy_leap.table3(data, generated, TINY, 0, device,
                                   provenance=galaxy_leap.counterfactual_key(models, TINY, 0))
    expected = {f"{score}_{column}" for score in ("acc", "auc")
                for column in ("weak", "strong",
                               *(f"{k}_{p}" for k in galaxy_leap.CE_KINDS for p in TINY.table3_fractions))}
    assert set(mean) == expected == set(sem)
