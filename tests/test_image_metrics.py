"""Tests for PSNR and LPIPS as the paper computed them, and the JPEG round trip (``latentcf.metrics.image_metrics``)."""

from __future__ import annotations

import math

import pytest
import torch

from latentcf.metrics import image_metrics


def noisy_pair(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs in [0, 0.8] and copies with a noise level that differs from image to image."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 16, 16, generator=generator) * 0.8
    level = 0.15 * torch.rand(n, 1, 1, 1, generator=generator)
    return x, (x + level * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def test_pooled_psnr_pools_the_squared_errors_of_every_image_before_the_log():
    x, y = noisy_pair(9, seed=0)
    data_range = image_metrics.default_data_range(x)
    pooled = image_metrics.pooled_psnr(image_metrics.psnr(y, x), data_range)
    assert pooled == pytest.approx(10 * math.log10(data_range ** 2 / float((y - x).pow(2).mean())), abs=1e-4)
    assert pooled < float(image_metrics.psnr(y, x).mean()) - 1.0  # the per-image mean is higher


def test_pooled_psnr_equals_the_per_image_value_when_every_image_has_the_same_error():
    x = torch.zeros(4, 3, 8, 8)
    per_image = image_metrics.psnr(x + 0.1, x)
    assert image_metrics.pooled_psnr(per_image, 1.0) == pytest.approx(20.0, abs=1e-4)
    assert image_metrics.pooled_psnr(per_image, 0.5) == pytest.approx(20.0 + 20 * math.log10(0.5), abs=1e-4)


def test_the_default_data_range_is_measured_from_the_targets_against_zero():
    assert image_metrics.default_data_range(torch.tensor([0.2, 0.7])) == pytest.approx(0.7)
    assert image_metrics.default_data_range(torch.tensor([-1.0, 0.5])) == pytest.approx(1.5)
    assert image_metrics.default_data_range(torch.tensor([-0.5, -0.2])) == pytest.approx(0.5)


def test_lpips_takes_images_as_they_come_unless_asked_to_normalize_them():
    metric = image_metrics.LPIPS()  # random weights: checks the input scaling only, no LPIPS value
    for head in metric.heads:
        head.weight.data.uniform_(0, 1)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(metric(x, y, normalize=True), metric(2 * x - 1, 2 * y - 1))
    assert not torch.allclose(metric(x, y), metric(x, y, normalize=True))


def test_the_jpeg_round_trip_keeps_shape_and_type_and_loses_a_little():
    rows = torch.linspace(0, 255, 64).round().to(torch.uint8)
    smooth = torch.stack([rows[:, None].expand(64, 64), rows[None, :].expand(64, 64),
                          torch.full((64, 64), 128, dtype=torch.uint8)])[None].repeat(2, 1, 1, 1)
    stored = image_metrics.jpeg_round_trip(smooth)
    assert stored.shape == smooth.shape and stored.dtype == torch.uint8
    x, y = smooth.float() / 255, stored.float() / 255
    assert 30 < float(image_metrics.psnr(y, x).min()) < 60
    finer = image_metrics.jpeg_round_trip(smooth, quality=95).float() / 255
    assert float(image_metrics.psnr(finer, x).mean()) > float(image_metrics.psnr(y, x).mean())
    with pytest.raises(ValueError, match="uint8"):
        image_metrics.jpeg_round_trip(smooth.float())
