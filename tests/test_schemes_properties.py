"""Hypothesis: on random drifts, grids, windows and tolerances, every scheme stays within its
sweep bound and within the tolerance bound of the sequential solution."""

import math

import torch
from hypothesis import given, settings, strategies as st

import parasolve

SCHEMES = [
    ("anderson", None), ("anderson", {"memory": 5, "regularization": 0.0}),
    ("newton", None), ("newton", {"jacobian": "diagonal"}),
    ("parareal", None), ("parareal", {"coarse": "heun"}),
]


@st.composite
def cases(draw):
    d = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2 ** 16))
    gen = torch.Generator().manual_seed(seed)
    L = draw(st.floats(0.1, 2.0))
    A = torch.randn(d, d, dtype=torch.float64, generator=gen)
    A = A * (L / torch.linalg.matrix_norm(A, ord=float("inf")))  # ||A||_inf = L
    nonlinear = draw(st.booleans())  # tanh(A y): same Lipschitz bound L
    n = draw(st.integers(2, 40))
    T = draw(st.floats(0.1, 2.0))
    steps = torch.rand(n, dtype=torch.float64, generator=gen) + 0.2  # non-uniform grid
    t = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(steps, 0)]) * (T / steps.sum())
    if draw(st.booleans()):
        t = t.flip(0)
    y0 = torch.randn(d, dtype=torch.float64, generator=gen)
    window = draw(st.one_of(st.none(), st.integers(1, n + 3)))
    tol = draw(st.sampled_from([0.0, 1e-12, 1e-9, 1e-6, 1e-3]))
    step = draw(st.sampled_from(["euler", "heun", "rk4"]))
    method, options = draw(st.sampled_from(SCHEMES))
    return A, nonlinear, y0, t, window, tol, step, method, options, L, T


@settings(max_examples=80, deadline=None)
@given(cases())
def test_sweeps_at_most_n_and_result_within_tolerance_bound(case):
    A, nonlinear, y0, t, window, tol, step, method, options, L, T = case

    def f(t, y):
        z = y @ A.T
        return torch.tanh(z) if nonlinear else z

    n = len(t) - 1
    seq = parasolve.solve(f, y0, t, method="sequential", step=step, vectorized=True)
    par = parasolve.solve(f, y0, t, method=method, options=options, step=step, window=window, tol=tol,
                          vectorized=True)
    assert par.converged and 1 <= par.stats.iterations <= n
    if method == "parareal":  # iterations are parareal iterations: at most one per segment
        assert par.stats.iterations <= par.stats.window <= min(n, window or n)
    assert par.stats.defect_sum <= tol * (1 + 1e-12) + 1e-300
    # max|x - x_seq| <= S * sum(defects) + round-off, with S <= e^{LT} for explicit RK maps.
    scale = float(seq.ys.abs().max()) + 1
    assert float((par.ys - seq.ys).abs().max()) <= math.exp(L * T) * (tol + n * 1e-14 * scale)
