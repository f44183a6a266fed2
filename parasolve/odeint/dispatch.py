"""Which solver answers an ``odeint`` call: the sequential stepper, the parallel driver, or a
fixed-step method stepped or solved in parallel -- ``options["scheme"] = "auto"``'s decisions
(docs/odeint.md, "Sequential or parallel: the default auto"; the cost model: :mod:`parasolve.costs`)."""

from __future__ import annotations

import math
import time

import torch

from .. import _checks as checks
from .._api import solve
from ..costs import NEWTON_FULL_OVERHEAD, SWEEP_OVERHEAD, expected_sweeps, parallel_pays, pays_on_grid
from ..errors import ConvergenceError, NonFiniteError
from ..evaluators.protocol import local_evaluator
from ..schemes.choice import FULL_NEWTON_SIZE, auto_scheme
from ..schemes.jacobians import independent_rows
from ..steps import STEPS
from . import grids
from .adaptive import roundoff_bound, roundoff_floor, solve_adaptive
from .pilot import BUDGET_FACTOR, SWEEPS_FROM_PILOT, pilot_factor, pilot_savings, pilot_start, pilot_steps, sweeps_from_constant
from .result import OdeintResult, OdeintStats, PassRecord
from .stepper import Handover, march_fixed, single_call, solve_stepwise
from .stiff import StiffSettings, solve_stiff
from .tableaus import EMBEDDED

#: torchdiffeq's fixed-step names -> parasolve step maps (torchdiffeq's ``rk4`` is the 3/8 rule).
FIXED = {"euler": "euler", "midpoint": "midpoint", "heun2": "heun", "heun3": "heun3", "rk4": "rk38"}
#: Their options: the step grid and the output interpolation.
FIXED_OPTIONS = {"step_size", "grid_points", "grid_constructor", "interp"}


def choose_and_solve(func, drift, counter, y0, t, rtol, atol, method, options, settings, stepwise, forced,
                     adjoint, stiff_exit: bool = False) -> OdeintResult:
    """The sequential stepper (which ``"auto"`` may switch to parallel sweeps), the parallel driver,
    or a fixed-step method. ``stiff_exit`` (``method="auto"``, which took an explicit pair): where
    the stepper finds the problem stiff later on, Radau solves the rest (:func:`_finish_stiff`)."""
    call = single_call(func, drift.mode == "vectorized", counter)
    if stepwise:
        first_step = settings.first_step
        switch = None if forced else _switch_rule(drift, y0, t, EMBEDDED[method], rtol, atol, settings)
        stiff_exit = stiff_exit and not _adjoint_wanted(adjoint, y0, t, settings)
        result = _solve_stepwise(call, drift, counter, y0, t, EMBEDDED[method], rtol, atol, settings, adjoint,
                                 switch, stiff_exit)
        if result is None:  # "auto" switched to parallel sweeps; if they fail, step on to the end
            try:
                start = None if not settings.pilot else pilot_start(
                    drift, call, counter, y0, t, EMBEDDED[method], rtol, atol, settings, settings.pilot_budget)
                result = solve_adaptive(drift, counter, y0, t, EMBEDDED[method], rtol, atol, settings, start)
            except (ConvergenceError, NonFiniteError):
                settings.first_step = first_step
                result = _solve_stepwise(call, drift, counter, y0, t, EMBEDDED[method], rtol, atol, settings,
                                         adjoint, None, stiff_exit)
        if isinstance(result, Handover):
            result = _finish_stiff(drift, counter, t, result, rtol, atol, settings, method)
        return result
    if method in EMBEDDED:  # a parallel scheme asked for: from the pilot's start, unless options["pilot"] is
        # False, or not given and the first grid is (first_step, initial_steps) or an evaluator is (the
        # pilot calls func itself, one state at a time)
        wanted = settings.pilot if settings.pilot is not None else counter.inner is local_evaluator and not (
            {"first_step", "initial_steps"} & set(options))
        start = pilot_start(drift, call, counter, y0, t, EMBEDDED[method], rtol, atol, settings) if wanted else None
        return solve_adaptive(drift, counter, y0, t, EMBEDDED[method], rtol, atol, settings, start)
    return _solve_fixed(drift, counter, call, y0, t, method, rtol, atol, settings,
                        {k: v for k, v in options.items() if k in FIXED_OPTIONS}, adjoint)


