import math

import pytest
import torch

from latentcf.models.image_flows import (
    BoundedLogScale,
    CheckerboardCoupling,
    OrderedSqueeze,
    logit_postprocess,
    logit_preprocess,
    mnist_realnvp,
)


def _flow(dtype: torch.dtype = torch.float32):
    """A tiny flow with non-trivial scales and batch-norm running statistics, in eval mode."""
    torch.manual_seed(0)
    flow = mnist_realnvp(width=8, res_blocks=1).to(dtype)
    for module in flow.modules():
        if isinstance(module, BoundedLogScale):
            torch.nn.init.normal_(module.alpha, std=0.5)
            torch.nn.init.normal_(module.beta, std=0.2)
    flow.train()
    with torch.no_grad():
        for _ in range(3):
            flow.log_prob(torch.rand(16, 1, 28, 28, dtype=dtype), noise=True)
    return flow.eval()


def test_shapes_and_bits_per_dim():
    flow = _flow()
    x = torch.rand(4, 1, 28, 28)
    assert flow.encode(x).shape == (4, 1, 28, 28)
    assert flow.decode(torch.randn(4, 1, 28, 28)).shape == (4, 1, 28, 28)
    bpd = flow.bits_per_dim(x, noise=True)
    assert bpd.shape == (4,) and torch.isfinite(bpd).all() and (bpd > 0).all()


def test_bits_per_dim_definition():
    flow = _flow()
    x = torch.rand(3, 1, 28, 28)
    expected = (-flow.log_prob(x) + 784 * math.log(256)) / (784 * math.log(2))
    torch.testing.assert_close(flow.bits_per_dim(x), expected)


def test_decode_encode_round_trip():
    flow = _flow()
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(flow.decode(flow.encode(x)), x * 255 / 256, atol=1e-4, rtol=0)


def test_encode_decode_round_trip():
    flow = _flow(torch.float64)
    z = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(flow.transform(flow.transform.inverse(z)[0])[0], z)
    # decode does not undo the 255/256 of encode, exactly as in the official code
    torch.testing.assert_close(flow.encode(flow.decode(z) * 256 / 255), z)


def test_flow_log_det_matches_autograd_jacobian():
    flow = _flow(torch.float64)
    y = torch.randn(2, 1, 8, 8, dtype=torch.float64)  # masks follow the input size
    _, logdet = flow.transform(y)
    for i in range(len(y)):
        jac = torch.autograd.functional.jacobian(lambda v: flow.transform(v[None])[0][0], y[i])
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jac.reshape(64, 64)).logabsdet)
    _, inverse_logdet = flow.transform.inverse(flow.transform(y)[0])
    torch.testing.assert_close(inverse_logdet, -logdet)


def test_log_prob_is_change_of_variables_through_encode():
    flow = _flow(torch.float64)
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: flow.encode(v.view(1, 1, 8, 8)).flatten(), x.flatten())
    z = flow.encode(x)
    # log p is a density of x~ = x * 255/256, so the Jacobian of x -> x~ is divided out
    expected = (torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
                + torch.linalg.slogdet(jac).logabsdet - 64 * math.log(255 / 256))
    torch.testing.assert_close(flow.log_prob(x)[0], expected)


def test_coupling_log_det_in_training_mode_uses_batch_variance():
    torch.manual_seed(1)
    layer = CheckerboardCoupling(channels=1, mask_type=0, mid=4, res_blocks=1).double()
    torch.nn.init.normal_(layer.log_scale.alpha)
    h = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    _, logdet = layer(h)
    shift, log_s, free = layer._params(h)
    batch_var = (h * log_s.exp() + shift).var(unbiased=False)  # over batch and all positions
    expected = log_s.flatten(1).sum(1) - 0.5 * torch.log(batch_var + 1e-5) * free.sum()
    torch.testing.assert_close(logdet, expected)


def test_preprocess_log_det_is_analytic_derivative():
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    y, logdet = logit_preprocess(x, noise=False)
    (grad,) = torch.autograd.grad(y.sum(), x)  # elementwise map: the gradient is the diagonal
    expected = torch.log(grad).flatten(1).sum(1) - 784 * math.log(255 / 256)
    torch.testing.assert_close(logdet, expected)
    torch.testing.assert_close(logit_postprocess(y), x * 255 / 256)


def test_preprocess_noise_stays_in_bin():
    x = torch.randint(0, 256, (2, 1, 28, 28)).double() / 255
    y, _ = logit_preprocess(x, noise=True, generator=torch.Generator().manual_seed(0))
    k = x * 255
    assert ((logit_postprocess(y) * 256 - k) >= 0).all() and ((logit_postprocess(y) * 256 - k) < 1).all()


def test_ordered_squeeze_keeps_block_diagonal_first():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    out, _ = OrderedSqueeze()(image)
    assert out[0, :, 0, 0].tolist() == [0.0, 5.0, 1.0, 4.0]
    torch.testing.assert_close(OrderedSqueeze().inverse(out)[0], image)


def test_decode_gradient_reaches_z():
    flow = _flow()
    z = torch.randn(2, 1, 28, 28, requires_grad=True)
    flow.decode(z).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("width, res_blocks, n_params", [(64, 4, 8_590_956)])
def test_official_parameter_count(width, res_blocks, n_params):
    flow = mnist_realnvp(width, res_blocks)
    assert sum(p.numel() for p in flow.parameters() if p.requires_grad) == n_params
