"""The core contract: parallel == sequential, step-map orders, exact counts, saving, warm starts."""

import math

import numpy as np
import pytest
import torch

import parasolve
from parasolve import problems
from parasolve.schemes import Update, WindowedScheme
from parasolve import testing as pt
from parasolve.testing import CountingDrift

STEPS = sorted(parasolve.STEPS)
PROBLEMS = problems.all_ode_problems()

#: The parallel scheme ``method="auto"`` takes for small states where its cost model says it pays
#: (tests of the parallel schemes name it: on a tiny drift the default may be the sequential loop).
FULL_NEWTON = {"method": "newton", "options": {"jacobian": "full"}}


def stability_constant(problem, t):
    """Upper bound prod(1 + |h| L) on the discrete stability constant S used by the tol bound."""
    h = (t[1:] - t[:-1]).abs()
    return float(torch.prod(1 + h * problem.lipschitz))


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
def test_picard_equals_sequential_within_tol_bound(problem, step, reverse):
    t = problem.grid(60, reverse=reverse)
    y0 = problem.initial(reverse)
    tol = 1e-9
    seq = parasolve.solve(problem.f, y0, t, method="sequential", step=step)
    par = parasolve.solve(problem.f, y0, t, step=step, window=16, tol=tol, vectorized=True, method="picard")
    assert par.stats.iterations <= 60
    # S for a multi-stage map is bounded with the map's own Lipschitz constant (1 + hL + ... <= e^{hL}).
    stability = math.exp(problem.lipschitz * abs(problem.t1 - problem.t0))
    gap = pt.assert_near_sequential(par, seq, stability=stability, tol=tol)
    # The a-priori S is vacuous for van der Pol (e^{L T} ~ 1e31). Measured, the gap is below
    # 100 * tol relative to the solution's size on every problem (backward Euler van der Pol
    # blows up to 6e16 on this grid), so a larger gap means the solve is wrong.
    assert gap <= 100 * tol * max(1.0, float(seq.ys.abs().max()))
    assert torch.equal(par.ts, t)


@pytest.mark.parametrize("step", STEPS)
def test_tight_tolerance_reproduces_sequential_to_roundoff(step):
    problem = problems.linear()
    t = problem.grid(40)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", step=step)
    par = parasolve.solve(problem.f, problem.y0, t, step=step, tol=0.0)
    assert par.stats.iterations <= 40
    pt.assert_near_sequential(par, seq, atol=1e-13)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.filterwarnings("ignore:`tol`=1e-14 is below what torch.float64 resolves:UserWarning")
def test_order_of_accuracy_matches_declaration(step):
    """Slope of log(error) vs log(h) on y' = Ay against expm, as diffrax tests do. ``tol=1e-14``
    asks for the discrete solution to round-off, so the floating-point floor may raise it (and say so)."""
    problem = problems.linear(t1=2.0)
    order = parasolve.steps.STEPS[step].order
    ns = [16, 32, 64, 128]
    errors = []
    for n in ns:
        t = problem.grid(n)
        sol = parasolve.solve(problem.f, problem.y0, t, step=step, tol=1e-14)
        errors.append(float((sol.y - problem.exact(t[-1:])[0]).abs().max()))
    slope = -np.polyfit(np.log(ns), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.25, (step, slope, errors)


def test_first_k_steps_exact_after_k_sweeps():
    """Discrete Picard exactness: after k sweeps the leading k steps equal the sequential ones."""
    problem = problems.harmonic()
    t = problem.grid(30)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential")
    for k in [1, 5, 12]:
        par = parasolve.solve(problem.f, problem.y0, t, tol=0.0, max_iters=k, throw=False, method="picard")
        assert not par.converged
        assert (par.ys[:k + 1] - seq.ys[:k + 1]).abs().max() <= 1e-14
        assert (par.ys[k + 2:] - seq.ys[k + 2:]).abs().max() > 1e-6  # the rest is not yet converged


def _alternating_grid(n: int, t1: float, reverse: bool) -> torch.Tensor:
    """``n`` steps alternating between lengths ``a`` and ``2a`` (the step ratio never tends to 1)."""
    h = torch.tensor([1.0 if i % 2 == 0 else 2.0 for i in range(n)], dtype=torch.float64)
    t = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(h, 0)]) * (t1 / float(h.sum()))
    return t1 - t if reverse else t