def default_scheme(options: dict, y0: torch.Tensor, keep_auto: bool) -> None:
    """Fill in ``options["scheme"]`` when not given. With ``keep_auto`` (fixed-step methods, the
    default evaluator) ``"auto"`` is left to ``solve``, whose cost model may pick the sequential
    loop; otherwise it becomes the parallel scheme ``solve``'s ``method="auto"`` takes (:func:`parasolve.schemes.choice.auto_scheme`;
    every odeint method is a one-step map); ``scheme_options`` given alone refine it."""
    if "scheme" not in options or options["scheme"] == "auto":
        if keep_auto and options.get("scheme_options") is None:
            options["scheme"] = "auto"
            return
        options["scheme"], options["scheme_options"] = auto_scheme(y0, False, options.get("scheme_options"))


def starts_stepwise(options: dict, evaluator) -> bool:
    """Whether an adaptive method starts with the sequential stepper (:mod:`.stepper`): asked for
    with ``options["scheme"] = "sequential"`` (then it never switches), or by ``"auto"`` (the
    default, with the default evaluator and no ``scheme_options``), which may switch to parallel
    sweeps (:func:`_switch_rule`)."""
    scheme = options.get("scheme", "auto")
    if isinstance(scheme, str) and scheme == "sequential":
        return True
    return isinstance(scheme, str) and scheme == "auto" and evaluator is None \
        and options.get("scheme_options") is None


#: ``"auto"`` keeps stepping sequentially while fewer steps than this are projected to remain.
MIN_PARALLEL_STEPS = 256
#: ... or while the steps are limited by stability rather than accuracy (``|h lambda|`` estimated
#: above this; the explicit pairs' limits on the negative real axis are 2-3.3): a stiff problem,
#: whose explicit steps parallel sweeps would not make fewer.
STIFFNESS_LIMIT = 1.5
#: After a switch, the parallel driver starts no pass later than this times the stepper's projected
#: remaining time; past it the stepper solves the problem after all (a bounded loss where the
#: prediction was wrong).
PARALLEL_TIME = 1.0
#: ... and expects the parallel driver to take this many passes (grid refinements).
EXPECTED_PASSES = 2


def _switch_rule(drift, y0, t, method, rtol, atol, settings):
    """``"auto"``'s question to the stepper: do parallel sweeps over the whole span, on a first
    grid with the stepper's current step length, beat the sequential steps projected to remain
    (:func:`parasolve.costs.parallel_pays`, measured on the batch that grid's window makes)? Where
    a pilot may start them (``pilot.py``), the sweeps expected are fewer and the pilot's
    sequential steps are added to their price (its step count projected as the stepper's). It is
    taken where it costs less than the sweeps it saves (``pilot.pilot_savings``), which both grow
    with the projected steps, so a projection that is off errs on both sides alike; it runs with
    a few times that saving as its budget, past which the driver starts without it.
    Where a switch was wrong, the parallel driver stops at the stepper's projected time,
    re-projected on each pass's grid, and the stepper solves the problem after all."""
    span = float((t[-1] - t[0]).abs())

    def switch(fraction, h, steps, rounds, seconds, stiffness):
        remaining = steps * (1 - fraction) / fraction
        if remaining < MIN_PARALLEL_STEPS or stiffness > STIFFNESS_LIMIT or roundoff_bound(rtol, atol, y0):
            return False
        n = max(2, math.ceil(span / h))
        window = min(n, settings.window or n)
        blocks = y0.shape[0] if y0.numel() > FULL_NEWTON_SIZE >= y0[0].numel() and \
            independent_rows(drift, t, y0.detach()) else 1
        name, scheme_options = auto_scheme(y0, False, None, window, blocks)
        points = 1 + y0.numel() // blocks if name == "newton" else 1
        sequential_s, step_s, total = seconds * remaining / steps, seconds / steps, steps + remaining
        # Newton from a constant guess: its front crosses the span a stretch of time a sweep
        par_rounds = method.stages * max(EXPECTED_PASSES * expected_sweeps(name, n, window),
                                         sweeps_from_constant(total, rtol, method) if name == "newton" else 0)
        pilot = settings.pilot is not False and name == "newton" and pilot_factor(rtol) > 0
        grid = torch.linspace(float(t[0]), float(t[-1]), 2, dtype=t.dtype, device=t.device)
        measured, overhead = {}, NEWTON_FULL_OVERHEAD if name == "newton" else SWEEP_OVERHEAD
        if pilot:  # the pilot's steps, then a few sweeps: the plan asked about first, the cheaper one
            pilot_s, pilot_rounds = step_s * pilot_steps(total, method), SWEEPS_FROM_PILOT * method.stages
            if not parallel_pays(drift, grid, y0.detach(), window * points, pilot_rounds, sequential_s - pilot_s,
                                 call_s=step_s / method.stages, record=measured, overhead=overhead):
                return False
            if settings.pilot is None:  # taken where it costs less than the sweeps it saves, and so budgeted
                saving = pilot_savings(drift, grid, y0, window * points, max(par_rounds - pilot_rounds, 0),
                                       step_s / method.stages)
                pilot, settings.pilot_budget = pilot_s < saving, BUDGET_FACTOR * saving
        if not pilot and not parallel_pays(drift, grid, y0.detach(), window * points, par_rounds, sequential_s,
                                           call_s=step_s / method.stages, record=measured, overhead=overhead):
            return False
        settings.pilot = pilot
        settings.scheme, settings.scheme_options = name, scheme_options
        if settings.first_step is None:
            settings.first_step = h
        # The parallel driver stops at the time the stepper was projected to need, re-projected on
        # each pass's grid (a projection from the first steps can be far off).
        settings.started = time.perf_counter()
        settings.deadline = settings.started + PARALLEL_TIME * seconds * remaining / steps
        settings.step_s = PARALLEL_TIME * step_s
        return True

    return switch


