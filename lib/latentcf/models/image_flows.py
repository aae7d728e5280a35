"""The multi-scale RealNVP of Dombrowski et al. for 1x28x28 MNIST images (Dinh et al. 2017).

Convention, as in :mod:`latentcf.models.flows`: ``encode`` maps data to the base space,
``z = g^{-1}(x)``, and ``decode`` is the generator ``x = g(z)``; the couplings are nflows transforms,
whose *forward* direction is ``encode``. Every coupling is the
RealNVP affine map (Dinh et al. 2017, Eq. 7) on the pixels that a binary mask ``m`` leaves free,

    ``y = m * h + (1 - m) * (h * exp(s(m * h)) + t(m * h))``,  ``log|det dy/dh| = sum (1 - m) s``,

followed by a batch-norm of the transformed pixels. The log-likelihood is the change of variables

    ``log p(x) = log N(z; 0, I) + log|det dz/dl| + log|det dl/dx~|``,

where ``l`` is the logit-space image and ``x~`` the (dequantised) image in ``[0, 1]``.

Layout of the flow actually used by the official code for MNIST (2 scales, 9 couplings):
3 checkerboard couplings on 1x28x28, squeeze to 4x14x14, 3 channel-wise couplings, un-squeeze,
an "ordered" squeeze whose last 2 of 4 channels are factored out (Gaussian), 3 checkerboard
couplings on the remaining 2x14x14, and the inverse ordered squeeze back to ``z: (B, 1, 28, 28)``.
Masks are built from the input's size, so the same flow also runs on any image whose height and
width are multiples of 2 (the tests use 1x8x8).

Simplifications against the official code: no parameters for the unused scale-2/3 modules (so
the official checkpoint cannot be loaded as is); weight-norm convs with a frozen unit gain store
no gain parameter; all batch-norms use PyTorch's default momentum (0.1), which the paper does not state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from nflows.transforms.base import CompositeTransform, InverseTransform, Transform
from nflows.transforms.coupling import AffineCouplingTransform
from nflows.transforms.reshape import SqueezeTransform
from torch import Tensor, nn

N_BINS = 256
"""8-bit pixels: ``x * 255`` is an integer in ``0..255`` and each one owns a bin of width 1/256."""

SQUASH = 0.05
"""Pixels are squashed into ``[SQUASH, 1 - SQUASH]`` before the logit."""

WithLogDet = tuple[Tensor, Tensor]
"""A transform's result: the output and ``log|det J|`` per sample, shape ``(B,)``."""


def logit_preprocess(x: Tensor, noise: bool,
                     generator: torch.Generator | None = None) -> WithLogDet:
    """Map images in ``[0, 1]`` to logit space; shapes ``x: (B, 1, 28, 28) -> (y, logdet: (B,))``.

    ``x~ = x * 255/256 (+ u/256, u ~ U(0, 1) if noise)``, ``q = 0.05 + 0.9 x~``,
    ``y = log q - log(1 - q)``. ``logdet = sum log|dy/dx~| = sum log 0.9 - log q - log(1 - q)``:
    the log-det is taken with respect to the dequantised image ``x~``, whose density is the one
    that bits per dimension are defined for; the fixed factor 255/256 is part of the bin mapping
    ``k / 255 -> k / 256`` and is not in it.
    """
    x_tilde = x * (N_BINS - 1) / N_BINS
    if noise:
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x_tilde = x_tilde + u / N_BINS
    q = SQUASH + (1 - 2 * SQUASH) * x_tilde
    log_q, log_1mq = torch.log(q), torch.log1p(-q)
    logdet = (math.log(1 - 2 * SQUASH) - log_q - log_1mq).flatten(1).sum(1)
    return log_q - log_1mq, logdet


