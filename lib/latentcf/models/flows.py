"""Normalizing flows built from ``nflows`` transforms.

Convention: the nflows *forward* direction maps data to the base space, ``z = g^{-1}(x)``, and
its *inverse* is the generator ``x = g(z)``. Introduced in ``notebooks/helix``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from nflows.distributions.normal import StandardNormal
from nflows.flows.base import Flow
from nflows.transforms.base import CompositeTransform
from nflows.transforms.coupling import AffineCouplingTransform
from torch import nn

HELIX_KEEP_MASKS = ((0, 1, 1), (1, 0, 1), (1, 1, 0), (0, 0, 1), (1, 0, 0), (0, 1, 0)) * 2
"""The official toy flow's 12 masks; 1 marks a coordinate that is kept and conditions the layer."""


class ScaleShiftNet(nn.Module):
    """Two MLPs, ``t(h)`` and ``s(h) = tanh(...)``, concatenated as ``[t, s]`` for nflows.

    Shapes: ``h: (B, n_keep) -> (B, 2 * n_transform)``. Each MLP is
    ``Linear(n_keep, hidden), LeakyReLU, Linear(hidden, hidden), LeakyReLU, Linear(hidden, n_out)``;
    the log-scale head ends in ``tanh`` so that every layer scales by at most ``e``.
    """

    def __init__(self, n_keep: int, n_out: int, hidden: int) -> None:
        super().__init__()
        self.shift = _mlp(n_keep, n_out // 2, hidden)
        self.log_scale = nn.Sequential(_mlp(n_keep, n_out // 2, hidden), nn.Tanh())

    def forward(self, h: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([self.shift(h), self.log_scale(h)], dim=1)


def _mlp(n_in: int, n_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden),
                         nn.LeakyReLU(), nn.Linear(hidden, n_out))


class ExpAffineCoupling(AffineCouplingTransform):
    """RealNVP affine coupling ``y = h * exp(s(h_keep)) + t(h_keep)`` (Dinh et al. 2017, Eq. 7).

    nflows' own affine coupling squashes the scale with a sigmoid; this one uses ``exp`` of a
    tanh-bounded log-scale, as in the diffeomorphic-counterfactuals toy flow.
    """

    def _log_scale_and_shift(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.num_transform_features
        return params[:, n:, ...], params[:, :n, ...]

    def _coupling_transform_forward(self, inputs, transform_params):
        log_scale, shift = self._log_scale_and_shift(transform_params)
        return inputs * torch.exp(log_scale) + shift, log_scale.flatten(1).sum(1)

    def _coupling_transform_inverse(self, inputs, transform_params):
        log_scale, shift = self._log_scale_and_shift(transform_params)
        return (inputs - shift) * torch.exp(-log_scale), -log_scale.flatten(1).sum(1)


def coupling_flow(keep_masks: Sequence[Sequence[int]], hidden: int) -> Flow:
    """A RealNVP-type flow on ``R^D``: one affine coupling per mask and a standard normal base.

    Args:
        keep_masks: one 0/1 mask of length D per layer, in the order the generator ``g`` applies
            them; 1 keeps (conditions), 0 transforms.
        hidden: width of the two hidden layers of every scale and shift MLP.
    """
    dim = len(keep_masks[0])
    layers = [
        ExpAffineCoupling(mask=[1 - keep for keep in mask],
                          transform_net_create_fn=lambda n_in, n_out: ScaleShiftNet(n_in, n_out, hidden))
        for mask in reversed(keep_masks)
    ]
    return Flow(CompositeTransform(layers), StandardNormal([dim]))


def flow_encode(flow: Flow, x: torch.Tensor) -> torch.Tensor:
    """``z = g^{-1}(x)``. Shapes: ``x: (B, D) -> z: (B, D)``."""
    return flow.transform_to_noise(x)


def flow_decode(flow: Flow, z: torch.Tensor) -> torch.Tensor:
    """``x = g(z)``, differentiable in ``z``. Shapes: ``z: (B, D) -> x: (B, D)``."""
    x, _ = flow._transform.inverse(z)
    return x


def flow_nll(flow: Flow, x: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood ``-log p(x)`` (change of variables, Dombrowski et al. Eq. 6). ``x: (B, D)``."""
    return -flow.log_prob(x).mean()
