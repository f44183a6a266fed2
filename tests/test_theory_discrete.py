"""theory.discrete against the real Picard solver: exactness after k sweeps, error bounds, tightness."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from parasolve import testing as pt
from theory import discrete, picard

STEPS = ["euler", "midpoint", "heun", "rk4", "ab2"]


def stability_for_roundoff(ell):
    """A safe S for the round-off slack: exp(2 sum l) covers one- and two-step maps."""
    return math.exp(2 * float(np.sum(ell)))


@settings(max_examples=40, deadline=None)
@given(f=pt.drifts(max_lipschitz=3.0), t=pt.grids(max_steps=30), step=st.sampled_from(STEPS),
       k_frac=st.floats(0, 1), data=st.data())
def test_k_sweeps_exact_prefix_and_error_within_bound(f, t, step, k_frac, data):
    n = len(t) - 1
    k = 1 + int(k_frac * (n - 1))
    y0 = data.draw(pt.states(f.dim))
    ref = pt.sequential(f, y0, t, step=step)
    sol = pt.picard_iterate(f, y0, t, k, step=step)
    ell = discrete.step_lipschitz(step, t, f.lipschitz)
    slack = pt.roundoff(torch.cat([ref.ys, sol.ys]), n, stability_for_roundoff(ell))

    assert sol.stats.iterations <= k
    assert sol.converged == (sum(r.accepted for r in sol.stats.history) >= n)
    pt.assert_exact_prefix(sol.ys, ref.ys, k, atol=slack)
    guarded = pt.picard_iterate(f, y0, t, k, step=step, method="picard")  # the default divergence guard
    pt.assert_exact_prefix(guarded.ys, ref.ys, k, atol=slack)  # keeps exactness (not the rate below)
    err = pt.max_error(sol.ys, ref.ys)
    e_init = pt.max_error(y0.expand_as(ref.ys), ref.ys).numpy()
    per_point = discrete.bound(ell, k, e_init)
    pt.assert_within_bound(err, per_point, slack=slack, what=f"{step} error after {k} sweeps")
    pt.assert_within_bound(per_point, discrete.bound(ell, k, float(e_init.max())), slack=1e-300,
                           what="per-point bound vs scalar-e0 bound")
    inc0 = discrete.increments_at(f, y0, t, step)
    pt.assert_within_bound(err, discrete.bound_from_increments(ell, k, inc0), slack=slack,
                           what=f"{step} error after {k} sweeps (increment form)")
    # Bound 1 (continuous, with L T -> sum_i l_i) and the geometric bound, on the measured error.
    worst = float(err.max())
    e_max = float(e_init.max())
    assert worst <= picard.bound(float(ell.sum()), 1.0, k, e_max) + slack, "continuous Picard bound"
    assert worst <= discrete.geometric_bound(ell, k, e_max) + slack, "geometric bound"


@settings(max_examples=25, deadline=None)
@given(f=pt.drifts(max_lipschitz=3.0), t=pt.grids(max_steps=30), step=st.sampled_from(STEPS))
def test_tol_zero_takes_exactly_one_step_per_sweep_and_at_most_n(f, t, step):
    n = len(t) - 1
    y0 = torch.ones(f.dim, dtype=torch.float64)
    ref = pt.sequential(f, y0, t, step=step)
    sol = pt.picard_iterate(f, y0, t, n, step=step, method="picard")
    assert sol.converged and sol.stats.iterations <= n
    slack = pt.roundoff(ref.ys, n, stability_for_roundoff(discrete.step_lipschitz(step, t, f.lipschitz)))
    pt.assert_exact_prefix(sol.ys, ref.ys, n, atol=slack)
    moved = [r.accepted for r in sol.stats.history]
    assert sum(moved) == n and all(m >= 1 for m in moved)


def exponential(L, t):
    """y' = c y with c h_i = L |h_i| > 0 whichever way the grid runs, so errors keep one sign."""
    sign = 1.0 if float(t[-1] - t[0]) > 0 else -1.0
    return pt.LinearDrift(torch.tensor([[sign * L]], dtype=torch.float64))


@settings(max_examples=20, deadline=None)
@given(L=st.floats(0.1, 3.0), t=pt.grids(min_steps=2, max_steps=25), e0=st.floats(1e-3, 1.0),
       k_frac=st.floats(0, 1))