def logit_postprocess(y: Tensor) -> Tensor:
    """Inverse of :func:`logit_preprocess` without the 255/256 factor: ``(sigmoid(y) - 0.05) / 0.9``.

    Shapes ``y: (B, C, H, W) -> (B, C, H, W)``. Exact and unclamped, as in the official code: the
    result lies in ``(-1/18, 19/18)`` for arbitrary ``y`` and in ``[0, 255/256]`` for encoded
    images; callers that need ``[0, 1]`` clip it (the official search clips outside the graph).
    """
    return (torch.sigmoid(y) - SQUASH) / (1 - 2 * SQUASH)


class WNConv2d(nn.Module):
    """Weight-normalised conv, ``W = g * v / ||v||`` with the norm per output channel.

    ``train_gain=False`` fixes ``g = 1`` (unit-norm filters); otherwise ``g`` starts at ``||v||``.
    Padding keeps the spatial size (``kernel_size`` odd).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, bias: bool, train_gain: bool) -> None:
        super().__init__()
        conv = nn.Conv2d(in_ch, out_ch, kernel_size, bias=bias)
        self.v = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(conv.bias.detach().clone()) if bias else None
        self.gain = nn.Parameter(self._norm(self.v).detach().clone()) if train_gain else None
        self.padding = kernel_size // 2

    @staticmethod
    def _norm(v: Tensor) -> Tensor:
        return v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)

    def forward(self, h: Tensor) -> Tensor:
        weight = self.v / self._norm(self.v)
        if self.gain is not None:
            weight = weight * self.gain
        return F.conv2d(h, weight, self.bias, padding=self.padding)


class ResidualBlock(nn.Module):
    """Pre-activation block ``h + conv_b(relu(bn(conv_a(relu(bn(h))))))``, 3x3 convs; ``(B, mid, H, W)``."""

    def __init__(self, mid: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(mid), nn.ReLU(),
                                  WNConv2d(mid, mid, 3, bias=False, train_gain=False),
                                  nn.BatchNorm2d(mid), nn.ReLU(),
                                  WNConv2d(mid, mid, 3, bias=True, train_gain=True))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class ResidualModule(nn.Module):
    """ResNet with skip connections: ``(B, in_ch, H, W) -> (B, out_ch, H, W)``.

    ``h_0 = conv3x3(x)``, ``h_k = block_k(h_{k-1})``, ``out = sum_k skip_k(h_k)`` (1x1 convs), then
    ``conv1x1(relu(bn(out)))``.
    """

    def __init__(self, in_ch: int, mid: int, out_ch: int, blocks: int) -> None:
        super().__init__()
        self.stem = WNConv2d(in_ch, mid, 3, bias=True, train_gain=False)
        self.blocks = nn.ModuleList(ResidualBlock(mid) for _ in range(blocks))
        self.skips = nn.ModuleList(WNConv2d(mid, mid, 1, bias=True, train_gain=True)
                                   for _ in range(blocks + 1))
        self.head = nn.Sequential(nn.BatchNorm2d(mid), nn.ReLU(),
                                  WNConv2d(mid, out_ch, 1, bias=True, train_gain=True))

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        out = self.skips[0](h)
        for block, skip in zip(self.blocks, self.skips[1:]):
            h = block(h)
            out = out + skip(h)
        return self.head(out)


class Conditioner(nn.Module):
    """Shift and raw log-scale net: ``relu([bn(h), -bn(h), mask])`` through a :class:`ResidualModule`.

    Shapes ``h: (B, in_ch, H, W)``, optional ``mask: (1, 1, H, W)`` (the checkerboard couplings
    append it as one more input channel; nflows passes its unused ``context`` here as ``None``)
    ``-> (B, out_ch, H, W)``.
    """

    def __init__(self, in_ch: int, mid: int, out_ch: int, blocks: int, with_mask: bool) -> None:
        super().__init__()
        self.in_norm = nn.BatchNorm2d(in_ch)
        self.net = ResidualModule(2 * in_ch + int(with_mask), mid, out_ch, blocks)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        a = self.in_norm(h)
        parts = [a, -a] if mask is None else [a, -a, mask.expand(len(h), -1, -1, -1)]
        return self.net(F.relu(torch.cat(parts, dim=1)))


class BoundedLogScale(nn.Module):
    """``log s = alpha * tanh(raw) + beta`` with learnable scalars starting at 0 (identity scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(()))
        self.beta = nn.Parameter(torch.zeros(()))

    def forward(self, raw: Tensor) -> Tensor:
        return self.alpha * torch.tanh(raw) + self.beta


