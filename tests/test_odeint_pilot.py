"""The parallel driver's pilot start (parasolve/odeint/pilot.py): a coarse sequential solve gives the
first grid and guess. Oracles: the error test still holds and the answer matches a tight reference as
torchdiffeq's does; the pilot's grid holds the output times exactly and its guess interpolates the
pilot's states; the sweeps it saves are counted, not timed."""

import importlib
import math
import time

import pytest
import torch
import torchdiffeq

import parasolve

pilot = importlib.import_module("parasolve.odeint.pilot")

D = torch.float64
NEWTON = {"scheme": "newton", "scheme_options": {"jacobian": "full"}}


def kepler(t, y):
    q, p = y[..., :2], y[..., 2:]
    return torch.cat([p, -q / (q * q).sum(-1, keepdim=True) ** 1.5], -1)


def kepler_start(e=0.5):
    return torch.tensor([1 - e, 0.0, 0.0, math.sqrt((1 + e) / (1 - e))], dtype=D)


def max_error(a, b):
    return float((a - b).abs().max())


@pytest.mark.parametrize("periods", [2, 4])
def test_pilot_start_cuts_sweeps_and_keeps_the_error_test(periods):
    y0, t = kepler_start(), torch.linspace(0.0, 2 * math.pi * periods, 5, dtype=D)
    ref = torchdiffeq.odeint(kepler, y0, t, rtol=1e-12, atol=1e-14, method="dopri8")
    theirs = torchdiffeq.odeint(kepler, y0, t, rtol=1e-8, atol=1e-11)
    runs = {p: parasolve.odeint(kepler, y0, t, rtol=1e-8, atol=1e-11, options={**NEWTON, "pilot": p},
                                full_output=True) for p in (True, False)}
    with_pilot, without = runs[True], runs[False]
    assert with_pilot.stats.pilot is not None and without.stats.pilot is None
    for res in runs.values():
        assert res.max_ratio <= 1  # every step of the final grid passes its error test
        assert max_error(res.ys, ref) <= 3 * max_error(theirs, ref)
    # from the pilot's guess Newton needs a fraction of the sweeps and evaluations
    assert 2 * with_pilot.stats.sweeps <= without.stats.sweeps
    assert with_pilot.stats.nfe < without.stats.nfe


def test_pilot_grid_holds_the_outputs_and_its_guess_interpolates_the_pilot():
    y0 = torch.tensor([1.0, 0.5], dtype=D)
    t = torch.tensor([0.0, 0.7, 3.0, 10.0], dtype=D)
    a = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], dtype=D)  # a damped rotation: y(t) = expm(a t) y0
    res = parasolve.odeint(lambda s, y: y @ a.T, y0, t, rtol=1e-9, atol=1e-12, options={**NEWTON, "pilot": True},
                           full_output=True)
    exact = torch.stack([torch.linalg.matrix_exp(a * float(s)) @ y0 for s in t])
    assert max_error(res.ys, exact) <= 1e-7
    # the pilot ran at 10^4 times looser tolerances, so about 10^(4/5) ~ 6 times fewer steps
    steps, pilot_steps = res.stats.accepted_steps, res.stats.pilot.steps
    assert 3 * pilot_steps <= steps <= 12 * pilot_steps
    assert all(bool((res.grid == s).any()) for s in t)  # output times are grid points, bit for bit


def test_pilot_start_direct():
    dispatch = importlib.import_module("parasolve.odeint.dispatch")
    adaptive = importlib.import_module("parasolve.odeint.adaptive")
    stepper = importlib.import_module("parasolve.odeint.stepper")
    tableaus = importlib.import_module("parasolve.odeint.tableaus")
    from parasolve.drift import BatchedDrift
    from parasolve.evaluators.counting import CountingEvaluator

    f = lambda s, y: -y  # noqa: E731
    y0, t = torch.tensor([1.0, 2.0], dtype=D), torch.tensor([0.0, 1.5, 4.0], dtype=D)
    counter = CountingEvaluator()
    drift = BatchedDrift(f, y0.shape, D, y0.device, evaluator=counter)
    call = stepper.single_call(f, False, counter)
    rtol, atol = torch.tensor(1e-8, dtype=D), torch.tensor(1e-10, dtype=D)
    grid, guess, record = pilot.pilot_start(drift, call, counter, y0, t, tableaus.EMBEDDED["dopri5"], rtol, atol,
                                            adaptive.Settings())
    assert grid[0] == t[0] and grid[-1] == t[-1] and bool((grid[1:] > grid[:-1]).all())
    assert torch.equal(guess[0], y0)
    # the guess is the pilot's solution at rtol 1e-4, interpolated: close to exp(-t) y0, not exact
    err = max_error(guess, torch.exp(-grid)[:, None] * y0)
    assert 1e-12 < err <= 1e-3
    assert record.sweeps == 0 and record.drift_rounds == counter.calls and record.nfe == counter.rows
    # "auto"'s budget: a pilot that runs past it is dropped, and the driver starts without it
    assert pilot.pilot_start(drift, call, counter, y0, t, tableaus.EMBEDDED["dopri5"], rtol, atol,
                             adaptive.Settings(), budget_s=0.0) is None
    # tolerances already loose: no pilot (it would take most of the sequential solve's steps)
    assert pilot.pilot_start(drift, call, counter, y0, t, tableaus.EMBEDDED["dopri5"], 1e3 * rtol, atol,
                             adaptive.Settings()) is None
    assert dispatch.pilot_start is pilot.pilot_start


