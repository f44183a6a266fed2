"""The sequential stepper behind ``odeint`` and the cost model behind ``"auto"`` (parasolve.costs).

Oracles: torchdiffeq's own solve (accuracy, step counts), closed-form solutions and gradients,
the dense output's order; for the cost model, drifts whose cost per batch size is set by
``time.sleep`` (robust on a loaded machine: sleeping takes no CPU), flat or linear in the batch.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
import torchdiffeq

import parasolve
from parasolve import testing as pt
from parasolve.odeint.tableaus import DOPRI5

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64


def vdp(t, y):
    return torch.stack([y[..., 1], (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)


def forced(t, y):
    return torch.stack([y[..., 1], -y[..., 0] - 0.1 * y[..., 1] + torch.cos(1.3 * torch.as_tensor(t, dtype=y.dtype))],
                       -1)


def counted(f):
    def g(t, y):
        g.calls += 1
        return f(t, y)
    g.calls = 0
    return g


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "adaptive_heun"])
@pytest.mark.parametrize("f,y0,T", [(vdp, [2.0, 0.0], 6.0), (forced, [1.0, 0.0], -8.0)], ids=["vdp", "forced-backward"])
def test_stepper_matches_torchdiffeqs_steps_and_accuracy(method, f, y0, T):
    y0 = torch.tensor(y0, dtype=D)
    t = torch.linspace(0.0, T, 9, dtype=D)
    rtol, atol = (1e-4, 1e-7) if method == "adaptive_heun" else (1e-7, 1e-9)
    ref = torchdiffeq.odeint(f, y0, t, rtol=1e-12, atol=1e-14, method="dopri5")
    theirs_f, ours_f = counted(f), counted(f)
    theirs = torchdiffeq.odeint(theirs_f, y0, t, rtol=rtol, atol=atol, method=method)
    res = parasolve.odeint(ours_f, y0, t, rtol=rtol, atol=atol, method=method, options={"scheme": "sequential"},
                           full_output=True)
    assert res.solution is None and res.stats.passes == 1 and res.max_ratio <= 1
    assert res.stats.nfe == res.stats.drift_rounds == ours_f.calls  # honest: every call counted
    # The same controller: about the same steps. torchdiffeq's adaptive_heun makes one call per step
    # (its predictor's slope serves as the next step's first stage); ours evaluates the slope at
    # the accepted state, as the pair's error estimate assumes: two calls per step.
    per_step = 2 if method == "adaptive_heun" else 1
    assert ours_f.calls <= 1.1 * per_step * theirs_f.calls + 3
    err, their_err = float((res.ys - ref).abs().max()), float((theirs - ref).abs().max())
    assert err <= 3 * their_err + 1e-12


def test_dopri5_midpoint_estimate_is_fifth_order():
    """The dense output's midpoint weights: local error O(h^5) (halving h divides it by ~32)."""
    def f(t, y):
        return torch.cos(t)[..., None] * y

    errs = []
    for h in (0.2, 0.1, 0.05):
        t = torch.tensor([0.0, h], dtype=D)
        ks, _ = DOPRI5.stage_values(lambda tt, yy: f(tt, yy), t, torch.tensor([0]), torch.ones(1, 1, dtype=D), 7)
        ymid = 1 + h * sum(w * k[0, 0] for w, k in zip(DOPRI5.mid, ks))
        errs.append(abs(float(ymid) - math.exp(math.sin(h / 2))))
    assert 25 < errs[0] / errs[1] < 40 and 25 < errs[1] / errs[2] < 40


def test_dense_output_between_steps_is_as_accurate_as_the_steps():
    f, y0 = forced, torch.tensor([1.0, 0.0], dtype=D)
    t = torch.linspace(0.0, 8.0, 400, dtype=D)  # far more output times than steps
    res = parasolve.odeint(f, y0, t, rtol=1e-8, atol=1e-10, options={"scheme": "sequential"}, full_output=True)
    assert res.stats.accepted_steps < 200
    ref = torchdiffeq.odeint(f, y0, t, rtol=1e-12, atol=1e-14)
    theirs = torchdiffeq.odeint(f, y0, t, rtol=1e-8, atol=1e-10)
    assert float((res.ys - ref).abs().max()) <= 3 * float((theirs - ref).abs().max())


