"""The Galaxy10 LeapFactual pipeline: targets, augmentation, CE subsets, refusals, and a tiny end-to-end run."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from latentcf.chapters import galaxy_leap as gl
from latentcf.core.errors import LatentcfError
from latentcf.core.training import fit
from latentcf.data import galaxy10
from latentcf.metrics import image_metrics

TINY = dataclasses.replace(
    gl.SETTINGS["smoke"], data_synthetic_n=600, data_synthetic_size=40, data_weak_per_class=2, wae_widths=(4, 8),
    wae_bottleneck=16, wae_epochs=1, wae_batch=32, wae_discriminator_base=4, clf_width=1 / 64, clf_hidden=8,
    clf_epochs=1, clf_min_steps=0, clf_batch=32, flow_width=16, flow_layers=2, flow_epochs=2, flow_batch=16, flow_lr_drop_epoch=1,
    leap_n_blend=2, leap_n_inject=3, leap_blend_sweep=(1, 2, 3), leap_inject_sweep=(0, 1, 3),
    leap_gamma_lift_sweep=(1.0,), leap_gamma_land_sweep=(1.025,), leap_gamma_sweep_inject=(1,),
    leap_gamma_sweep_sources=3, leap_sources_per_batch=8, leap_solver_steps=1, table3_runs=2, eval_batch=64)


def test_targets_are_the_nine_other_classes_of_every_source():
    labels = torch.tensor([0, 7, 9])
    source, target = gl.shifted_targets(labels)
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
    small = gl.counterfactual_subset(generated, "ce", 10, {})
    large = gl.counterfactual_subset(generated, "ce", 50, {})
    reliable = gl.counterfactual_subset(generated, "rce", 10, {})
    assert len(small.target) == 4 and len(large.target) == 20
    assert set(small.images.flatten().tolist()) <= set(large.images.flatten().tolist())
    assert torch.equal(reliable.images - 100, small.images) and torch.equal(reliable.target, small.target)
    with pytest.raises(LatentcfError, match="unknown counterfactual kind"):
        gl.counterfactual_subset(generated, "adversarial", 10, {})
    with pytest.raises(LatentcfError, match="percent"):
        gl.counterfactual_subset(generated, "ce", 0, {})


def test_paper_scale_refuses_the_synthetic_stand_in_and_unknown_data_sets_are_refused():
    with pytest.raises(LatentcfError, match="need the real"):
        gl.load_data(gl.SETTINGS["smoke"], "paper")
    with pytest.raises(LatentcfError, match="unknown data set"):
        gl.load_data(dataclasses.replace(gl.SETTINGS["smoke"], data_dataset="galaxy10-fake"), "smoke")


def test_the_real_data_set_is_named_with_its_location_when_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(galaxy10, "download_galaxy10", lambda path: (_ for _ in ()).throw(
        LatentcfError(f"could not download; put {galaxy10.FILENAME} at {path}")))
    with pytest.raises(LatentcfError, match=galaxy10.FILENAME):
        gl.load_data(gl.SETTINGS["paper"], "paper")


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
    monkeypatch.setattr(gl, "lpips_squeeze", image_metrics.LPIPS)  # random weights: the code path only
    data = gl.load_data(TINY, "smoke")
    assert len(data.weak) == 20 and set(data.weak.tolist()) <= set(data.train.tolist())
    device = torch.device("cpu")
    models = gl.train_models(data, TINY, 0, device)
    assert not models.info["weak"]["imagenet"] and not models.info["wae"]["imagenet_perceptual"]
    generated = gl.generate_counterfactuals(models, data, TINY, 0, device)
    assert generated["x_ce"].shape == (180, 3, 32, 32) and generated["x_rce"].dtype == torch.uint8
    assert torch.equal(generated["label"][generated["source"]] != generated["target"], torch.ones(180, dtype=torch.bool))
    sweep = gl.sweep_metrics(generated, ["rec", *gl.checkpoint_names(TINY)])
    assert {"acc_r_ni3", "auc_r_ni0", "ssim_ni1", "psnr_nb3", "ssim_rec", "lpips_ni3"} <= set(sweep)
    assert all(0 <= sweep[f"acc_{name}"] <= 1 for name in gl.checkpoint_names(TINY))
    again = gl.generate_counterfactuals(models, data, TINY, 0, device)
    assert torch.equal(again["x_rce"], generated["x_rce"])
    gamma = gl.gamma_sweep(models, data, TINY, 0, device)
    assert set(gamma) == {"acc_r_lift1_ni1", "ssim_lift1_ni1", "acc_r_land1p025_ni1", "ssim_land1p025_ni1"}
    mean, sem = gl.table3(data, generated, TINY, 0, device, gl.counterfactual_key(models, TINY, 0))
    expected = {f"{score}_{column}" for score in ("acc", "auc")
                for column in ("weak", "strong", *(f"{k}_{p}" for k in gl.CE_KINDS for p in gl.CE_FRACTIONS))}
    assert set(mean) == expected == set(sem)