def _solve_stepwise(func_call, drift, counter, y0, t, method, rtol, atol, settings, adjoint, switch,
                    stiff_exit: bool = False):
    """The sequential stepper's answer (``None`` if ``switch`` stopped it, a :class:`Handover` if
    ``stiff_exit`` and the problem became stiff); for ``odeint_adjoint``
    under grad mode, the grid it found (with the output times added) solved again by ``solve``'s
    sequential loop, whose gradient is the discrete adjoint's (memory independent of the steps, as
    torchdiffeq's adjoint)."""
    differentiable = _adjoint_wanted(adjoint, y0, t, settings)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not adjoint):
        done = solve_stepwise(func_call, y0, t, method, rtol, atol, settings, switch, stiff_exit)
    if done is None or isinstance(done, Handover):
        return done
    ys, grid, rejected, max_ratio, states = done.ys, done.grid, done.rejected, done.worst, done.states
    n = grid.shape[0] - 1
    stats = OdeintStats(drift_rounds=counter.calls, nfe=counter.rows, accepted_steps=n, rejected_steps=rejected,
                        passes=1)
    sol = None
    if differentiable:
        grid = grids.merge(grid, t)
        sol = solve(drift, y0, grid, method="sequential", step=method, vectorized=True, **(settings.extra or {}))
        ys, states = sol.ys[grids.positions(grid, t)], sol.ys
        stats.drift_rounds, stats.nfe = counter.calls, counter.rows
    stats.history.append(PassRecord(n, 0, stats.drift_rounds, stats.nfe, rejected, float("nan")))
    return OdeintResult(ys=ys, t=t, grid=grid, solution=sol, stats=stats, method=method.name, max_ratio=max_ratio,
                        states=states)


def _finish_stiff(drift, counter, t, handover: Handover, rtol, atol, settings, method: str) -> OdeintResult:
    """The explicit stepper's outputs up to where it found the problem stiff, then
    ``odeint(method="radau")`` from the state it reached to the remaining output times."""
    rest_t = torch.cat([handover.time.reshape(1), t[handover.next_out:]])
    rest = solve_stiff(drift, counter, handover.y, rest_t, "radau", rtol, atol, StiffSettings(extra=settings.extra))
    ys = torch.cat([torch.stack(handover.out), rest.ys[1:]])
    direction = 1.0 if float(t[-1] - t[0]) > 0 else -1.0
    before = t[0] + direction * torch.tensor(handover.steps, dtype=torch.float64).to(t.device, t.dtype)
    grid = torch.cat([before, rest.grid[1:]])
    explicit = len(handover.steps) - 1
    stats = OdeintStats(sweeps=rest.stats.sweeps, drift_rounds=counter.calls, nfe=counter.rows,
                        accepted_steps=explicit + rest.stats.accepted_steps,
                        rejected_steps=handover.rejected + rest.stats.rejected_steps, passes=1 + rest.stats.passes)
    stats.history = [PassRecord(explicit, 0, 0, 0, handover.rejected, handover.worst)] + rest.stats.history
    return OdeintResult(ys=ys, t=t, grid=grid, solution=None, stats=stats, method=f"{method}+radau",
                        max_ratio=max(handover.worst, rest.max_ratio))


