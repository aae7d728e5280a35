"""The Galaxy10 generative model of LeapFactual: a residual Wasserstein autoencoder (WAE-MMD).

Architecture and losses follow the official code (``training_scripts/models/VAE/wae_mmd.py`` in
``caicairay/LeapFactual``, config ``galaxy10_vae.yaml``):
a deterministic residual encoder to a 64-dim latent, a residual decoder with a sigmoid output, and a
loss of pixel MSE, a VGG16 perceptual term, the MMD between the latents and a standard normal prior
under an inverse multiquadratic kernel, and an LSGAN term from a PatchGAN discriminator. Widths and
depths are arguments, so that a CPU smoke run can use a narrower network of the same design.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

BN_EPS = 1e-4


def _bn_act(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels, eps=BN_EPS), nn.LeakyReLU()]


class ResBlock(nn.Module):
    """Pre-activation residual block ``c_in -> c_out`` at constant resolution.

    The first 3x3 convolution gives ``c_in / 2`` channels, plus ``c_out`` skip channels when
    ``c_in != c_out``; the second maps ``c_in / 2 -> c_out``.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.c_out, self.project = c_out, c_in != c_out
        self.pre = nn.Sequential(*_bn_act(c_in))
        self.conv1 = nn.Conv2d(c_in, c_in // 2 + (c_out if self.project else 0), 3, padding=1)
        self.post = nn.Sequential(*_bn_act(c_in // 2), nn.Conv2d(c_in // 2, c_out, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.conv1(self.pre(x))
        if self.project:
            skip, hidden = hidden[:, :self.c_out], hidden[:, self.c_out:]
        else:
            skip = x
        return self.post(hidden) + skip


class ResDown(nn.Module):
    """Residual downsampling by 2: a stride-2 3x3 conv gives ``c_out`` skip + ``c_out / 2`` channels."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.c_out = c_out
        self.pre = nn.Sequential(*_bn_act(c_in))
        self.conv1 = nn.Conv2d(c_in, c_out + c_out // 2, 3, stride=2, padding=1)
        self.post = nn.Sequential(*_bn_act(c_out // 2), nn.Conv2d(c_out // 2, c_out, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.conv1(self.pre(x))
        return self.post(hidden[:, self.c_out:]) + hidden[:, :self.c_out]


class ResUp(nn.Module):
    """Residual upsampling by 2 (nearest): a 3x3 conv gives ``c_out`` skip + ``c_in / 2`` channels."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.c_out = c_out
        self.pre = nn.Sequential(*_bn_act(c_in), nn.Upsample(scale_factor=2, mode="nearest"))
        self.conv1 = nn.Conv2d(c_in, c_out + c_in // 2, 3, padding=1)
        self.post = nn.Sequential(*_bn_act(c_in // 2), nn.Conv2d(c_in // 2, c_out, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.conv1(self.pre(x))
        return self.post(hidden[:, self.c_out:]) + hidden[:, :self.c_out]


class ResidualWAE(nn.Module):
    """Deterministic residual autoencoder. Shapes: ``x: (B, 3, S, S)`` in [0, 1] ``<-> z: (B, latent)``.

    Encoder: per width ``h``, ``ResBlock(c, c)`` then ``ResDown(c, h)``, a final ``ResBlock``, and
    two linear layers (no activation between) through ``bottleneck``. Decoder: the mirror image with
    ``ResUp``, ending in ``ResBlock(8, 8)``, a 5x5 conv to 3 channels and a sigmoid. The official model
    has ``widths = (16, 32, 64, 128, 256)``, ``latent = 64``, ``bottleneck = 512`` on 128x128 images.
    Satisfies :class:`latentcf.methods.leap.LatentModel`.
    """

    def __init__(self, image_size: int = 128, latent: int = 64, widths: Sequence[int] = (16, 32, 64, 128, 256),
                 bottleneck: int = 512, out_width: int = 8) -> None:
        super().__init__()
        if image_size % 2 ** len(widths):
            raise ValueError(f"image size {image_size} is not divisible by 2^{len(widths)}")
        self.latent, self.widths = latent, tuple(widths)
        self.feature_size = image_size // 2 ** len(widths)
        flat = widths[-1] * self.feature_size ** 2
        channels, down = 3, []
        for width in widths:
            down += [ResBlock(channels, channels), ResDown(channels, width)]
            channels = width
        self.encoder = nn.Sequential(*down, ResBlock(channels, channels), nn.Flatten(),
                                     nn.Linear(flat, bottleneck), nn.Linear(bottleneck, latent))
        targets = list(widths[::-1][1:]) + [out_width]
        up = [module for width, target in zip(widths[::-1], targets) for module in (ResBlock(width, width),
                                                                                    ResUp(width, target))]
        self.from_latent = nn.Sequential(nn.Linear(latent, bottleneck), nn.Linear(bottleneck, flat))
        self.decoder = nn.Sequential(*up, ResBlock(out_width, out_width), nn.Conv2d(out_width, 3, 5, padding=2),
                                     nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``z = E(x)``. ``(B, 3, S, S) -> (B, latent)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``x = D(z)`` in [0, 1]. ``(B, latent) -> (B, 3, S, S)``."""
        hidden = self.from_latent(z).view(len(z), self.widths[-1], self.feature_size, self.feature_size)
        return self.decoder(hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reconstruction, z)``."""
        z = self.encode(x)
        return self.decode(z), z


def imq_mmd(z: torch.Tensor, prior: torch.Tensor, latent_var: float = 2.0, weight: float = 10.0) -> torch.Tensor:
    """The MMD penalty of WAE-MMD with an inverse multiquadratic kernel (``wae_mmd.py``).

    Shapes: ``z, prior: (B, D)`` ``-> ()``. ``k(a, b) = C / (C + |a - b|^2 + 1e-7)`` with
    ``C = 2 D latent_var``; the three kernel sums (prior-prior, z-z, prior-z) leave out their
    diagonals; the result is ``weight / (B (B - 1)) (S_pp + S_zz - 2 S_pz)``.
    """
    if z.shape != prior.shape or z.ndim != 2 or len(z) < 2:
        raise ValueError(f"z and prior must both be (B, D) with B >= 2, got {tuple(z.shape)}, {tuple(prior.shape)}")
    scale = 2 * z.shape[1] * latent_var
    off_diagonal = 1 - torch.eye(len(z), dtype=z.dtype, device=z.device)

    def kernel_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (scale / (scale + torch.cdist(a, b).pow(2) + 1e-7) * off_diagonal).sum()

    n = len(z)
    return weight / (n * (n - 1)) * (kernel_sum(prior, prior) + kernel_sum(z, z) - 2 * kernel_sum(prior, z))


class PatchDiscriminator(nn.Module):
    """The pix2pix PatchGAN discriminator: ``(B, 3, S, S) -> (B, 1, s, s)`` real/fake scores per patch.

    A 4x4 stride-2 conv with LeakyReLU 0.2, ``n_layers - 1`` more stride-2 blocks (conv, BN, LeakyReLU)
    doubling the width up to 8x, one stride-1 block, and a 1-channel 4x4 conv.
    """

    def __init__(self, base: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, base, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = base
        for index in range(1, n_layers + 1):
            next_width = base * min(2 ** index, 8)
            stride = 2 if index < n_layers else 1
            layers += [nn.Conv2d(width, next_width, 4, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(next_width), nn.LeakyReLU(0.2)]
            width = next_width
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.network = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


def lsgan_generator_loss(scores_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN loss of the generator: ``MSE(D(x_rec), 1)``."""
    return F.mse_loss(scores_fake, torch.ones_like(scores_fake))


def lsgan_discriminator_loss(scores_real: torch.Tensor, scores_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN loss of the discriminator: ``0.5 (MSE(D(x), 1) + MSE(D(x_rec), 0))``."""
    return 0.5 * (F.mse_loss(scores_real, torch.ones_like(scores_real))
                  + F.mse_loss(scores_fake, torch.zeros_like(scores_fake)))


def gan_weight(epoch: int, ramp_epochs: int) -> float:
    """The generator's GAN weight: a linear ramp from 0 to 1 over ``ramp_epochs``, then 1."""
    return min(1.0, epoch / ramp_epochs) if ramp_epochs > 0 else 1.0
