"""Hypothesis: on random linear drifts, every grid, window and direction, Picard meets its bound."""

import math

import torch
from hypothesis import given, settings, strategies as st

import parasolve


@st.composite
def linear_cases(draw):
    d = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2 ** 16))
    gen = torch.Generator().manual_seed(seed)
    L = draw(st.floats(0.1, 3.0))
    A = torch.randn(d, d, dtype=torch.float64, generator=gen)
    A = A * (L / torch.linalg.matrix_norm(A, ord=float("inf")))  # ||A||_inf = L
    n = draw(st.integers(2, 60))
    T = draw(st.floats(0.1, 2.0))
    steps = torch.rand(n, dtype=torch.float64, generator=gen) + 0.2  # random non-uniform grid
    t = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(steps, 0)]) * (T / steps.sum())
    if draw(st.booleans()):
        t = t.flip(0)
    y0 = torch.randn(d, dtype=torch.float64, generator=gen)
    window = draw(st.one_of(st.none(), st.integers(1, n + 3)))
    tol = draw(st.sampled_from([0.0, 1e-12, 1e-9, 1e-6, 1e-3]))
    step = draw(st.sampled_from(["euler", "heun", "rk4", "ab2"]))
    return A, y0, t, window, tol, step, L, T


@settings(max_examples=60, deadline=None)
@given(linear_cases())
def test_picard_within_tolerance_bound_and_at_most_n_sweeps(case):
    A, y0, t, window, tol, step, L, T = case

    def f(t, y):
        return y @ A.T

    n = len(t) - 1
    seq = parasolve.solve(f, y0, t, method="sequential", step=step)
    par = parasolve.solve(f, y0, t, step=step, window=window, tol=tol, vectorized=True)
    assert par.converged and 1 <= par.stats.iterations <= n
    assert par.stats.defect_sum <= tol + 1e-15
    # max|x - x_seq| <= S * sum(defects) + round-off, S <= e^{LT} (ab2 uses two past states: e^{2LT})
    stab = math.exp((2 if step == "ab2" else 1) * L * T)
    scale = float(seq.ys.abs().max()) + 1
    assert float((par.ys - seq.ys).abs().max()) <= stab * (tol + n * 1e-14 * scale)
