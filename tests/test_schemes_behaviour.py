"""What each accelerated scheme promises beyond parity: the safeguard, parareal's exactness,
Newton's scan and its exactness on diagonal linear problems, odeint as a fine propagator,
and typed errors for bad options."""

import math

import pytest
import torch

from parasolve.evaluators import in_contract_check

import parasolve
from parasolve import problems
from parasolve import testing as pt
from parasolve.schemes import Anderson, Newton, Parareal
from parasolve.schemes.scan import affine_scan
from parasolve.schemes.parareal import segment_bounds


# ---------------------------------------------------------------------------- safeguards
def stiff_exponential(t, y):
    """y' = -y e^y from y(0) = 1: tame along the solution, explodes for y >~ 5 (overshoots)."""
    return -y * torch.exp(y)


def test_anderson_safeguard_keeps_mixing_no_worse_than_picard_where_raw_mixing_is_worse():
    """On y' = -y e^y raw mixing (memory 5) overshoots into the region where the drift explodes
    and needs far more sweeps than no mixing at all; the safeguard takes the Picard step there.

    With the default ridge the Gram systems are well-posed, so these counts are stable under
    perturbations of the mixing coefficients of 1e-10 (raw 37-39 sweeps, safeguarded 21,
    Picard 24). With ``regularization=0`` they are numerically singular (condition numbers
    1e17-1e24): the raw run's course is then decided by the LAPACK kernel's round-off (one-ulp
    perturbations swing it between 45 and 100 sweeps), which is why an earlier version of this
    test, asserting a blow-up at ``regularization=0``, failed on torch 2.13's MKL.
    """
    y0 = torch.tensor([1.0], dtype=torch.float64)
    t = torch.linspace(0, 3, 101, dtype=torch.float64)
    seq = parasolve.solve(stiff_exponential, y0, t, method="sequential")
    picard = parasolve.solve(stiff_exponential, y0, t, tol=1e-8, vectorized=True, method="picard")
    raw = Anderson(memory=5, safeguard=False)
    worse = parasolve.solve(stiff_exponential, y0, t, method=raw, tol=1e-8, vectorized=True)
    assert worse.stats.fallbacks == 0
    assert worse.stats.iterations >= picard.stats.iterations + 10  # mixing made it worse than Picard
    sol = parasolve.solve(stiff_exponential, y0, t, method=Anderson(memory=5), tol=1e-8, vectorized=True)
    assert sol.stats.fallbacks >= 1
    assert sol.stats.iterations <= picard.stats.iterations
    pt.assert_near_sequential(sol, seq, stability=1.0, tol=1e-8)  # contractive problem: S <= 1
    # Picard's sweep count: enough for the safeguarded scheme, not for raw mixing.
    with pytest.raises(parasolve.ConvergenceError):
        parasolve.solve(stiff_exponential, y0, t, method=raw, tol=1e-8, vectorized=True,
                        max_iters=picard.stats.iterations)


def test_newton_safeguard_restores_convergence_where_the_raw_secant_step_diverges():
    problem = problems.linear()  # rotation + decay: a diagonal secant model is wrong here
    t = problem.grid(200)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential")
    raw = parasolve.solve(problem.f, problem.y0, t, method="newton", tol=1e-8, vectorized=True,
                          options={"jacobian": "diagonal", "safeguard": False}, throw=False)
    worst_raw = max(r.residual for r in raw.stats.history)
    assert worst_raw > 1e9  # the iterate explodes (the loop restarts overflowing slots)
    safe = Newton(jacobian="diagonal")
    sol = parasolve.solve(problem.f, problem.y0, t, method=safe, tol=1e-8, vectorized=True)
    assert sol.stats.fallbacks >= 1
    assert sol.stats.iterations < raw.stats.iterations
    assert max(r.residual for r in sol.stats.history) < 1e-6 * worst_raw
    pt.assert_near_sequential(sol, seq, stability=math.exp(problem.lipschitz), tol=1e-8)


def test_anderson_takes_fewer_sweeps_than_picard_on_smooth_problems():
    for problem in (problems.linear(), problems.gaussian_decay(), problems.logistic()):
        t = problem.grid(200)
        picard = parasolve.solve(problem.f, problem.y0, t, tol=1e-7, vectorized=True, method="picard")
        anderson = parasolve.solve(problem.f, problem.y0, t, method="anderson", tol=1e-7, vectorized=True)
        assert anderson.stats.iterations < picard.stats.iterations, problem.name


# ---------------------------------------------------------------------------- Newton
@pytest.mark.parametrize("length", [1, 2, 7, 37])
@pytest.mark.parametrize("scalar", [False, True])
def test_bidiagonal_scan_equals_the_sequential_recursion(length, scalar):
    gen = torch.Generator().manual_seed(length)
    b = torch.randn(length, 3, 2, dtype=torch.float64, generator=gen)
    a = torch.rand(length, 1, 1, dtype=torch.float64, generator=gen) * 2 - 0.5 if scalar else \
        torch.rand(length, 3, 2, dtype=torch.float64, generator=gen) * 2 - 0.5
    delta0 = torch.randn(3, 2, dtype=torch.float64, generator=gen)
    expected, d = [], delta0
    for i in range(length):
        d = a[i] * d + b[i]
        expected.append(d)
    assert torch.allclose(affine_scan(a, b, delta0), torch.stack(expected), rtol=1e-12, atol=1e-12)


