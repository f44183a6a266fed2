"""The sequential adaptive solver: one embedded Runge–Kutta step after another, as torchdiffeq steps.

``odeint``'s answer where parallel sweeps would not pay (``options["scheme"] = "sequential"``, or
what ``"auto"`` picks when the drift's cost grows with its batch, :mod:`.cost`): the same pair, the
same error norm and starting step as the parallel driver, torchdiffeq's step-size controller
(a passed step never shrinks the next one), the stages of a step reusing the last one's end slope
(first same as last), and the answer at the output times from the step's dense output (the
quartic through the step's ends, end slopes and midpoint estimate where the pair has one, else
the cubic Hermite). The steps do not stop at the output times, so the step count is the
controller's alone.

The user's ``func`` is called on one state at a time, exactly as torchdiffeq calls it, without
the batching wrapper; gradients flow through the steps by autograd (what torchdiffeq's
``odeint`` does), and the grid is also returned for a solve that wants the discrete adjoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import ConvergenceError, NonFiniteError
from ..steps import rk_stages
from . import grids
from .tableaus import EmbeddedRK, rms_ratio


def single_call(func, vectorized: bool, counter):
    """``func`` as a one-state call ``f(t, y)`` (``t`` 0-dim), counted as one round and one evaluation."""
    def call(t, y):
        counter.count(1)
        return func(t.reshape(1), y[None])[0] if vectorized else func(t, y)
    return call


def check_output(out, y0: torch.Tensor) -> torch.Tensor:
    """The first call's output checked: a tensor of ``y0``'s shape, dtype and device."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"`func` must return a torch.Tensor; got {type(out).__name__}.")
    if out.shape != y0.shape or out.dtype != y0.dtype or out.device != y0.device:
        raise ValueError(f"`func` must return y's shape, dtype and device {tuple(y0.shape)}, {y0.dtype}, "
                         f"{y0.device}; got {tuple(out.shape)}, {out.dtype}, {out.device}.")
    return out


#: ``switch`` is asked after these many accepted steps, and after every fourfold more.
FIRST_CHECK = 32
#: Hairer's stiffness test (DOPRI5): a step with ``|h lambda|`` estimated above this is at the
#: explicit pair's stability limit; this many such steps, without ``NONSTIFF_STEPS`` below it in
#: a row between them, mean the problem has become stiff. Tested every ``STIFF_EVERY`` accepted
#: steps, and at every step once one was over.
STIFF_LIMIT, STIFF_STEPS, NONSTIFF_STEPS, STIFF_EVERY = 3.25, 15, 6, 8


class Stepped(NamedTuple):
    """The stepper's answer: the solution at the output times, the accepted steps' grid, the count of
    rejected steps, the largest accepted error ratio, and -- with ``settings.keep_states`` -- the
    states on the grid and every accepted step's error ratio (else ``None``)."""

    ys: torch.Tensor
    grid: torch.Tensor
    rejected: int
    worst: float
    states: torch.Tensor | None
    ratios: list | None


@dataclass
class Handover:
    """Where the stepper stopped because the problem became stiff: the time and state reached,
    the outputs so far (``t[:next_out]``), the accepted steps' positions (distances from ``t[0]``),
    the rejected count and the largest accepted error ratio."""

    time: torch.Tensor
    y: torch.Tensor
    out: list
    next_out: int
    steps: list
    rejected: int
    worst: float


