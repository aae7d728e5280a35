import torch

from latentcf.models.flows import HELIX_KEEP_MASKS, coupling_flow, flow_decode, flow_encode


def _flow():
    torch.manual_seed(0)
    flow = coupling_flow(HELIX_KEEP_MASKS, hidden=16)
    for p in flow.parameters():  # random, non-trivial weights
        torch.nn.init.normal_(p, std=0.3)
    return flow.double()


def test_flow_is_invertible():
    flow = _flow()
    x = torch.randn(64, 3, dtype=torch.float64)
    torch.testing.assert_close(flow_decode(flow, flow_encode(flow, x)), x, atol=1e-9, rtol=1e-9)
    z = torch.randn(64, 3, dtype=torch.float64)
    torch.testing.assert_close(flow_encode(flow, flow_decode(flow, z)), z, atol=1e-9, rtol=1e-9)


def test_log_det_matches_autograd_jacobian():
    flow = _flow()
    x = torch.randn(8, 3, dtype=torch.float64)
    _, logabsdet = flow._transform(x)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: flow_encode(flow, v[None])[0], x[i])
        torch.testing.assert_close(logabsdet[i], torch.linalg.slogdet(jac).logabsdet)


def test_log_prob_is_change_of_variables():
    flow = _flow()
    x = torch.randn(16, 3, dtype=torch.float64)
    z, logabsdet = flow._transform(x)
    base = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(flow.log_prob(x), base + logabsdet)


def test_masks_transform_every_coordinate():
    transformed = {i for mask in HELIX_KEEP_MASKS for i, keep in enumerate(mask) if keep == 0}
    assert transformed == {0, 1, 2} and len(HELIX_KEEP_MASKS) == 12
