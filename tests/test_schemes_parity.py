"""Every accelerated scheme solves the same discrete problem as `method="sequential"`.

Oracle: the core's tolerance bound max|x - x_seq| <= S * tol with S <= exp(L |T|), on every core
test problem, forward and backward in time, for several step maps, an SDE with up-front noise,
a complex state, a state of any shape; plus exact counts, save="last", max_iters and NaN handling.
"""

import math
import warnings

import pytest
import torch

import parasolve
from parasolve import problems
from parasolve.schemes import Anderson, Newton, Parareal
from parasolve import testing as pt
from parasolve.testing import CountingDrift

PROBLEMS = problems.all_ode_problems()

# (id, method, options): the scheme variants the library documents.
SCHEMES = [
    ("anderson", "anderson", None),
    ("anderson-m1-nosafeguard", "anderson", {"memory": 1, "safeguard": False}),
    ("newton-scalar", "newton", None),
    ("newton-diagonal", "newton", {"jacobian": "diagonal", "damping": 0.8}),
    ("parareal-frozen", "parareal", None),
    ("parareal-rk4-coarse", "parareal", {"coarse": "rk4", "segments": 6}),
]


def stability(problem):
    """S <= exp(L |T|): the stability constant of the tolerance bound max|x - x_seq| <= S * defect_sum."""
    return math.exp(problem.lipschitz * abs(problem.t1 - problem.t0))


# Every problem in both directions; the step map rotates so each map meets every direction.
CASES = [(problem, ["euler", "heun", "rk4"][(i + reverse) % 3], reverse)
         for i, problem in enumerate(PROBLEMS) for reverse in (False, True)]


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s[0])
@pytest.mark.parametrize("problem,step,reverse", CASES,
                         ids=[f"{p.name}-{s}-{'backward' if r else 'forward'}" for p, s, r in CASES])
def test_scheme_equals_sequential_within_tol_bound(scheme, problem, step, reverse):
    _, method, options = scheme
    t = problem.grid(48, reverse=reverse)
    y0 = problem.initial(reverse)
    tol = 1e-9
    seq = parasolve.solve(problem.f, y0, t, method="sequential", step=step)
    par = parasolve.solve(problem.f, y0, t, method=method, options=options, step=step, window=16,
                          tol=tol, vectorized=True)
    assert 1 <= par.stats.iterations <= 48
    pt.assert_near_sequential(par, seq, stability=stability(problem), tol=tol)
    assert torch.equal(par.ts, t) and par.method == method


@pytest.mark.parametrize("method", ["anderson", "newton"])
def test_windowed_schemes_handle_a_multistep_map(method):
    problem = problems.van_der_pol()
    t = problem.grid(60)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", step="ab2")
    par = parasolve.solve(problem.f, problem.y0, t, method=method, step="ab2", window=20, tol=1e-9)
    assert par.stats.iterations <= 60
    pt.assert_near_sequential(par, seq, stability=math.exp(2 * problem.lipschitz * 3.0), tol=1e-9)


def test_parareal_rejects_a_multistep_map_with_a_clear_error():
    problem = problems.linear()
    with pytest.raises(ValueError, match="multistep"):
        parasolve.solve(problem.f, problem.y0, problem.grid(20), method="parareal", step="ab2")


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s[0])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
def test_sde_with_up_front_noise_equals_sequential_euler_maruyama(scheme, reverse):
    _, method, options = scheme
    ou = problems.ornstein_uhlenbeck(paths=4)
    t = torch.linspace(0, 2, 81, dtype=torch.float64)
    if reverse:
        t = t.flip(0)

    def g(t, y):  # multiplicative diagonal noise
        return 0.3 * torch.sin(y) + 0.5

    noise = torch.randn(80, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    seq = parasolve.solve_sde(ou.f, g, ou.y0, t, noise=noise, method="sequential")
    tol = 1e-9
    par = parasolve.solve_sde(ou.f, g, ou.y0, t, noise=noise, method=method, options=options,
                              window=30, tol=tol)
    assert par.stats.iterations <= 80
    lipschitz = ou.lipschitz + 0.3 * 20  # as in the core's SDE test: |g'| |xi| / sqrt(h) terms
    gap = pt.assert_near_sequential(par, seq, stability=math.exp(lipschitz * 2), tol=tol)
    assert gap <= 1e-8 * float(seq.ys.abs().max())


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s[0])
def test_complex_state_of_any_shape(scheme):
    _, method, options = scheme
    omega = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)

    def f(t, y):  # y' = (i omega - 0.3) y on a (2, 2) complex state
        return (1j * omega - 0.3) * y

    y0 = torch.complex(torch.ones(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64))
    t = torch.linspace(0, 1.5, 41, dtype=torch.float64)
    seq = parasolve.solve(f, y0, t, method="sequential", step="heun")
    par = parasolve.solve(f, y0, t, method=method, options=options, step="heun", tol=1e-9)
    assert par.ys.shape == (41, 2, 2) and par.ys.is_complex()
    pt.assert_near_sequential(par, seq, stability=math.exp(3.0 * 1.5), tol=1e-9)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s[0])
def test_float32_default_tolerance(scheme):
    _, method, options = scheme
    problem = problems.logistic()
    t = problem.grid(64).float()
    y0 = problem.y0.float()
    seq = parasolve.solve(problem.f, y0, t, method="sequential", step="heun")
    par = parasolve.solve(problem.f, y0, t, method=method, options=options, step="heun")
    assert par.ys.dtype == torch.float32
    pt.assert_near_sequential(par, seq, stability=stability(problem), tol=1e-3)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s[0])
