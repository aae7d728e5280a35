import torch

from latentcf.methods.geometry import batched_jacobian, induced_metric_eigen


def test_jacobian_of_a_linear_map_is_its_matrix():
    a = torch.randn(4, 3, dtype=torch.float64)
    jac = batched_jacobian(lambda z: z @ a.T, torch.randn(5, 3, dtype=torch.float64))
    torch.testing.assert_close(jac, a.expand(5, 4, 3))


def test_jacobian_of_an_elementwise_map_is_diagonal():
    z = torch.randn(6, 3, dtype=torch.float64)
    torch.testing.assert_close(batched_jacobian(torch.sin, z), torch.diag_embed(torch.cos(z)))


def test_induced_metric_eigen_of_a_scaled_rotation():
    angle = torch.tensor(0.7, dtype=torch.float64)
    rotation = torch.tensor([[angle.cos(), -angle.sin(), 0], [angle.sin(), angle.cos(), 0], [0, 0, 1]],
                            dtype=torch.float64)
    jac = rotation @ torch.diag(torch.tensor([3.0, 0.5, 0.1], dtype=torch.float64))
    eigenvalues, eigenvectors = induced_metric_eigen(jac[None])
    torch.testing.assert_close(eigenvalues[0], torch.tensor([9.0, 0.25, 0.01], dtype=torch.float64))
    torch.testing.assert_close(eigenvectors[0].abs(), rotation.abs())
    metric = eigenvectors[0] @ torch.diag(eigenvalues[0]) @ eigenvectors[0].T
    torch.testing.assert_close(metric, jac @ jac.T)