class CouplingOutputNorm(nn.Module):
    """Batch-norm without affine parameters of the transformed pixels of a coupling output.

    Statistics are per channel over the batch and *all* positions: batch statistics in training,
    running statistics in eval (and always in the inverse). ``free: (1, 1, H, W)`` marks the
    transformed pixels (``None``: all). Each free pixel adds ``-log sqrt(var_c + eps)`` to the
    log-det, batch statistics being treated as constants as in Dinh et al. (2017, Sec. 3.7).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)

    def _log_det(self, var: Tensor, h: Tensor, free: Tensor | None) -> Tensor:
        n_free = h[0, 0].numel() if free is None else free.sum()
        return (-0.5 * torch.log(var + self.bn.eps).sum() * n_free).expand(len(h))

    def forward(self, h: Tensor, free: Tensor | None) -> WithLogDet:
        var = h.var(dim=(0, 2, 3), unbiased=False) if self.training else self.bn.running_var
        normed = self.bn(h)
        out = normed if free is None else normed * free + h * (1 - free)
        return out, self._log_det(var, h, free)

    def inverse(self, h: Tensor, free: Tensor | None) -> WithLogDet:
        var, mean = self.bn.running_var, self.bn.running_mean
        restored = h * torch.sqrt(var + self.bn.eps).view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
        out = restored if free is None else restored * free + h * (1 - free)
        return out, -self._log_det(var, h, free)


def checkerboard(height: int, width: int, mask_type: int, like: Tensor) -> Tensor:
    """``m[i, j] = (mask_type + i + j) mod 2``, shape ``(1, 1, H, W)``; 1 conditions, 0 is transformed."""
    i = torch.arange(height, device=like.device).view(-1, 1)
    j = torch.arange(width, device=like.device).view(1, -1)
    return ((mask_type + i + j) % 2).to(like.dtype).view(1, 1, height, width)


class CheckerboardCoupling(Transform):
    """Affine coupling with a spatial checkerboard mask; ``(B, C, H, W) -> ((B, C, H, W), (B,))``.

    ``y = BN_out(h * exp(log s) + t)`` on the pixels with ``m = 0``, where
    ``[t, raw] = Conditioner(m * h, m)`` and ``log s = alpha tanh(raw) + beta``, both masked by
    ``1 - m``. Log-det: ``sum (1 - m) (log s - log sqrt(var + eps))``.
    """

    def __init__(self, channels: int, mask_type: int, mid: int, res_blocks: int) -> None:
        super().__init__()
        self.mask_type = mask_type
        self.conditioner = Conditioner(channels, mid, 2 * channels, res_blocks, with_mask=True)
        self.log_scale = BoundedLogScale()
        self.out_norm = CouplingOutputNorm(channels)

    def _params(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        keep = checkerboard(h.shape[2], h.shape[3], self.mask_type, h)
        shift, raw = self.conditioner(h * keep, keep).chunk(2, dim=1)
        return shift * (1 - keep), self.log_scale(raw) * (1 - keep), 1 - keep

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> WithLogDet:
        shift, log_s, free = self._params(inputs)
        out, logdet_norm = self.out_norm(inputs * torch.exp(log_s) + shift, free)
        return out, log_s.flatten(1).sum(1) + logdet_norm

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> WithLogDet:
        shift, log_s, free = self._params(inputs)
        h, logdet_norm = self.out_norm.inverse(inputs, free)
        return (h - shift) * torch.exp(-log_s), logdet_norm - log_s.flatten(1).sum(1)


class ChannelCoupling(AffineCouplingTransform):
    """Affine coupling over channel halves (nflows' channel mask); ``(B, C, H, W) -> ((B, C, H, W), (B,))``.

    ``mask_type`` 1 transforms the first half of the channels, 0 the second. The transformed half
    becomes ``BN_out(h * exp(log s) + t)`` with ``[t, raw] = Conditioner(kept half)`` and
    ``log s = alpha tanh(raw) + beta``.
    """

    def __init__(self, channels: int, mask_type: int, mid: int, res_blocks: int) -> None:
        half = channels // 2
        mask = [1] * half + [0] * half if mask_type == 1 else [0] * half + [1] * half
        super().__init__(mask, lambda n_in, n_out: Conditioner(n_in, mid, n_out, res_blocks, with_mask=False))
        self.log_scale = BoundedLogScale()
        self.out_norm = CouplingOutputNorm(half)

    def _shift_and_log_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = params.chunk(2, dim=1)
        return shift, self.log_scale(raw)

    def _coupling_transform_forward(self, inputs: Tensor, transform_params: Tensor) -> WithLogDet:
        shift, log_s = self._shift_and_log_scale(transform_params)
        out, logdet_norm = self.out_norm(inputs * torch.exp(log_s) + shift, None)
        return out, log_s.flatten(1).sum(1) + logdet_norm

    def _coupling_transform_inverse(self, inputs: Tensor, transform_params: Tensor) -> WithLogDet:
        shift, log_s = self._shift_and_log_scale(transform_params)
        h, logdet_norm = self.out_norm.inverse(inputs, None)
        return (h - shift) * torch.exp(-log_s), logdet_norm - log_s.flatten(1).sum(1)


class OrderedSqueeze(SqueezeTransform):
    """Squeeze ``(B, C, H, W) -> (B, 4C, H/2, W/2)`` with channels grouped by 2x2 position.

    Order: every channel's (0,0) pixel, then (1,1), (0,1), (1,0): the official fixed "order
    matrix" conv. For ``C = 1`` the first two channels are the diagonal of each 2x2 block.
    """

    POSITIONS = (0, 3, 1, 2)
    """Positions ``2 di + dj`` in nflows' squeezed channel ``4c + 2di + dj``, in output order."""

    @classmethod
    def _order(cls, channels: int, like: Tensor) -> Tensor:
        return torch.tensor([4 * c + p for p in cls.POSITIONS for c in range(channels)], device=like.device)

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> WithLogDet:
        squeezed, logdet = super().forward(inputs, context)
        return squeezed[:, self._order(inputs.shape[1], inputs)], logdet

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> WithLogDet:
        order = self._order(inputs.shape[1] // 4, inputs)
        return super().inverse(inputs[:, torch.argsort(order)], context)


class FactorOut(Transform):
    """Apply ``inner`` to the first ``keep`` channels; the rest are factored out (left as latent)."""

    def __init__(self, inner: Transform, keep: int) -> None:
        super().__init__()
        self.inner = inner
        self.keep = keep

    def _run(self, inputs: Tensor, invert: bool) -> WithLogDet:
        head, tail = inputs[:, :self.keep], inputs[:, self.keep:]
        head, logdet = self.inner.inverse(head) if invert else self.inner(head)
        return torch.cat([head, tail], dim=1), logdet

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> WithLogDet:
        return self._run(inputs, invert=False)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> WithLogDet:
        return self._run(inputs, invert=True)


def _checkerboards(channels: int, mid: int, res_blocks: int) -> list[Transform]:
    return [CheckerboardCoupling(channels, t, mid, res_blocks) for t in (1, 0, 1)]


def _channel_couplings(channels: int, mid: int, res_blocks: int) -> list[Transform]:
    return [ChannelCoupling(channels, t, mid, res_blocks) for t in (0, 1, 0)]


class MnistRealNVP(nn.Module):
    """Image flow with logit pre-processing and a standard normal prior on ``z: (B, 1, 28, 28)``.

    ``transform`` maps logit-space images to ``z`` (nflows forward). Encode and decode are meant
    for eval mode (running batch-norm statistics), where they are exact inverses up to the
    255/256 factor: ``decode(encode(x)) = x * 255/256``.
    """

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        self.transform = transform

    def encode(self, x: Tensor) -> Tensor:
        """``z = g^{-1}(x)``, no dequantisation noise; ``x: (B, 1, 28, 28)`` in ``[0, 1]`` -> ``z``, same shape."""
        z, _ = self.transform(logit_preprocess(x, noise=False)[0])
        return z

    def decode(self, z: Tensor) -> Tensor:
        """``x = g(z)``, differentiable in ``z``; ``z: (B, 1, 28, 28) -> x``, see :func:`logit_postprocess`."""
        y, _ = self.transform.inverse(z)
        return logit_postprocess(y)

    def log_prob(self, x: Tensor, noise: bool = False,
                 generator: torch.Generator | None = None) -> Tensor:
        """``log p(x~) = log N(z) + log|det dz/dy| + log|det dy/dx~|``, nats, ``(B,)``.

        ``x~`` is the image scaled by 255/256, dequantised if ``noise`` (the official training
        objective uses ``noise=True``). A density on ``[0, 1]^D``.
        """
        y, logdet_pre = logit_preprocess(x, noise, generator)
        z, logdet_flow = self.transform(y)
        log_normal = -0.5 * (z ** 2 + math.log(2 * math.pi))
        return log_normal.flatten(1).sum(1) + logdet_flow + logdet_pre

    def bits_per_dim(self, x: Tensor, noise: bool = False,
                     generator: torch.Generator | None = None) -> Tensor:
        """``bpd = (-log p(x~) + D log 256) / (D log 2)``, ``(B,)``, ``D = C H W`` (784 for MNIST).

        Each 8-bit value ``k`` owns the bin ``[k/256, (k+1)/256)`` of volume ``256^-D`` in
        ``[0, 1]^D``, so its probability is ``P(k) ~ p(x~) 256^-D`` and ``-log2 P(k) / D`` is the
        above; with ``noise=True`` its expectation is an upper bound on the discrete code length
        (Theis et al. 2016).
        """
        dims = x[0].numel()
        return (-self.log_prob(x, noise, generator) + dims * math.log(N_BINS)) / (dims * math.log(2))

    def gain_penalty(self) -> Tensor:
        """``sum g^2`` over trainable weight-norm gains and coupling ``alpha``s.

        The official per-sample loss is ``-log_prob(x, noise=True) + 5e-5 * gain_penalty()``.
        """
        gains = [m.gain for m in self.modules() if isinstance(m, WNConv2d) and m.gain is not None]
        alphas = [m.alpha for m in self.modules() if isinstance(m, BoundedLogScale)]
        return sum((p ** 2).sum() for p in gains + alphas)


def mnist_realnvp(width: int = 64, res_blocks: int = 4) -> MnistRealNVP:
    """The official MNIST RealNVP: 2 scales, 9 affine couplings, ``z`` of the image's shape.

    Scale 1: 3 checkerboard couplings (mask types 1, 0, 1, ResNet width ``width``) on 1x28x28,
    squeeze to 4x14x14, 3 channel-wise couplings (types 0, 1, 0, width ``2 width``), un-squeeze.
    Ordered squeeze to 4x14x14, whose channels 2-3 are factored out. Scale 2: 3 checkerboard
    couplings (types 1, 0, 1, width ``2 width``) on 2x14x14; inverse ordered squeeze to 1x28x28.
    Official sizes: ``width=64, res_blocks=4``.
    """
    wide = 2 * width
    squeeze = SqueezeTransform()
    ordered = OrderedSqueeze()
    scale_2 = CompositeTransform(_checkerboards(2, wide, res_blocks))
    layers = (_checkerboards(1, width, res_blocks) + [squeeze] + _channel_couplings(4, wide, res_blocks)
              + [InverseTransform(squeeze), ordered, FactorOut(scale_2, keep=2), InverseTransform(ordered)])
    return MnistRealNVP(CompositeTransform(layers))
