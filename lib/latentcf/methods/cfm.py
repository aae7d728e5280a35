"""CE-CFM: the class-conditional flow-matching objective of LeapFactual (paper Eq. 3).

A network ``v_psi(t, z, c)`` regresses the I-CFM target field ``u_t(z | h) = z1 - z0`` on the
independent-coupling path ``z_t = t z1 + (1 - t) z0 + sigma eps`` (paper Eq. 2), where ``z1`` is
the latent of an input of (predicted) class ``c`` and ``z0`` is drawn from the source
distribution. Conventions: ``t = 0`` is the source (structured) end, ``t = 1`` the data
(flattened) end. :func:`train_velocity` trains the official MLP on latents and their conditions
(``notebooks/mnist_leap``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import nn

from latentcf.core.cache import cached_model
from latentcf.core.errors import LatentcfError
from latentcf.core.runtime import generator, seed_stream
from latentcf.core.training import epoch_batches, fit

LabelLike = torch.Tensor | np.ndarray
"""Class labels as indices ``(B,)`` / ``(B, 1)`` (integer dtype) or one-hot / probabilities ``(B, K)``."""

PROBABILITY_SUM_TOLERANCE = 1e-3
"""How far a row of a ``(B, K)`` condition may sum away from 1 and still count as probabilities."""


def condition_vector(c: LabelLike, num_classes: int, *, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Turn class indices, one-hot rows or probability rows into one ``(B, K)`` condition.

    Shapes: ``c: (B,) or (B, 1)`` integer indices, or ``c: (B, K)`` floating one-hot or
    probabilities ``-> (B, K)``.

    Integer input is one-hot encoded; floating input must already be ``(B, K)`` rows of
    probabilities (non-negative, summing to 1), which covers one-hot rows and softmax outputs.
    NumPy arrays are accepted. Raises ``ValueError`` for an index outside ``0..K-1``, a wrong
    shape, or rows that are not probabilities (e.g. logits).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    labels = torch.as_tensor(c, device=device)
    if labels.dtype == torch.bool:
        raise ValueError("labels must be integer class indices or float (B, K) probabilities, got bool")
    if labels.is_floating_point():
        return _checked_probabilities(labels, num_classes).to(dtype=dtype)
    return _one_hot_indices(labels, num_classes).to(dtype=dtype)


def _one_hot_indices(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot encode integer indices of shape ``(B,)`` or ``(B, 1)``."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(
            f"integer labels must have shape (B,) or (B, 1), got {tuple(labels.shape)}")
    out_of_range = (labels < 0) | (labels >= num_classes)
    if bool(out_of_range.any()):
        bad = labels[out_of_range].unique().tolist()
        raise ValueError(f"unknown class label(s) {bad}: labels must lie in 0..{num_classes - 1}")
    return nn.functional.one_hot(labels.long(), num_classes)


def _checked_probabilities(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Check that floating labels are ``(B, K)`` probability rows and return them unchanged."""
    if labels.ndim != 2 or labels.shape[1] != num_classes:
        raise ValueError(
            f"floating labels must be one-hot or probabilities of shape (B, {num_classes}), "
            f"got {tuple(labels.shape)}; class indices must have an integer dtype")
    row_sums = labels.sum(dim=1)
    is_probability = bool((labels >= 0).all()) and bool(
        ((row_sums - 1).abs() <= PROBABILITY_SUM_TOLERANCE).all())
    if not is_probability:
        raise ValueError("floating labels must be probabilities (non-negative rows summing to 1); "
                         "apply softmax to logits first")
    return labels


