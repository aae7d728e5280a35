"""How far a counterfactual moved: Euclidean distances to its source image and to the source class.

Measured in any space, the pixels X or a flow's latent space Z (Dombrowski et al. Tables 2 and 3,
Fig. 19). Introduced in ``notebooks/mnist_diffeo``.
"""

from __future__ import annotations

import torch


def l2_to_source(results: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """``|x'_b - x_b|`` per pair (Tables 2 and 3, "source image"). ``(B, ...), (B, ...) -> (B,)``."""
    return (results - sources).flatten(1).norm(dim=1)


def l2_to_class(results: torch.Tensor, class_members: torch.Tensor) -> torch.Tensor:
    """Mean distance of each result to all images of the source class (Tables 2 and 3, "source class").

    ``results: (B, ...)``, ``class_members: (M, ...) -> (B,)``.
    """
    return torch.cdist(results.flatten(1).double(), class_members.flatten(1).double()).mean(1).float()
