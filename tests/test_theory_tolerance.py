"""theory.tolerance against the real solver: max|x - x_seq| <= S * defect_sum <= S * tol, S exact."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from parasolve import testing as pt
from theory import discrete, tolerance

ONE_STEP = ["euler", "midpoint", "heun", "rk4"]


@settings(max_examples=40, deadline=None)
@given(f=pt.linear_drifts(max_lipschitz=3.0), t=pt.grids(max_steps=40), step=st.sampled_from(ONE_STEP),
       p=pt.windows(45), tol=pt.tolerances(1e-10, 1e-2, zero=False), data=st.data())
def test_gap_within_exact_stability_constant_times_defects(f, t, step, p, tol, data):
    n = len(t) - 1
    y0 = data.draw(pt.states(f.dim))
    S = tolerance.stability_constant_linear(f.A, t, step)
    ell = discrete.step_lipschitz(step, t, f.lipschitz)
    assert 1.0 <= S <= tolerance.product_bound(ell) * (1 + 1e-12) <= math.exp(ell.sum()) * (1 + 1e-12)
    if step == "euler":
        assert S <= tolerance.exponential_bound(f.lipschitz, float(t[-1] - t[0])) * (1 + 1e-12)
    sol, ref = pt.assert_matches_sequential(f, y0, t, step=step, window=p, tol=tol, stability=S)
    gap = float(pt.max_error(sol.ys, ref.ys).max())
    assert sol.stats.defect_sum <= tol * (1 + 1e-12)
    assert gap <= tolerance.gap_bound(S, tol) + pt.roundoff(ref.ys, n, S)


@settings(max_examples=15, deadline=None)
@given(f=pt.tanh_drifts(max_lipschitz=2.0), t=pt.grids(max_steps=30), p=pt.windows(35),
       tol=pt.tolerances(1e-10, 1e-2, zero=False))
def test_gap_within_product_bound_for_nonlinear_drifts(f, t, p, tol):
    y0 = torch.zeros(f.dim, dtype=torch.float64)
    S = tolerance.product_bound(discrete.step_lipschitz("rk4", t, f.lipschitz))
    pt.assert_matches_sequential(f, y0, t, step="rk4", window=p, tol=tol, stability=S)


@settings(max_examples=25, deadline=None)
@given(a=st.floats(-3.0, 3.0), t=pt.grids(min_steps=2, max_steps=30, direction="increasing"))
def test_stability_constant_is_exact_for_scalar_euler(a, t):
    factors = np.abs(1 + np.diff(t.numpy()) * a)[1:]  # J_1 .. J_{N-1}
    best = 1.0
    for lo in range(len(factors)):
        best = max(best, float(np.max(np.cumprod(factors[lo:]))))
    S = tolerance.stability_constant_linear(torch.tensor([[a]], dtype=torch.float64), t)
    assert math.isclose(S, best, rel_tol=1e-12)
    if a <= 0 and np.all(factors <= 1):  # contractive steps: perturbations never grow
        assert S == 1.0


def test_time_dependent_matrix_and_rk_jacobian():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)

    def A(s):
        return torch.tensor([[0.0, 1.0], [-1.0 - float(s), 0.0]], dtype=torch.float64)

    jac = tolerance.linear_jacobians(A, t, "rk4")
    h = 0.1
    for i in range(10):  # RK4 on a time-dependent linear drift, by the stage formulas
        t0 = float(t[i])
        k1 = A(t0).numpy()
        k2 = A(t0 + h / 2).numpy() @ (np.eye(2) + h / 2 * k1)
        k3 = A(t0 + h / 2).numpy() @ (np.eye(2) + h / 2 * k2)
        k4 = A(t0 + h).numpy() @ (np.eye(2) + h * k3)
        assert np.allclose(jac[i], np.eye(2) + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), atol=1e-14)


@pytest.mark.parametrize("call,name", [
    (lambda: tolerance.linear_jacobians(torch.eye(2), torch.linspace(0, 1, 5, dtype=torch.float64), "ab2"), "`step`"),
    (lambda: tolerance.linear_jacobians(torch.ones(2, 3), torch.linspace(0, 1, 5, dtype=torch.float64)), "`A`"),
    (lambda: tolerance.stability_constant(np.ones((3, 2, 3))), "`jacobians`"),
])
def test_multistep_and_bad_matrices_are_rejected(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_symbolic_derivations_hold():
    checks = tolerance.verify()
    assert all(c.ok for c in checks), "\n".join(map(str, checks))
