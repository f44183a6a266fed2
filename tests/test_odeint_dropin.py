"""torchdiffeq drop-in features of parasolve.odeint, with torchdiffeq itself as the oracle: tuple
states, ``options["norm"]``, ``options["jump_t"]``, ``odeint_event`` and ``odeint_adjoint``'s
``adjoint_*`` keywords."""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq

import parasolve

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64


def oscillator(t, y):  # a tuple state: position (1,), velocity (1, 2)
    x, v = y
    return v.sum(-1), -x.unsqueeze(-1) * torch.tensor([1.0, 0.5], dtype=x.dtype) - 0.1 * v


TUPLE_Y0 = (torch.tensor([1.0], dtype=D), torch.tensor([[0.0, 0.3]], dtype=D))


# --------------------------------------------------------------------------- tuple states
@pytest.mark.parametrize("method, options", [("dopri5", None), ("rk4", {"step_size": 0.05})])
def test_tuple_state_answers_as_torchdiffeq(method, options):
    t = torch.tensor([0.0, 0.7, 2.0], dtype=D)
    ours = parasolve.odeint(oscillator, TUPLE_Y0, t, rtol=1e-9, atol=1e-11, method=method, options=options)
    ref = torchdiffeq.odeint(oscillator, TUPLE_Y0, t, rtol=1e-9, atol=1e-11, method=method, options=options)
    assert isinstance(ours, tuple) and len(ours) == 2
    full = parasolve.odeint(oscillator, TUPLE_Y0, t, rtol=1e-9, atol=1e-11, method=method, options=options,
                            full_output=True)
    assert "ys.shape=((3, 1), (3, 1, 2))" in repr(full) and torch.equal(full.ys[1], ours[1])
    for a, b, y0 in zip(ours, ref, TUPLE_Y0):
        assert a.shape == b.shape == (3, *y0.shape)
        assert float((a - b).abs().max()) < (1e-7 if method == "dopri5" else 1e-10)


def test_tuple_state_gradients_match_torchdiffeq():
    t = torch.tensor([0.0, 1.5], dtype=D)
    grads = []
    for odeint in (parasolve.odeint, torchdiffeq.odeint):
        y0 = tuple(p.clone().requires_grad_(True) for p in TUPLE_Y0)
        x, v = odeint(oscillator, y0, t, rtol=1e-10, atol=1e-12)
        (x[-1].sum() + (v[-1] ** 2).sum()).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in y0]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-6, atol=1e-8)


def test_tuple_default_norm_is_torchdiffeqs_mixed_norm():
    """For a tuple, the error test takes the largest of the parts' RMS norms (torchdiffeq's
    ``_mixed_norm``), so a tuple solve is at least as fine as the flat solve's RMS."""
    t = torch.tensor([0.0, 3.0], dtype=D)
    y0 = (torch.tensor([1.0], dtype=D), torch.zeros(8, dtype=D))  # one active part, eight idle ones
    f = lambda t, y: (-3 * y[0], 0 * y[1])  # noqa: E731
    tup = parasolve.odeint(f, y0, t, rtol=1e-5, atol=1e-7, full_output=True).stats.accepted_steps
    flat = parasolve.odeint(lambda t, y: torch.cat([-3 * y[:1], 0 * y[1:]]), torch.cat(y0), t, rtol=1e-5, atol=1e-7,
                            full_output=True).stats.accepted_steps
    assert tup > flat  # RMS over 9 entries dilutes the one error by 3; the mixed norm does not