def test_gradients_through_the_stepper_match_the_closed_form():
    """``y' = a y``: ``dy(T)/da = T y(T)``, ``dy(T)/dy0 = exp(a T)``, ``dy(T)/dT = a y(T)``; by
    autograd through the steps (``odeint``) and by the discrete adjoint (``odeint_adjoint``), and
    a closure over a tensor that requires grad is differentiated too."""
    a = torch.tensor(-0.7, dtype=D, requires_grad=True)
    for odeint in (parasolve.odeint, parasolve.odeint_adjoint):
        y0 = torch.tensor([1.3], dtype=D, requires_grad=True)
        t = torch.tensor([0.0, 0.5, 2.0], dtype=D, requires_grad=True)
        kwargs = {"adjoint_params": (a,)} if odeint is parasolve.odeint_adjoint else {}
        ys = odeint(lambda s, y: a * y, y0, t, rtol=1e-10, atol=1e-12, options={"scheme": "sequential"}, **kwargs)
        ga, gy0, gt = torch.autograd.grad(ys[-1, 0], (a, y0, t))
        yT = float(ys[-1, 0])
        assert abs(float(ga) - 2.0 * yT) <= 1e-6
        assert abs(float(gy0) - math.exp(-0.7 * 2.0)) <= 1e-6
        assert abs(float(gt[-1]) - (-0.7) * yT) <= 1e-5


def _sleepy(per_call_s: float, per_point_s: float):
    """``y' = -y`` whose call costs ``per_call_s + per_point_s * points`` seconds of sleep."""
    def f(t, y):
        time.sleep(per_call_s + per_point_s * (y.shape[0] if y.dim() > 1 else 1))
        return -y
    return f


def test_auto_steps_sequentially_where_the_batch_costs_as_much_as_its_points():
    f = _sleepy(0.0, 2e-4)  # a call on n states costs n times one: parallel sweeps cannot pay
    y0 = torch.ones(2, dtype=D)
    t = torch.linspace(0.0, 40.0, 3, dtype=D)
    res = parasolve.odeint(f, y0, t, rtol=1e-6, atol=1e-9, options={"vectorized": True}, full_output=True)
    assert res.solution is None and res.stats.sweeps == 0  # the stepper, no parallel pass
    assert float((res.ys[-1] - torch.exp(-t[-1])).abs().max()) <= 1e-6
    grid = torch.linspace(0.0, 2.0, 2001, dtype=D)  # long enough that measuring fits in costs.MEASURE_SHARE
    assert parasolve.solve(f, y0, grid, vectorized=True).method == "sequential"


def test_auto_goes_parallel_where_a_batch_costs_about_one_call():
    f = _sleepy(2e-4, 0.0)  # a call costs the same for any batch: long solves pay in parallel
    y0 = torch.tensor([1.0, 0.5], dtype=D)
    t = torch.linspace(0.0, 60.0, 3, dtype=D)
    res = parasolve.odeint(lambda s, y: torch.stack([y[..., 1], -y[..., 0]], -1) + 0 * f(s, y), y0, t,
                           rtol=1e-8, atol=1e-10, options={"vectorized": True}, full_output=True)
    assert res.solution is not None and res.stats.sweeps > 0  # switched to the parallel driver
    exact = torch.stack([torch.cos(t) + 0.5 * torch.sin(t), -torch.sin(t) + 0.5 * torch.cos(t)], -1)
    assert float((res.ys - exact).abs().max()) <= 1e-5
    grid = torch.linspace(0.0, 2.0, 2001, dtype=D)  # long enough that measuring fits in costs.MEASURE_SHARE
    assert parasolve.solve(f, y0, grid, vectorized=True).method == "newton"


def test_the_default_window_stays_within_the_memory_budget(monkeypatch):
    import parasolve.costs as costs
    y0 = torch.ones(4, dtype=D)
    t = torch.linspace(0.0, 1.0, 201, dtype=D)
    per_step = 2 * (8 * 4 * (1 * (1 + 1) + 3))  # picard: one point per step, euler: one stage
    monkeypatch.setattr(costs, "MEMORY_BUDGET", 50 * per_step)
    assert costs.memory_window(200, y0, 1, 1) == 50
    sol = parasolve.solve(lambda s, y: -y, y0, t, method="picard", tol=1e-10)
    seq = parasolve.solve(lambda s, y: -y, y0, t, method="sequential")
    assert sol.stats.window == 50
    pt.assert_near_sequential(sol, seq, atol=1e-9)
    assert parasolve.solve(lambda s, y: -y, y0, t, method="picard", window=200).stats.window == 200  # window= wins


