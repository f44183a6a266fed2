"""The parallel driver's start: a coarse sequential pilot gives the first grid and the first guess.

From a constant first guess, the converged front of a Newton solve crosses a long span slowly:
the linearisation about a wrong trajectory holds only near the front. On five Kepler orbits at
rtol 1e-8 the first grid took 30 sweeps (docs/benchmarks/pilot.md). The pilot is parareal's
coarse propagator. It is the sequential stepper at tolerances ``factor`` times looser, which
takes about ``factor^(1/order)`` times fewer steps (6 for dopri5 at the default factor), and it
gives two things:

- **the first grid.** Each pilot step is cut into the pieces the step-size controller asks for at
  the real tolerances: ``ceil((ratio * factor)^(1/order) / safety)``, from the pilot step's own
  error ratio. The output times are added.
- **the first guess.** The pilot's trajectory is interpolated onto that grid (cubic Hermite with
  the drift at the pilot's steps, one batched drift round).

The solve from there needs a few sweeps per pass, and its answer is the parallel solve's, held
to the same error test: the pilot only starts it. The pilot's drift calls are counted in the stats.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

from ..costs import time_call
from ..errors import ConvergenceError, NonFiniteError
from . import grids
from .result import PassRecord
from .stepper import solve_stepwise

#: The pilot's tolerances: this many times looser than ``rtol`` and ``atol``...
FACTOR = 1e4
#: ... but with ``rtol`` no looser than this: a looser pilot's trajectory is a poor guess (Kepler's
#: five orbits from a pilot at 1e-3: 30 sweeps, and a final grid 4.5x less accurate than
#: torchdiffeq's; docs/benchmarks/pilot.md).
LOOSEST_RTOL = 1e-4
#: A smaller factor leaves too few steps to save: the pilot would take a quarter or more of the
#: sequential steps (at 10^3, rtol 1e-6: slower on half the rows). So the pilot runs at rtol <= 1e-8.
MIN_FACTOR = 1e4
#: A Newton round's own arithmetic (the probes' Jacobians, the matrix scan, the defects) over the
#: stepper's per stage (its stage sums and error norm), both overhead-bound on small states: 5-10
#: on the suite's classic rows (docs/benchmarks/pilot.md); the least is taken.
ARITHMETIC_RATIO = 5.0
#: From a constant guess, Newton's converged front advances a stretch of time a sweep, whatever
#: the tolerance: about this many of the final grid's steps at rtol 1e-8 (14-37 on the suite's
#: classic rows, 13-25 on five other problems), and fewer at looser tolerances, whose steps are
#: longer (1.4-11 at rtol 1e-5; docs/benchmarks/pilot.md) ...
STEPS_PER_SWEEP, AT_RTOL = 20, 1e-8
#: ... and from the pilot's start an adaptive solve takes about this many sweeps in all (6-11 on
#: the suite's rows, 7-27 on the others).
SWEEPS_FROM_PILOT = 10
#: ``"auto"`` takes the pilot where its projected time is below the sweeps it saves, and stops it
#: at this many times that saving: the projected steps can be off 2-3x (the stepper's first steps
#: are no guide to its later ones), and a pilot stopped is all loss.
BUDGET_FACTOR = 3.0


def sweeps_from_constant(steps: float, rtol, method) -> float:
    """Newton's expected sweeps over an adaptive solve of about ``steps`` steps at ``rtol`` from a
    constant guess: a step at ``rtol`` spans ``(rtol / AT_RTOL)^(1/order)`` steps at ``AT_RTOL``."""
    largest = float(rtol.max()) if isinstance(rtol, torch.Tensor) else float(rtol)
    return steps / STEPS_PER_SWEEP * (max(largest, 1e-300) / AT_RTOL) ** (1.0 / method.order)


def pilot_factor(rtol) -> float:
    """How much looser than the real tolerances the pilot runs; 0 where no pilot pays."""
    largest = float(rtol.max()) if isinstance(rtol, torch.Tensor) else float(rtol)
    factor = min(FACTOR, LOOSEST_RTOL / max(largest, 1e-300))
    return factor if factor >= (1 - 1e-6) * MIN_FACTOR else 0.0  # a float32 rtol is rounded


def pilot_steps(steps: float, method) -> float:
    """The steps the pilot is expected to take where the real tolerances take ``steps``."""
    return steps / max(FACTOR ** (1.0 / method.order), 1.0)


def pilot_savings(drift, t: torch.Tensor, y0: torch.Tensor, batch: int, saved_rounds: int, stage_s: float) -> float:
    """The seconds the ``saved_rounds`` Newton rounds a pilot saves are expected to take: each
    one drift call on ``batch`` states (timed, at the times ``t``) and the sweep's own arithmetic,
    ``ARITHMETIC_RATIO`` times the stepper's per stage (``stage_s``, its seconds per stage, less
    one timed one-state call). Where a call costs the same for any batch (a GPU's launch-bound
    call, a remote model) the pilot's one-state calls are as dear as the rounds they save."""
    def timed(m):
        y = y0.detach().expand(m, *y0.shape).clone()
        return time_call(drift, t[torch.arange(m, device=t.device) % t.shape[0]], y, repeats=2, warmup=0, best=True)

    return saved_rounds * (timed(batch) + ARITHMETIC_RATIO * max(stage_s - timed(1), 0.0))


def pilot_start(drift, call, counter, y0: torch.Tensor, t: torch.Tensor, method, rtol, atol, settings,
                budget_s: float | None = None):
    """``(grid, guess, record)`` for the parallel driver's first pass (``record``: the pilot's
    :class:`~.result.PassRecord`), or ``None`` where the pilot does not pay (tolerances already
    loose), fails (its error test cannot be met) or runs past ``budget_s`` seconds: the driver
    then starts as without it. ``call`` is the stepper's one-state call of the drift,
    ``counter`` counts every drift call."""
    factor = pilot_factor(rtol)
    if factor == 0.0:
        return None
    rounds, nfe = counter.calls, counter.rows
    loose = dataclasses.replace(settings, keep_states=True, first_step=None)
    try:
        with torch.no_grad():
            run = solve_stepwise(call, y0.detach(), t, method, rtol * factor, atol * factor, loose,
                                 deadline=None if budget_s is None else time.perf_counter() + budget_s)
    except (ConvergenceError, NonFiniteError):
        return None
    if run is None:  # past its budget: the sweeps it would save are cheaper
        return None
    ratio = torch.tensor(run.ratios, dtype=torch.float64).clamp(min=0.0)
    pieces = torch.ceil((ratio * factor) ** (1.0 / method.order) / settings.safety).clamp(min=1).long()
    if int(pieces.sum()) + t.shape[0] > settings.max_num_steps:
        return None
    coarse = run.grid.to(t)
    grid = grids.merge(grids.split(coarse, pieces), t)
    with torch.no_grad():
        f = drift(coarse, run.states)
        guess = grids.hermite(coarse, run.states, f[:-1], f[1:], grid)
    if not bool(torch.isfinite(guess).all()) or not math.isfinite(float(grid[-1])):
        return None
    record = PassRecord(len(run.ratios), 0, counter.calls - rounds, counter.rows - nfe, run.rejected, run.worst)
    return grid, guess, record
