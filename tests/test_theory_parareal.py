"""theory.parareal against method="parareal": exact first k segments, superlinear bound, tol meaning."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import parasolve
from parasolve import testing as pt
from parasolve.schemes.parareal import segment_bounds
from theory import discrete, parareal, tolerance


def run(f, y0, t, segments, k, step="euler", tol=0.0, coarse="frozen"):
    return parasolve.solve(f, y0, t, method="parareal", step=step, tol=tol, max_iters=k, throw=False,
                           options={"segments": segments, "coarse": coarse})


def coarse_prediction(jac, bounds, y0, coarse_jac=None):
    """U^0_{j+1} = G_j U^0_j for a linear drift, independent of the solver."""
    _, d, _ = jac.shape
    starts = [y0]
    for j in range(len(bounds) - 2):
        G = (np.eye(d) + sum(jac[i] - np.eye(d) for i in range(bounds[j], bounds[j + 1]))
             if coarse_jac is None else coarse_jac[j])
        starts.append(G @ starts[-1])
    return np.array(starts)


@settings(max_examples=30, deadline=None)
@given(f=pt.linear_drifts(max_lipschitz=3.0), t=pt.grids(min_steps=2, max_steps=40),
       step=st.sampled_from(["euler", "heun", "rk4"]), seg_frac=st.floats(0, 1), k_frac=st.floats(0, 1),
       data=st.data())
def test_parareal_exact_prefix_and_within_linear_bound(f, t, step, seg_frac, k_frac, data):
    n = len(t) - 1
    K = 1 + int(seg_frac * (min(n, 10) - 1))
    k = 1 + int(k_frac * (K - 1))
    y0 = data.draw(pt.states(f.dim))
    ref = pt.sequential(f, y0, t, step=step)
    sol = run(f, y0, t, K, k, step)
    bounds = segment_bounds(n, K)
    jac = tolerance.linear_jacobians(f.A, t, step)
    ell = discrete.step_lipschitz(step, t, f.lipschitz)
    slack = pt.roundoff(torch.cat([ref.ys, sol.ys]), n, math.exp(2 * ell.sum()))

    assert sol.stats.iterations <= min(k, K)
    assert sol.converged == (sum(r.accepted for r in sol.stats.history) >= n)
    pt.assert_exact_prefix(sol.ys, ref.ys, bounds[k] - 1, atol=slack)  # points 0 .. n_k - 1
    start_errors = np.abs(coarse_prediction(jac, bounds, y0.numpy()) - ref.ys[bounds[:-1]].numpy()).max(1)
    alpha, beta = parareal.linear_constants(jac, bounds)
    boundary = parareal.bound(alpha, beta, k - 1, np.append(start_errors, 0.0))  # ys holds U^{k-1}
    expect = parareal.trajectory_bound(ell, bounds, boundary[:-1])
    pt.assert_within_bound(pt.max_error(sol.ys, ref.ys), expect, slack=slack,
                           what=f"parareal ({K} segments, {step}) error after {k} iterations")


@settings(max_examples=15, deadline=None)
@given(f=pt.tanh_drifts(max_lipschitz=2.0), t=pt.grids(min_steps=2, max_steps=30), seg_frac=st.floats(0, 1),
       k_frac=st.floats(0, 1))
def test_parareal_within_frozen_coarse_bound_for_nonlinear_drifts(f, t, seg_frac, k_frac):
    n = len(t) - 1
    K = 1 + int(seg_frac * (min(n, 8) - 1))
    k = 1 + int(k_frac * (K - 1))
    y0 = torch.zeros(f.dim, dtype=torch.float64)
    ref = pt.sequential(f, y0, t)
    bounds = segment_bounds(n, K)
    ell = discrete.step_lipschitz("euler", t, f.lipschitz)
    start_errors = pt.max_error(parareal.frozen_prediction(f, y0, t, bounds), ref.ys[bounds[:-1]]).numpy()
    sol = run(f, y0, t, K, k)
    alpha, beta = parareal.frozen_constants(ell, bounds)
    boundary = parareal.bound(alpha, beta, k - 1, np.append(start_errors, 0.0))
    slack = pt.roundoff(torch.cat([ref.ys, sol.ys]), n, math.exp(2 * ell.sum()))
    pt.assert_within_bound(pt.max_error(sol.ys, ref.ys), parareal.trajectory_bound(ell, bounds, boundary[:-1]),
                           slack=slack, what="parareal (frozen coarse) error")
    assert run(f, y0, t, K, K).converged  # K iterations always suffice


@settings(max_examples=20, deadline=None)
@given(f=pt.linear_drifts(max_lipschitz=2.0), t=pt.grids(min_steps=2, max_steps=40), seg=st.integers(1, 10),
       tol=pt.tolerances(1e-10, 1e-3, zero=False))
def test_parareal_gap_within_stability_times_boundary_defects(f, t, seg, tol):
    y0 = torch.ones(f.dim, dtype=torch.float64)
    S = tolerance.stability_constant_linear(f.A, t)
    sol, _ = pt.assert_matches_sequential(f, y0, t, method="parareal", options={"segments": seg}, tol=tol,
                                          stability=S)
    assert sol.stats.iterations <= min(seg, len(t) - 1)


@settings(max_examples=30, deadline=None)
@given(a=st.floats(0, 1.0), b=st.floats(0, 2.0), K=st.integers(1, 12), k=st.integers(0, 12), e0=st.floats(0, 5))
def test_recursion_solution_matches_superlinear_closed_form(a, b, K, k, e0):
    exact = parareal.bound(np.full(K, a), np.full(K, b), k, e0)
    for j in range(K + 1):
        gv = parareal.superlinear_bound(a, b, k, j, e0)
        assert exact[j] <= gv * (1 + 1e-12) + 1e-300
        if b == 1.0 or j == k + 1:  # then the GV form is the exact solution of the recursion
            assert math.isclose(exact[j], gv, rel_tol=1e-9, abs_tol=1e-300)
    assert not np.any(exact[:k + 1])


def test_parareal_bound_is_attained_for_scalar_growth():
    """y' = y, Euler, frozen coarse: F - G and G are positive scalars, errors keep one sign."""
    t = torch.linspace(0, 1, 25, dtype=torch.float64)
    f = pt.LinearDrift(torch.tensor([[1.0]], dtype=torch.float64))
    y0 = torch.ones(1, dtype=torch.float64)
    ref = pt.sequential(f, y0, t)
    bounds = segment_bounds(24, 6)
    jac = tolerance.linear_jacobians(f.A, t)
    alpha, beta = parareal.linear_constants(jac, bounds)
    start_errors = np.abs(coarse_prediction(jac, bounds, y0.numpy()) - ref.ys[bounds[:-1]].numpy()).max(1)
    assert np.allclose(start_errors, pt.max_error(parareal.frozen_prediction(f, y0, t, bounds),
                                                  ref.ys[bounds[:-1]]).numpy(), rtol=1e-12)
    for k in range(1, 7):
        sol = run(f, y0, t, 6, k)
        measured = pt.max_error(sol.ys[bounds[:-1]], ref.ys[bounds[:-1]]).numpy()
        expect = parareal.bound(alpha, beta, k - 1, np.append(start_errors, 0.0))[:-1]
        # boundary k holds U^{k-1}_k or the exact new start; every other boundary attains the bound
        others = np.arange(6) != k
        assert np.allclose(measured[others], expect[others], rtol=1e-9, atol=1e-14)
        assert k == 6 or measured[k] <= expect[k] * (1 + 1e-9)


def test_bad_constants_are_rejected():
    with pytest.raises(ValueError, match="`alpha`"):
        parareal.bound([0.1, 0.2], [1.0], 1, 1.0)


def test_symbolic_derivations_hold():
    checks = parareal.verify()
    assert all(c.ok for c in checks), "\n".join(map(str, checks))
