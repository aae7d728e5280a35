"""How much a counterfactual looks like a real image of its target class.

Two scores of Dombrowski et al.: the labels of its nearest real images (App. B.11, Fig. 11 left) and
IM1, which compares the reconstruction errors of two class-specific autoencoders (Eq. 24, Table 1;
Van Looveren and Klaise). Introduced in ``notebooks/mnist_diffeo``.
"""

from __future__ import annotations

import torch
from torch import nn

from latentcf.core.errors import LatentcfError, target_vector

IM1_EPS = 1e-8
"""The small positive ``epsilon`` of IM1 (Eq. 24; its value is not stated in the paper)."""


@torch.no_grad()
def im1(images: torch.Tensor, autoencoder_target: nn.Module, autoencoder_source: nn.Module,
        eps: float = IM1_EPS) -> torch.Tensor:
    """IM1 (Eq. 24): ``|x - AE_t(x)| / (|x - AE_c0(x)| + eps)`` per image, plain L2 norms.

    ``AE_t`` is trained on the target class only, ``AE_c0`` on the source class only; low means
    that the image looks more like the target class. ``images: (B, 1, 28, 28) -> (B,)``.
    """
    error_target = (images - autoencoder_target(images)).flatten(1).norm(dim=1)
    error_source = (images - autoencoder_source(images)).flatten(1).norm(dim=1)
    return error_target / (error_source + eps)


@torch.no_grad()
def reconstruction_errors(images: torch.Tensor, autoencoders: list[nn.Module]) -> torch.Tensor:
    """``|x - AE_k(x)|`` for every class autoencoder ``AE_k``. ``(B, 1, 28, 28) -> (B, K)``."""
    return torch.stack([(images - autoencoder(images)).flatten(1).norm(dim=1) for autoencoder in autoencoders], 1)


def class_im1(images: torch.Tensor, autoencoders: list[nn.Module], target: torch.Tensor, source: torch.Tensor,
              eps: float = IM1_EPS) -> torch.Tensor:
    """IM1 (Eq. 24) with a target and a source class per image, from one autoencoder per class.

    ``autoencoders[k]`` is trained on class ``k`` only; ``target`` and ``source`` pick each image's two. The
    same as :func:`im1` image by image. Shapes: ``images: (B, 1, 28, 28)``, ``target, source: (B,)`` ``-> (B,)``.
    """
    errors = reconstruction_errors(images, autoencoders)
    rows = torch.arange(len(images), device=images.device)
    return errors[rows, target] / (errors[rows, source] + eps)


def balanced_pool(labels: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``per_class`` random images of every class, so neighbours see an even class mix (App. B.11).

    The classes are ``0..max(labels)``, drawn in that order. ``labels: (N,) -> (K * per_class,)`` int64 on
    the CPU, sorted; a class with fewer than ``per_class`` images raises :class:`LatentcfError`.
    """
    labels = labels.cpu()
    picks = []
    for digit in range(int(labels.max()) + 1):
        members = (labels == digit).nonzero().squeeze(1)
        if len(members) < per_class:
            raise LatentcfError(f"class {digit} has {len(members)} images, fewer than {per_class}")
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picks).sort().values


def pool_positions(pool_index: torch.Tensor, source_index: torch.Tensor) -> torch.Tensor:
    """Position of each source image in the pool, ``-1`` where it is not in it. ``(N,), (Q,) -> (Q,)``."""
    match = pool_index[None, :] == source_index[:, None]
    return torch.where(match.any(1), match.long().argmax(1), torch.full_like(source_index, -1))


def knn_target_fraction(queries: torch.Tensor, pool: torch.Tensor, pool_labels: torch.Tensor,
                        target: int | torch.Tensor, k: int = 10, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Share of each query's ``k`` nearest pool images (Euclidean) labelled with its target (Fig. 11 left).

    Shapes: ``queries: (Q, ...)``, ``pool: (N, ...)``, ``pool_labels: (N,)``, ``target``: one class for all
    queries or ``(Q,)``, one per query; ``exclude: (Q,)`` the pool position of each query's own source image
    or ``-1`` (that image is not a neighbour) -> ``(Q,)``.
    """
    targets = target_vector(target, len(queries)).to(pool_labels.device)
    distances = torch.cdist(queries.flatten(1).double(), pool.flatten(1).double())
    if exclude is not None:
        rows = (exclude >= 0).nonzero().squeeze(1)
        distances[rows, exclude[rows]] = float("inf")
    nearest = distances.topk(k, dim=1, largest=False).indices
    return (pool_labels[nearest] == targets[:, None]).double().mean(1).float()