@pytest.mark.parametrize("y0, f, exc, words", [
    ((torch.zeros(1, dtype=D), torch.zeros(1, dtype=torch.float32)), oscillator, ValueError, "dtype"),
    ((torch.zeros(1, dtype=D), [0.0]), oscillator, TypeError, "y0[1]"),
    ((torch.zeros(1, dtype=D), torch.zeros(1, dtype=D)), lambda t, y: y[0], TypeError, "tuple of 2"),
    ((torch.zeros(1, dtype=D), torch.zeros(2, dtype=D)), lambda t, y: (y[0], y[0]), ValueError, "part 1 of shape (1,)"),
])
def test_tuple_state_errors_name_the_part(y0, f, exc, words):
    with pytest.raises(exc) as info:
        parasolve.odeint(f, y0, torch.tensor([0.0, 1.0], dtype=D))
    assert words in str(info.value)


# --------------------------------------------------------------------------- options["norm"]
def linf(x):
    return x.abs().max()


def test_custom_norm_is_the_error_test_and_matches_torchdiffeq_accuracy():
    f = lambda t, y: torch.stack([y[1], -y[0] - 0.2 * y[1] ** 3])  # noqa: E731
    y0, t = torch.tensor([1.5, 0.0], dtype=D), torch.tensor([0.0, 4.0, 8.0], dtype=D)
    exact = torchdiffeq.odeint(f, y0, t, rtol=1e-12, atol=1e-14)
    parallel = {"scheme": "newton", "scheme_options": {"jacobian": "full"},  # the parallel driver on one fine
                "initial_steps": 2048, "coarsen": 0.0}                          # first grid, no coarsening pass
    res = parasolve.odeint(f, y0, t, rtol=1e-6, atol=1e-8, options={"norm": linf, **parallel}, full_output=True)
    plain = parasolve.odeint(f, y0, t, rtol=1e-6, atol=1e-8, options=parallel, full_output=True)
    theirs = torchdiffeq.odeint(f, y0, t, rtol=1e-6, atol=1e-8, options={"norm": linf})
    assert torch.equal(res.grid, plain.grid)  # the same first grid passes both tests here, so
    assert plain.max_ratio <= res.max_ratio <= math.sqrt(2) * plain.max_ratio <= 1  # RMS <= max <= sqrt(n) RMS
    assert float((res.ys - exact).abs().max()) <= 10 * float((theirs - exact).abs().max()) + 1e-9
    # a stricter norm on a coarse first grid: more steps, as a tighter tolerance would give
    coarse = {"initial_steps": 8}
    strict = parasolve.odeint(f, y0, t, rtol=1e-6, atol=1e-8, full_output=True,
                              options={**coarse, "norm": lambda x: 30 * x.pow(2).mean().sqrt()})
    loose = parasolve.odeint(f, y0, t, rtol=1e-6, atol=1e-8, full_output=True, options=coarse)
    assert strict.stats.accepted_steps > loose.stats.accepted_steps


def test_norm_must_return_one_number():
    with pytest.raises(ValueError, match="one number"):
        parasolve.odeint(lambda t, y: -y, torch.ones(2, dtype=D), torch.tensor([0.0, 1.0], dtype=D),
                         options={"norm": lambda x: x.abs()})
    with pytest.raises(TypeError, match="norm"):
        parasolve.odeint(lambda t, y: -y, torch.ones(2, dtype=D), torch.tensor([0.0, 1.0], dtype=D),
                         options={"norm": "rms"})


# --------------------------------------------------------------------------- options["jump_t"]
def switched(t, y):  # the drift jumps at t = 1: decay before, growth after
    return torch.where(t < 1.0, -y, 0.5 * y)


@pytest.mark.parametrize("reverse", [False, True])
def test_jump_t_stops_and_restarts_at_the_jump(reverse):
    t = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=D)
    exact = torch.tensor([1.0, math.exp(-0.5), math.exp(-1.0), math.exp(-1.0 + 0.5)], dtype=D)
    y0 = torch.ones(1, dtype=D)
    if reverse:
        t, exact, y0 = t.flip(0), (exact / exact[-1]).flip(0), torch.ones(1, dtype=D)
    opts = {"jump_t": torch.tensor([1.0])}
    res = parasolve.odeint(switched, y0, t, rtol=1e-9, atol=1e-12, options=opts, full_output=True)
    theirs = torchdiffeq.odeint(switched, y0, t, rtol=1e-9, atol=1e-12, options=opts)
    assert bool((res.grid == 1.0).any())  # the jump is a grid point, so no step straddles it
    assert float((res.ys[:, 0] - exact).abs().max()) < 1e-8
    assert float((res.ys - theirs).abs().max()) < 1e-7