class RecordingNewton(Newton):
    """Newton that keeps each update's anchor and output, to check them against the step map."""

    def __init__(self, **options):
        super().__init__(**options)
        self.updates = []

    def update(self, state, window):
        new = super().update(state, window)
        self.updates.append((window.width - window.shift, torch.cat([window.anchor[None], new.iterate])))
        return new


@pytest.mark.parametrize("jacobian", ["scalar", "diagonal"])
@pytest.mark.parametrize("step", ["euler", "rk4"])
@pytest.mark.parametrize("n", [50, 400])
def test_newton_update_is_exact_once_the_secant_is_on_a_diagonal_linear_problem(jacobian, step, n):
    """y' = -2 t y: the secant of a linear diagonal map is its Jacobian, so the second update
    (the first with a secant) solves the window's bidiagonal system exactly -- for any N."""
    problem = problems.gaussian_decay()
    t = problem.grid(n)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", step=step)
    scheme = RecordingNewton(jacobian=jacobian)
    sol = parasolve.solve(problem.f, problem.y0, t, method=scheme, step=step, tol=1e-10, vectorized=True)
    picard = parasolve.solve(problem.f, problem.y0, t, step=step, tol=1e-10, vectorized=True, method="picard")
    steps, states = scheme.updates[1]  # window states x_a .. x_N after the second update
    idx = torch.arange(n - steps, n)
    inc, _ = parasolve.steps.STEPS[step].increments(problem.f, t, idx, states[:-1])
    assert (states[1:] - states[:-1] - inc).abs().max() <= 1e-14
    assert sol.stats.iterations <= 6 and 3 * sol.stats.iterations < picard.stats.iterations
    pt.assert_near_sequential(sol, seq, atol=1e-12)


# ---------------------------------------------------------------------------- parareal
@pytest.mark.parametrize("step", ["euler", "rk4"])
@pytest.mark.parametrize("coarse", ["frozen", "euler"])
def test_parareal_is_exact_on_the_first_k_segments_after_k_iterations(step, coarse):
    problem = problems.harmonic()
    t = problem.grid(64)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", step=step)
    bounds = segment_bounds(64, 8)
    scale = float(seq.ys.abs().max())
    for k in [1, 3, 6]:
        sol = parasolve.solve(problem.f, problem.y0, t, method="parareal", step=step, tol=0.0, max_iters=k,
                              throw=False, options={"segments": 8, "coarse": coarse})
        assert not sol.converged and sol.stats.iterations == k
        head = bounds[k]  # states 0 .. n_k: segments 0 .. k-1 and the start of segment k
        assert (sol.ys[:head + 1] - seq.ys[:head + 1]).abs().max() <= 1e-13 * scale
        assert (sol.ys[bounds[k + 1] + 1:] - seq.ys[bounds[k + 1] + 1:]).abs().max() > 1e-8
    full = parasolve.solve(problem.f, problem.y0, t, method="parareal", step=step, tol=0.0,
                           options={"segments": 8, "coarse": coarse})
    assert full.stats.iterations <= 8
    pt.assert_near_sequential(full, seq, atol=1e-13 * scale)


def test_frozen_coarse_with_a_step_per_group_is_the_fine_propagator():
    # coarse_steps >= the longest segment: every group is one fine step at its own start state,
    # so G = F, the initial prediction is the sequential solution and one iteration accepts all.
    problem = problems.van_der_pol()
    t = problem.grid(90)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", step="heun")
    sol = parasolve.solve(problem.f, problem.y0, t, method="parareal", step="heun", tol=1e-10, vectorized=True,
                          options={"segments": 9, "coarse_steps": 10})
    assert sol.stats.iterations == 1
    pt.assert_near_sequential(sol, seq, atol=1e-12)


@pytest.mark.parametrize("coarse", ["frozen", "rk4"])
@pytest.mark.parametrize("coarse_steps", [2, 3])
def test_parareal_with_several_coarse_steps_converges_to_the_sequential_solution(coarse, coarse_steps):
    problem = problems.harmonic()
    t = problem.grid(120)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", step="heun")
    sol = parasolve.solve(problem.f, problem.y0, t, method="parareal", step="heun", tol=1e-9, vectorized=True,
                          options={"segments": 12, "coarse": coarse, "coarse_steps": coarse_steps})
    assert sol.stats.iterations <= 12
    pt.assert_near_sequential(sol, seq, stability=math.exp(problem.lipschitz * (problem.t1 - problem.t0)), tol=1e-9)


def test_segments_are_balanced_longer_first():
    assert segment_bounds(10, 3) == [0, 4, 7, 10]
    assert segment_bounds(9, 3) == [0, 3, 6, 9]
    assert segment_bounds(5, 5) == [0, 1, 2, 3, 4, 5]


