"""RealNVP affine coupling flows on ``R^D`` for the toys, with all coupling networks of a layer fused.

Convention: ``encode`` maps data to the base space, ``z = g^{-1}(x)``, and ``decode`` is the
generator ``x = g(z)``. Introduced in ``notebooks/helix``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

HELIX_KEEP_MASKS = ((0, 1, 1), (1, 0, 1), (1, 1, 0), (0, 0, 1), (1, 0, 0), (0, 1, 0)) * 2
"""The official toy flow's 12 masks; 1 marks a coordinate that is kept and conditions the layer."""


class CouplingFlow(nn.Module):
    """A RealNVP-type flow (Dinh et al. 2017) of affine couplings and a standard normal base.

    Layer ``i`` of the generator ``g`` keeps the coordinates where ``keep_masks[i]`` is 1 and moves
    the others, ``h -> h * exp(s_i(m_i h)) + t_i(m_i h)`` (RealNVP Eq. 7), as the official toy flow
    of Dombrowski et al. (``toy_example.ipynb`` in annahdo/counterfactuals) does: ``s_i`` and ``t_i``
    are two separate MLPs ``Linear(D, H), LeakyReLU, Linear(H, H), LeakyReLU, Linear(H, D)`` on the
    masked vector ``m_i h``, ``s_i`` ends in ``tanh`` (every layer scales by at most ``e``), and both
    outputs are zeroed on the kept coordinates. The two MLPs of a layer are evaluated as one batched
    matrix product (their weights are stacked along a leading axis of size 2: 0 is ``s``, 1 is ``t``),
    which halves the number of operations per layer; the function is that of two separate MLPs.

    Parameters ``w1, b1, w2, b2, w3, b3`` have shapes ``(L, 2, D, H), (L, 2, 1, H), (L, 2, H, H),
    (L, 2, 1, H), (L, 2, H, D), (L, 2, 1, D)`` and PyTorch's default ``nn.Linear`` initialisation.
    """

    def __init__(self, keep_masks: Sequence[Sequence[int]], hidden: int) -> None:
        super().__init__()
        layers, dim = len(keep_masks), len(keep_masks[0])
        self.register_buffer("keep", torch.tensor(keep_masks, dtype=torch.float32))
        self.w1, self.b1 = _uniform((layers, 2, dim, hidden), dim), _uniform((layers, 2, 1, hidden), dim)
        self.w2, self.b2 = _uniform((layers, 2, hidden, hidden), hidden), _uniform((layers, 2, 1, hidden), hidden)
        self.w3, self.b3 = _uniform((layers, 2, hidden, dim), hidden), _uniform((layers, 2, 1, dim), hidden)

    def extra_repr(self) -> str:
        """Sizes and the generator's layer map, so that the model cache's key changes with them."""
        layers, _, dim, hidden = self.w1.shape
        return f"layers={layers}, dim={dim}, hidden={hidden}, generator: h * exp(tanh(s)) + t"

    @property
    def dim(self) -> int:
        """The data dimension ``D``."""
        return self.keep.shape[1]

    def _layers(self) -> list[tuple[torch.Tensor, ...]]:
        """Per layer ``(keep, free, w1, b1, w2, b2, w3, b3)``, in the order ``g`` applies them (``free = 1 - keep``).

        One ``unbind`` per parameter and pass: its backward writes each layer's gradient with one
        stack, where indexing layer by layer would zero and add a full-size gradient per layer.
        """
        stacked = (self.keep, 1 - self.keep, self.w1, self.b1, self.w2, self.b2, self.w3, self.b3)
        return list(zip(*(p.unbind(0) for p in stacked)))

    @staticmethod
    def _log_scale_and_shift(layer: tuple[torch.Tensor, ...], h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``s(m h)`` and ``t(m h)``, zero on the kept coordinates. ``h: (B, D) -> 2 x (B, D)``.

        The activations are applied in place (the products' outputs are needed by nothing else), and
        the output layer is :class:`_NarrowOutput`; both give the same numbers as the plain expression.
        """
        keep, free, w1, b1, w2, b2, w3, b3 = layer
        a = (h * keep).expand(2, *h.shape)
        a = functional.leaky_relu(torch.baddbmm(b1, a, w1), inplace=True)
        a = functional.leaky_relu(torch.baddbmm(b2, a, w2), inplace=True)
        a = _NarrowOutput.apply(a, w3, b3)
        return torch.tanh(a[0]) * free, a[1] * free

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``x = g(z)``, differentiable in ``z``. Shapes: ``z: (B, D) -> x: (B, D)``."""
        h = z
        for layer in self._layers():
            log_scale, shift = self._log_scale_and_shift(layer, h)
            h = h * torch.exp(log_scale) + shift
        return h

    def encode_with_log_det(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z = g^{-1}(x)`` and ``log |det dz/dx|``. Shapes: ``x: (B, D) -> z: (B, D), (B,)``.

        The layers run backwards, each ``h -> (h - t) * exp(-s)``, contributing ``-sum(s)`` to the
        log-determinant (its Jacobian is triangular after a permutation).
        """
        h, log_det = x, x.new_zeros(len(x))
        for layer in reversed(self._layers()):
            log_scale, shift = self._log_scale_and_shift(layer, h)
            h = (h - shift) * torch.exp(-log_scale)
            log_det = log_det - log_scale.sum(1)
        return h, log_det

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``z = g^{-1}(x)``. Shapes: ``x: (B, D) -> z: (B, D)``."""
        return self.encode_with_log_det(x)[0]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = log N(g^{-1}(x); 0, I) + log |det dg^{-1}/dx|`` (Dombrowski et al. Eq. 6). ``(B, D) -> (B,)``"""
        z, log_det = self.encode_with_log_det(x)
        return -0.5 * (z**2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi) + log_det

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples ``g(z)``, ``z ~ N(0, I)`` drawn on the flow's device and in its dtype. Returns ``(n, D)``."""
        z = torch.randn(n, self.dim, generator=generator, device=self.w1.device, dtype=self.w1.dtype)
        return self.decode(z)


class _NarrowOutput(torch.autograd.Function):
    """``baddbmm(b, a, w)`` for an output only ``D`` wide, with a faster weight gradient than autograd's.

    Autograd computes the weight gradient as ``a^T @ g``, a product whose result has ``D = 3`` columns,
    a shape for which the CPU's BLAS is slow; this computes ``(g^T @ a)^T``, about four times faster
    there and with the same numbers bit for bit (``tests/test_flows.py`` checks it). Shapes: ``a: (2, B, H)``,
    ``w: (2, H, D)``, ``b: (2, 1, D) -> (2, B, D)``.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, a: torch.Tensor, w: torch.Tensor,
                b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, w)
        return torch.baddbmm(b, a, w)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,
                 grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, w = ctx.saved_tensors
        grad_w = torch.bmm(grad.transpose(1, 2), a).transpose(1, 2)
        return torch.bmm(grad, w.transpose(1, 2)), grad_w, grad.sum(1, keepdim=True)


def _uniform(shape: tuple[int, ...], fan_in: int) -> nn.Parameter:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: ``nn.Linear``'s default initialisation of weights and biases."""
    bound = fan_in**-0.5
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


def coupling_flow(keep_masks: Sequence[Sequence[int]], hidden: int) -> CouplingFlow:
    """A :class:`CouplingFlow` with one coupling per mask (in the order ``g`` applies them) and MLP width ``hidden``."""
    return CouplingFlow(keep_masks, hidden)


def flow_nll(flow: CouplingFlow, x: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood ``-log p(x)`` (change of variables, Dombrowski et al. Eq. 6). ``x: (B, D)``."""
    return -flow.log_prob(x).mean()
