"""parasolve.odeint against torchdiffeq itself: same calls, same meaning of rtol/atol."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torchdiffeq
from hypothesis import given, settings, strategies as st
from scipy.integrate import solve_ivp
from torchdiffeq._impl.dopri5 import _DORMAND_PRINCE_SHAMPINE_TABLEAU
from torchdiffeq._impl.bosh3 import _BOGACKI_SHAMPINE_TABLEAU
from torchdiffeq._impl.adaptive_heun import _ADAPTIVE_HEUN_TABLEAU
from torchdiffeq._impl.misc import _compute_error_ratio, _rms_norm
from torchdiffeq._impl.rk_common import _runge_kutta_step

import parasolve
from parasolve import testing as pt
from parasolve.odeint import ErrorEstimate, EMBEDDED

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64
#: The parallel driver with the scheme "auto" takes for small states (the default may run the
#: sequential stepper instead, where its cost model says parallel sweeps would not pay).
PARALLEL = {"scheme": "newton", "scheme_options": {"jacobian": "full"}}
TABLEAUS = {"dopri5": _DORMAND_PRINCE_SHAMPINE_TABLEAU, "bosh3": _BOGACKI_SHAMPINE_TABLEAU,
            "adaptive_heun": _ADAPTIVE_HEUN_TABLEAU}


def vdp(t, y):
    return torch.stack([y[..., 1], (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)


def kepler(t, y):
    q, p = y[..., :2], y[..., 2:]
    return torch.cat([p, -q / (q * q).sum(-1, keepdim=True) ** 1.5], -1)


def forced(t, y):  # time-dependent, so the time argument is checked too
    return torch.stack([y[..., 1], -y[..., 0] - 0.1 * y[..., 1] + torch.cos(1.3 * torch.as_tensor(t, dtype=y.dtype))], -1)


PROBLEMS = {
    "van_der_pol": (vdp, torch.tensor([2.0, 0.0], dtype=D), 6.0),
    "kepler": (kepler, torch.tensor([0.6, 0.0, 0.0, math.sqrt(1.4 / 0.6)], dtype=D), 2 * math.pi),
    "forced": (forced, torch.tensor([1.0, 0.0], dtype=D), 8.0),
}


def scipy_reference(f, y0, t):
    sol = solve_ivp(lambda s, y: f(torch.tensor(s, dtype=D), torch.from_numpy(y)).numpy(),
                    (float(t[0]), float(t[-1])), y0.numpy(), method="DOP853", rtol=1e-12, atol=1e-12,
                    t_eval=t.numpy())
    return torch.from_numpy(sol.y.T)


def error(ys, ref):
    return float((ys - ref).abs().max())


# --------------------------------------------------------------------------- adaptive methods

@pytest.mark.parametrize("name", sorted(PROBLEMS))
@pytest.mark.parametrize("method,rtol", [("dopri5", 1e-6), ("dopri5", 1e-9), ("bosh3", 1e-6),
                                         ("adaptive_heun", 1e-4)])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
def test_error_within_a_small_factor_of_torchdiffeq(name, method, rtol, reverse):
    f, y0, T = PROBLEMS[name]
    t = torch.linspace(0.0, T, 7, dtype=D)
    if reverse:  # start from the forward solution's end, integrate back to 0
        y0 = scipy_reference(f, y0, t)[-1]
        t = t.flip(0)
    ref = scipy_reference(f, y0, t)
    atol = 1e-3 * rtol
    ours = parasolve.odeint(f, y0, t, rtol=rtol, atol=atol, method=method)
    theirs = torchdiffeq.odeint(f, y0, t, rtol=rtol, atol=atol, method=method)
    assert ours.shape == (len(t), *y0.shape) and torch.equal(ours[0], y0)
    assert error(ours, ref) <= 3 * error(theirs, ref) + 1e-12, (error(ours, ref), error(theirs, ref))


@pytest.mark.parametrize("method", sorted(EMBEDDED))
def test_every_final_step_passes_torchdiffeqs_own_error_test(method):
    """Oracle: torchdiffeq's Runge–Kutta step and error ratio, applied to each step of the final
    grid from parasolve's states: every ratio <= 1, and every fixed-point defect (the gap between
    parasolve's next state and torchdiffeq's step) within its share of the same norm."""
    f, y0, T = PROBLEMS["van_der_pol"]
    t = torch.linspace(0.0, T, 4, dtype=D)
    rtol, atol = (1e-4, 1e-7) if method == "adaptive_heun" else (1e-6, 1e-9)
    res = parasolve.odeint(f, y0, t, rtol=rtol, atol=atol, method=method, options=PARALLEL, full_output=True)
    grid, ys = res.grid, res.solution.ys
    assert torch.isin(t, grid).all()  # output times are grid points, bit for bit
    tableau = TABLEAUS[method]
    worst_ratio = worst_defect = 0.0
    for i in range(len(grid) - 1):
        t0, t1 = grid[i], grid[i + 1]
        y1, _, err, _ = _runge_kutta_step(lambda s, y, perturb=None: f(s, y), ys[i], f(t0, ys[i]), t0, t1 - t0,
                                          t1, tableau)
        worst_ratio = max(worst_ratio, float(_compute_error_ratio(err, rtol, atol, ys[i], y1, _rms_norm)))
        worst_defect = max(worst_defect, float(_rms_norm((ys[i + 1] - y1) / (atol + rtol * torch.max(ys[i].abs(), ys[i + 1].abs())))))
    # parasolve completes the estimate with f at the next state x_{i+1}, torchdiffeq with f at the
    # step's own end: they differ by h * L * defect, a small fraction of the pass threshold 1.
    assert worst_ratio <= 1.01 and abs(worst_ratio - res.max_ratio) <= 0.01
    assert worst_defect <= 1.0 + 1e-9  # defect_fraction = 1 by default


@settings(max_examples=12, deadline=None)
@given(pt.drifts(dim=st.integers(1, 3), max_lipschitz=2.0), st.floats(0.5, 2.0), st.sampled_from([1e-4, 1e-6, 1e-8]),
       st.booleans(), st.integers(0, 2 ** 31 - 1))
def test_random_smooth_drifts_stay_within_the_tolerance_promise(f, span, rtol, reverse, seed):
    """Every step's local error estimate is <= atol + rtol |y| and the defects sum to at most the
    estimates' sum plus one step's scale, so the global error is at most S * (N + 1) scales
    (S = e^{L T}); sharper, it is within 10x torchdiffeq's error plus S times the one-step floor."""
    y0 = torch.randn(f.dim, dtype=D, generator=torch.Generator().manual_seed(seed))
    t = torch.linspace(0.0, span, 5, dtype=D)
    t = t.flip(0) if reverse else t
    atol = 1e-2 * rtol
    res = parasolve.odeint(f, y0, t, rtol=rtol, atol=atol, options=PARALLEL, full_output=True)
    ref = scipy_reference(f, y0, t)
    ys = res.solution.ys
    scale = atol + rtol * ys.abs().amax(0).max()
    promise = math.exp(f.lipschitz * span) * res.stats.accepted_steps * 2 * float(scale) * math.sqrt(f.dim)
    assert error(res.ys, ref) <= promise
    theirs = torchdiffeq.odeint(f, y0, t, rtol=rtol, atol=atol)
    floor = math.exp(f.lipschitz * span) * float(scale)
    assert error(res.ys, ref) <= 10 * error(theirs, ref) + floor


