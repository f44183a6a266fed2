"""The adaptive driver: find a grid on which every step passes its error test, solving in parallel.

Each pass solves the discrete problem of the embedded pair's propagating formula on the current
grid with a fixed-point scheme (``parasolve.solve``). The step map records every step's embedded
error estimate from the same batched drift calls the sweeps make (:class:`ErrorEstimate`), so the
estimate costs no extra sequential depth. Then:

- every step passes (error ratio <= 1 in torchdiffeq's norm): done, the answer is this solve's;
- else failed steps are cut by the controller's factor, runs of steps far below the tolerance
  are merged (never across an output time, nor before the first failed step: the steps before it
  are final, as a sequential controller's accepted steps are), and the next solve starts from the
  last trajectory, Hermite-interpolated onto the new grid (``solve(init=...)``);
- a solve that blows up (a grid too coarse to be stable) is measured like a finished one on the
  steps solved before the overflow, and cut where their estimates fail.

Without the frozen prefix a chaotic or long trajectory never settled: every grid change moves the
trajectory after it, so passes alternated between grids with failures in different places
(Lorenz on [0, 40]); cutting only the steps at an overflow refined a point the unstable states
had not reached yet (docs/odeint.md, "Unstable first grids").

The fixed-point tolerance is tied to the error test: every step's defect ``x_{i+1} - x_i -
Phi_i(x_i)``, measured in the error test's own norm, must be at most ``defect_fraction`` -- a
defect is a local error like the truncation error, so the fixed-point error stays within what
the test allows (docs/odeint.md). ``solve``'s scalar ``tol`` is set from the last trajectory's
error scale; after a solve the defects are measured (no drift call) and, where one exceeds its
share, the same grid is solved again from there with ``tol`` tightened accordingly.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import torch

from .._api import solve
from ..evaluators.counting import CountingEvaluator
from ..errors import ConvergenceError, NonFiniteError
from . import grids
from .result import OdeintResult, OdeintStats, PassRecord
from .tableaus import EmbeddedRK, ErrorEstimate


@dataclass
class Settings:
    """``odeint``'s resolved options (docs/odeint.md lists them)."""

    scheme: object = "picard"
    scheme_options: dict | None = None
    window: int | None = None
    tol: float | None = None
    defect_fraction: float = 1.0
    ratio_guess: float = 0.01
    initial_steps: int = 256
    first_step: float | None = None
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    max_passes: int = 30
    coarsen: float = 0.7
    max_num_steps: int = 2 ** 20
    extra: dict | None = None  # keywords forwarded to solve (adjoint_params)
    norm: object = None  # options["norm"]: the error test's norm of one step's scaled error
    keep_states: bool = True  # the sequential stepper keeps every step's state (full_output)
    deadline: float | None = None  # set by "auto"'s switch: the parallel driver stops at this perf_counter()
    step_s: float | None = None  # set by "auto"'s switch: the stepper's seconds per step, to re-project it
    started: float = 0.0  # ... and when the parallel driver was started (perf_counter())
    pilot: bool | None = None  # options["pilot"]: start from a coarse sequential solve (.pilot); None: decided
    pilot_budget: float | None = None  # set by "auto"'s switch: the seconds the pilot may take


class OverBudget(ConvergenceError):
    """The parallel driver that ``"auto"`` switched to ran past the time the sequential stepper was
    projected to need; ``odeint`` then finishes with the stepper."""


def min_scale(rtol, atol, y_scale: torch.Tensor) -> float:
    """The smallest error scale ``atol + rtol * |y|`` over the components and the trajectory."""
    return float((atol + rtol * y_scale).min())


def roundoff_floor(y_scale: torch.Tensor, n_steps: int) -> float:
    """Defect sums below this are round-off: ``16 eps max|y|`` per step."""
    return 16 * torch.finfo(y_scale.dtype).eps * max(1.0, float(y_scale.max())) * n_steps


def defect_budget(settings: Settings, est_size: torch.Tensor, scale: float, y_scale, n_steps: int) -> float:
    """What the accepted defects may sum to: ``defect_fraction`` times the sum of the steps'
    error estimates plus one step's error scale -- the fixed-point error then stays within the
    bound the discretisation error obeys (docs/odeint.md)."""
    return max(settings.defect_fraction * (float(est_size.sum()) + scale), roundoff_floor(y_scale, n_steps))


