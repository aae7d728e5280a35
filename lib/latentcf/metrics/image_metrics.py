"""Image similarity between a counterfactual and its input: PSNR, SSIM and LPIPS, in batched torch; and the
JPEG round trip of stored images.

The LeapFactual evaluation uses torchmetrics "keeping all other parameters at their default values"
(App. B.2.2). PSNR: :func:`psnr` gives one value per image; the paper's number is torchmetrics' default,
which pools the squared errors of *every* image before the logarithm and takes the data range from the
target images (:func:`pooled_psnr`, :func:`default_data_range`); the mean of per-image PSNRs is always at
least as high (Jensen's inequality). SSIM: images in ``[0, data_range]``, an 11 x 11 Gaussian window of
sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, as torchmetrics 1.7.1 (the version the official code pins)
computes it: every image padded by reflection, so that the index is averaged over *every* pixel and
channel (scikit-image averages over the valid, unpadded part only, which at 32 x 32 is under half of
the image), local variances clamped at zero (:data:`SSIM_CONVENTION`).
LPIPS (Zhang et al. 2018) with the SqueezeNet backbone needs two sets of published
weights, torchvision's ImageNet SqueezeNet 1.1 and the LPIPS linear heads: :func:`lpips_squeeze`
downloads both where it can and returns ``None`` where it cannot (no torchvision import); as
torchmetrics' default (``normalize=False``) it takes images as they come, expecting ``[-1, 1]``.
:func:`jpeg_round_trip` stores images as the official Galaxy10 pipeline does. Used in the Galaxy10
chapter.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from latentcf.core.weights import published_state_dict

SQUEEZENET_URL = "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"
LPIPS_SQUEEZE_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/squeeze.pth"
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
"""The per-channel input scaling of LPIPS, applied to images in [-1, 1]."""
LPIPS_SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 11), (11, 12), (12, 13))
"""The seven taps of SqueezeNet 1.1 ``features`` that LPIPS compares (64, 128, 256, 384, 384, 512, 512 channels)."""


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"images must be two (B, C, H, W) tensors of equal shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(data_range^2 / MSE)``. ``(B, C, H, W) x 2 -> (B,)``."""
    _check_pair(x, y)
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range ** 2 / mse)


def default_data_range(target: torch.Tensor) -> float:
    """torchmetrics' PSNR data range when none is given: ``max(target) - min(target)``, both taken against 0.

    torchmetrics (``PeakSignalNoiseRatio(data_range=None)``) starts its running minimum and maximum of the
    target images at 0, so images in [0, 1] get their largest pixel value as the range. ``(N, ...) -> float``.
    """
    return float(target.max().clamp(min=0) - target.min().clamp(max=0))


def pooled_psnr(per_image: torch.Tensor, data_range: float, per_image_range: float = 1.0) -> float:
    """The PSNR of a whole set as torchmetrics' default computes it, from per-image PSNRs of equal-size images.

    ``per_image: (N,)`` PSNRs computed by :func:`psnr` with ``per_image_range``; each gives back its mean
    squared error ``per_image_range^2 10^(-PSNR/10)``. torchmetrics (``dim=None``) sums the squared errors
    over every pixel of every image and divides by their number, so the set's value is
    ``10 log10(data_range^2 / mean(MSE))``, never above the mean of the per-image PSNRs.
    """
    mse = per_image_range ** 2 * torch.pow(10.0, -per_image.double() / 10)
    return float(10 * torch.log10(data_range ** 2 / mse.mean()))