@pytest.mark.parametrize("scheme", ["sequential", "anderson", "newton"])
def test_every_scheme_keeps_the_promise(scheme):
    """Any scheme in ``options`` gives a grid that passes and torchdiffeq's accuracy (the
    sequential loop with the discrete problem's exact solution)."""
    f, y0, T = PROBLEMS["forced"]
    t = torch.linspace(0.0, T, 5, dtype=D)
    ref = scipy_reference(f, y0, t)
    theirs = torchdiffeq.odeint(f, y0, t, rtol=1e-7, atol=1e-9)
    ours = parasolve.odeint(f, y0, t, rtol=1e-7, options={"scheme": scheme, "window": 64, "initial_steps": 256},
                            full_output=True)
    assert ours.max_ratio <= 1
    assert error(ours.ys, ref) <= 3 * error(theirs, ref)


def test_stats_count_every_batched_call():
    f, y0, T = PROBLEMS["van_der_pol"]
    calls, points = [0], [0]

    def counted(s, y):  # vectorized: one call per batched round
        if not parasolve.drift.in_contract_check():  # a solve's first-call row check is not in the stats
            calls[0] += 1
            points[0] += s.shape[0]
        return vdp(s[:, None], y)

    t = torch.linspace(0.0, T, 3, dtype=D)
    res = parasolve.odeint(counted, y0, t, rtol=1e-8, options={"vectorized": True, **PARALLEL}, full_output=True)
    s = res.stats
    assert (s.drift_rounds, s.nfe) == (calls[0], points[0])
    assert s.accepted_steps == len(res.grid) - 1 and s.passes == len(s.history) >= 1
    assert s.sweeps == sum(h.sweeps for h in s.history) and s.rejected_steps == sum(h.failed for h in s.history)
    # The pilot (a parallel scheme asked for, rtol 1e-8): one-state calls -- the first slope, the
    # first-step choice's two, six a step (dopri5's first stage is the last one's end slope) -- and
    # one batched round for the interpolated guess; the passes start from its grid.
    assert s.pilot is not None and s.pilot.sweeps == 0
    assert s.pilot.drift_rounds == 3 + 6 * (s.pilot.steps + s.pilot.failed) + 1
    assert s.drift_rounds == s.pilot.drift_rounds + sum(h.drift_rounds for h in s.history)
    # A dopri5 sweep makes 6 batched rounds; each pass adds one (the last point's drift).
    assert sum(h.drift_rounds for h in s.history) == 6 * s.sweeps + s.passes