def time_column(t: torch.Tensor | float, batch_size: int, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar, ``(B,)`` or ``(B, 1)`` time to a ``(B, 1)`` column.

    Shapes: ``t: () or (B,) or (B, 1) -> (B, 1)``, with the dtype and device of ``like``.
    """
    column = torch.as_tensor(t, dtype=like.dtype, device=like.device).reshape(-1, 1)
    if column.shape[0] not in (1, batch_size):
        raise ValueError(f"t must be a scalar or have {batch_size} rows, got {tuple(column.shape)}")
    return column.expand(batch_size, 1)


class ConditionalVelocityMLP(nn.Module):
    """The CE-CFM velocity network ``v_psi(t, z, c)`` (paper Eq. 3), an MLP on ``[z, t, c]``.

    Shapes: ``t: () or (B,) or (B, 1)``, ``z: (B, D)``, ``c: (B,) indices or (B, K)`` ``-> (B, D)``.

    The defaults reproduce the official toy network (``Toy_Experiment/Experiment_Square.ipynb``): three hidden layers of
    width 64 with SELU, then a linear output. Morpho-MNIST uses the same shape with D = 32 and
    Galaxy10 uses width 256 with five hidden layers (``Galaxy10/Galaxy10_train_flow_mlp.py``). Time enters as the raw
    scalar ``t``. The condition enters as the ``K``-dim vector of :func:`condition_vector`; the
    official toy instead feeds the class index as one float, which is not used here because a
    probability condition (Morpho-MNIST) has no index form.
    """

    def __init__(self, dim: int, num_classes: int, hidden_width: int = 64, n_hidden_layers: int = 3,
                 activation: Callable[[], nn.Module] = nn.SELU) -> None:
        super().__init__()
        if dim < 1 or num_classes < 1 or hidden_width < 1 or n_hidden_layers < 1:
            raise ValueError("dim, num_classes, hidden_width and n_hidden_layers must all be >= 1")
        self.dim = dim
        self.num_classes = num_classes
        self.network = _mlp(dim + 1 + num_classes, dim, hidden_width, n_hidden_layers, activation)

    def forward(self, t: torch.Tensor | float, z: torch.Tensor, c: LabelLike) -> torch.Tensor:
        condition = condition_vector(c, self.num_classes, dtype=z.dtype, device=z.device)
        if condition.shape[0] != z.shape[0]:
            raise ValueError(f"condition has {condition.shape[0]} rows but z has {z.shape[0]}")
        return self.network(torch.cat([z, time_column(t, z.shape[0], z), condition], dim=1))


def _mlp(n_in: int, n_out: int, width: int, n_hidden_layers: int,
         activation: Callable[[], nn.Module]) -> nn.Sequential:
    """``n_hidden_layers`` blocks of ``Linear -> activation``, then a linear output layer."""
    layers: list[nn.Module] = []
    for layer_in in [n_in] + [width] * (n_hidden_layers - 1):
        layers += [nn.Linear(layer_in, width), activation()]
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def sample_source(n: int, dim: int, generator: torch.Generator | None = None,
                  distribution: Literal["normal", "uniform"] = "normal", *,
                  dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Draw ``z0`` from the source distribution ``q(z0)``.

    Shapes: ``-> (n, dim)``.

    ``"normal"`` is ``N(0, I)``, the source of the paper (Section 3.2.1) and of the official
    Morpho-MNIST and Galaxy10 code. ``"uniform"`` is ``U[-0.5, 0.5]^dim``, the source that the
    official 2-D square toy actually uses (``Toy_Experiment/Experiment_Square.ipynb``).
    """
    if distribution == "normal":
        return torch.randn(n, dim, generator=generator, dtype=dtype, device=device)
    if distribution == "uniform":
        return torch.rand(n, dim, generator=generator, dtype=dtype, device=device) - 0.5
    raise ValueError(f"unknown source distribution {distribution!r}; use 'normal' or 'uniform'")


def sample_time(n: int, generator: torch.Generator | None = None, *, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Draw one training time per sample, ``t ~ U[0, 1]``.

    Shapes: ``-> (n, 1)``.
    """
    return torch.rand(n, 1, generator=generator, dtype=dtype, device=device)


def cfm_path(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor, sigma: float = 0.0,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample the I-CFM path and its target field (paper Eq. 2, independent coupling).

    Shapes: ``z0, z1: (B, D)``, ``t: () or (B,) or (B, 1)`` ``-> z_t: (B, D), u_t: (B, D)``.

    ``z_t = t z1 + (1 - t) z0 + sigma eps`` with ``eps ~ N(0, I)`` (no noise is drawn when
    ``sigma = 0``) and ``u_t = z1 - z0``.
    """
    if z0.shape != z1.shape or z0.ndim != 2:
        raise ValueError(f"z0 and z1 must both be (B, D) with equal shapes, got "
                         f"{tuple(z0.shape)} and {tuple(z1.shape)}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    t_column = time_column(t, z0.shape[0], z0)
    z_t = t_column * z1 + (1 - t_column) * z0
    if sigma > 0:
        z_t = z_t + sigma * torch.randn(z0.shape, generator=generator, dtype=z0.dtype, device=z0.device)
    return z_t, z1 - z0


def cfm_loss(model: Callable[[torch.Tensor, torch.Tensor, LabelLike], torch.Tensor],
             z0: torch.Tensor, z1: torch.Tensor, c: LabelLike, sigma: float = 0.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """The CE-CFM loss ``E ||v_psi(t, z_t, c) - u_t(z | h)||^2`` (paper Eq. 3) on one batch.

    Shapes: ``z0, z1: (B, D)``, ``c: (B,) or (B, K)`` ``-> ()``.

    ``t ~ U[0, 1]`` is drawn per sample, ``c`` is the (predicted) class of ``z1``. As in the
    official code (torchcfm and the toy's training loop), the squared error is
    averaged over batch *and* dimensions, i.e. Eq. 3 divided by ``D``.
    """
    t = sample_time(z0.shape[0], generator, dtype=z0.dtype, device=z0.device)
    z_t, u_t = cfm_path(z0, z1, t, sigma, generator)
    return (model(t, z_t, c) - u_t).pow(2).mean()


def train_velocity(latents: torch.Tensor, conditions: torch.Tensor, *, epochs: int, batch: int, lr: float, seed: int,
                   device: torch.device, name: str, key: dict, hidden_width: int = 64,
                   n_hidden_layers: int = 3) -> tuple[ConditionalVelocityMLP, dict]:
    """The CE-CFM field ``v_psi(t, z, c)`` on ``latents: (N, D)`` with ``conditions: (N, K)``; cached as ``name``.

    The official MLP (default: three hidden layers of 64 SELU units, ``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``)
    with ``D`` and ``K`` from the shapes; CE-CFM (Eq. 3) with ``sigma = 0`` and a ``N(0, I)`` source; Adam at
    ``lr``, ``epochs`` passes of ``batch`` (official on Morpho-MNIST: lr 5e-3, batch 256). ``name`` also names the
    random streams ``<name>/batches``, ``<name>/noise`` and ``<name>/init``; ``key`` is the cache key (what
    produced the latents and conditions, the training settings and the seed).
    """
    if latents.ndim != 2 or conditions.ndim != 2 or len(latents) != len(conditions):
        raise LatentcfError(f"the CE-CFM field trains on latents (N, D) and conditions (N, K), got "
                            f"{tuple(latents.shape)} and {tuple(conditions.shape)}")
    batches = epoch_batches(len(latents), batch, epochs, generator(seed, f"{name}/batches"))
    noise = generator(seed, f"{name}/noise", device)
    dim, num_classes = latents.shape[1], conditions.shape[1]

    def loss(velocity: ConditionalVelocityMLP, step: int) -> torch.Tensor:
        z1 = latents[batches[step]]
        z0 = sample_source(len(z1), dim, noise, device=device)
        return cfm_loss(velocity, z0, z1, conditions[batches[step]], generator=noise)

    seed_stream(seed, f"{name}/init")
    return cached_model(name, key, lambda: ConditionalVelocityMLP(dim, num_classes, hidden_width,
                                                                  n_hidden_layers).to(device),
                        lambda velocity: fit(velocity, lambda step: loss(velocity, step), len(batches), lr,
                                             desc=f"CE-CFM flow ({name})"))
