"""The drift contract is checked on the first call, and odd inputs meet typed errors (issue #11).

Each case here once gave a silent wrong answer or an untyped crash.
"""

import pytest
import torch

import parasolve
from parasolve import diffusion, problems
from parasolve import testing as pt

METHODS = ["sequential", "picard", "parareal", "anderson", "newton"]
P = problems.logistic()
T = P.grid(20)


def single_point_logistic(t, y):
    """Written for one time point (y[0] is the first state entry), wrongly passed as vectorized."""
    return y * (1 - y[0])


@pytest.mark.parametrize("method", METHODS)
def test_single_point_drift_passed_as_vectorized_is_refused(method):
    y0 = torch.tensor([0.1, 0.2], dtype=torch.float64)
    with pytest.raises(ValueError, match="vectorized=True.*depends on the other points"):
        parasolve.solve(single_point_logistic, y0, T, method=method, vectorized=True)
    # the same drift without vectorized=True is batched by vmap and agrees with the sequential loop
    par = parasolve.solve(single_point_logistic, y0, T, method=method, tol=1e-10)
    seq = parasolve.solve(single_point_logistic, y0, T, method="sequential")
    pt.assert_near_sequential(par, seq, atol=1e-8)


def test_single_point_drift_using_t_as_a_scalar_is_refused():
    """Refused at the first call that batches two times (a parallel scheme's); a solve that only
    ever calls it at one time (the sequential loop) gets the right answer from it."""
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="depends on the other points"):
        parasolve.solve(lambda t, y: -y * t[0], y0, T, vectorized=True, method="picard")
    seq = parasolve.solve(lambda t, y: -y * t[0], y0, T, vectorized=True, method="sequential")
    ref = parasolve.solve(lambda t, y: -y * t, y0, T, method="sequential")
    assert torch.equal(seq.ys, ref.ys)


def test_row_check_runs_once_and_accepts_correct_vectorized_drifts():
    calls = []

    def f(t, y):
        calls.append(t.shape[0])
        return P.f(t, y)

    sol = parasolve.solve(f, P.y0, T, window=5, tol=1e-9, vectorized=True, method="picard")
    assert sol.converged
    check = parasolve.drift.BatchedDrift.CHECK_POINTS
    # the first sweep (5 points), the check's one call, then only the sweeps: nothing more per sweep
    assert calls[:2] == [5, check]
    assert calls[2:] == [r.end - r.start for r in sol.stats.history[1:]]
    assert sum(calls) - check == sol.stats.nfe and len(calls) - 1 == sol.stats.drift_calls


def test_row_check_tolerates_non_finite_entries_at_the_same_places():
    def f(t, y):  # a vectorized drift whose entry 1 is NaN everywhere: rows still independent
        out = -y.clone()
        out[:, 1] = float("nan")
        return out

    with pytest.raises(parasolve.NonFiniteError):  # the solve's own NaN report, not the row check
        parasolve.solve(f, torch.ones(2, dtype=torch.float64), T, vectorized=True)


@pytest.mark.parametrize("vectorized", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_drift_mutating_its_input_is_refused(method, vectorized):
    def f(t, y):
        y.mul_(0.5)  # corrupts the iterate
        return -y

    with pytest.raises(ValueError, match="modified its input `y` in place"):
        parasolve.solve(f, torch.ones(3, dtype=torch.float64), T, method=method, vectorized=vectorized)


def test_mutating_g_is_refused():
    def g(t, y):
        y += 1.0
        return torch.ones_like(y)

    with pytest.raises(ValueError, match="`g` modified its input"):
        parasolve.solve_sde(lambda t, y: -y, g, torch.ones(2, dtype=torch.float64), T)


def test_float16_times_that_overflow_name_t():
    with pytest.raises(ValueError, match="`t` does not fit y0's dtype torch.float16"):
        parasolve.solve(lambda t, y: -y, torch.ones(2, dtype=torch.float16), [0.0, 1e5])
    # (finite times whose step overflows float16 are fine: 16-bit states are solved in float32)
    assert parasolve.solve(lambda t, y: -y, torch.ones(2, dtype=torch.float16), [-6e4, 6e4], tol=1.0).converged


@pytest.mark.parametrize("method", METHODS)
def test_empty_state_is_a_typed_error_for_every_method(method):
    with pytest.raises(ValueError, match="`y0` has no elements"):
        parasolve.solve(lambda t, y: -y, torch.zeros(0, 3, dtype=torch.float64), T, method=method)


@pytest.mark.parametrize("vectorized", [False, True])
@pytest.mark.parametrize("value, match", [((torch.ones(2),), "got tuple"),
                                          (None, "got NoneType .did it forget a return"),
                                          (0.5, "got float")])
def test_drift_returning_a_non_tensor(value, match, vectorized):
    with pytest.raises(TypeError, match=f"`f` must return a torch.Tensor; {match}"):
        parasolve.solve(lambda t, y: value, torch.ones(2, dtype=torch.float64), T, vectorized=vectorized)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(options=[("segments", 2)]), TypeError, "`options` must be a dict"),
    (dict(options="segments=2"), TypeError, "`options` must be a dict"),
    (dict(evaluator=3), TypeError, "`evaluator` must be callable"),
    (dict(save=["all"]), TypeError, r"`save` must be one of \['all', 'last'\]; got \['all'\] \(list\)"),
    (dict(save={}), TypeError, "`save` must be one of"),
])
def test_bad_settings_of_any_type_are_named(kw, exc, match):
    with pytest.raises(exc, match=match):
        parasolve.solve(P.f, P.y0, T, **kw)