def test_jump_t_saves_the_refinements_a_straddled_jump_costs():
    t = torch.tensor([0.0, 2.0], dtype=D)
    y0 = torch.ones(1, dtype=D)
    without = parasolve.odeint(switched, y0, t, rtol=1e-9, atol=1e-12, full_output=True)
    with_jump = parasolve.odeint(switched, y0, t, rtol=1e-9, atol=1e-12, options={"jump_t": [1.0]},
                                 full_output=True)
    assert float((with_jump.ys[-1, 0] - math.exp(-0.5)).abs()) < 1e-9
    assert with_jump.stats.rejected_steps == 0 < without.stats.rejected_steps  # no step is cut at the jump
    assert with_jump.stats.drift_rounds < without.stats.drift_rounds  # hence less sequential depth


def test_jump_t_is_for_adaptive_methods_and_must_be_times():
    y0, t = torch.ones(1, dtype=D), torch.tensor([0.0, 2.0], dtype=D)
    with pytest.raises(TypeError, match="adaptive"):
        parasolve.odeint(switched, y0, t, method="rk4", options={"jump_t": [1.0]})
    with pytest.raises(ValueError, match="finite"):
        parasolve.odeint(switched, y0, t, options={"jump_t": [float("nan")]})


# --------------------------------------------------------------------------- odeint_event
def ball(t, y):
    return torch.stack([y[1], -9.81 + 0 * y[1]])


def hits_floor(t, y):
    return y[0] + 1.0


def _event_both(y0, t0, **kwargs):
    out = []
    for lib in (parasolve, torchdiffeq):
        y = y0.clone().requires_grad_(True)
        t = t0.clone().requires_grad_(True)
        te, sol = lib.odeint_event(ball, y, t, event_fn=hits_floor, rtol=1e-9, atol=1e-11, **kwargs)
        (te + sol[-1, 1]).backward()
        out.append((te.detach(), sol.detach(), y.grad, t.grad))
    return out


@pytest.mark.parametrize("reverse_time", [False, True])
def test_event_time_state_and_gradients_match_torchdiffeq(reverse_time):
    y0 = torch.tensor([0.0, 5.0 if not reverse_time else -5.0], dtype=D)
    (te, sol, gy, gt), (te_r, sol_r, gy_r, gt_r) = _event_both(y0, torch.tensor(0.3, dtype=D),
                                                                reverse_time=reverse_time)
    # the closed form: 0.3 + (v + sqrt(v^2 + 2 g)) / g, with v = +-5
    v, g = 5.0, 9.81
    assert abs(float(te) - (0.3 + (1 if not reverse_time else -1) * (v + math.sqrt(v * v + 2 * g)) / g)) < 1e-8
    assert abs(float(te - te_r)) < 1e-8 and float((sol - sol_r).abs().max()) < 1e-7
    assert torch.allclose(gy, gy_r, atol=1e-7) and torch.allclose(gt, gt_r, atol=1e-7)


def test_event_gradient_wrt_parameters_matches_torchdiffeq():
    grads = []
    for lib in (parasolve, torchdiffeq):
        drag = torch.tensor(0.3, dtype=D, requires_grad=True)
        f = lambda t, y: torch.stack([y[1], -9.81 - drag * y[1]])  # noqa: E731
        extra = {"odeint_interface": parasolve.odeint_adjoint, "adjoint_params": (drag,)} if lib is parasolve else {}
        te, _ = lib.odeint_event(f, torch.tensor([0.0, 5.0], dtype=D), torch.tensor(0.0, dtype=D),
                                 event_fn=hits_floor, rtol=1e-9, atol=1e-11, **extra)
        te.backward()
        grads.append(float(drag.grad))
    assert grads[0] == pytest.approx(grads[1], rel=1e-5)