def gaussian_profile(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(size,)``; the 2-D window is its outer product with itself."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    profile = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return profile / profile.sum()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 2-D Gaussian window ``(size, size)``."""
    profile = gaussian_profile(size, sigma)
    return profile[:, None] * profile[None, :]


SSIM_CONVENTION = "torchmetrics 1.7.1: reflection padding, mean over every pixel, variances clamped at zero"
"""How :func:`ssim` treats the image border; stored scores name it (their caches change with it)."""


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), as torchmetrics computes it. ``(B, C, H, W) -> (B,)``.

    ``SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))``
    with ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` and local statistics under the Gaussian window. As
    torchmetrics 1.7.1 (``functional/image/ssim.py``, the paper's library, App. B.2.2): both images
    are padded by reflection by half a window, so every pixel has a full window and the mean runs over
    all ``H x W`` pixels and the channels; the local variances are clamped at zero. The window is
    applied as two 1-D passes (it is separable), in the images' dtype as torchmetrics does. One
    difference remains: torchmetrics' default takes ``L`` from each batch (the larger of the two
    images' ranges), which depends on how a script batches its images; here ``L = data_range``.
    """
    _check_pair(x, y)
    if min(x.shape[-2:]) < window:
        raise ValueError(f"images must be at least {window} pixels wide for SSIM, got {tuple(x.shape[-2:])}")
    channels, pad = x.shape[1], window // 2
    profile = gaussian_profile(window, sigma).to(x)
    rows = profile.view(1, 1, window, 1).expand(channels, 1, window, 1)
    columns = profile.view(1, 1, 1, window).expand(channels, 1, 1, window)

    def local_mean(image: torch.Tensor) -> torch.Tensor:
        padded = F.pad(image, (pad, pad, pad, pad), mode="reflect")
        return F.conv2d(F.conv2d(padded, rows, groups=channels), columns, groups=channels)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = (local_mean(x * x) - mu_x ** 2).clamp(min=0)
    var_y = (local_mean(y * y) - mu_y ** 2).clamp(min=0)
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(dim=1)


class Fire(nn.Module):
    """SqueezeNet's fire module: a 1x1 squeeze, then 1x1 and 3x3 expansions concatenated (ReLU after each)."""

    def __init__(self, c_in: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], dim=1)


def squeezenet11_features() -> nn.Sequential:
    """SqueezeNet 1.1 ``features`` with torchvision's layer indices (so its ImageNet weights load as they are)."""
    pool = {"kernel_size": 3, "stride": 2, "ceil_mode": True}
    return nn.Sequential(nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(), nn.MaxPool2d(**pool),
                         Fire(64, 16, 64), Fire(128, 16, 64), nn.MaxPool2d(**pool),
                         Fire(128, 32, 128), Fire(256, 32, 128), nn.MaxPool2d(**pool),
                         Fire(256, 48, 192), Fire(384, 48, 192), Fire(384, 64, 256), Fire(512, 64, 256))


class LPIPS(nn.Module):
    """Learned perceptual image patch similarity with a SqueezeNet 1.1 backbone. ``(B, 3, H, W) x 2 -> (B,)``.

    Images are taken as they come, on the [-1, 1] scale the network was trained on, as torchmetrics'
    default ``normalize=False`` does; with ``normalize=True`` images in [0, 1] are first mapped to
    [-1, 1]. Then each image is shifted and scaled per channel; at each of the seven taps the
    feature vectors are normalised to unit length over channels, their squared difference is
    weighted per channel by a linear head (a 1x1 convolution to one channel) and averaged over the
    image; the seven values are summed. Without both published weights (:func:`lpips_squeeze`) the
    number means nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = squeezenet11_features()
        widths = (64, 128, 256, 384, 384, 512, 512)
        self.heads = nn.ModuleList(nn.Conv2d(width, 1, 1, bias=False) for width in widths)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        _check_pair(x, y)
        if normalize:
            x, y = 2 * x - 1, 2 * y - 1
        a, b = ((image - self.shift) / self.scale for image in (x, y))
        distance = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        for (start, stop), head in zip(LPIPS_SLICES, self.heads):
            block = self.features[start:stop]
            a, b = block(a), block(b)
            difference = (_unit_channels(a) - _unit_channels(b)).pow(2)
            distance = distance + head(difference).mean(dim=(1, 2, 3))
        return distance

    def load_published(self, backbone: dict[str, torch.Tensor], heads: dict[str, torch.Tensor]) -> None:
        """Load torchvision's SqueezeNet 1.1 ``features.*`` weights and the LPIPS heads ``lin<k>.model.1.weight``."""
        self.features.load_state_dict({key[len("features."):]: value for key, value in backbone.items()
                                       if key.startswith("features.")})
        for index, head in enumerate(self.heads):
            head.weight.copy_(heads[f"lin{index}.model.1.weight"])


def _unit_channels(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Feature vectors scaled to unit length along the channel axis."""
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def lpips_squeeze() -> LPIPS | None:
    """LPIPS with its published SqueezeNet and linear-head weights, or ``None`` where they cannot be downloaded."""
    backbone = published_state_dict(SQUEEZENET_URL, check_hash=True)
    heads = published_state_dict(LPIPS_SQUEEZE_URL, file_name="lpips_v0.1_squeeze.pth")
    if backbone is None or heads is None:
        return None
    metric = LPIPS()
    with torch.no_grad():
        metric.load_published(backbone, heads)
    return metric.eval()


def jpeg_round_trip(images: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """uint8 images written as JPEGs of ``quality`` and read back, as the official Galaxy10 pipeline stores them.

    ``Galaxy10/convert_split_train_test.py`` saves the data set and ``Galaxy10/Galaxy10_generate_data.py``
    the CE sets with Pillow's ``Image.save`` at its defaults (quality 75, 4:2:0 chroma subsampling).
    Shapes: uint8 ``(B, 3, H, W) -> (B, 3, H, W)`` on the CPU.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    decoded = []
    for image in images.permute(0, 2, 3, 1).cpu().numpy():
        stored = io.BytesIO()
        Image.fromarray(image).save(stored, format="JPEG", quality=quality)
        stored.seek(0)
        decoded.append(np.asarray(Image.open(stored).convert("RGB")))
    return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).contiguous()