@pytest.mark.parametrize("rtol, factor", [(1e-3, 0.0), (1e-4, 0.0), (1e-7, 0.0), (1e-8, 1e4), (1e-12, 1e4)])
def test_pilot_factor(rtol, factor):
    assert pilot.pilot_factor(rtol) == pytest.approx(factor)


def test_backward_in_time_from_the_pilot():
    y0, t = kepler_start(), torch.linspace(2 * math.pi, 0.0, 4, dtype=D)
    res = parasolve.odeint(kepler, y0, t, rtol=1e-8, atol=1e-11, options=NEWTON, full_output=True)
    ref = torchdiffeq.odeint(kepler, y0, t, rtol=1e-12, atol=1e-14, method="dopri8")
    theirs = torchdiffeq.odeint(kepler, y0, t, rtol=1e-8, atol=1e-11)
    assert res.stats.pilot is not None and res.max_ratio <= 1
    assert max_error(res.ys, ref) <= 3 * max_error(theirs, ref)


def test_no_pilot_where_the_first_grid_is_given():
    y0, t = kepler_start(), torch.linspace(0.0, 2 * math.pi, 3, dtype=D)
    res = parasolve.odeint(kepler, y0, t, rtol=1e-8, atol=1e-11, options={**NEWTON, "initial_steps": 64},
                           full_output=True)
    assert res.stats.pilot is None and res.stats.history[0].steps == 64


@pytest.mark.parametrize("bad", ["yes", 1, 0.5])
def test_bad_pilot_option_is_a_typed_error(bad):
    with pytest.raises(TypeError, match=r"options\['pilot'\].*True, False or None"):
        parasolve.odeint(kepler, kepler_start(), torch.tensor([0.0, 1.0], dtype=D), options={"pilot": bad})


def test_auto_skips_the_pilot_where_a_call_costs_the_same_for_any_batch():
    """A drift whose every call costs the same 2 ms whatever its batch (a GPU's launch-bound
    calls): parallel sweeps pay, and the pilot's one-state calls do not (they would cost more
    than the sweeps they save)."""
    def flat(t, y):
        time.sleep(0.002)
        return kepler(t, y)

    y0, t = kepler_start(), torch.linspace(0.0, 2 * math.pi * 3, 4, dtype=D)
    res = parasolve.odeint(flat, y0, t, rtol=1e-8, atol=1e-11, full_output=True)
    assert res.stats.sweeps > 0  # auto switched to parallel sweeps
    assert res.stats.pilot is None


def test_the_deadline_stops_the_parallel_driver_within_a_sweep():
    """"auto"'s bound on a wrong switch: past ``settings.deadline`` the driver stops after the sweep
    it is in (a pass of a long solve can take many), not at the end of the pass."""
    adaptive = importlib.import_module("parasolve.odeint.adaptive")
    tableaus = importlib.import_module("parasolve.odeint.tableaus")
    from parasolve.drift import BatchedDrift
    from parasolve.evaluators.counting import CountingEvaluator

    calls = [0]

    def slow(t, y):  # vectorized Van der Pol: every batched call takes 20 ms
        calls[0] += 1
        time.sleep(0.02)
        return torch.stack([y[..., 1], (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)

    y0, t = torch.tensor([2.0, 0.0], dtype=D), torch.tensor([0.0, 20.0], dtype=D)
    counter = CountingEvaluator()
    drift = BatchedDrift(slow, y0.shape, D, y0.device, vectorized=True, evaluator=counter)
    # Picard's front crosses 20 time units in tens of sweeps: one pass takes hundreds of calls
    settings = adaptive.Settings(scheme="picard", pilot=False)
    settings.started = time.perf_counter()
    settings.deadline = settings.started + 0.15  # past in the first pass's first or second sweep
    with pytest.raises(adaptive.OverBudget, match="pass 1"):
        adaptive.solve_adaptive(drift, counter, y0, t, tableaus.EMBEDDED["dopri5"], torch.tensor(1e-6, dtype=D),
                                torch.tensor(1e-9, dtype=D), settings)
    # the first step's choice (2 calls) and the row check, then the sweep that crossed the deadline
    # (6 rounds) and the one before it at most
    assert 3 + 6 <= calls[0] <= 3 + 2 * 6