def test_event_with_several_outputs_and_a_tuple_state():
    """The first of several event outputs to cross zero stops the solve (torchdiffeq's combination)."""
    f = lambda t, y: (y[1], -torch.ones_like(y[0]))  # noqa: E731
    ev = lambda t, y: torch.stack([y[0][0] - 0.5, t - 10.0])  # noqa: E731  (the height crosses first)
    y0 = (torch.tensor([0.0], dtype=D), torch.tensor([1.5], dtype=D))
    ours = parasolve.odeint_event(f, y0, torch.tensor(0.0, dtype=D), event_fn=ev, rtol=1e-9, atol=1e-11)
    theirs = torchdiffeq.odeint_event(f, y0, torch.tensor(0.0, dtype=D), event_fn=ev, rtol=1e-9, atol=1e-11)
    assert float(ours[0]) == pytest.approx(1.5 - math.sqrt(1.5 ** 2 - 1.0), abs=1e-8)
    assert abs(float(ours[0] - theirs[0])) < 1e-8
    assert isinstance(ours[1], tuple) and ours[1][0].shape == theirs[1][0].shape == (2, 1)


def test_fixed_step_event_matches_torchdiffeq():
    kwargs = dict(event_fn=hits_floor, method="rk4", options={"step_size": 0.01})
    y0, t0 = torch.tensor([0.0, 5.0], dtype=D), torch.tensor(0.0, dtype=D)
    te, _ = parasolve.odeint_event(ball, y0, t0, **kwargs)
    te_r, _ = torchdiffeq.odeint_event(ball, y0, t0, **kwargs)
    exact = (5.0 + math.sqrt(25.0 + 2 * 9.81)) / 9.81
    # rk4 is exact on a parabola; torchdiffeq bisects its linear interpolant (error O(h^2)), parasolve
    # the cubic Hermite one (exact here) and solves up to the root
    assert abs(float(te_r) - exact) < 1e-5 and abs(float(te) - exact) < 1e-8


def test_event_with_a_vectorized_func():
    batched = lambda t, y: torch.stack([y[:, 1], -9.81 + 0 * y[:, 1]], -1)  # noqa: E731  (n,) times, (n, 2) states
    te, sol = parasolve.odeint_event(batched, torch.tensor([0.0, 5.0], dtype=D), torch.tensor(0.0, dtype=D),
                                     event_fn=hits_floor, rtol=1e-9, atol=1e-11, options={"vectorized": True})
    assert float(te) == pytest.approx((5.0 + math.sqrt(25.0 + 2 * 9.81)) / 9.81, abs=1e-8)
    assert float(sol[-1, 0]) == pytest.approx(-1.0, abs=1e-7)


def test_odeint_with_event_fn_is_odeint_event():
    t = torch.tensor([0.0, 1.0], dtype=D)
    te, sol = parasolve.odeint(ball, torch.tensor([0.0, 5.0], dtype=D), t, event_fn=hits_floor, rtol=1e-9, atol=1e-11)
    te_r, sol_r = torchdiffeq.odeint(ball, torch.tensor([0.0, 5.0], dtype=D), t, event_fn=hits_floor, rtol=1e-9,
                                     atol=1e-11)
    assert abs(float(te - te_r)) < 1e-8 and sol.shape == sol_r.shape == (2, 2)


