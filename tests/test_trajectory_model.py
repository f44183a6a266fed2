"""The toy planning task, its expert, the task score, and the shipped trajectory diffusion policy."""

import math

import pytest
import torch

from parasolve.zoo.trajectory import (EXPERT_MARGIN, GOAL_TOLERANCE, HORIZON, OBSTACLE_RADIUS,
                                            SMOOTHNESS_LIMIT, TrajectoryDenoiser, ddpm_sample, expert_paths,
                                            load_trajectory_model, make_dataset, schedule, task_score,
                                            trajectory_denoiser)

U = torch.arange(HORIZON, dtype=torch.float64) / (HORIZON - 1)


@pytest.fixture(scope="module")
def data():
    return make_dataset(512, torch.Generator().manual_seed(123))


@pytest.fixture(scope="module")
def model():
    return load_trajectory_model()


def test_dataset_is_seeded_and_shaped(data):
    actions, cond = data
    again = make_dataset(512, torch.Generator().manual_seed(123))
    assert actions.shape == (512, HORIZON, 2) and cond.shape == (512, 4) and actions.dtype == torch.float32
    assert torch.equal(actions, again[0]) and torch.equal(cond, again[1])
    assert not torch.equal(actions, make_dataset(512, torch.Generator().manual_seed(124))[0])


def test_expert_paths_join_start_to_goal_and_avoid_the_obstacle(data):
    actions, cond = data
    torch.testing.assert_close(actions[:, 0], cond[:, :2], atol=1e-6, rtol=0)
    torch.testing.assert_close(actions[:, -1], cond[:, 2:], atol=1e-6, rtol=0)
    assert actions.norm(dim=2).min() >= OBSTACLE_RADIUS + EXPERT_MARGIN - 1e-5
    assert actions.abs().max() <= 1.0
    # a good share of the pairs is blocked by the obstacle, so the data has two modes there
    line = cond[:, None, :2] + U.float()[None, :, None] * (cond[:, None, 2:] - cond[:, None, :2])
    blocked = (line.norm(dim=2) < OBSTACLE_RADIUS).any(dim=1)
    assert 0.15 < blocked.float().mean() < 0.6


def test_expert_is_a_straight_line_when_the_line_is_clear():
    start, goal = torch.tensor([[-0.8, 0.7]]), torch.tensor([[0.8, 0.6]])
    for side in (1.0, -1.0):
        path, fits = expert_paths(start, goal, torch.tensor([side]))
        assert bool(fits.all())
        torch.testing.assert_close(path[0], start[0] + U.float()[:, None] * (goal - start)[0], atol=1e-6, rtol=0)