def roundoff_bound(rtol, atol, y0: torch.Tensor) -> bool:
    """Whether the error test asks for less than the fixed-point sweeps can resolve in ``y0``'s
    dtype (one step's error scale below the ``16 eps |y|`` round-off floor of a defect): the
    sequential stepper then stays closer to the ODE than parallel sweeps can."""
    y = y0.detach().abs()
    return min_scale(rtol, atol, y) < 16 * torch.finfo(y.dtype).eps * max(1.0, float(y.max()))


def _warn_if_roundoff_bound(settings: Settings, est_size, scale, y_scale, n_steps: int) -> None:
    if settings.tol is None and roundoff_floor(y_scale, n_steps) > settings.defect_fraction * (
            float(est_size.sum()) + scale):
        warnings.warn(f"odeint: in {y_scale.dtype} the parallel sweeps' defects cannot go below round-off "
                      f"(16 eps per step), more than rtol/atol allow, so the answer may be less accurate than "
                      f"the sequential stepper's. Use options={{'scheme': 'sequential'}} or float64.",
                      RuntimeWarning, stacklevel=4)


def first_tol(settings: Settings, scale: float, y_scale, n_steps: int) -> float:
    """``solve``'s ``tol`` before any estimate exists: a guess (estimates at 1% of the scale,
    ``ratio_guess``), checked against :func:`defect_budget` after the solve."""
    if settings.tol is not None:
        return settings.tol
    guess = settings.defect_fraction * scale * (1 + settings.ratio_guess * n_steps)
    return max(guess, roundoff_floor(y_scale, n_steps))


def solve_adaptive(drift, counter: CountingEvaluator, y0, t, method: EmbeddedRK, rtol, atol,
                   settings: Settings, start=None) -> OdeintResult:
    """``start``: the first grid, guess and pilot record (``pilot.pilot_start``), else a
    uniform grid from the starting step and a constant guess."""
    direction = 1.0 if float(t[-1] - t[0]) > 0 else -1.0
    stats = OdeintStats()
    init = None
    if start is not None:
        grid, init, stats.pilot = start
    else:
        spacing = settings.first_step
        if spacing is None:
            h0 = grids.initial_step(drift, t[0], y0, direction, method.order - 1, rtol, atol, settings.norm)
            spacing = max(h0 if math.isfinite(h0) else 0.0, float((t[-1] - t[0]).abs()) / settings.initial_steps)
        grid = grids.uniform_grid(t, spacing, settings.max_num_steps)
    # Before any trajectory is known, the smallest error scale is atol's (|y0|'s when atol is 0).
    y_scale = init.abs() if init is not None else torch.zeros_like(y0) if float(atol.min()) > 0 else y0.detach().abs()
    sol, best, tol_next = None, None, None
    guard = None if settings.deadline is None else _deadline_guard(settings, stats)
    while True:
        if guard is not None:
            guard(None)
        if stats.passes >= settings.max_passes:
            raise ConvergenceError(
                f"odeint: {settings.max_passes} grid refinements did not make every step pass its error "
                f"test ({stats.history[-1].failed} of {stats.history[-1].steps} still fail); raise "
                f"options['max_passes'], loosen rtol/atol, or check the drift for a singularity.", solution=sol)
        n = grid.shape[0] - 1
        rec = ErrorEstimate(method, rtol, atol, n, y0, settings.norm)
        rounds, nfe = counter.calls, counter.rows
        try:
            sol = solve(drift, y0, grid, method=settings.scheme, step=rec, window=settings.window,
                        tol=tol_next or first_tol(settings, min_scale(rtol, atol, y_scale), y_scale, n),
                        init=init, options=settings.scheme_options, vectorized=True, callback=guard,
                        **(settings.extra or {}))
        except NonFiniteError as exc:  # a too-coarse grid blew up: cut the steps where it did
            ratio = blown_up_ratios(drift, rec, grid, exc)
            sweeps = 0 if exc.solution is None else exc.solution.stats.iterations
            stats.passes += 1
            stats.sweeps += sweeps
            stats.rejected_steps += int((~(ratio <= 1)).sum())
            stats.history.append(PassRecord(n, sweeps, counter.calls - rounds, counter.rows - nfe,
                                            int((~(ratio <= 1)).sum()), float("inf")))
            grid = _next_grid(grid, ratio, t, method, settings)
            init = None  # the solved part as a start saved no sweeps (Van der Pol mu=10: 137 -> 168)
            continue
        ys = sol.ys.detach()
        ratio, size, f1 = rec.finish(drift, grid, ys)
        failed = int((~(ratio <= 1)).sum())
        stats.passes += 1
        stats.sweeps += sol.stats.iterations
        stats.rejected_steps += failed
        stats.history.append(PassRecord(n, sol.stats.iterations, counter.calls - rounds, counter.rows - nfe,
                                        failed, float(ratio.max())))
        y_scale = ys.detach().abs()
        budget = defect_budget(settings, size, min_scale(rtol, atol, y_scale), y_scale, n)
        if failed == 0 and sol.stats.defect_sum > budget and settings.tol is None:
            tol_next = 0.5 * budget  # defects beyond the error estimates' sum: tighten, same grid
            init = ys
            continue
        tol_next = None
        new = _next_grid(grid, ratio, t, method, settings)
        if failed == 0 and new.shape[0] - 1 > settings.coarsen * n:
            _warn_if_roundoff_bound(settings, size, min_scale(rtol, atol, y_scale), y_scale, n)
            break  # every step passes and the grid is not far finer than it needs to be
        if failed == 0:
            stats.coarsened += 1
            if best is None or n >= best[0].shape[0] - 1:
                best = (grid, ys, rec.f0, f1)  # the finest grid that passed: the most accurate start
        init = grids.hermite(*(best or (grid, ys, rec.f0, f1)), new)
        grid = new
        if settings.step_s is not None:  # the stepper's time re-projected on the controller's grid
            settings.deadline = min(settings.deadline, settings.started + settings.step_s * (grid.shape[0] - 1))
    stats.drift_rounds, stats.nfe, stats.accepted_steps = counter.calls, counter.rows, grid.shape[0] - 1
    ys = sol.ys[grids.positions(grid, t)]
    return OdeintResult(ys=ys, t=t, grid=grid, solution=sol, stats=stats, method=method.name,
                        max_ratio=float(ratio.max()))


