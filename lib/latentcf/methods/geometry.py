"""The local geometry of a generator: its Jacobian and the inverse induced metric ``J J^T``.

Dombrowski et al. (Sec. 3.2) explain why latent ascent stays on the data manifold: the gradient
in X of a Z-step is ``J J^T grad_x f`` (Eq. 15), and ``J J^T = U S^2 U^T`` (Eq. 23) has large eigenvalues
only along the manifold. Introduced in ``notebooks/helix``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def batched_jacobian(g: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """``J[b] = dg(z[b]) / dz[b]`` for a generator that treats samples independently.

    One backward pass per *output* coordinate, each over the whole batch.
    Shapes: ``z: (B, D) -> J: (B, D_out, D)``; ``B = 0`` gives an empty ``(0, D_out, D)`` without any pass.
    """
    z = z.detach().requires_grad_(True)
    x = g(z).flatten(1)
    if len(z) == 0:
        return z.new_empty(0, x.shape[1], z.shape[1])
    rows = [torch.autograd.grad(x[:, i].sum(), z, retain_graph=True)[0] for i in range(x.shape[1])]
    return torch.stack(rows, dim=1)


def induced_metric_eigen(jacobian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues and eigenvectors of the inverse induced metric ``J J^T`` via the SVD of ``J``.

    Returns ``(eigenvalues, eigenvectors)``: ``sigma_i^2`` sorted in descending order, shape
    ``(B, D_out)`` (for ``D_out <= D``), and the columns ``u_i`` of ``U``, shape ``(B, D_out, D_out)``.
    """
    u, s, _ = torch.linalg.svd(jacobian, full_matrices=False)
    return s**2, u