def test_event_search_has_a_limit_and_typed_errors():
    never = lambda t, y: y[0] + 100.0  # noqa: E731
    with pytest.raises(parasolve.ConvergenceError, match="max_windows"):
        parasolve.odeint_event(lambda t, y: 0 * y, torch.ones(1, dtype=D), torch.tensor(0.0, dtype=D),
                               event_fn=never, max_windows=2)
    with pytest.raises(ValueError, match="step_size"):
        parasolve.odeint_event(ball, torch.ones(2, dtype=D), torch.tensor(0.0, dtype=D), event_fn=hits_floor,
                               method="rk4")
    with pytest.raises(TypeError, match="odeint_interface"):
        parasolve.odeint_event(ball, torch.ones(2, dtype=D), torch.tensor(0.0, dtype=D), event_fn=hits_floor,
                               odeint_interface=torchdiffeq.odeint)


# --------------------------------------------------------------------------- odeint_adjoint's keywords
class _Decay(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(-0.7, dtype=D))

    def forward(self, t, y):
        return self.a * y


def test_adjoint_keywords_are_accepted_and_the_gradient_matches_torchdiffeq():
    t = torch.tensor([0.0, 2.0], dtype=D)
    kwargs = dict(rtol=1e-9, atol=1e-11, adjoint_rtol=1e-9, adjoint_atol=1e-11, adjoint_method="dopri5",
                  adjoint_options={"norm": "seminorm"})
    grads = []
    for odeint in (parasolve.odeint_adjoint, torchdiffeq.odeint_adjoint):
        f = _Decay()
        y0 = torch.tensor([1.3], dtype=D, requires_grad=True)
        odeint(f, y0, t, **kwargs)[-1].sum().backward()
        grads.append(torch.stack([y0.grad[0], f.a.grad]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-7)


def test_adjoint_rtol_is_the_backward_solves_tolerance():
    f, t = _Decay(), torch.tensor([0.0, 2.0], dtype=D)
    y0 = torch.tensor([1.3, 0.2], dtype=D, requires_grad=True)
    res = parasolve.odeint_adjoint(f, y0, t, rtol=1e-8, adjoint_rtol=1e-5, adjoint_options={"method": "picard"},
                                   full_output=True)
    res.ys[-1].sum().backward()
    assert res.solution.backward.tol == 1e-5 and res.solution.backward.method == "picard"


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"adjoint_method": "rk4"}, ValueError, "adjoint_method"),
    ({"adjoint_method": "scan"}, ValueError, "adjoint_options={'method': 'scan'}"),
    ({"adjoint_options": {"step_size": 0.1}}, TypeError, "step_size"),
    ({"adjoint_rtol": -1.0}, ValueError, "adjoint_rtol"),
    ({"adjoint_rtol": 1e-6, "adjoint_options": {"tol": 1e-3}}, ValueError, "give one"),
])
def test_adjoint_keywords_refuse_what_the_discrete_adjoint_cannot_mean(kwargs, exc, words):
    with pytest.raises(exc) as info:
        parasolve.odeint_adjoint(_Decay(), torch.ones(1, dtype=D), torch.tensor([0.0, 1.0], dtype=D), **kwargs)
    assert words in str(info.value)


def test_odeint_adjoint_with_event_fn_keeps_its_adjoint_keywords():
    """A generator of parameters is read once and reaches the event search; adjoint_rtol still applies."""
    f = _Decay()
    event = lambda t, y: y[0] - 0.5  # noqa: E731   y = e^{a t}: the event at t = ln(0.5) / a
    te, _ = parasolve.odeint_adjoint(f, torch.ones(1, dtype=D), torch.tensor([0.0, 1.0], dtype=D), event_fn=event,
                                     rtol=1e-9, atol=1e-11, adjoint_params=f.parameters(), adjoint_rtol=1e-9)
    te.backward()
    a = float(f.a)
    assert float(te) == pytest.approx(math.log(0.5) / a, rel=1e-8)
    assert float(f.a.grad) == pytest.approx(-math.log(0.5) / a ** 2, rel=1e-6)
    with pytest.raises(ValueError, match="adjoint_method"):
        parasolve.odeint_adjoint(f, torch.ones(1, dtype=D), torch.tensor([0.0, 1.0], dtype=D), event_fn=event,
                                 adjoint_method="euler")
