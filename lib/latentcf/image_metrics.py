"""Image similarity between a counterfactual and its input: PSNR and SSIM, in batched torch.

Both follow the torchmetrics defaults that the LeapFactual evaluation uses (spec
``data-and-metrics-offline.md`` Section 3): images in ``[0, data_range]``, SSIM with an 11 x 11
Gaussian window of sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, computed per channel on the valid
(unpadded) part of the image and averaged. Used in the Galaxy10 chapter.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"images must be two (B, C, H, W) tensors of equal shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(data_range^2 / MSE)``. ``(B, C, H, W) x 2 -> (B,)``."""
    _check_pair(x, y)
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range ** 2 / mse)


def gaussian_profile(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(size,)``; the 2-D window is its outer product with itself."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    profile = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return profile / profile.sum()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 2-D Gaussian window ``(size, size)``."""
    profile = gaussian_profile(size, sigma)
    return profile[:, None] * profile[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), mean over channels and valid pixels. ``-> (B,)``.

    ``SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))``
    with ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` and local statistics under the Gaussian window,
    applied as two 1-D passes (the window is separable), in the images' dtype as torchmetrics does.
    """
    _check_pair(x, y)
    if min(x.shape[-2:]) < window:
        raise ValueError(f"images must be at least {window} pixels wide for SSIM, got {tuple(x.shape[-2:])}")
    channels = x.shape[1]
    profile = gaussian_profile(window, sigma).to(x)
    rows = profile.view(1, 1, window, 1).expand(channels, 1, window, 1)
    columns = profile.view(1, 1, 1, window).expand(channels, 1, 1, window)

    def local_mean(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(image, rows, groups=channels), columns, groups=channels)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x ** 2
    var_y = local_mean(y * y) - mu_y ** 2
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(dim=1)