@pytest.mark.parametrize("reverse", [False, True])
def test_ab2_keeps_order_two_on_a_non_uniform_grid(reverse):
    """Variable-step AB2 is second order on any grid of bounded step ratio. A step map that used
    the uniform weights (3/2, -1/2) would make an O(h^2) local error where consecutive steps
    differ by a factor 2, i.e. first order: the measured slope tells them apart. The parallel
    solve (windows smaller than the grid, so the carry crosses windows) is the same discrete
    solution."""
    f = lambda t, y: torch.cos(t) * y  # noqa: E731   y = y0 exp(sin t - sin t0)
    y0, t1 = torch.tensor([1.0, -0.5], dtype=torch.float64), 2.0
    errors = []
    for n in (40, 80, 160, 320):
        t = _alternating_grid(n, t1, reverse)
        seq = parasolve.solve(f, y0, t, step="ab2", method="sequential")
        exact = y0 * torch.exp(torch.sin(t[-1]) - torch.sin(t[0]))
        errors.append(float((seq.ys[-1] - exact).abs().max()))
        if n == 80:
            par = parasolve.solve(f, y0, t, step="ab2", method="picard", window=16, tol=1e-13)
            pt.assert_near_sequential(par, seq, atol=1e-11)
    slopes = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert all(1.8 < s < 2.3 for s in slopes), slopes


@pytest.mark.parametrize("step", ["euler", "heun", "rk4", "ab2"])
@pytest.mark.parametrize("window", [None, 1, 7])
def test_nfe_and_iterations_are_counted_exactly(step, window):
    problem = problems.logistic()
    t = problem.grid(50)
    stages = parasolve.steps.STEPS[step].stages
    f = CountingDrift(problem.f)
    sol = parasolve.solve(f, problem.y0, t, step=step, window=window, tol=1e-8, vectorized=True, method="picard")
    assert sol.stats.nfe == f.points
    assert sol.stats.drift_calls == f.calls == sol.stats.iterations * stages
    assert f.points == stages * sum(r.end - r.start for r in sol.stats.history)
    assert sol.stats.iterations == len(sol.stats.history) <= 50
    assert sum(r.accepted for r in sol.stats.history) == 50
    assert all(r.end - r.start <= (window or 50) for r in sol.stats.history)
    g = CountingDrift(problem.f)
    seq = parasolve.solve(g, problem.y0, t, method="sequential", step=step, vectorized=True)
    assert seq.stats.nfe == g.points == 50 * stages and seq.stats.iterations == 50


def test_window_one_is_one_step_per_sweep():
    problem = problems.linear()
    t = problem.grid(25)
    sol = parasolve.solve(problem.f, problem.y0, t, window=1, tol=0.0, method="picard")
    assert sol.stats.iterations == 25 and sol.stats.nfe == 25
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential")
    assert torch.equal(sol.ys, seq.ys)


def test_parallel_uses_far_fewer_sweeps_than_steps_on_a_smooth_problem():
    problem = problems.linear()
    t = problem.grid(400)
    sol = parasolve.solve(problem.f, problem.y0, t, window=100, tol=1e-8, vectorized=True, **FULL_NEWTON)
    assert sol.converged and sol.stats.iterations < 400 / 4


@pytest.mark.parametrize("method", ["sequential", "picard"])
def test_save_last_returns_only_the_end_point(method):
    problem = problems.harmonic()
    t = problem.grid(40)
    full = parasolve.solve(problem.f, problem.y0, t, method=method, window=8, tol=1e-10)
    last = parasolve.solve(problem.f, problem.y0, t, method=method, window=8, tol=1e-10, save="last")
    assert last.ys.shape == (1, 2) and torch.equal(last.ts, t[-1:])
    assert torch.equal(last.y, full.y)


def test_max_iters_reports_non_convergence_and_throw_raises():
    problem = problems.harmonic()
    t = problem.grid(40)
    sol = parasolve.solve(problem.f, problem.y0, t, tol=1e-12, max_iters=3, throw=False, method="picard")
    assert not sol.converged and sol.status is parasolve.Status.MAX_ITERS
    assert "max_iters" in sol.message and sol.stats.iterations == 3
    assert sol.ys.shape == (41, 2) and torch.isfinite(sol.ys).all()
    with pytest.raises(parasolve.ConvergenceError, match="max_iters") as info:
        parasolve.solve(problem.f, problem.y0, t, tol=1e-12, max_iters=3, method="picard")
    assert info.value.solution.stats.iterations == 3
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", max_iters=10, throw=False)
    assert not seq.converged and seq.stats.iterations == 10


