"""Implicit step maps and the stiff solvers (parasolve.implicit, odeint's "radau"/"sdirk4"): the
declared order of every map, parity of the parallel solve with the sequential loop, the stiff test
set against scipy's Radau, gradients by the discrete adjoint, typed errors."""

import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import parasolve
from parasolve import testing as pt
from parasolve.implicit import StageConvergenceError
from parasolve.odeint.stiff import is_stiff
from parasolve.schemes import Newton, Picard

pytestmark = pytest.mark.usefixtures("one_thread")

SP = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "stiff_problems.py"))
IMPLICIT = ["backward_euler", "trapezoid", "sdirk4", "radau5"]


def _linear(t, y):  # y' = A y + sin-forcing, a smooth non-autonomous linear problem
    A = torch.tensor([[-2.0, 1.0], [-1.0, -3.0]], dtype=y.dtype)
    return y @ A.T + torch.stack([torch.sin(t), torch.cos(2 * t)], -1)


@pytest.mark.parametrize("name", IMPLICIT)
def test_every_implicit_map_has_its_declared_order(name):
    step = parasolve.STEPS[name]  # (the contract itself: tests/test_conformance.py, every registered map)
    assert step.implicit and step.stages == step.tableau.stages
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
    fine = solve_ivp(lambda t, y: _linear(torch.tensor(t), torch.from_numpy(y)).numpy(), (0, 2), y0.numpy(),
                     method="DOP853", rtol=1e-13, atol=1e-14).y[:, -1]
    errors = []
    sizes = (8, 16, 32) if step.order < 5 else (4, 8, 16)
    for n in sizes:
        t = torch.linspace(0, 2, n + 1, dtype=torch.float64)
        end = parasolve.solve(_linear, y0, t, step=name, method="sequential", vectorized=True).ys[-1]
        errors.append(float(np.abs(end.numpy() - fine).max()))
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert step.order - 0.3 <= rates[-1] <= step.order + 0.7, (name, errors, rates)


@pytest.mark.parametrize("scheme", [Newton(jacobian="full"), Newton(), Picard()], ids=["newton-full", "newton", "picard"])
def test_parallel_schemes_keep_the_scheme_contract_with_implicit_maps(scheme):
    pt.check_scheme(scheme, steps=["radau5", "sdirk4"] if scheme.jacobian == "full" else ["backward_euler"]) \
        if isinstance(scheme, Newton) else pt.check_scheme(scheme, steps=["backward_euler"])


def _robertson_grid(n=60):
    return torch.cat([torch.zeros(1, dtype=torch.float64), torch.logspace(-4, math.log10(40.0), n,
                                                                          dtype=torch.float64)])


@pytest.mark.parametrize("name", ["backward_euler", "sdirk4", "radau5"])
def test_one_newton_over_all_stages_matches_the_sequential_loop_on_robertson(name):
    f, y0 = SP["robertson"], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    t = _robertson_grid()
    seq = parasolve.solve(f, y0, t, step=name, method="sequential", vectorized=True)
    par = parasolve.solve(f, y0, t, step=name, method="newton", options={"jacobian": "full"}, vectorized=True,
                          tol=1e-9)
    assert par.method == "newton"
    # dissipative problem: the defects' sum bounds the gap (stability constant ~ 1)
    pt.assert_near_sequential(par, seq, stability=10, slack=1e-12)
    # the point of it: a handful of Newton iterations instead of a Newton solve per step
    assert par.stats.drift_calls * 4 <= seq.stats.drift_calls, (par.stats.drift_calls, seq.stats.drift_calls)


def test_the_whole_trajectory_newton_converges_from_a_poor_guess():
    f, y0 = SP["robertson"], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    t = _robertson_grid(40)
    seq = parasolve.solve(f, y0, t, step="radau5", method="sequential", vectorized=True)
    bad = seq.ys.clone()
    bad[1:] = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)  # every state far off (y2 ~ 1e-5 really)
    par = parasolve.solve(f, y0, t, step="radau5", vectorized=True, tol=1e-9, init=bad)
    pt.assert_near_sequential(par, seq, stability=10, slack=1e-12)


# scipy's Radau at rtol 1e-10 is the reference; spans shortened where the full ones are slow (the
# benchmark runs the usual spans). Targets: error within 3x of scipy Radau's at the same rtol.
STIFF = [("robertson", 40.0), ("vdp1000", 1000.0), ("hires", 321.8122), ("oregonator", 60.0)]


@pytest.mark.parametrize("problem,t_end,reuse", [(p, t, None) for p, t in STIFF]
                         + [("robertson", 40.0, True), ("hires", 321.8122, False)])