@pytest.mark.parametrize("method", ["sequential", "picard"])
@pytest.mark.parametrize("vectorized", [False, True])
def test_g_may_return_a_scalar_or_a_python_float(vectorized, method):
    y0 = torch.tensor([1.0, -1.0], dtype=torch.float64)
    noise = torch.randn(len(T) - 1, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def f(t, y):
        return -y

    full = parasolve.solve_sde(f, lambda t, y: 0.3 * torch.ones_like(y), y0, T, noise=noise, method=method,
                               vectorized=vectorized, tol=1e-12)
    for g in (lambda t, y: 0.3, lambda t, y: torch.tensor(0.3, dtype=torch.float64)):
        sol = parasolve.solve_sde(f, g, y0, T, noise=noise, method=method, vectorized=vectorized, tol=1e-12)
        assert (sol.ys - full.ys).abs().max() <= 1e-12


def test_g_returning_a_python_bool_or_string_is_typed():
    with pytest.raises(TypeError, match="`g` must return a torch.Tensor or a Python number; got str"):
        parasolve.solve_sde(lambda t, y: -y, lambda t, y: "0.3", torch.ones(2, dtype=torch.float64), T)


def test_sample_with_non_finite_x_T_names_x_T():
    den = diffusion.exact_denoiser(torch.randn(8, 3, generator=torch.Generator().manual_seed(0)))
    x_T = torch.zeros(2, 3)
    x_T[1, 2] = float("nan")
    with pytest.raises(ValueError, match="`x_T` contains NaN or Inf"):
        diffusion.sample(den, (2, 3), sampler="ddim", steps=10, x_T=x_T)


@pytest.mark.parametrize("coarse_steps", [1, 3])
@pytest.mark.parametrize("warm", [False, True])
def test_parareal_drift_batches_stay_within_window(warm, coarse_steps):
    """The frozen coarse propagator evaluates a whole segment (with init: the whole grid) at once;
    its calls are split so that no drift call exceeds ``window`` points."""
    batches = []

    def f(t, y):
        batches.append(t.shape[0])
        return P.f(t, y)

    t = P.grid(120)
    seq = parasolve.solve(P.f, P.y0, t, method="sequential")
    init = seq.ys + 1e-3 if warm else None
    sol = parasolve.solve(f, P.y0, t, method="parareal", window=6, tol=1e-9, vectorized=True, init=init,
                          options={"segments": 6, "coarse_steps": coarse_steps})  # segments of 20 steps
    pt.assert_near_sequential(sol, seq, atol=1e-8)
    assert max(batches) <= 6
    assert sum(batches) - parasolve.drift.BatchedDrift.CHECK_POINTS == sol.stats.nfe


def test_row_check_tolerates_the_round_off_of_the_precision_the_drift_computes_in():
    """A drift whose rows change at 16-bit round-off with the batch size (as 16-bit or TF32 kernels
    do on a GPU) passes when it declares ``compute_dtype``; a row-mixing drift is still refused."""
    from parasolve.drift import row_tolerance

    def batch_dependent(t, y):  # exact rows, plus a relative 1e-3 that depends on the batch size
        return -y * (1 + 1e-3 * (y.shape[0] == 2))

    y0 = torch.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="depends on the other points"):
        parasolve.solve(batch_dependent, y0, torch.linspace(0, 1, 9), vectorized=True)
    batch_dependent.compute_dtype = torch.float16
    assert row_tolerance(y0, batch_dependent) == pytest.approx(torch.finfo(torch.float16).eps ** 0.5)
    parasolve.solve(batch_dependent, y0, torch.linspace(0, 1, 9), vectorized=True, method="picard")
    single_point_logistic.compute_dtype = torch.float16
    try:
        with pytest.raises(ValueError, match="depends on the other points"):
            parasolve.solve(single_point_logistic, torch.tensor([0.1, 0.2]), T, vectorized=True)
    finally:
        del single_point_logistic.compute_dtype
    assert row_tolerance(torch.ones(2, dtype=torch.float64), lambda t, y: y) == torch.finfo(torch.float64).eps ** 0.5