def test_float32_at_torchdiffeqs_defaults_is_as_accurate_as_torchdiffeq():
    """torchdiffeq's spiral demo in float32 at its default rtol 1e-7 / atol 1e-9: below what
    parallel sweeps can resolve in float32, so "auto" keeps stepping (error within 3x
    torchdiffeq's); the parallel driver forced there says why it may be less accurate."""
    A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]])

    def f(t, y):
        return (y ** 3) @ A

    y0, t = torch.tensor([[2.0, 0.0]]), torch.linspace(0.0, 10.0, 200)
    ref = torchdiffeq.odeint(lambda s, y: (y ** 3) @ A.double(), y0.double(), t.double(), rtol=1e-10, atol=1e-12)
    ours = parasolve.odeint(f, y0, t)
    theirs = torchdiffeq.odeint(f, y0, t)
    assert float((ours.double() - ref).abs().max()) <= 3 * float((theirs.double() - ref).abs().max())
    with pytest.warns(RuntimeWarning, match="round-off"):
        parasolve.odeint(f, y0, t, options={"scheme": "newton", "scheme_options": {"jacobian": "full"}})


def test_a_parallel_driver_past_its_time_budget_hands_back_to_the_stepper(monkeypatch):
    """After a switch the parallel driver starts no pass past the stepper's projected time; with no
    time at all (``PARALLEL_TIME = 0``) the stepper solves it, as ``scheme="sequential"`` would."""
    from parasolve.odeint import dispatch
    from parasolve.evaluators import CountingEvaluator
    from parasolve.odeint.adaptive import OverBudget, Settings, solve_adaptive
    from parasolve.drift import BatchedDrift, local_evaluator
    f = _sleepy(2e-4, 0.0)
    y0, t = torch.tensor([1.0, 0.5], dtype=D), torch.linspace(0.0, 60.0, 3, dtype=D)

    def rot(s, y):
        return torch.stack([y[..., 1], -y[..., 0]], -1) + 0 * f(s, y)

    counter = CountingEvaluator(local_evaluator)
    drift = BatchedDrift(rot, y0.shape, y0.dtype, y0.device, vectorized=True, evaluator=counter)
    with pytest.raises(OverBudget, match="projected time"):
        solve_adaptive(drift, counter, y0, t, DOPRI5, torch.full_like(y0, 1e-8), torch.full_like(y0, 1e-10),
                       Settings(scheme="newton", scheme_options={"jacobian": "full"}, deadline=time.perf_counter() - 1))
    monkeypatch.setattr(dispatch, "PARALLEL_TIME", 0.0)
    res = parasolve.odeint(rot, y0, t, rtol=1e-8, atol=1e-10, options={"vectorized": True}, full_output=True)
    seq = parasolve.odeint(rot, y0, t, rtol=1e-8, atol=1e-10, options={"vectorized": True, "scheme": "sequential"},
                           full_output=True)
    assert res.solution is None and torch.equal(res.ys, seq.ys)  # the stepper's answer, bit for bit
    # ... after a switch: the steps before it (at least 32, 6 rounds each) were taken twice
    assert res.stats.drift_rounds >= seq.stats.drift_rounds + 32 * 6


def test_fixed_step_adjoint_where_auto_picks_the_sequential_loop():
    """A drift whose batch costs as much as its points: ``auto`` steps a fixed grid sequentially,
    and ``odeint_adjoint`` takes the discrete adjoint of that loop (gradient of ``y' = a y``)."""
    sleepy = _sleepy(0.0, 2e-5)
    a = torch.tensor(-0.7, dtype=D, requires_grad=True)
    y0 = torch.tensor([1.3], dtype=D, requires_grad=True)
    t = torch.tensor([0.0, 2.0], dtype=D)

    def f(s, y):
        return a * y + 0 * sleepy(s, y)

    ys = parasolve.odeint_adjoint(f, y0, t, method="rk4", options={"step_size": 0.01, "vectorized": True},
                                  adjoint_params=(a,), full_output=True)
    assert ys.solution.method == "sequential"
    ga, gy0 = torch.autograd.grad(ys.ys[-1, 0], (a, y0))
    assert abs(float(ga) - 2.0 * float(ys.ys[-1, 0])) <= 1e-7 and abs(float(gy0) - math.exp(-1.4)) <= 1e-8


def test_the_cost_models_measuring_stays_within_its_share_of_the_sequential_time():
    """A drift whose call costs its points (sleep): the ladder's calls, counted in points, cost at
    most ``MEASURE_SHARE`` of the sequential time (each size priced linearly from the last, an
    upper bound for such a cost), and the answer is no."""
    import parasolve.costs as costs
    per_point, points = 1e-3, []

    def drift(t, y):
        points.append(y.shape[0])
        time.sleep(per_point * y.shape[0])
        return -y

    y0, t = torch.ones(2, dtype=D), torch.linspace(0.0, 1.0, 11, dtype=D)
    sequential_s = 1.0
    assert not costs.parallel_pays(drift, t, y0, 1000, 10, sequential_s, call_s=per_point)
    assert len(points) >= 2  # it measured before it said no
    assert sum(points) * per_point <= costs.MEASURE_SHARE * sequential_s
