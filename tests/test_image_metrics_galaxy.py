"""The Galaxy10 chapter's use of the paper's metrics and storage: pooled PSNR in Tables 5 and 6, LPIPS on both
input ranges, and the JPEG round trips of the data set and the CE sets (``latentcf.chapters.galaxy_leap``)."""

from __future__ import annotations

import math

import pytest
import torch

from latentcf.chapters import galaxy_leap
from latentcf.data import galaxy10
from latentcf.metrics import image_metrics


def test_the_paper_scale_stores_images_as_jpeg_and_the_smoke_scale_does_not():
    assert galaxy_leap.PAPER.data_jpeg_quality == 75 and galaxy_leap.SMOKE.data_jpeg_quality == 0


def test_generated_images_are_stored_as_uint8_and_with_a_quality_as_jpeg():
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(galaxy_leap.stored_images(x, 0), galaxy_leap.to_uint8(x))
    stored = galaxy_leap.stored_images(x, 75)
    assert stored.dtype == torch.uint8 and not torch.equal(stored, galaxy_leap.to_uint8(x))
    assert torch.equal(stored, image_metrics.jpeg_round_trip(galaxy_leap.to_uint8(x), 75))


def test_the_jpeg_stored_data_set_reads_like_its_source():
    source = galaxy10.synthetic_galaxy10(40, 32)
    stored = galaxy_leap.jpeg_stored(source, 75, "test set")
    assert len(stored) == 40 and torch.equal(stored.labels, source.labels)
    indices = torch.tensor([5, 0, 5])
    assert torch.equal(stored.read_images(indices), image_metrics.jpeg_round_trip(source.read_images(indices)))
    assert "JPEG of quality 75" in stored.description
    again = galaxy_leap.jpeg_stored(source, 75, "test set")
    assert torch.equal(again.read_images(indices), stored.read_images(indices))


def _scores(per_image_psnr: torch.Tensor, input_max: int) -> dict[str, torch.Tensor]:
    """Stored scores of one checkpoint for ten pairs, one per target class, with the given PSNRs."""
    n = len(per_image_psnr)
    return {"target": torch.arange(n) % 10, "x_input": torch.full((n, 3, 4, 4), input_max, dtype=torch.uint8),
            "ni0/p_weak": torch.eye(10)[torch.arange(n) % 10], "ni0/p_strong": torch.eye(10)[torch.arange(n) % 10],
            "ni0/ssim": torch.ones(n), "ni0/psnr": per_image_psnr}


def test_table_psnr_is_pooled_over_images_with_the_inputs_data_range():
    metrics = galaxy_leap.sweep_metrics(_scores(torch.tensor([20.0, 40.0] * 5), 255), ["ni0"])
    assert metrics["psnr_mean_ni0"] == pytest.approx(30.0)
    assert metrics["psnr_ni0"] == pytest.approx(10 * math.log10(1 / ((0.01 + 0.0001) / 2)), abs=1e-4)
    darker = galaxy_leap.sweep_metrics(_scores(torch.tensor([20.0, 40.0] * 5), 51), ["ni0"])
    assert darker["psnr_ni0"] == pytest.approx(metrics["psnr_ni0"] + 20 * math.log10(0.2), abs=1e-4)
    assert "lpips_ni0" not in metrics and "lpips_normalized_ni0" not in metrics


def test_lpips_is_recorded_on_both_input_ranges_where_it_is_computed():
    scores = {**_scores(torch.full((10,), 20.0), 255), "ni0/lpips": torch.full((10,), 0.1),
              "ni0/lpips_normalized": torch.full((10,), 0.3)}
    metrics = galaxy_leap.sweep_metrics(scores, ["ni0"])
    assert metrics["lpips_ni0"] == pytest.approx(0.1) and metrics["lpips_normalized_ni0"] == pytest.approx(0.3)