def test_bounds_are_attained_on_exponential_growth(L, t, e0, k_frac):
    n = len(t) - 1
    k = 1 + int(k_frac * (n - 1))
    f = exponential(L, t)
    y0 = torch.tensor([0.7], dtype=torch.float64)
    ref = pt.sequential(f, y0, t)
    ell = discrete.step_lipschitz("euler", t, L)
    slack = pt.roundoff(ref.ys, n, stability_for_roundoff(ell))

    warm = pt.picard_iterate(f, y0, t, k, init=ref.ys + e0)  # constant initial error e0
    assert_attained(warm, ref, discrete.bound(ell, k, e0), slack)
    cold = pt.picard_iterate(f, y0, t, k)  # default start x0 = y0: the increment form is attained
    assert_attained(cold, ref, discrete.bound_from_increments(ell, k, discrete.increments_at(f, y0, t, "euler")),
                    slack)


def assert_attained(sol, ref, bound, slack):
    """Within ``bound``, and equal to it when every sweep advanced by its one exact step (a defect
    that rounds to exactly 0 is accepted even with tol=0, putting the iterate ahead of the bound)."""
    measured = pt.max_error(sol.ys, ref.ys).numpy()
    pt.assert_within_bound(measured, bound, slack=slack, what="Picard iterate")
    if all(r.accepted == 1 for r in sol.stats.history):
        assert np.allclose(measured, bound, rtol=1e-9, atol=slack)


@settings(max_examples=30, deadline=None)
@given(l=st.floats(0, 2.0), n=st.integers(1, 25), k=st.integers(0, 25), e0=st.floats(0, 10))
def test_closed_forms_equal_the_recursions_and_sit_below_continuous_bound(l, n, k, e0):
    ell = np.full(n, l)
    per_point = discrete.bound(ell, k, e0)
    for j in range(n + 1):
        assert math.isclose(per_point[j], discrete.uniform_bound(l, k, j, e0), rel_tol=1e-9, abs_tol=1e-300)
        assert per_point[j] <= picard.bound(l * n, 1.0, k, e0) * (1 + 1e-12)  # E_k(l) <= (sum l)^k/k!
    incr = discrete.bound_from_increments(ell, k, np.full(n, l * e0))
    for j in range(n + 1):
        assert math.isclose(incr[j], discrete.uniform_increment_bound(l, k, j, e0), rel_tol=1e-9, abs_tol=1e-300)
    assert not np.any(per_point[:k + 1]) and not np.any(incr[:k + 1])  # exact on the first k steps


@pytest.mark.parametrize("call,name", [
    (lambda: discrete.bound([0.1] * 4, -1, 1.0), "`k`"),
    (lambda: discrete.bound([-0.1] * 4, 1, 1.0), "`ell`"),
    (lambda: discrete.step_lipschitz("euler", torch.linspace(0, 1, 5, dtype=torch.float64), -1.0), "`L`"),
    (lambda: picard.bound(1.0, 1.0, 2.5), "`k`"),
])
def test_bad_arguments_are_rejected_with_the_argument_named(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_symbolic_derivations_hold():
    checks = discrete.verify() + picard.verify()
    assert all(c.ok for c in checks), "\n".join(map(str, checks))


@settings(max_examples=25, deadline=None)
@given(f=pt.drifts(max_lipschitz=2.0), n=st.integers(4, 25), data=st.data())
def test_a_posteriori_bound_from_the_last_change_on_a_contraction(f, n, data):
    t = torch.linspace(0, 0.4, n + 1, dtype=torch.float64)  # Euler: q = sum_i l_i = L T <= 0.8
    ell = discrete.step_lipschitz("euler", t, f.lipschitz)
    y0 = data.draw(pt.states(f.dim))
    ref = pt.sequential(f, y0, t)
    k = data.draw(st.integers(2, n - 1))
    before, after = pt.picard_iterate(f, y0, t, k - 1), pt.picard_iterate(f, y0, t, k)
    change = float(pt.max_error(after.ys, before.ys).max())
    slack = pt.roundoff(ref.ys, n, 2.0)
    assert float(pt.max_error(after.ys, ref.ys).max()) <= discrete.a_posteriori_bound(ell, change) + slack
