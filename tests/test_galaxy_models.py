"""The Galaxy10 networks (residual WAE, PatchGAN, VGG16) and the image similarity metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from latentcf.metrics import image_metrics
from latentcf.models import vgg, wae


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_official_wae_maps_128_pixel_images_to_64_dims_and_back():
    torch.manual_seed(0)
    model = wae.ResidualWAE().eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        x_rec, z = model(x)
    assert z.shape == (2, 64) and x_rec.shape == (2, 3, 128, 128)
    assert float(x_rec.min()) >= 0 and float(x_rec.max()) <= 1
    assert model.encoder[-2].in_features == 256 * 4 * 4


def test_a_narrow_wae_keeps_the_design_and_refuses_sizes_it_cannot_halve():
    small = wae.ResidualWAE(image_size=64, latent=16, widths=(8, 16, 32), bottleneck=64).eval()
    with torch.no_grad():
        assert small.decode(small.encode(torch.rand(3, 3, 64, 64))).shape == (3, 3, 64, 64)
    with pytest.raises(ValueError, match="divisible"):
        wae.ResidualWAE(image_size=100)


def test_residual_blocks_change_channels_and_resolution_as_named():
    x = torch.rand(2, 8, 16, 16)
    assert wae.ResBlock(8, 8)(x).shape == (2, 8, 16, 16)
    assert wae.ResBlock(8, 12)(x).shape == (2, 12, 16, 16)
    assert wae.ResDown(8, 16)(x).shape == (2, 16, 8, 8)
    assert wae.ResUp(8, 4)(x).shape == (2, 4, 32, 32)


def test_imq_mmd_matches_its_formula_and_vanishes_for_identical_samples():
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    prior = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    scale = 2 * 2 * 2.0

    def k(a, b):
        return scale / (scale + float(((a - b) ** 2).sum()) + 1e-7)

    def off_diagonal_sum(a, b):
        return sum(k(a[i], b[j]) for i in range(3) for j in range(3) if i != j)

    expected = 10 / 6 * (off_diagonal_sum(prior, prior) + off_diagonal_sum(z, z) - 2 * off_diagonal_sum(prior, z))
    assert float(wae.imq_mmd(z, prior)) == pytest.approx(expected, rel=1e-5)
    assert float(wae.imq_mmd(z, z)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="B >= 2"):
        wae.imq_mmd(z[:1], prior[:1])


def test_patch_discriminator_scores_patches_and_lsgan_losses_have_their_minima():
    scores = wae.PatchDiscriminator()(torch.rand(2, 3, 128, 128))
    assert scores.shape == (2, 1, 14, 14)
    ones, zeros = torch.ones(4), torch.zeros(4)
    assert float(wae.lsgan_generator_loss(ones)) == 0.0 and float(wae.lsgan_generator_loss(zeros)) == 1.0
    assert float(wae.lsgan_discriminator_loss(ones, zeros)) == 0.0
    assert [wae.gan_weight(e, 90) for e in (0, 45, 90, 200)] == [0.0, 0.5, 1.0, 1.0]


def test_vgg16_bn_has_torchvisions_size_and_parameter_names():
    model = vgg.VGG16BN(num_classes=10)
    assert count(model) == 138_365_992 - (4096 * 1000 + 1000) + (4096 * 10 + 10)
    assert "features.1.running_mean" in model.state_dict() and "classifier.6.weight" in model.state_dict()
    imagenet_like = {key: value for key, value in model.state_dict().items()}
    imagenet_like["classifier.6.weight"] = torch.zeros(1000, 4096)
    imagenet_like["classifier.6.bias"] = torch.zeros(1000)
    model.load_imagenet(imagenet_like)


def test_perceptual_loss_uses_vgg16_up_to_relu4_3_and_is_zero_for_equal_images():
    loss = vgg.PerceptualLoss()
    assert count(loss) == 7_635_264 and not any(p.requires_grad for p in loss.parameters())
    x = torch.rand(1, 3, 32, 32)
    assert float(loss(x, x)) == 0.0 and float(loss(x, torch.rand(1, 3, 32, 32))) > 0


def test_imagenet_preset_upsamples_crops_and_normalises():
    out = vgg.imagenet_preset(torch.full((1, 3, 128, 128), 0.5))
    expected = (0.5 - torch.tensor(vgg.IMAGENET_MEAN)) / torch.tensor(vgg.IMAGENET_STD)
    assert out.shape == (1, 3, 224, 224)
    assert torch.allclose(out[0, :, 100, 100], expected, atol=1e-5)


def test_psnr_on_a_known_error():
    x = torch.zeros(2, 3, 16, 16)
    y = x + 0.1
    assert torch.allclose(image_metrics.psnr(x, y), torch.full((2,), 20.0), atol=1e-4)


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """torchmetrics' SSIM of one (C, H, W) pair, written out with a 2-D window: mirrored borders, mean over all."""
    offsets = np.arange(11) - 5.0
    profile = np.exp(-0.5 * (offsets / 1.5) ** 2)
    window = np.outer(profile, profile) / np.outer(profile, profile).sum()

    def local(image):
        return np.stack([ndimage.correlate(channel, window, mode="mirror") for channel in image])

    mu_x, mu_y = local(x), local(y)
    var_x, var_y = np.maximum(local(x * x) - mu_x ** 2, 0), np.maximum(local(y * y) - mu_y ** 2, 0)
    cov = local(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(index.mean())


def test_ssim_averages_every_pixel_as_torchmetrics_and_its_interior_matches_scikit_image():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 40, 40))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    ours = image_metrics.ssim(torch.from_numpy(x), torch.from_numpy(y))
    assert np.allclose(ours.numpy(), [_ssim_reference(x[i], y[i]) for i in range(2)], atol=1e-10)
    same = image_metrics.ssim(torch.from_numpy(x), torch.from_numpy(x))
    assert torch.allclose(same, torch.ones(2, dtype=torch.float64))
    border = x.copy()
    border[:, :, :3] = 1 - border[:, :, :3]  # only the top rows differ: scikit-image's valid part barely sees them
    valid_only = np.array([structural_similarity(x[i], border[i], channel_axis=0, data_range=1.0, gaussian_weights=True,
                                                 sigma=1.5, use_sample_covariance=False) for i in range(2)])
    every_pixel = image_metrics.ssim(torch.from_numpy(x), torch.from_numpy(border)).numpy()
    assert (valid_only > 0.99).all() and (every_pixel < valid_only - 0.05).all(), (valid_only, every_pixel)