def test_refinement_and_warm_start_when_the_first_grid_is_too_coarse():
    f, y0, T = PROBLEMS["kepler"]
    t = torch.tensor([0.0, 3 * T], dtype=D)
    res = parasolve.odeint(f, y0, t, rtol=1e-8, atol=1e-11, options={"initial_steps": 16, **PARALLEL},
                           full_output=True)
    assert res.stats.passes >= 2 and res.stats.rejected_steps > 0 and res.max_ratio <= 1
    theirs = torchdiffeq.odeint(f, y0, t, rtol=1e-8, atol=1e-11)
    ref = scipy_reference(f, y0, t)
    assert error(res.ys, ref) <= 3 * error(theirs, ref)


# --------------------------------------------------------------------------- fixed-step methods

@pytest.mark.parametrize("method", ["euler", "midpoint", "heun2", "heun3", "rk4"])
@pytest.mark.parametrize("grid", ["t", "step_size", "grid_points"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
def test_fixed_step_methods_equal_torchdiffeq_to_roundoff(method, grid, reverse):
    f, y0, _ = PROBLEMS["forced"]
    t = torch.tensor([0.0, 0.37, 0.8, 1.9, 2.0, 3.1], dtype=D)
    t = -t if reverse else t
    options = {"t": {}, "step_size": {"step_size": 0.13},
               "grid_points": {"grid_points": torch.linspace(0.0, float(t[-1]), 41, dtype=D)}}[grid]
    theirs_options = dict(options)
    if grid == "grid_points":
        points = options["grid_points"]
        theirs_options = {"grid_constructor": lambda func, y, tt: points}
    theirs = torchdiffeq.odeint(f, y0, t, method=method, options=theirs_options or None)
    for scheme_options in ({"scheme": "sequential"}, {"tol": 0.0}):
        ours = parasolve.odeint(f, y0, t, method=method, options={**options, **scheme_options})
        assert torch.allclose(ours, theirs, rtol=1e-13, atol=1e-13), (ours - theirs).abs().max()


def test_fixed_step_cubic_interpolation_matches_torchdiffeq():
    f, y0, _ = PROBLEMS["forced"]
    t = torch.tensor([0.0, 0.37, 1.9, 3.1], dtype=D)
    theirs = torchdiffeq.odeint(f, y0, t, method="rk4", options={"step_size": 0.2, "interp": "cubic"})
    ours = parasolve.odeint(f, y0, t, method="rk4", options={"step_size": 0.2, "interp": "cubic",
                                                            "scheme": "sequential"})
    assert torch.allclose(ours, theirs, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name,order", [("heun3", 3), ("rk38", 4), ("dopri5", 5), ("bosh3", 3), ("adaptive_heun", 2)])
def test_new_step_maps_have_their_declared_order_and_stages(name, order):
    step = parasolve.STEPS[name]
    assert step.order == order
    problem = parasolve.problems.linear()
    errs = []
    for n in (16, 32):
        sol = parasolve.solve(problem.f, problem.y0, problem.grid(n), step=name, method="sequential")
        errs.append(float((sol.ys[-1] - problem.exact(problem.grid(n))[-1]).abs().max()))
        assert sol.stats.nfe == n * step.stages
    assert abs(math.log2(errs[0] / errs[1]) - order) < 0.35


def test_error_estimate_map_declares_its_rounds():
    rec = ErrorEstimate(EMBEDDED["dopri5"], 1e-6, 1e-9, 4, torch.zeros(2, dtype=D))
    sol = parasolve.solve(vdp, torch.tensor([2.0, 0.0], dtype=D), torch.linspace(0, 0.4, 5, dtype=D),
                          step=rec, method="sequential")
    assert rec.stages == 6 and sol.stats.drift_calls == 4 * rec.stages


# --------------------------------------------------------------------------- errors and hints

@pytest.mark.parametrize("kwargs,exc,words", [
    ({"rtol": -1e-6}, ValueError, "`rtol`"),
    ({"atol": float("nan")}, ValueError, "`atol`"),
    ({"rtol": "tight"}, TypeError, "`rtol`"),
    ({"rtol": 0.0, "atol": 0.0}, ValueError, "both 0"),
    ({"rtol": torch.ones(3)}, ValueError, "broadcast"),
    ({"method": "rk45"}, ValueError, "valid"),
    ({"method": "heun"}, ValueError, "heun2"),
    ({"method": "picard"}, ValueError, "options={'scheme': 'picard'}"),
    ({"options": {"step_size": 0.1}}, TypeError, "fixed-step"),
    ({"method": "rk4", "options": {"first_step": 0.1}}, TypeError, "adaptive"),
    ({"options": {"first_step": -1.0}}, ValueError, "first_step"),
    ({"options": {"windw": 4}}, TypeError, "windw"),
    ({"options": [1]}, TypeError, "`options`"),
    ({"options": {"safety": 2.0}}, ValueError, "safety"),
    ({"options": {"scheme": "rk4"}}, ValueError, "options['scheme']"),
    ({"method": "euler", "options": {"step_size": 0.1, "grid_points": torch.zeros(2)}}, ValueError, "exclusive"),
    ({"method": "euler", "options": {"grid_points": torch.tensor([0.0, 0.5])}}, ValueError, "end at"),
    ({"method": "euler", "options": {"interp": "quadratic"}}, ValueError, "interp"),
    ({"rtl": 1e-3}, TypeError, "rtl"),
])
def test_bad_arguments_get_typed_errors_naming_them(kwargs, exc, words):
    f, y0, _ = PROBLEMS["forced"]
    with pytest.raises(exc, match=None) as info:
        parasolve.odeint(f, y0, torch.tensor([0.0, 1.0], dtype=D), **kwargs)
    assert words in str(info.value)


def test_refinement_limit_is_reported():
    with pytest.raises(parasolve.ConvergenceError, match="max_num_steps"):
        parasolve.odeint(vdp, torch.tensor([2.0, 0.0], dtype=D), torch.tensor([0.0, 6.0], dtype=D), rtol=1e-12,
                         atol=1e-14, options={"initial_steps": 8, "max_num_steps": 64})


def test_odeint_adjoint_without_params_is_odeint():
    f, y0, T = PROBLEMS["forced"]
    t = torch.linspace(0.0, T, 4, dtype=D)
    assert torch.equal(parasolve.odeint_adjoint(f, y0, t, rtol=1e-6), parasolve.odeint(f, y0, t, rtol=1e-6))


class _Decay(torch.nn.Module):
    """``dy/dt = a y``: ``y(T) = y0 exp(a T)``, so ``dy(T)/da = T y(T)`` and ``dy(T)/dy0 = exp(a T)``."""

    def __init__(self, a: float):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=D))

    def forward(self, t, y):
        return self.a * y


@pytest.mark.parametrize("name", ["odeint", "odeint_adjoint"])
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_gradients_through_odeint_match_the_exact_solution(name, method):
    f, a, T = _Decay(-0.7), -0.7, 2.0
    y0 = torch.tensor([1.3, -0.4], dtype=D, requires_grad=True)
    t = torch.tensor([0.0, 0.5, T], dtype=D)
    options = {"step_size": 1e-3} if method == "rk4" else None
    ys = getattr(parasolve, name)(f, y0, t, rtol=1e-9, atol=1e-10, method=method, options=options)
    ys[-1].sum().backward()
    exact_y0 = math.exp(a * T)
    assert y0.grad == pytest.approx(torch.full((2,), exact_y0, dtype=D), rel=1e-7)
    assert float(f.a.grad) == pytest.approx(T * exact_y0 * float(y0.detach().sum()), rel=1e-7)


def test_solve_points_a_step_name_passed_as_method_to_step_or_odeint():
    with pytest.raises(ValueError) as info:
        parasolve.solve(vdp, torch.tensor([2.0, 0.0], dtype=D), torch.linspace(0, 1, 5, dtype=D), method="rk4")
    assert "step='rk4'" in str(info.value) and "parasolve.odeint" in str(info.value)


def test_solve_warns_about_a_grid_far_coarser_than_the_drift():
    def pendulum(t, y):
        return torch.stack([y[..., 1], -torch.sin(y[..., 0])], -1)
    y0 = torch.tensor([1.0, 0.0], dtype=D)
    with pytest.warns(UserWarning, match="parasolve.odeint"):
        parasolve.solve(pendulum, y0, torch.tensor([0.0, 20.0], dtype=D))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parasolve.solve(pendulum, y0, torch.linspace(0.0, 20.0, 2001, dtype=D), window=200, step="rk4")


def test_benchmark_script_runs_and_writes_its_table(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_odeint.py"
    spec = importlib.util.spec_from_file_location("bench_odeint", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "table.md"
    rows = bench.main(["--quick", "--only", "MLP", "--out", str(out)])
    assert len(rows) == 1 and rows[0]["ps_err"] <= 3 * rows[0]["td_err"]
    assert "| MLP neural ODE | 1e-05 |" in out.read_text()
    rows = bench.main(["--quick", "--only", "Kepler", "--scheme", "newton", "--scheme-option", "jacobian=full",
                       "--scheme-option", "safeguard=True"])
    assert len(rows) == 1 and rows[0]["ps_err"] <= 3 * rows[0]["td_err"]