@pytest.mark.parametrize("step", ["euler", "rk4"])
def test_stats_count_every_drift_call(scheme, step):
    _, method, options = scheme
    problem = problems.logistic()
    t = problem.grid(50)
    f = CountingDrift(problem.f)
    sol = parasolve.solve(f, problem.y0, t, method=method, options=options, step=step, tol=1e-8,
                          window=20, vectorized=True)
    assert sol.stats.nfe == f.points and sol.stats.drift_calls == f.calls
    assert sol.stats.iterations == len(sol.stats.history) <= 50
    assert sum(r.accepted for r in sol.stats.history) == 50
    if method != "parareal":  # one batched round per stage per sweep
        assert f.calls == sol.stats.iterations * parasolve.steps.STEPS[step].stages


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s[0])
def test_save_last_gives_the_same_end_point(scheme):
    _, method, options = scheme
    problem = problems.harmonic()
    t = problem.grid(40)
    full = parasolve.solve(problem.f, problem.y0, t, method=method, options=options, window=10, tol=1e-10)
    last = parasolve.solve(problem.f, problem.y0, t, method=method, options=options, window=10, tol=1e-10,
                           save="last")
    assert last.ys.shape == (1, 2) and torch.equal(last.ts, t[-1:])
    assert torch.equal(last.y, full.y)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s[0])
def test_max_iters_reports_non_convergence(scheme):
    _, method, options = scheme
    problem = problems.harmonic()
    t = problem.grid(40)
    sol = parasolve.solve(problem.f, problem.y0, t, method=method, options=options, tol=1e-12,
                          max_iters=2, throw=False)
    assert not sol.converged and sol.status is parasolve.Status.MAX_ITERS
    assert sol.stats.iterations == 2 and sol.ys.shape == (41, 2) and torch.isfinite(sol.ys).all()
    with pytest.raises(parasolve.ConvergenceError, match="max_iters") as info:
        parasolve.solve(problem.f, problem.y0, t, method=method, options=options, tol=1e-12, max_iters=2)
    assert info.value.solution.stats.iterations == 2


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s[0])
def test_nan_from_the_drift_is_reported_at_the_sequential_step(scheme):
    _, method, options = scheme

    def f(t, y):  # fails for t > 0.5, wherever the state is
        return torch.where(t[:, None] > 0.5, torch.full_like(y, float("nan")), -y)

    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 41, dtype=torch.float64)
    with pytest.raises(parasolve.NonFiniteError) as seq_info:
        parasolve.solve(f, y0, t, method="sequential", vectorized=True)
    with pytest.raises(parasolve.NonFiniteError) as info:
        parasolve.solve(f, y0, t, method=method, options=options, vectorized=True, tol=1e-9)
    assert info.value.index == seq_info.value.index


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s[0])
def test_warm_start_from_the_answer_converges_at_once(scheme):
    _, method, options = scheme
    problem = problems.van_der_pol()
    t = problem.grid(60)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential")
    warm = parasolve.solve(problem.f, problem.y0, t, method=method, options=options, tol=1e-10,
                           init=seq.ys.clone())
    cold = parasolve.solve(problem.f, problem.y0, t, method=method, options=options, tol=1e-10)
    assert warm.stats.iterations == 1 < cold.stats.iterations
    pt.assert_near_sequential(warm, seq, atol=1e-12)


def test_scheme_objects_classes_and_names_agree():
    problem = problems.logistic()
    t = problem.grid(30)
    for cls in (Anderson, Newton, Parareal):
        by_name = parasolve.solve(problem.f, problem.y0, t, method=cls.name, tol=1e-9)
        by_class = parasolve.solve(problem.f, problem.y0, t, method=cls, tol=1e-9)
        by_object = parasolve.solve(problem.f, problem.y0, t, method=cls(), tol=1e-9)
        assert torch.equal(by_name.ys, by_class.ys) and torch.equal(by_name.ys, by_object.ys)


@pytest.mark.parametrize("scheme", SCHEMES + [("picard", "picard", None)], ids=lambda s: s[0])
@pytest.mark.parametrize("dtype,tol", [(torch.float16, None), (torch.bfloat16, 5e-2)], ids=["float16", "bfloat16"])
def test_16_bit_states_on_a_small_linear_problem(scheme, dtype, tol):
    """16-bit states run every scheme (Anderson's Gram solve in float32) and keep the bound;
    ``tol`` None is the 16-bit default (1e-2), bfloat16 gets a looser one (8 mantissa bits).
    Their per-step shares are below what 16 bits resolve, so steps are accepted at the
    floating-point floor: the defects may then sum above ``tol`` -- only with the warning that
    says so -- and the bound holds for what they sum to."""
    _, method, options = scheme
    problem = problems.linear()
    t, y0 = problem.grid(32).to(dtype), problem.y0.to(dtype)
    seq = parasolve.solve(problem.f, y0, t, method="sequential", step="heun")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        par = parasolve.solve(problem.f, y0, t, method=method, options=options, step="heun", window=8, tol=tol,
                              vectorized=True)
    tol = 1e-2 if tol is None else tol
    reached = par.stats.defect_sum
    assert par.converged and par.ys.dtype == dtype and 1 <= par.stats.iterations <= 32
    assert reached <= tol or any(f"{reached:.3g} of the sequential solve" in str(w.message) for w in caught)
    pt.assert_near_sequential(par, seq, atol=stability(problem) * max(tol, reached))  # tol or the floor reached