def test_radau_solves_the_stiff_test_set_as_accurately_as_scipy(problem, t_end, reuse):
    # reuse: the Newton matrices kept between sweeps (simplified Newton) or measured every sweep;
    # None: decided by the state's size (HIRES keeps them, the others do not)
    f, y0, _, atol = SP["PROBLEMS"][problem]
    fun = SP["NUMPY"][problem]
    times = np.linspace(0.0, t_end, 5)
    ref = solve_ivp(fun, (0, t_end), y0, method="Radau", rtol=1e-10, atol=atol * 1e-4, t_eval=times).y.T
    theirs = solve_ivp(fun, (0, t_end), y0, method="Radau", rtol=1e-6, atol=atol, t_eval=times).y.T
    res = parasolve.odeint(f, torch.tensor(y0, dtype=torch.float64), torch.from_numpy(times), rtol=1e-6, atol=atol,
                           method="radau", options={"vectorized": True, "reuse": reuse}, full_output=True)
    ours = res.ys.numpy()
    err, their_err = np.abs(ours - ref).max(), np.abs(theirs - ref).max()
    assert err <= 3 * their_err + 1e-12, (problem, err, their_err)
    assert res.max_ratio <= 1 and res.stats.accepted_steps == res.grid.shape[0] - 1


def test_sdirk4_meets_its_tolerance_on_robertson():
    f, y0, _, atol = SP["PROBLEMS"]["robertson"]
    times = np.array([0.0, 0.4, 4.0, 40.0])
    ref = solve_ivp(SP["NUMPY"]["robertson"], (0, 40), y0, method="Radau", rtol=1e-10, atol=1e-14, t_eval=times).y.T
    ys = parasolve.odeint(f, torch.tensor(y0, dtype=torch.float64), torch.from_numpy(times), rtol=1e-6, atol=atol,
                          method="sdirk4", options={"vectorized": True}).numpy()
    assert np.abs(ys - ref).max() <= 1e-5  # rtol * |y| summed over a few hundred steps, with room


def test_auto_detects_stiffness():
    f, y0 = SP["robertson"], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    t = torch.tensor([0.0, 40.0], dtype=torch.float64)
    assert is_stiff(lambda t, y: f(t, y), t, y0)
    assert not is_stiff(lambda t, y: -y, t, y0)
    res = parasolve.odeint(f, y0, t, rtol=1e-5, atol=1e-9, method="auto", options={"vectorized": True},
                           full_output=True)
    assert res.method == "radau"
    easy = parasolve.odeint(lambda t, y: -y, y0, t, method="auto", full_output=True)
    assert easy.method == "dopri5"


def test_auto_hands_over_to_radau_where_the_problem_turns_stiff():
    # y1 relaxes to sin t at a rate that jumps from 1 to 1e5 near t = 5: not stiff at the start, so
    # auto takes dopri5, whose steps would then be held below ~3e-5 (over 1e5 more steps)
    def f(t, y):
        rate = 1.0 + 1e5 * torch.sigmoid(5 * (t - 5))
        return torch.stack([-rate * (y[..., 0] - torch.sin(t)), y[..., 0] - 0.5 * y[..., 1]], -1)

    def fun(t, y):
        rate = 1.0 + 1e5 / (1 + np.exp(-5 * (t - 5)))
        return [-rate * (y[0] - np.sin(t)), y[0] - 0.5 * y[1]]

    y0, t = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.linspace(0, 10, 11, dtype=torch.float64)
    assert not is_stiff(f, t, y0)
    ref = solve_ivp(fun, (0, 10), y0.numpy(), method="Radau", rtol=1e-11, atol=1e-13, t_eval=t.numpy()).y.T
    theirs = solve_ivp(fun, (0, 10), y0.numpy(), method="Radau", rtol=1e-6, atol=1e-9, t_eval=t.numpy()).y.T
    res = parasolve.odeint(f, y0, t, rtol=1e-6, atol=1e-9, method="auto", options={"vectorized": True},
                           full_output=True)
    assert res.method == "dopri5+radau"
    explicit = res.stats.history[0].steps
    assert 0 < explicit and float(res.grid[explicit]) < 6.0  # handed over soon after the rate rose
    assert res.stats.accepted_steps <= 1000
    err, their_err = np.abs(res.ys.numpy() - ref).max(), np.abs(theirs - ref).max()
    assert err <= 10 * their_err and err <= 1e-5, (err, their_err)
    assert res.grid.shape[0] - 1 == res.stats.accepted_steps and bool((res.grid[1:] > res.grid[:-1]).all())


@pytest.mark.parametrize("name,method", [("radau5", "auto"), ("radau5", "sequential"), ("backward_euler", "auto"),
                                         ("sdirk4", "auto")])
def test_gradients_by_the_discrete_adjoint_match_finite_differences(name, method):
    k = torch.tensor(50.0, dtype=torch.float64, requires_grad=True)

    def f(t, y):
        return torch.stack([-k * (y[..., 0] - torch.cos(t)) + y[..., 1], -y[..., 0] * y[..., 1]], -1)

    y0 = torch.tensor([0.5, 1.0], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1, 9, dtype=torch.float64)
    sol = parasolve.solve(f, y0, t, step=name, method=method, vectorized=True, adjoint_params=(k,), tol=1e-12)
    gk, gy = torch.autograd.grad((sol.ys ** 2).sum(), (k, y0))

    def loss(kk, yy):
        with torch.no_grad():
            k.fill_(kk)
            out = float((parasolve.solve(f, yy, t, step=name, method="sequential", vectorized=True).ys ** 2).sum())
            k.fill_(50.0)
        return out

    e, base = 1e-6, y0.detach()
    fd_k = (loss(50 + e, base) - loss(50 - e, base)) / (2 * e)
    fd_y = [(loss(50, base + e * v) - loss(50, base - e * v)) / (2 * e) for v in torch.eye(2, dtype=torch.float64)]
    assert float(gk) == pytest.approx(fd_k, rel=1e-5, abs=1e-8)
    assert gy.tolist() == pytest.approx(fd_y, rel=1e-6, abs=1e-8)


