"""The MNIST networks of both papers, as their official code defines them.

- Dombrowski et al. (``annahdo/counterfactuals``): the classifier :class:`MnistCNN`
  (``counterfactuals/classifiers/cnn.py``) and the convolutional VAE :class:`ConvVAE`
  (``counterfactuals/generative_models/vaes/vae.py``), the generator of the approximate counterfactuals.
- LeapFactual (``caicairay/LeapFactual``): the classifier :class:`MorphoClassifier` and the
  "Simple VAE" :class:`MorphoVAE` (also conditional, the CGM baseline) of
  ``Morpho_MNIST/Experiment_MorphoMNIST.ipynb`` and ``training_scripts/``.

Introduced in ``notebooks/mnist_diffeo`` and ``notebooks/mnist_leap``.
"""

from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 10
MORPHO_LATENT_DIM = 32
"""The latent size of LeapFactual's Simple VAE."""
MORPHO_KLD_WEIGHT = 0.00025
"""The Simple VAE's weight of the KL term, 1/4000 (the paper's "ratio of 4000")."""
CONV_VAE_LATENT_DIM = 10
"""The latent size of Dombrowski et al.'s MNIST VAE."""


class MnistCNN(nn.Module):
    """The official MNIST CNN (``counterfactuals/classifiers/cnn.py``, App. B.4).

    Four convolutions and three linear layers: ``(B, 1, 28, 28) -> logits (B, 10)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout2d(0.05))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.1), nn.Linear(64 * 7 * 7, 512), nn.ReLU(),
            nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvVAE(nn.Module):
    """The official MNIST VAE (``counterfactuals/generative_models/vaes/vae.py``, App. B.10).

    A 10-d latent and no output activation.

    ``encode: (B, 1, 28, 28) -> mu (B, 10)`` (deterministic, as the official code),
    ``decode: (B, 10) -> (B, 1, 28, 28)`` (unbounded; searches clip it to ``[0, 1]``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=0), nn.Flatten())
        self.mu = nn.Linear(288, CONV_VAE_LATENT_DIM)
        self.log_var = nn.Linear(288, CONV_VAE_LATENT_DIM)
        self.decoder = nn.Sequential(
            nn.Linear(CONV_VAE_LATENT_DIM, 288), nn.ReLU(), nn.Unflatten(1, (32, 3, 3)),
            nn.ConvTranspose2d(32, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
            nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.mu(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction ``decode(encode(x))`` with the mean code; ``(B, 1, 28, 28) -> (B, 1, 28, 28)``."""
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per image, batch mean: ``sum (x - x^)^2 + KL(N(mu, sigma^2) || N(0, I))``.

        A standard beta = 1 VAE; the official code's KL term treats ``log_var`` as a log-std.
        """
        h = self.encoder(x)
        mu, log_var = self.mu(h), self.log_var(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        reconstruction = ((self.decode(z) - x) ** 2).flatten(1).sum(1)
        kl = 0.5 * (mu ** 2 + log_var.exp() - 1 - log_var).sum(1)
        return (reconstruction + kl).mean()



def _conv_block(c_in: int, c_out: int, activation: nn.Module) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), activation]


def _up_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.2)]


class MorphoClassifier(nn.Module):
    """LeapFactual's classifier ``f_theta`` (App. B.1.2), a small CNN. ``(B, 1, 28, 28) -> (B, 10)`` logits.

    Three stride-2 convolutions (8, 16, 32 channels) with batch norm and ReLU, global average
    pooling, then two linear layers with no nonlinearity between them. The paper calls it an MLP.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(*_conv_block(1, 8, nn.ReLU()), *_conv_block(8, 16, nn.ReLU()),
                                      *_conv_block(16, 32, nn.ReLU()), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """``softmax(f(x))``. Shapes: ``(B, 1, 28, 28) -> (B, 10)``; differentiable."""
        return self(x).softmax(dim=1)


class MorphoVAE(nn.Module):
    """LeapFactual's "Simple VAE" (App. B.1.2), optionally conditional (the CGM baseline).

    Shapes: ``x: (B, 1, 28, 28)``, ``z: (B, 32)``, ``c: (B, 10)`` probabilities or one-hot.

    Encoder: pad to 32x32, four stride-2 conv blocks (8, 16, 32, 32 channels, BN, LeakyReLU 0.2),
    a linear layer to ``[mu, logvar]``. Decoder: linear to ``32 x 2 x 2``, four transposed-conv
    blocks up to 32x32, a 5x5 "valid" convolution to 28x28 and a sigmoid. With ``num_classes > 0``
    (the CGM baseline) the condition is concatenated to the flattened encoder features and to ``z``.
    :meth:`encode` returns the mean, so an unconditional VAE is a :class:`latentcf.methods.leap.LatentModel`.
    """

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        activation = nn.LeakyReLU(0.2)
        self.encoder = nn.Sequential(nn.ZeroPad2d(2), *_conv_block(1, 8, activation), *_conv_block(8, 16, activation),
                                     *_conv_block(16, 32, activation), *_conv_block(32, 32, activation),
                                     nn.Flatten())
        self.to_stats = nn.Linear(128 + num_classes, 2 * MORPHO_LATENT_DIM)
        self.from_latent = nn.Linear(MORPHO_LATENT_DIM + num_classes, 128)
        self.decoder = nn.Sequential(*_up_block(32, 32), *_up_block(32, 16), *_up_block(16, 8), *_up_block(8, 8),
                                     nn.Conv2d(8, 1, 5), nn.Sigmoid())

    def encode_stats(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of ``q(z | x[, c])``, each ``(B, 32)``."""
        stats = self.to_stats(self._with_condition(self.encoder(x), c))
        return stats[:, :MORPHO_LATENT_DIM], stats[:, MORPHO_LATENT_DIM:]

    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """The posterior mean ``mu(x[, c])``, the latent every method starts from. ``-> (B, 32)``."""
        return self.encode_stats(x, c)[0]

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``g_phi(z[, c])`` in [0, 1]. ``z: (B, 32) -> (B, 1, 28, 28)``."""
        hidden = self.from_latent(self._with_condition(z, c))
        return self.decoder(hidden.reshape(-1, 32, 2, 2))

    def _with_condition(self, features: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if (c is None) != (self.num_classes == 0):
            raise ValueError("a conditional VAE needs a condition c and an unconditional one takes none")
        return features if c is None else torch.cat([features, c], dim=1)


def morpho_vae_loss(vae: MorphoVAE, x: torch.Tensor, generator: torch.Generator | None = None,
             c: torch.Tensor | None = None) -> torch.Tensor:
    """``MSE(x_rec, x) + MORPHO_KLD_WEIGHT * KLD`` on one batch, with a reparameterised sample.

    KLD is the batch mean of the per-sample sum over latent dimensions of
    ``-0.5 (1 + logvar - mu^2 - exp(logvar))``.
    """
    mu, logvar = vae.encode_stats(x, c)
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    x_rec = vae.decode(mu + (0.5 * logvar).exp() * eps, c)
    kld = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
    return nn.functional.mse_loss(x_rec, x) + MORPHO_KLD_WEIGHT * kld
