"""SDEs with up-front noise: Picard == sequential Euler–Maruyama, determinism, exact moments."""

import math

import pytest
import torch

import parasolve
from parasolve import problems


def euler_maruyama_by_hand(f, g, y0, t, noise):
    y, out = y0, [y0]
    for i in range(len(t) - 1):
        h = t[i + 1] - t[i]
        y = y + h * f(t[i], y) + g(t[i], y) * h.abs().sqrt() * noise[i]
        out.append(y)
    return torch.stack(out)


@pytest.mark.parametrize("reverse", [False, True])
def test_sequential_is_euler_maruyama_and_picard_matches_it(reverse):
    ou = problems.ornstein_uhlenbeck(paths=5)
    t = torch.linspace(0, 2, 101, dtype=torch.float64)
    if reverse:
        t = t.flip(0)

    def g(t, y):  # multiplicative, diagonal noise: still a deterministic fixed-point problem
        return 0.3 * torch.sin(y) + 0.5

    noise = torch.randn(100, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = euler_maruyama_by_hand(ou.f, g, ou.y0, t, noise)
    seq = parasolve.solve_sde(ou.f, g, ou.y0, t, noise=noise, method="sequential")
    scale = float(ref.abs().max())
    assert (seq.ys - ref).abs().max() <= 1e-15 * scale * len(t)  # same arithmetic up to fused ops
    tol = 1e-9
    par = parasolve.solve_sde(ou.f, g, ou.y0, t, noise=noise, window=25, tol=tol, method="picard")
    assert par.converged and par.stats.iterations < 100
    lipschitz = ou.lipschitz + 0.3 * 20  # |g'| * |dW| / h is bounded by max|xi| / sqrt(h) terms
    assert (par.ys - ref).abs().max() <= tol * math.exp(lipschitz * 2)
    assert (par.ys - ref).abs().max() <= 1e-8 * scale


def test_same_generator_same_bits_different_seed_different_path():
    ou = problems.ornstein_uhlenbeck(paths=4)
    t = torch.linspace(0, 1, 51, dtype=torch.float64)
    a = parasolve.solve_sde(ou.f, ou.g, ou.y0, t, generator=torch.Generator().manual_seed(7))
    b = parasolve.solve_sde(ou.f, ou.g, ou.y0, t, generator=torch.Generator().manual_seed(7))
    c = parasolve.solve_sde(ou.f, ou.g, ou.y0, t, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.ys, b.ys)
    assert (a.ys - c.ys).abs().max() > 1e-3


def test_noise_drawn_from_generator_equals_passing_it():
    ou = problems.ornstein_uhlenbeck(paths=3)
    t = torch.linspace(0, 1, 21, dtype=torch.float64)
    noise = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    a = parasolve.solve_sde(ou.f, ou.g, ou.y0, t, generator=torch.Generator().manual_seed(3), tol=0.0)
    b = parasolve.solve_sde(ou.f, ou.g, ou.y0, t, noise=noise, tol=0.0)
    assert torch.equal(a.ys, b.ys)


def test_ornstein_uhlenbeck_moments_match_exact_law():
    """4000 parallel paths: sample mean and variance at t=1 within 4 standard errors (+ EM bias)."""
    n = 4000
    ou = problems.ornstein_uhlenbeck(paths=n)
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    sol = parasolve.solve_sde(ou.f, ou.g, ou.y0, t, generator=torch.Generator().manual_seed(0),
                              window=50, tol=1e-6, save="last")
    x = sol.y
    mean, var = ou.mean(t[-1:])[0], ou.variance(t[-1:])[0]
    h = 1 / 200
    assert abs(x.mean() - mean) <= 4 * math.sqrt(var / n) + 2 * h
    assert abs(x.var() - var) <= 4 * var * math.sqrt(2 / (n - 1)) + 2 * h


def test_scalar_diffusion_broadcasts():
    ou = problems.ornstein_uhlenbeck(paths=3)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    noise = torch.randn(10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = parasolve.solve_sde(ou.f, lambda t, y: torch.tensor(0.8, dtype=y.dtype), ou.y0, t, noise=noise)
    b = parasolve.solve_sde(ou.f, ou.g, ou.y0, t, noise=noise)
    assert torch.allclose(a.ys, b.ys, atol=1e-12, rtol=0)
