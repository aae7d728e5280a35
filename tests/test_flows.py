import math

import torch
from torch import nn

from latentcf.models.flows import HELIX_KEEP_MASKS, CouplingFlow, _NarrowOutput, coupling_flow


def _flow(hidden=16):
    torch.manual_seed(0)
    flow = coupling_flow(HELIX_KEEP_MASKS, hidden=hidden)
    for p in flow.parameters():  # random, non-trivial weights
        torch.nn.init.normal_(p, std=0.3)
    return flow.double()


def test_flow_is_invertible():
    flow = _flow()
    x = torch.randn(64, 3, dtype=torch.float64)
    torch.testing.assert_close(flow.decode(flow.encode(x)), x, atol=1e-9, rtol=1e-9)
    z = torch.randn(64, 3, dtype=torch.float64)
    torch.testing.assert_close(flow.encode(flow.decode(z)), z, atol=1e-9, rtol=1e-9)


def test_log_det_matches_autograd_jacobian():
    flow = _flow()
    x = torch.randn(8, 3, dtype=torch.float64)
    _, log_det = flow.encode_with_log_det(x)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: flow.encode(v[None])[0], x[i])
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac).logabsdet)


def test_log_prob_is_change_of_variables():
    flow = _flow()
    x = torch.randn(16, 3, dtype=torch.float64)
    z, log_det = flow.encode_with_log_det(x)
    base = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(flow.log_prob(x), base + log_det)


def _separate_mlp(flow, layer, net):
    """The ``net``-th MLP (0: log-scale, 1: shift) of ``layer`` as plain ``nn.Linear`` layers."""
    mlp = nn.Sequential(nn.Linear(3, 16), nn.LeakyReLU(), nn.Linear(16, 16), nn.LeakyReLU(), nn.Linear(16, 3)).double()
    for linear, w, b in zip(mlp[::2], (flow.w1, flow.w2, flow.w3), (flow.b1, flow.b2, flow.b3)):
        linear.weight.data = w[layer, net].T.clone()
        linear.bias.data = b[layer, net, 0].clone()
    return mlp


def test_fused_layers_are_the_official_two_mlps_per_coupling():
    """The generator equals ``h -> m h + (1 - m)(h exp(tanh(s(m h))) + t(m h))`` layer by layer."""
    flow = _flow()
    z = torch.randn(32, 3, dtype=torch.float64)
    h = z
    for layer, keep in enumerate(HELIX_KEEP_MASKS):
        m = torch.tensor(keep, dtype=torch.float64)
        s = torch.tanh(_separate_mlp(flow, layer, 0)(m * h)) * (1 - m)
        t = _separate_mlp(flow, layer, 1)(m * h) * (1 - m)
        h = m * h + (1 - m) * (h * torch.exp(s) + t)
    torch.testing.assert_close(flow.decode(z), h)


def test_kept_coordinates_pass_a_layer_unchanged():
    flow = CouplingFlow(((1, 0, 1),), hidden=8).double()
    z = torch.randn(10, 3, dtype=torch.float64)
    x = flow.decode(z)
    torch.testing.assert_close(x[:, [0, 2]], z[:, [0, 2]])
    assert (x[:, 1] != z[:, 1]).all()


def test_default_initialisation_is_that_of_nn_linear():
    flow = coupling_flow(HELIX_KEEP_MASKS, hidden=256)
    assert sum(p.numel() for p in flow.parameters()) == 24 * (3 * 256 + 256 + 256 * 256 + 256 + 256 * 3 + 3)
    assert flow.w1.abs().max() <= 1 / math.sqrt(3) and flow.w2.abs().max() <= 1 / 16
    assert flow.w2.abs().max() > 0.9 / 16


def test_samples_come_from_the_generator():
    flow = _flow()
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(flow.sample(5, generator), flow.decode(z))


def test_masks_transform_every_coordinate():
    transformed = {i for mask in HELIX_KEEP_MASKS for i, keep in enumerate(mask) if keep == 0}
    assert transformed == {0, 1, 2} and len(HELIX_KEEP_MASKS) == 12


def test_narrow_output_layer_gives_autograds_numbers_bit_for_bit():
    generator = torch.Generator().manual_seed(3)
    a, w, b = (torch.randn(shape, generator=generator) for shape in ((2, 500, 256), (2, 256, 3), (2, 1, 3)))
    grad_out = torch.randn(2, 500, 3, generator=generator)
    plain = [t.clone().requires_grad_(True) for t in (a, w, b)]
    torch.baddbmm(plain[2], plain[0], plain[1]).backward(grad_out)
    custom = [t.clone().requires_grad_(True) for t in (a, w, b)]
    out = _NarrowOutput.apply(*custom)
    out.backward(grad_out)
    assert torch.equal(out, torch.baddbmm(b, a, w))
    for mine, reference in zip(custom, plain):
        assert mine.grad.shape == reference.grad.shape
        assert torch.equal(mine.grad, reference.grad)