def test_odeint_radau_is_differentiable():
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    out = parasolve.odeint(SP["robertson"], y0, t, rtol=1e-8, atol=1e-12, method="radau",
                           options={"vectorized": True})
    (g,) = torch.autograd.grad(out[-1, 0], y0)

    def end(v):
        return float(parasolve.odeint(SP["robertson"], v, t, rtol=1e-10, atol=1e-14, method="radau",
                                      options={"vectorized": True})[-1, 0])

    e = 1e-6
    fd = [(end(y0.detach() + e * v) - end(y0.detach() - e * v)) / (2 * e) for v in torch.eye(3, dtype=torch.float64)]
    assert g.tolist() == pytest.approx(fd, rel=1e-4, abs=1e-6)


def test_a_stage_solve_that_cannot_converge_raises_a_typed_error_naming_the_step():
    # y' = y^2 from 1 has no backward-Euler step of length h > 1/4: y1 = 1 + h y1^2 has no real root
    t = torch.tensor([0.0, 0.1, 0.5, 0.6], dtype=torch.float64)
    with pytest.raises(StageConvergenceError, match=r"step 1 \(t=0\.1.*finer grid") as info:
        parasolve.solve(lambda t, y: y ** 2, torch.ones(1, dtype=torch.float64), t, step="backward_euler",
                        method="sequential")
    assert info.value.index == 1 and isinstance(info.value, parasolve.ConvergenceError)
    with pytest.raises(StageConvergenceError, match=r"step 1 \(t=0\.1"):
        parasolve.solve(lambda t, y: y ** 2, torch.ones(1, dtype=torch.float64), t, step="backward_euler")


def test_odeint_refuses_options_the_stiff_methods_do_not_take():
    y0 = torch.ones(1, dtype=torch.float64)
    with pytest.raises(TypeError, match="scheme"):
        parasolve.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), method="radau", options={"scheme": "picard"})
    with pytest.raises(TypeError, match="reuse"):
        parasolve.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), method="radau", options={"reuse": "yes"})
    with pytest.raises(ValueError, match="newton_tol"):
        parasolve.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), method="radau", options={"newton_tol": -1})


def test_newton_system_is_the_kronecker_form_of_the_stage_equations():
    """M = I - (hA ⊗ I) blockdiag(J_j) and C_i = sum_j h a_ij J_j, built block by block (the fused
    construction the sweeps use must be this matrix, not a transposed or permuted one)."""
    from parasolve.implicit.stages import newton_system, scaled_matrix
    from parasolve.implicit.tableaus import TABLEAUS
    gen = torch.Generator().manual_seed(3)
    for tab in TABLEAUS.values():
        n, s, d = 4, tab.stages, 3
        h = torch.rand(n, generator=gen, dtype=torch.float64)
        J = torch.randn(n, s, d, d, generator=gen, dtype=torch.float64)
        M, C = newton_system(scaled_matrix(tab, h, torch.float64), J)
        A = tab.matrix()
        for i in range(n):
            blocks = torch.block_diag(*J[i])
            expect = torch.eye(s * d, dtype=torch.float64) - torch.kron(h[i] * A, torch.eye(d, dtype=torch.float64)) @ blocks
            torch.testing.assert_close(M[i], expect, rtol=0, atol=1e-14)
            for r in range(s):
                torch.testing.assert_close(C[i, r], sum(h[i] * A[r, j] * J[i, j] for j in range(s)), rtol=0, atol=1e-14)


def test_augmented_matrix_scan_matches_the_sequential_recursion():
    """affine_scan's matrix form (one augmented product per round) against u_{j+1} = A_j u_j + B_j
    step by step, for lengths that are and are not powers of two, with a batch dimension."""
    from parasolve.schemes.scan import affine_scan
    gen = torch.Generator().manual_seed(5)
    for L in (1, 2, 7, 16, 33):
        A = 0.5 * torch.randn(L, 2, 3, 3, generator=gen, dtype=torch.float64)
        B = torch.randn(L, 2, 3, generator=gen, dtype=torch.float64)
        u = torch.randn(2, 3, generator=gen, dtype=torch.float64)
        out = affine_scan(A, B, u)
        for j in range(L):
            u = (A[j] @ u[..., None])[..., 0] + B[j]
            torch.testing.assert_close(out[j], u, rtol=1e-12, atol=1e-12)
