"""An independent judge of counterfactuals: a linear SVM oracle and how often it agrees with the targets.

A counterfactual that only fools the classifier it was made for will not convince a second,
much simpler classifier trained on the same task; one that really changed the digit should
(Dombrowski et al. Sec. 4.1.3, Fig. 9 left). Introduced in ``notebooks/mnist_diffeo``.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

from latentcf.core.errors import optional_import, target_vector


class Oracle(Protocol):
    """Anything with scikit-learn's ``predict: (N, P) array -> (N,) labels``."""

    def predict(self, x: np.ndarray) -> np.ndarray: ...


def flat_numpy(images: torch.Tensor) -> np.ndarray:
    """``(N, 1, 28, 28) -> (N, 784)`` float64 NumPy on the CPU (any ``(N, ...)`` to ``(N, P)``)."""
    return images.detach().flatten(1).cpu().double().numpy()


def train_svm_oracle(train_x: torch.Tensor, train_y: torch.Tensor, size: int, generator: torch.Generator) -> Oracle:
    """The linear SVM oracle (Sec. 4.1.3; the paper's 92% on MNIST suits a linear kernel), ``C = 1``.

    Trained on ``size`` of the training images ``train_x: (N, ...)`` with labels ``train_y: (N,)``, drawn
    by ``generator`` (a CPU generator); scikit-learn fits it on the CPU wherever the images are. Not cached
    (seconds on a CPU for 10,000 MNIST images).
    """
    idx = torch.randperm(len(train_x), generator=generator)[:size]
    svm_module = optional_import("sklearn.svm", "scikit-learn", "the SVM oracle")
    svm = svm_module.SVC(kernel="linear", C=1.0)
    svm.fit(flat_numpy(train_x[idx.to(train_x.device)]), train_y[idx].cpu().numpy())
    return svm


def target_agreement(oracle: Oracle, images: torch.Tensor, target: int | torch.Tensor) -> float:
    """Share of images the oracle assigns to their target: its accuracy w.r.t. the targets (Fig. 9 left).

    Shapes: ``images: (B, ...)``, ``target``: one class for all images or ``(B,)``, one per image.
    NaN for no image (undefined; a run records it as such).
    """
    targets = target_vector(target, len(images))
    if len(images) == 0:
        return math.nan
    return float((oracle.predict(flat_numpy(images)) == targets.cpu().numpy()).mean())