def test_warm_start_from_the_answer_converges_in_one_sweep_per_window():
    problem = problems.linear()
    t = problem.grid(60)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential")
    warm = parasolve.solve(problem.f, problem.y0, t, window=20, tol=1e-10, init=seq.ys.clone(), **FULL_NEWTON)
    cold = parasolve.solve(problem.f, problem.y0, t, window=20, tol=1e-10, **FULL_NEWTON)
    assert warm.stats.iterations == 3 < cold.stats.iterations
    pt.assert_near_sequential(warm, seq, atol=1e-12)


def test_state_of_any_shape_and_float32():
    A = torch.tensor([[-1.0, 0.5], [-0.5, -1.0]])

    def f(t, y):  # y: (3, 4, 2)
        return y @ A.T

    y0 = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0, 1, 33)
    seq = parasolve.solve(f, y0, t, method="sequential", step="heun")
    par = parasolve.solve(f, y0, t, step="heun", window=10)  # default float32 tol 1e-3
    assert par.ys.shape == (33, 3, 4, 2) and par.ys.dtype == torch.float32
    pt.assert_near_sequential(par, seq, stability=math.exp(1.5), tol=1e-3)


def test_vmap_batches_a_pointwise_drift_and_loop_fallback_warns_once():
    problem = problems.gaussian_decay()
    t = problem.grid(30)
    ref = parasolve.solve(problem.f, problem.y0, t, tol=1e-12, vectorized=True)
    via_vmap = parasolve.solve(problem.f, problem.y0, t, tol=1e-12)
    assert torch.allclose(via_vmap.ys, ref.ys, rtol=0, atol=1e-14)

    def scalar_only(t, y):  # .item() cannot be vmapped
        return -2 * float(t.item()) * y

    with pytest.warns(RuntimeWarning, match="loop") as record:
        looped = parasolve.solve(scalar_only, problem.y0, t, tol=1e-12)
    assert len([w for w in record if "loop" in str(w.message)]) == 1
    assert torch.allclose(looped.ys, ref.ys, rtol=0, atol=1e-14)


def test_progress_bar_shows_sweep_and_residual(capsys):
    problem = problems.linear()
    sol = parasolve.solve(problem.f, problem.y0, problem.grid(20), progress=True, method="picard")
    assert sol.converged
    err = capsys.readouterr().err
    assert "sweep=" in err and "residual=" in err
    parasolve.solve(problem.f, problem.y0, problem.grid(20))
    assert "sweep=" not in capsys.readouterr().err


@pytest.mark.parametrize("method", sorted(parasolve.SCHEMES))
@pytest.mark.parametrize("vectorized", [False, True])
def test_scalar_state(method, vectorized):
    t = torch.linspace(0, 1, 41, dtype=torch.float64)
    y0 = torch.tensor(1.0, dtype=torch.float64)
    sol = parasolve.solve(lambda t, y: -y, y0, t, method=method, vectorized=vectorized, tol=1e-12)
    ref = (1 - 1 / 40) ** torch.arange(41, dtype=torch.float64)  # forward Euler on y' = -y, exactly
    assert sol.ys.shape == (41,) and sol.converged
    assert torch.allclose(sol.ys, ref, rtol=0, atol=1e-11)


def test_method_and_step_objects_are_accepted():
    problem = problems.linear()
    t = problem.grid(20)
    by_name = parasolve.solve(problem.f, problem.y0, t, method="picard", step="rk4")
    by_object = parasolve.solve(problem.f, problem.y0, t, method=parasolve.schemes.Picard(),
                                step=parasolve.steps.STEPS["rk4"])
    by_class = parasolve.solve(problem.f, problem.y0, t, method=parasolve.schemes.Picard, step="rk4")
    assert torch.equal(by_name.ys, by_object.ys) and torch.equal(by_name.ys, by_class.ys)


def test_a_registered_scheme_is_selectable_by_name(clean_registries):
    class Damped(WindowedScheme):
        """A relaxed Picard update: still converges to the same discrete solution."""

        name = "test_damped_picard"

        def update(self, state, window):
            return Update(0.5 * window.picard + 0.5 * window.ys[window.shift + 1:], state)

    parasolve.register_scheme(Damped)
    problem = problems.linear()
    t = problem.grid(30)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential")
    sol = parasolve.solve(problem.f, problem.y0, t, method="test_damped_picard", tol=1e-10)
    pt.assert_near_sequential(sol, seq, atol=1e-8)
    assert sol.stats.iterations <= 30