def test_parareal_window_caps_the_segments_and_reports_them():
    problem = problems.logistic()
    sol = parasolve.solve(problem.f, problem.y0, problem.grid(100), method="parareal", window=4, tol=1e-9)
    assert sol.stats.window == 4 and sol.stats.iterations <= 4


def test_parareal_with_odeint_converges_to_the_ode_not_to_the_discrete_problem():
    problem = problems.linear()
    t = problem.grid(40)
    exact = problem.exact(t)
    euler = parasolve.solve(problem.f, problem.y0, t, method="sequential")
    calls = {"n": 0}

    def f(t, y):
        calls["n"] += not in_contract_check()  # the row checks are no part of the stats
        return problem.f(t, y)

    sol = parasolve.solve(f, problem.y0, t, method="parareal", tol=1e-8, vectorized=True,
                          options={"fine": "odeint", "segments": 5, "coarse": "rk4"})
    assert sol.converged and sol.step == "odeint:dopri5"
    assert (sol.ys - exact).abs().max() <= 1e-7           # the ODE, to odeint's accuracy
    assert (euler.ys - exact).abs().max() > 1e-3          # which the Euler discrete problem is not
    assert sol.stats.drift_calls == calls["n"] and sol.stats.nfe >= calls["n"]


def test_parareal_odeint_rejects_an_sde():
    ou = problems.ornstein_uhlenbeck()
    with pytest.raises(ValueError, match="odeint"):
        parasolve.solve_sde(ou.f, ou.g, ou.y0, torch.linspace(0, 1, 11, dtype=torch.float64),
                            method="parareal", options={"fine": "odeint"})


# ---------------------------------------------------------------------------- options
@pytest.mark.parametrize("method,options,error,name", [
    ("anderson", {"memory": 0}, ValueError, "memory"),
    ("anderson", {"memory": 2.5}, TypeError, "memory"),
    ("anderson", {"regularization": -1.0}, ValueError, "regularization"),
    ("anderson", {"growth": 0.0}, ValueError, "growth"),
    ("newton", {"jacobian": "dense"}, ValueError, "jacobian"),
    ("newton", {"damping": 0.0}, ValueError, "damping"),
    ("newton", {"damping": 1.5}, ValueError, "damping"),
    ("newton", {"clip": float("inf")}, ValueError, "clip"),
    ("newton", {"prior": "exact"}, ValueError, "prior"),
    ("parareal", {"segments": 0}, ValueError, "segments"),
    ("parareal", {"coarse": "bogus"}, ValueError, "coarse"),
    ("parareal", {"coarse": "ab2"}, ValueError, "coarse"),
    ("parareal", {"fine": "rk45"}, ValueError, "fine"),
    ("parareal", {"coarse_steps": 0}, ValueError, "coarse_steps"),
    ("parareal", {"coarse_steps": 2.0}, TypeError, "coarse_steps"),
    ("parareal", {"odeint_options": [1]}, TypeError, "odeint_options"),
    ("parareal", {"odeint_options": {"rtol": 1e-6}}, ValueError, "odeint_options"),
    ("anderson", {"bogus": 1}, TypeError, "options"),
])
def test_bad_options_raise_typed_errors_naming_the_option(method, options, error, name):
    problem = problems.linear()
    with pytest.raises(error, match=name):
        parasolve.solve(problem.f, problem.y0, problem.grid(10), method=method, options=options)


def test_schemes_describe_themselves():
    assert "memory=3" in repr(Anderson()) and "scalar" in repr(Newton())
    assert "frozen" in repr(Parareal()) and "euler" in repr(Parareal(coarse="euler"))


def test_newton_step_prior_changes_nothing_for_maps_that_declare_no_linear_part():
    """prior='step' against prior='zero' (the default is 'step', so the default alone proves
    nothing): equal, bit for bit, for euler (no linear part); and, so that the comparison can
    fail, different for a map declaring its exact linear part (Newton then starts exact)."""
    problem = problems.logistic()
    t = problem.grid(200)
    runs = {prior: parasolve.solve(problem.f, problem.y0, t, method="newton", vectorized=True,
                                   options={"prior": prior, "jacobian": "scalar"}) for prior in ("step", "zero")}
    assert parasolve.STEPS["euler"].linear_part() is None
    assert torch.equal(runs["step"].ys, runs["zero"].ys)
    assert runs["step"].stats.iterations == runs["zero"].stats.iterations

    rate, n = -3.0, 200
    grid = torch.linspace(0.0, 2.0, n + 1, dtype=torch.float64)

    class LinearEuler(type(parasolve.STEPS["euler"])):
        linear = True

        def linear_part(self):
            return torch.full((n,), rate * 2.0 / n, dtype=torch.float64)  # dPhi_i/dx = rate h

    step = LinearEuler("euler", [[]], [1.0], [0.0], order=1)
    sweeps = {prior: parasolve.solve(lambda s, y: rate * y, torch.ones(2, dtype=torch.float64), grid, step=step,
                                     method="newton", options={"prior": prior, "jacobian": "scalar"},
                                     tol=1e-12).stats.iterations for prior in ("step", "zero")}
    assert sweeps["step"] < sweeps["zero"]