def solve_stepwise(call, y0: torch.Tensor, t: torch.Tensor, method: EmbeddedRK, rtol, atol, settings,
                   switch=None, stiff_exit: bool = False, deadline: float | None = None):
    """The solution (a :class:`Stepped`); or ``None`` when ``switch`` says so, or when a step
    ends after ``deadline`` (a ``time.perf_counter()`` value: a budgeted pilot, :mod:`.pilot`);
    or, with ``stiff_exit``, a :class:`Handover` when Hairer's stiffness test (:data:`STIFF_LIMIT`)
    finds the problem stiff (the caller goes on with an implicit method from there).

    ``settings``: the driver's :class:`~parasolve.odeint.adaptive.Settings` (``first_step``,
    ``safety``, ``ifactor``, ``dfactor``, ``max_num_steps``). ``switch(fraction, h, steps, rounds,
    seconds, stiffness)``, asked after ``FIRST_CHECK`` accepted steps and every fourfold more, with
    the fraction of the span done, the next step's length, the accepted steps, the drift rounds
    made, the seconds spent and the last step's ``|h| * |f(y1) - f(y_s)| / |y1 - y_s|`` over its
    last stage (Hairer's estimate of ``|h lambda|``: near the method's stability limit the
    problem is stiff): ``True`` stops the stepper (the caller solves in parallel instead)."""
    direction = 1.0 if float(t[-1] - t[0]) > 0 else -1.0
    t0, t_end = t[0], t[-1]
    span = float((t_end - t0).abs())
    f0 = check_output(call(t0, y0), y0)
    h = settings.first_step
    if h is None:
        h = grids.initial_step(lambda tb, yb: call(tb[0], yb[0])[None], t0, y0.detach(), direction,
                               method.order - 1, rtol, atol, settings.norm)
    b = [(j, bj) for j, bj in enumerate(method.b) if bj]
    e = [(j, ej) for j, ej in enumerate(method.e) if ej]
    fsal = len(method.e) > len(method.b)
    mid = getattr(method, "mid", None)
    out, states = [y0], [y0] if settings.keep_states else None
    ratios = [] if settings.keep_states else None
    next_out = 1
    s, y, steps, rejected = 0.0, y0, [0.0], 0
    tiny = 4 * torch.finfo(t.dtype).eps * max(1.0, span)
    check, began, worst = FIRST_CHECK, time.perf_counter(), 0.0
    stiff_run, calm_run = 0, 0
    while next_out < t.shape[0]:
        if deadline is not None and time.perf_counter() > deadline:
            return None
        h = min(h, span - s)
        if h <= tiny * (1 + abs(s)):
            where = float(t0) + direction * s
            raise ConvergenceError(f"odeint: step size underflow near t={where:.6g} (the error test cannot "
                                   f"be met in {y0.dtype}); loosen rtol/atol, or the solution may blow up there.")
        ta = t0 + direction * s
        last = s + h >= span - tiny
        hs = t_end - ta if last else direction * h  # the last step a tensor: gradients w.r.t. t[-1]
        ks, yi = rk_stages(call, method.a, method.c, ta, hs, hs, y, len(method.b), known=(f0,))
        y1 = y + hs * sum(bj * ks[j] for j, bj in b)
        f1 = call(t_end if last else ta + hs, y1)
        if fsal:
            ks.append(f1)
        err = hs * sum(ej * ks[j] for j, ej in e)
        with torch.no_grad():
            ratio = float(rms_ratio(err[None].detach(), y[None].detach(), y1[None].detach(), rtol, atol,
                                    settings.norm)[0])
        if ratio <= 1:
            worst = max(worst, ratio)
            s_new = span if last else s + h
            while next_out < t.shape[0] and direction * float(t[next_out] - t0) <= s_new:
                theta = (direction * (t[next_out] - t0) - s) / h
                ymid = None if mid is None else y + hs * sum(mj * ks[j] for j, mj in enumerate(mid) if mj)
                out.append(y1 if bool(theta >= 1) else _dense(theta.to(y.dtype), y, y1, hs * f0, hs * f1, ymid))
                next_out += 1
            s, y, f0 = s_new, y1, f1
            steps.append(s)
            if states is not None:
                states.append(y)
                ratios.append(ratio)
            if stiff_exit and s < span and (stiff_run or (len(steps) - 1) % STIFF_EVERY == 0):
                with torch.no_grad():  # Hairer's |h lambda| over the last stage, as below
                    h_lam = h * float((f0 - ks[len(method.b) - 1]).norm() / (y - yi).norm().clamp_min(1e-300))
                if h_lam > STIFF_LIMIT:
                    stiff_run, calm_run = stiff_run + 1, 0
                    if stiff_run == STIFF_STEPS:
                        return Handover(t0 + direction * torch.tensor(s, dtype=t.dtype, device=t.device), y, out,
                                        next_out, steps, rejected, worst)
                elif stiff_run:
                    calm_run += 1
                    if calm_run == NONSTIFF_STEPS:
                        stiff_run = 0
            if switch is not None and len(steps) - 1 == check and s < span:
                check *= 4
                with torch.no_grad():  # Hairer's stiffness estimate |h| * |df| / |dy| over the last stage
                    stiff = h * float((f0 - ks[len(method.b) - 1]).norm() / (y - yi).norm().clamp_min(1e-300))
                if switch(s / span, h * _factor(ratio, method.order, settings), len(steps) - 1,
                          len(method.b) * (len(steps) - 1 + rejected), time.perf_counter() - began, stiff):
                    return None
            if len(steps) - 1 > settings.max_num_steps:
                raise ConvergenceError(f"odeint: more than options['max_num_steps'] = {settings.max_num_steps} "
                                       f"steps; loosen rtol/atol or raise max_num_steps.")
        elif math.isnan(ratio):
            if not torch.isfinite(y1).all():
                rejected += 1  # a blow-up inside the step: cut it, as a failed error test
            else:
                raise NonFiniteError(f"odeint: the error estimate is NaN near t={float(ta):.6g}.", len(steps) - 1,
                                     float(ta))
        else:
            rejected += 1
        h = h * _factor(ratio, method.order, settings)
    grid = t0 + direction * torch.tensor(steps, dtype=torch.float64).to(t)  # t's dtype and device
    grid[-1] = t_end
    return Stepped(torch.stack(out), grid.detach(), rejected, worst, None if states is None else torch.stack(states),
                   ratios)