def test_expert_goes_round_either_side_with_the_least_clearing_bump():
    # the line through the centre needs its bump to clear R + margin exactly at u = 1/2
    start, goal = torch.tensor([[-0.8, 0.0]] * 2), torch.tensor([[0.8, 0.0]] * 2)
    path, fits = expert_paths(start, goal, torch.tensor([1.0, -1.0]))
    assert bool(fits.all())
    bump = (OBSTACLE_RADIUS + EXPERT_MARGIN) * torch.sin(math.pi * U)
    expected_x = -0.8 + 1.6 * U
    torch.testing.assert_close(path[0].double(), torch.stack([expected_x, bump], 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(path[1].double(), torch.stack([expected_x, -bump], 1), atol=1e-6, rtol=0)


def test_expert_switches_side_when_the_preferred_side_leaves_the_box():
    # hugging the top wall: going round the top would leave the box, so both choices go below
    start, goal = torch.tensor([[-0.5, 0.85]] * 2), torch.tensor([[0.5, -0.05]] * 2)
    path, fits = expert_paths(start, goal, torch.tensor([1.0, -1.0]))
    assert bool(fits.all()) and path.abs().max() <= 1.0
    assert path.norm(dim=2).min() >= OBSTACLE_RADIUS + EXPERT_MARGIN - 1e-6
    torch.testing.assert_close(path[0], path[1])


def test_task_score_accepts_the_expert_and_rejects_shortcuts(data):
    actions, cond = data
    score = task_score(actions, cond[:, :2], cond[:, 2:])
    assert score.summary()["success"] == 1.0
    assert float(score.smoothness.max()) <= SMOOTHNESS_LIMIT
    # straight lines through the obstacle: endpoints right, collision flagged
    start, goal = torch.tensor([[-0.8, 0.1], [0.5, 0.9]]), torch.tensor([[0.8, -0.1], [-0.5, -0.9]])
    line = start[:, None] + U.float()[None, :, None] * (goal - start)[:, None]
    s = task_score(line, start, goal)
    assert s.goal_reached.all() and s.start_reached.all() and not s.collision_free.any() and not s.success.any()
    assert float(s.smoothness.max()) < 1e-12


def test_task_score_thresholds():
    start, goal = torch.tensor([[-0.8, 0.7]]), torch.tensor([[0.8, 0.7]])
    line = start[:, None] + U.float()[None, :, None] * (goal - start)[:, None]
    assert task_score(line, start, goal).success.all()
    short = line.clone()
    short[0, -1, 0] -= GOAL_TOLERANCE * 1.05
    assert not task_score(short, start, goal).goal_reached.any()
    short[0, -1, 0] = line[0, -1, 0] - GOAL_TOLERANCE * 0.95
    assert task_score(short, start, goal).goal_reached.all()
    jagged = line.clone()
    jagged[0, 1:-1:2, 1] += 0.1   # second differences of +-0.2: mean square about 0.04
    s = task_score(jagged, start, goal)
    assert s.goal_reached.all() and s.collision_free.all() and not s.success.any()
    assert s.smoothness.item() > SMOOTHNESS_LIMIT
    outside = line.clone()
    outside[0, 5, 1] = 1.2
    assert not task_score(outside, start, goal).in_bounds.any()


def test_task_score_rejects_bad_input():
    start = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="actions"):
        task_score(torch.zeros(2, 15, 2), start, start)
    with pytest.raises(ValueError, match="start and goal"):
        task_score(torch.zeros(3, HORIZON, 2), start, start)
    with pytest.raises(ValueError, match="NaN"):
        task_score(torch.full((2, HORIZON, 2), float("nan")), start, start)
    with pytest.raises(ValueError, match="differ"):
        expert_paths(start, start, torch.ones(2))
    with pytest.raises(ValueError, match="side"):
        expert_paths(start, start + 1, torch.zeros(2))
    with pytest.raises(ValueError, match="`n` must be an integer >= 1; got 0"):
        make_dataset(0)


def test_ddpm_sample_recovers_a_point_mass_under_the_exact_denoiser():
    # for data concentrated at x*, eps(x, t) = (x - sqrt(abar) x*) / sqrt(1 - abar) exactly,
    # so every x0 estimate is x* and the last (noise-free) step lands on x*
    target = make_dataset(3, torch.Generator().manual_seed(5))[0].double()
    abar = schedule().double()

    def exact(x, t, cond):
        ab = abar[t.long()][:, None, None]
        return ((x.double() - ab.sqrt() * target) / (1 - ab).sqrt()).float()

    out = ddpm_sample(exact, torch.zeros(3, 4, dtype=torch.float64), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, target, atol=1e-5, rtol=0)


def test_model_interface(model, data):
    actions, cond = data
    n_params = sum(p.numel() for p in model.parameters())
    assert 100_000 <= n_params <= 300_000 and not model.training
    x, t = torch.randn(6, HORIZON, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 10, 30, 50, 80, 99])
    eps = model(x, t, cond=cond[:6])
    assert eps.shape == x.shape and eps.abs().sum() > 0
    single = torch.cat([model(x[i:i + 1], t[i:i + 1], cond=cond[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(eps, single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x, 40, cond=cond[:6]), model(x, torch.full((6,), 40), cond=cond[:6]))
    assert not torch.allclose(eps, model(x, t, cond=cond[6:12]))  # the condition matters
    with pytest.raises(ValueError, match="cond"):
        model(x, t)
    with pytest.raises(ValueError, match="x must"):
        model(torch.zeros(6, 32), t, cond=cond[:6])
    with pytest.raises(ValueError, match="t must"):
        model(x, t[:3], cond=cond[:6])


def test_missing_weights_name_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_trajectory"):
        load_trajectory_model(tmp_path / "none.pt")


def test_fresh_model_matches_the_documented_size():
    assert 100_000 <= sum(p.numel() for p in TrajectoryDenoiser().parameters()) <= 300_000


def test_sequential_ddpm100_samples_solve_the_task(model):
    _, cond = make_dataset(32, torch.Generator().manual_seed(2024))
    actions = ddpm_sample(model, cond, torch.Generator().manual_seed(7))
    assert torch.equal(actions, ddpm_sample(model, cond, torch.Generator().manual_seed(7)))
    score = task_score(actions, cond[:, :2], cond[:, 2:]).summary()
    assert score["success"] >= 0.8, score


def test_parallel_sampler_matches_the_reference_loop(model):
    from parasolve.diffusion import sample

    den = trajectory_denoiser()
    _, cond = make_dataset(16, torch.Generator().manual_seed(31))
    ref = ddpm_sample(model, cond, torch.Generator().manual_seed(3))
    seq = sample(den, (16, HORIZON, 2), sampler="ddpm", steps=100, method="sequential", cond=cond,
                 generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(seq.x, ref, atol=1e-4, rtol=0)
    par = sample(den, (16, HORIZON, 2), sampler="ddpm", steps=100, method="picard", window=32, tol=1e-3,
                 cond=cond, generator=torch.Generator().manual_seed(3))
    # DDPM's chain contracts, so the accepted defects (summing to <= tol) bound the distance to sequential
    assert par.converged and par.stats.iterations <= 50
    assert float((par.x - ref).abs().max()) <= 1e-3
    s_ref = task_score(ref, cond[:, :2], cond[:, 2:])
    s_par = task_score(par.x, cond[:, :2], cond[:, 2:])
    assert s_par.success.float().mean() >= s_ref.success.float().mean() - 1 / 16
