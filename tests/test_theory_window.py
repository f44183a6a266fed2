"""theory.window against the real sliding-window solver: the windowed iterate and the sweep counts."""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

import parasolve
from parasolve import testing as pt
from theory import discrete, tolerance, window


@settings(max_examples=30, deadline=None)
@given(f=pt.drifts(max_lipschitz=3.0, min_lipschitz=0.05), t=pt.grids(min_steps=2, max_steps=30),
       step=st.sampled_from(["euler", "heun", "rk4", "ab2"]), p=st.integers(1, 12), k_frac=st.floats(0, 1),
       data=st.data())
def test_windowed_iterate_is_the_truncated_full_iterate_and_within_bound(f, t, step, p, k_frac, data):
    n = len(t) - 1
    k = 1 + int(k_frac * (n - 1))
    y0 = data.draw(pt.states(f.dim))
    ref = pt.sequential(f, y0, t, step=step)
    windowed = pt.picard_iterate(f, y0, t, k, step=step, window=p)
    full = pt.picard_iterate(f, y0, t, k, step=step)
    assume(all(r.accepted == 1 for r in windowed.stats.history))  # generic for tol = 0
    ell = discrete.step_lipschitz(step, t, f.lipschitz)
    slack = pt.roundoff(torch.cat([ref.ys, windowed.ys, full.ys]), n, math.exp(2 * ell.sum()))

    last = min(k + p - 1, n)  # slots that hold a Picard value; past them, copies of slot `last`
    pt.assert_exact_prefix(windowed.ys[:last + 1], full.ys[:last + 1], last, atol=slack)
    assert torch.equal(windowed.ys[last:], windowed.ys[last].expand_as(windowed.ys[last:]))
    pt.assert_exact_prefix(windowed.ys, ref.ys, k, atol=slack)

    e_init = pt.max_error(y0.expand_as(ref.ys), ref.ys).numpy()
    jumps = pt.max_error(ref.ys[1:], ref.ys[:-1]).numpy()
    bound = window.error_bound(ell, k, p, e_init, jumps)
    pt.assert_within_bound(pt.max_error(windowed.ys, ref.ys), bound, slack=slack,
                           what=f"windowed ({p}) {step} error after {k} sweeps")


@settings(max_examples=15, deadline=None)
@given(L=st.floats(0.1, 3.0), t=pt.grids(min_steps=2, max_steps=25, direction="increasing"),
       p=st.integers(1, 10), k_frac=st.floats(0, 1))
def test_windowed_bound_is_attained_on_exponential_growth(L, t, p, k_frac):
    n = len(t) - 1
    k = 1 + int(k_frac * (n - 1))
    f = pt.LinearDrift(torch.tensor([[L]], dtype=torch.float64))
    y0 = torch.tensor([1.3], dtype=torch.float64)
    ref = pt.sequential(f, y0, t)
    sol = pt.picard_iterate(f, y0, t, k, window=p)
    ell = discrete.step_lipschitz("euler", t, L)
    e_init = pt.max_error(y0.expand_as(ref.ys), ref.ys).numpy()
    jumps = pt.max_error(ref.ys[1:], ref.ys[:-1]).numpy()
    # The per-point initial errors of the start y0 keep one sign, as do all later errors: equality,
    # as long as every sweep advanced by its one exact step. A defect that rounds to exactly 0 (the
    # iterate already exact to round-off: hypothesis found one) is accepted even with tol=0; the
    # iterate is then ahead of the k-sweep iterate and only the inequality holds.
    expect = window.error_bound(ell, k, p, e_init, jumps)
    measured = pt.max_error(sol.ys, ref.ys).numpy()
    slack = pt.roundoff(ref.ys, n, math.exp(ell.sum()))
    pt.assert_within_bound(measured, expect, slack=slack, what=f"windowed ({p}) error after {k} sweeps")
    if all(r.accepted == 1 for r in sol.stats.history):
        assert np.allclose(measured, expect, rtol=1e-9, atol=slack)


def sweep_bound_for_linear(f, y0, t, p, tol):
    """The a-priori sweep bound of theory.window for a linear drift (Euler, unguarded Picard)."""
    ref = pt.sequential(f, y0, t)
    ell = discrete.step_lipschitz("euler", t, f.lipschitz)
    S = tolerance.stability_constant_linear(f.A, t)
    G = window.linear_increment_bound(ell, p, float(ref.ys.abs().max()), S, tol)
    h = np.abs(np.diff(t.numpy()))
    thresholds = tol * h / h.sum()
    floor = pt.roundoff(ref.ys, 1)  # a measured defect is exact to a few ulps of the state
    return window.sweep_bound(ell, p, thresholds, window.first_change_bound(ell, p, G), floor)


@settings(max_examples=30, deadline=None)
@given(f=pt.linear_drifts(max_lipschitz=2.0), t=pt.grids(min_steps=2, max_steps=60), p=st.integers(1, 20),
       tol=pt.tolerances(1e-8, 1e-2, zero=False), data=st.data())
def test_sweeps_within_counting_and_contraction_bounds(f, t, p, tol, data):
    n = len(t) - 1
    y0 = data.draw(pt.states(f.dim))
    lo, hi = window.sweep_range(n, p)
    for method in ("picard", pt.PlainPicard()):  # counting holds with and without the divergence guard
        sol = parasolve.solve(f, y0, t, window=p, tol=tol, method=method)
        assert sol.converged
        assert lo <= sol.stats.iterations <= hi
        assert all(1 <= r.accepted <= min(p, n) for r in sol.stats.history)
    assert sol.stats.iterations <= sweep_bound_for_linear(f, y0, t, p, tol)  # derived for plain Picard


def test_contraction_bound_has_content_on_a_fixed_example():
    """Window 10 on 60 Euler steps, ||A|| = 0.5: the bound (42) is below N (60) and holds (20 measured)."""
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(3, 3, dtype=torch.float64, generator=gen)
    f = pt.LinearDrift(A * (0.5 / torch.linalg.matrix_norm(A, ord=float("inf"))))
    y0 = torch.randn(3, dtype=torch.float64, generator=gen)
    t = torch.linspace(0, 1, 61, dtype=torch.float64)
    bound = sweep_bound_for_linear(f, y0, t, 10, 1e-6)
    sweeps = parasolve.solve(f, y0, t, window=10, tol=1e-6, method=pt.PlainPicard()).stats.iterations
    assert sweeps <= bound < 60


@settings(max_examples=30, deadline=None)
@given(l=st.floats(0, 0.5), n=st.integers(1, 50), p=st.integers(1, 60))
def test_window_closed_forms(l, n, p):
    ell = np.full(n, l)
    assert math.isclose(window.contraction(ell, p), min(p, n) * l, rel_tol=1e-12, abs_tol=1e-15)
    lo, hi = window.sweep_range(n, p)
    assert lo == math.ceil(n / min(p, n)) and hi == n
    e0 = 1.0
    full = discrete.bound(ell, 2, e0)
    assert np.array_equal(window.error_bound(ell, 2, n, e0, np.zeros(n)), full)  # window = N: no truncation


@pytest.mark.parametrize("call,name", [
    (lambda: window.sweep_range(10, 0), "`window`"),
    (lambda: window.settle_sweeps([0.1] * 4, 2, [1e-3] * 3, 1.0), "`thresholds`"),
    (lambda: window.error_bound([0.1] * 4, 1, 2, 1.0, [1.0] * 2), "`jumps`"),
])
def test_bad_window_and_thresholds_are_rejected(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_symbolic_derivations_hold():
    checks = window.verify()
    assert all(c.ok for c in checks), "\n".join(map(str, checks))