def test_a_taken_name_is_refused_unless_replaced(clean_registries):
    """A registry never overwrites a name silently: a second class under a taken name raises,
    replace=True replaces it, unregister_scheme removes it (the step maps' registry alike)."""
    from parasolve.registry import DuplicateNameError
    from parasolve.schemes import Picard

    class Shadow(Picard):
        name = "picard"

    with pytest.raises(DuplicateNameError, match="'picard' is registered already.*replace=True"):
        parasolve.register_scheme(Shadow)
    assert parasolve.SCHEMES["picard"] is Picard
    with pytest.raises(DuplicateNameError):
        parasolve.SCHEMES["picard"] = Shadow  # a plain item assignment is no way round it
    parasolve.register_scheme(Picard)  # the same class again: no change, no error

    class Mine(Picard):
        name = "test_mine"

    parasolve.register_scheme(Mine)
    parasolve.register_scheme(replace=True)(type("Mine2", (Picard,), {"name": "test_mine"}))
    assert parasolve.SCHEMES["test_mine"].__name__ == "Mine2"
    assert parasolve.unregister_scheme("test_mine").__name__ == "Mine2" and "test_mine" not in parasolve.SCHEMES
    with pytest.raises(ValueError, match="No scheme named 'test_mine'"):
        parasolve.unregister_scheme("test_mine")
    with pytest.raises(TypeError, match="Scheme subclass"):
        parasolve.register_scheme(object)

    euler = parasolve.STEPS["euler"]
    with pytest.raises(DuplicateNameError, match="step map named 'euler'"):
        parasolve.register_step(type(euler)("euler", [[]], [1.0], [0.0], order=1))
    with pytest.raises(TypeError, match="StepMap instance"):
        parasolve.register_step("euler")
    assert parasolve.STEPS["euler"] is euler


def test_overflowing_iterate_is_restarted_not_reported_as_a_drift_failure():
    """Full-grid Picard on Van der Pol over t in [0, 10]: the far iterate overflows in early sweeps."""
    problem = problems.van_der_pol(t1=10.0)
    t = problem.grid(1000)
    x, h = problem.y0.expand(len(t), 2), (t[1:] - t[:-1])[:, None]
    with torch.no_grad():
        for _ in range(12):  # raw full-grid Picard sweeps, no restart: the iterate overflows
            x = torch.cat([problem.y0[None], problem.y0 + torch.cumsum(h * problem.f(t[:-1], x[:-1]), 0)])
    assert not torch.isfinite(x).all()
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", vectorized=True)
    par = parasolve.solve(problem.f, problem.y0, t, method="picard", tol=1e-6, vectorized=True)
    assert par.stats.iterations < 200
    pt.assert_near_sequential(par, seq, atol=1e-4)


def test_divergence_guard_restarts_untrustworthy_slots_and_saves_sweeps():
    """Slots whose defect dwarfs the accepted increments restart from the last trusted state."""
    problem = problems.van_der_pol(t1=10.0)
    t = problem.grid(2000)

    class Unguarded(parasolve.schemes.Picard):
        divergence_ratio = None

    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", vectorized=True)
    plain = parasolve.solve(problem.f, problem.y0, t, method=Unguarded(), window=1000, tol=1e-6, vectorized=True)
    guarded = parasolve.solve(problem.f, problem.y0, t, window=1000, tol=1e-6, vectorized=True, method="picard")
    assert guarded.stats.iterations < 0.8 * plain.stats.iterations
    for sol in (plain, guarded):
        pt.assert_near_sequential(sol, seq, atol=1e-4)


def test_window_auto_picks_a_measured_window_and_solves():
    problem = problems.van_der_pol(t1=5.0)
    t = problem.grid(256)
    sol = parasolve.solve(problem.f, problem.y0, t, window="auto", tol=1e-6, vectorized=True, **FULL_NEWTON)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", vectorized=True)
    assert 2 <= sol.stats.window <= 256
    pt.assert_near_sequential(sol, seq, atol=1e-4)
    ou = problems.ornstein_uhlenbeck(paths=3)
    sde = parasolve.solve_sde(ou.f, ou.g, ou.y0, torch.linspace(0, 1, 65, dtype=torch.float64), window="auto",
                              generator=torch.Generator().manual_seed(0), method="picard")
    assert sde.converged and 2 <= sde.stats.window <= 64
