"""The CGM baseline of LeapFactual (Sec. 4.1, Table 2): a conditional generative model whose condition is swapped.

An input is encoded under the classifier's probabilities and decoded under the one-hot target, as in
the official ``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``: the conditional model must have learned to
separate the class (its condition) from the style (its latent). Introduced in ``notebooks/mnist_leap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from latentcf.core.errors import check_targets, check_unit_images
from latentcf.methods.cfm import condition_vector


class ConditionalLatentModel(Protocol):
    """A conditional generative model seen through its latent space, e.g. a conditional VAE.

    Shapes: ``encode: x (B, ...), c (B, K) -> z (B, D)``, ``decode: z (B, D), c (B, K) -> x (B, ...)``.
    :class:`latentcf.models.mnist_nets.MorphoVAE` with ``num_classes = K`` satisfies it.
    """

    def encode(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The latent of ``x`` under the condition ``c``."""

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The input that ``z`` makes under the condition ``c``."""


@torch.no_grad()
def cgm_counterfactuals(cvae: ConditionalLatentModel, classifier_probabilities: Callable[[torch.Tensor], torch.Tensor],
                        x: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The CGM baseline: encode under ``classifier_probabilities(x)``, decode under the one-hot target.

    Shapes: ``x: (B, 1, 28, 28)`` in ``[0, 1]``, ``target: (B,)`` classes ``0..num_classes-1``
    ``-> x_cf: (B, 1, 28, 28)``; ``classifier_probabilities: (B, 1, 28, 28) -> (B, num_classes)`` is the
    classifier's softmax (e.g. ``MorphoClassifier.probabilities``).
    """
    check_unit_images(x)
    check_targets(target, num_classes, len(x))
    z = cvae.encode(x, classifier_probabilities(x))
    return cvae.decode(z, condition_vector(target, num_classes, dtype=x.dtype, device=x.device))