def test_squeezenet_features_have_torchvisions_size_and_names_and_lpips_loads_published_weights():
    features = image_metrics.squeezenet11_features()
    assert sum(p.numel() for p in features.parameters()) == 722_496
    assert {"0.weight", "3.squeeze.weight", "12.expand3x3.bias"} <= set(features.state_dict())
    metric = image_metrics.LPIPS()
    backbone = {f"features.{key}": torch.randn_like(value) for key, value in features.state_dict().items()}
    heads = {f"lin{k}.model.1.weight": torch.rand_like(head.weight) for k, head in enumerate(metric.heads)}
    with torch.no_grad():
        metric.load_published(backbone, heads)
    assert torch.equal(metric.features[3].squeeze.weight, backbone["features.3.squeeze.weight"])
    assert torch.equal(metric.heads[6].weight, heads["lin6.model.1.weight"])


def test_lpips_is_zero_for_equal_images_symmetric_and_positive_for_different_ones():
    torch.manual_seed(0)
    metric = image_metrics.LPIPS()
    for head in metric.heads:
        head.weight.data.uniform_(0, 1)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    assert torch.allclose(metric(x, x), torch.zeros(2), atol=1e-6)
    assert torch.allclose(metric(x, y), metric(y, x)) and bool((metric(x, y) > 0).all())
