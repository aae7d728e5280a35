import torch

from latentcf.methods.search import gradient_ascent


def _distance_score(targets, tolerance=0.05):
    def score(x, idx):
        distance = (x - targets[idx]).norm(dim=1)
        return distance**2, distance < tolerance
    return score


def _problem():
    generator = torch.Generator().manual_seed(0)
    v_start = torch.randn(6, 2, generator=generator, dtype=torch.float64)
    targets = v_start + torch.tensor([[0.0, 0.0], [0.3, 0.0], [1.0, -1.0], [3.0, 2.0], [0.0, 0.2], [50.0, 50.0]],
                                     dtype=torch.float64)
    return v_start, targets


def test_batched_ascent_equals_one_sample_at_a_time():
    v_start, targets = _problem()
    batched = gradient_ascent(v_start, torch.tanh, _distance_score(targets),
                              lr=0.05, max_steps=300)
    for i in range(len(v_start)):
        alone = gradient_ascent(v_start[i:i + 1], torch.tanh, _distance_score(targets[i:i + 1]),
                                lr=0.05, max_steps=300)
        assert alone.steps.item() == batched.steps[i].item()
        assert alone.success.item() == batched.success[i].item()
        torch.testing.assert_close(alone.v[0], batched.v[i])


def test_each_sample_stops_when_it_reaches_its_target():
    v_start, targets = _problem()
    result = gradient_ascent(v_start, lambda v: v, _distance_score(targets), lr=0.05, max_steps=200,
                             record_trajectory=True)
    assert result.steps[0] == 0 and result.success[0]
    assert result.steps[1] < result.steps[2] < result.steps[3]
    assert not result.success[5] and result.steps[5] == 200
    reached = result.success
    assert ((result.x[reached] - targets[reached]).norm(dim=1) < 0.05).all()
    assert result.trajectory.shape == (201, 6, 2)
    stopped_at = result.steps[1].item()
    assert (result.trajectory[stopped_at:, 1] == result.trajectory[-1, 1]).all()


def test_a_stopped_sample_does_not_move_while_others_continue():
    v_start, targets = _problem()
    result = gradient_ascent(v_start, lambda v: v, _distance_score(targets), lr=0.05, max_steps=50)
    torch.testing.assert_close(result.v[0], v_start[0])
    torch.testing.assert_close(result.x[0], v_start[0])