def _factor(ratio: float, order: int, settings) -> float:
    """torchdiffeq's controller: ``safety * ratio^(-1/order)`` clamped to ``[dfactor, ifactor]``, never
    below 1 after a passed step; ``dfactor`` after a non-finite estimate."""
    if ratio != ratio or ratio == float("inf"):
        return settings.dfactor
    if ratio == 0:
        return settings.ifactor
    low = 1.0 if ratio < 1 else settings.dfactor
    return min(settings.ifactor, max(low, settings.safety * ratio ** (-1.0 / order)))


def _dense(theta, y0, y1, hf0, hf1, ymid):
    """The step's interpolant at ``theta`` in [0, 1]: the quartic through ``y0``, ``y1``, the scaled
    end slopes ``hf0``, ``hf1`` and the midpoint value ``ymid``, or the cubic Hermite without it."""
    if ymid is None:
        a2 = 3 * (y1 - y0) - 2 * hf0 - hf1
        a3 = 2 * (y0 - y1) + hf0 + hf1
        return y0 + theta * (hf0 + theta * (a2 + theta * a3))
    a2 = -4 * hf0 + hf1 - 11 * y0 - 5 * y1 + 16 * ymid
    a3 = 5 * hf0 - 3 * hf1 + 18 * y0 + 14 * y1 - 32 * ymid
    a4 = -2 * hf0 + 2 * hf1 - 8 * y0 - 8 * y1 + 16 * ymid
    return y0 + theta * (hf0 + theta * (a2 + theta * (a3 + theta * a4)))


def march_fixed(call, y0: torch.Tensor, grid: torch.Tensor, step) -> torch.Tensor:
    """The explicit Runge–Kutta map ``step`` (an :class:`~parasolve.steps.ExplicitRK`) stepped along
    ``grid`` one step after another, ``call`` on one state at a time: the states on ``grid``."""
    weights = [(j, bj) for j, bj in enumerate(step.b) if bj]
    ys, y = [y0], y0
    host = grid.device.type == "cpu" and not grid.requires_grad  # step lengths as host numbers: cheaper
    for i in range(grid.shape[0] - 1):
        t0, h = grid[i], grid[i + 1] - grid[i]
        if host:
            h = float(h)
        ks, _ = rk_stages(call, step.a, step.c, t0, h, h, y, step.stages)
        y = y + h * sum(bj * ks[j] for j, bj in weights)
        ys.append(y)
    return torch.stack(ys)