def _deadline_guard(settings: Settings, stats: OdeintStats):
    """A solve observer (called after every sweep, and before every pass) that stops the parallel
    driver once ``settings.deadline`` is past: ``"auto"``'s bound on a switch that was wrong."""
    def guard(info) -> None:
        if time.perf_counter() > settings.deadline:
            raise OverBudget(f"odeint: the parallel sweeps ran past the sequential stepper's projected time "
                             f"in pass {stats.passes + 1}.")
    return guard


def blown_up_ratios(drift, rec: ErrorEstimate, grid: torch.Tensor, exc: NonFiniteError) -> torch.Tensor:
    """Error ratios ``(N,)`` after a solve blew up at step ``k = exc.index`` (the step from the
    accepted state ``x_k`` is not finite): the solved steps before it measured as after a solve,
    step ``k`` infinite (cut by ``dfactor``), the unsolved steps after it 1 (kept as they are).

    The steps that made the trajectory grow unstably are among the solved ones, often several
    steps before the overflow."""
    n, k = grid.shape[0] - 1, exc.index
    ratio = torch.ones(n, dtype=torch.float64)
    ratio[k] = float("inf")
    ys = None if exc.solution is None else exc.solution.ys
    if k >= 1 and ys is not None and ys.shape[0] == n + 1 and bool(torch.isfinite(ys[:k + 1]).all()):
        solved = rec.finish(drift, grid, ys[:k + 1].detach())[0]
        ratio[:k] = torch.where(torch.isfinite(solved), solved, torch.full_like(solved, float("inf")))
    return ratio


def _next_grid(grid, ratio, t, method, settings: Settings) -> torch.Tensor:
    keep = torch.zeros(grid.shape[0], dtype=torch.bool)
    keep[grids.positions(grid, t)] = True
    failed = torch.nonzero(~(ratio <= 1)).reshape(-1)
    if len(failed):  # the steps before the first failure are final: not merged (module docstring)
        keep[:int(failed[0]) + 1] = True
    new = grids.adapt(grid, ratio, keep, method.order, safety=settings.safety, ifactor=settings.ifactor,
                      dfactor=settings.dfactor)
    n = new.shape[0] - 1
    if n > settings.max_num_steps:
        raise ConvergenceError(f"odeint: the error test asks for {n} steps, more than options['max_num_steps'] "
                               f"= {settings.max_num_steps}; loosen rtol/atol or raise max_num_steps.")
    h = (new[1:] - new[:-1]).abs()
    tiny = 4 * torch.finfo(new.dtype).eps * float(new.abs().max())
    if float(h.min()) <= tiny:
        where = float(new[int(torch.argmin(h))])
        raise ConvergenceError(f"odeint: step size underflow near t={where:.6g} (the error test cannot be met "
                               f"in {new.dtype}); loosen rtol/atol, or the solution may blow up there.")
    return new