def _solve_fixed(drift, counter, call, y0, t, method, rtol, atol, settings, fixed, adjoint) -> OdeintResult:
    """A fixed-step method on its step grid, outputs interpolated as torchdiffeq does: stepped one
    step after another with ``func`` called directly (``scheme="sequential"``, or ``"auto"`` where
    the cost model says parallel sweeps would not pay, :func:`parasolve.costs.pays_on_grid`), else
    one ``solve`` with the parallel scheme."""
    grid = _step_grid(drift, y0, t, fixed)
    n = grid.shape[0] - 1
    step = STEPS[FIXED[method]]
    scheme, scheme_options = settings.scheme, settings.scheme_options
    if isinstance(scheme, str) and scheme == "auto":
        window = min(settings.window or n, n)
        scheme, scheme_options = auto_scheme(y0, False, scheme_options, window)
        if not pays_on_grid(drift, step, grid, y0, scheme, scheme_options, window,
                            step=lambda g, y: march_fixed(call, y, g[:2], step)):
            scheme, scheme_options = "sequential", None
    sol = None
    if isinstance(scheme, str) and scheme == "sequential" and not _adjoint_wanted(adjoint, y0, t, settings):
        on_grid = march_fixed(call, y0, grid, step)
    else:
        sol = solve(drift, y0, grid, method=scheme, step=step, window=settings.window,
                    tol=settings.tol if settings.tol is not None else roundoff_floor(y0.detach().abs(), n),
                    options=scheme_options, vectorized=True, **(settings.extra or {}))
        on_grid = sol.ys
    ys = _interpolate(drift, grid, on_grid, t, fixed.get("interp", "linear"))
    sweeps = 0 if sol is None else sol.stats.iterations
    stats = OdeintStats(sweeps=sweeps, drift_rounds=counter.calls, nfe=counter.rows, accepted_steps=n, passes=1)
    stats.history.append(PassRecord(n, sweeps, counter.calls, counter.rows, 0, float("nan")))
    return OdeintResult(ys=ys, t=t, grid=grid, solution=sol, stats=stats, method=method, states=on_grid)


def _adjoint_wanted(adjoint: bool, y0, t, settings) -> bool:
    """``odeint_adjoint`` under grad mode with something to differentiate: the gradient then comes
    from ``solve``'s discrete adjoint, not from autograd through the steps."""
    params = (settings.extra or {}).get("adjoint_params", ())
    return adjoint and torch.is_grad_enabled() and (
        y0.requires_grad or t.requires_grad or any(p.requires_grad for p in params))


def _step_grid(drift, y0, t, fixed) -> torch.Tensor:
    if "step_size" in fixed:  # torchdiffeq's construction, mirrored for decreasing t
        h = fixed["step_size"]
        direction = 1.0 if float(t[-1] - t[0]) > 0 else -1.0
        start, end = direction * t[0], direction * t[-1]
        count = int(torch.ceil((end - start) / h + 1).item())
        grid = torch.arange(0, count, dtype=t.dtype, device=t.device) * h + start
        grid[-1] = end
        return checks.check_grid(direction * grid, y0)
    if "grid_constructor" in fixed:
        grid = checks.check_grid(fixed["grid_constructor"](drift.f, y0, t), y0)
    elif "grid_points" in fixed:
        grid = checks.check_grid(fixed["grid_points"], y0)
    else:
        return t
    if grid[0] != t[0] or grid[-1] != t[-1]:
        raise ValueError(f"The step grid must start at t[0] = {float(t[0]):g} and end at t[-1] = "
                         f"{float(t[-1]):g}; got [{float(grid[0]):g}, {float(grid[-1]):g}].")
    if (grid[-1] - grid[0]) * (t[-1] - t[0]) < 0:
        raise ValueError("The step grid must run in the direction of `t`.")
    return grid


def _interpolate(drift, grid, ys, t, interp) -> torch.Tensor:
    """``ys`` on ``grid`` at the output times: exact at grid points, else linear (torchdiffeq's
    default) or cubic Hermite with the drift at the step ends (one more batched drift round)."""
    if grid is t:
        return ys
    if interp == "linear":
        direction = 1.0 if float(grid[-1] - grid[0]) > 0 else -1.0
        s = direction * (grid - grid[0]).double().cpu()
        q = direction * (t - grid[0]).double().cpu()
        i = (torch.searchsorted(s, q) - 1).clamp(0, grid.shape[0] - 2)  # the step (s_i, s_{i+1}] holding q
        theta = ((q - s[i]) / (s[i + 1] - s[i])).to(ys.device, ys.dtype).reshape(-1, *([1] * (ys.dim() - 1)))
        out = ys[i] + theta * (ys[i + 1] - ys[i])
        at_end = (q == s[i + 1]).to(ys.device)
        out[at_end] = ys[i + 1][at_end]
        out[0] = ys[0]
        return out
    f = drift(grid, ys)
    return grids.hermite(grid, ys, f[:-1], f[1:], t)
