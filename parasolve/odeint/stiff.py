"""``odeint``'s stiff methods: ``method="radau"`` (Radau IIA, order 5) and ``"sdirk4"`` (an
L-stable SDIRK of order 4), with their grid found in passes and every pass solved parallel in time.

Each pass solves the implicit discrete problem on the current grid by one Newton iteration over
all steps' stage equations (:func:`parasolve.implicit.newton_stage.solve_stages`), warm-started
from the last pass's stage polynomials. A step's stage solve is accepted once its measured defect
is at most ``newton_tol`` times the error test's scale ``atol + rtol |y|`` in every component.
Then every step's embedded error estimate (:mod:`parasolve.implicit.tableaus`), filtered by
``(I - h gamma J)^-1``, is measured in scipy's norm ``RMS(err / (atol + rtol max(|y0|, |y1|)))``;
failed steps are cut and runs of passed steps merged by the explicit driver's controller
(``parasolve.odeint.grids.adapt``, exponent ``1 / err_order``) until every step passes. The steps
before a pass's first failed or unsolved step are final: the next pass solves the rest of the span
from that step on (so the result's ``solution`` is the last pass's solve of that rest; ``states``
holds the whole grid's).

The first grid grows geometrically from the first step (Hairer's estimate) to ``|T| /
initial_steps``: stiff problems start with a fast transient far more often than they end with one.
Stiffness detection for ``method="auto"``: :func:`is_stiff` at the start; later, the explicit
stepper's own test (``parasolve/odeint/stepper.py``), which hands the rest of the span over to Radau.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import torch

from .._api import solve
from ..errors import ConvergenceError
from ..implicit.dense import restage
from ..implicit.newton_stage import solve_stages
from ..implicit.stages import safe_solve, values_and_jacobians
from ..discrete_problem import Problem
from ..steps import STEPS
from . import grids
from .result import OdeintResult, OdeintStats, PassRecord

#: ``odeint`` names -> implicit step maps.
STIFF = {"radau": "radau5", "sdirk4": "sdirk4"}
#: ``options`` the stiff methods take.
STIFF_OPTIONS = {"first_step", "safety", "ifactor", "dfactor", "max_passes", "max_num_steps", "initial_steps",
                 "newton_tol", "max_newton", "stall", "reuse", "vectorized", "evaluator"}


#: ``options["reuse"]`` unset: the Newton matrices are kept between sweeps (a simplified Newton
#: iteration, :func:`parasolve.implicit.newton_stage.solve_stages`) where they are at least this
#: large (``stages * D``): there measuring and factoring them costs more than the extra sweeps
#: (HIRES, D = 8: 1.7x -> 1.15x scipy Radau's CPU time; Robertson, Van der Pol, Oregonator,
#: D = 2-3: slower with it, docs/stiff.md).
REUSE_SIZE = 16
#: The error ratio given to a step whose stage solve stalled: cut about tenfold.
STALLED = 1e4


@dataclass
class StiffSettings:
    first_step: float | None = None
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.02
    max_passes: int = 100
    max_num_steps: int = 2 ** 18
    initial_steps: int = 32
    newton_tol: float = 1e-3
    max_newton: int | None = None
    stall: int = 2
    reuse: bool | None = None
    extra: dict | None = None

    def __post_init__(self):
        if self.reuse is not None and not isinstance(self.reuse, bool):
            raise TypeError(f"options['reuse'] must be True, False or None (decided by the state's size); "
                            f"got {self.reuse!r}.")


def solve_stiff(drift, counter, y0, t, method: str, rtol, atol, settings: StiffSettings) -> OdeintResult:
    """``odeint`` with a stiff ``method`` (a key of :data:`STIFF`); see the module docstring."""
    step = STEPS[STIFF[method]]
    tab = step.tableau
    shape, d = y0.shape, y0.numel()
    rtol_f, atol_f = rtol.reshape(-1), atol.reshape(-1)
    tol_rtol, tol_atol = settings.newton_tol * rtol_f.cpu(), settings.newton_tol * atol_f.cpu()
    direction = 1.0 if float(t[-1] - t[0]) > 0 else -1.0
    h0 = settings.first_step
    if h0 is None:
        h0 = grids.initial_step(drift, t[0], y0, direction, tab.err_order - 1, rtol, atol)
    grid = first_grid(t, h0, settings.initial_steps)
    with torch.no_grad():
        f0, J0 = values_and_jacobians(drift, t[:1], y0.detach().reshape(1, d), shape)
    stats = OdeintStats()
    X = Z = None
    x0, outputs = y0.detach(), t
    done_grid, done_X, worst = [], [], 0.0  # the steps that passed before the first failed one: final
    while True:
        if stats.passes >= settings.max_passes:
            raise ConvergenceError(
                f"odeint(method={method!r}): {settings.max_passes} grid refinements did not make every step pass "
                f"its error test ({stats.history[-1].failed} of {stats.history[-1].steps} still fail); raise "
                f"options['max_passes'], loosen rtol/atol, or check the drift for a singularity.")
        n = grid.shape[0] - 1
        rounds, nfe = counter.calls, counter.rows
        max_iters = settings.max_newton or max(50, n)
        problem = Problem(drift=drift, step=step, t=grid, y0=x0, tol=1.0, window=n, max_iters=max_iters,
                          init=None if X is None else X.reshape(-1, *shape))

        def accept(start, comp, x_next):  # the number of leading steps whose stage solves are within tol
            ok = (comp <= tol_atol + tol_rtol * x_next.abs().to(tol_atol.dtype)).all(1)
            return int(ok.cumprod(0).sum())

        with torch.no_grad():
            sol, trace = solve_stages(problem, f"odeint:{method}", stages=Z, accept=accept, keep=True,
                                      stall=settings.stall, exact_front=False,
                                      reuse=settings.reuse if settings.reuse is not None else tab.stages * d >= REUSE_SIZE)
        X = sol.ys.detach().reshape(n + 1, d)
        front = n if sol.converged else sum(r.accepted for r in sol.stats.history)
        ratio = torch.full((n,), float("nan"), dtype=torch.float64)  # steps after a stalled front: no estimate
        if front:
            ratio[:front] = error_ratios(drift, tab, grid[:front + 1], X[:front + 1], trace, f0, J0, rtol_f,
                                         atol_f, shape)
        Z = trace.Z
        passed = ratio <= 1
        failed = int((~passed[:front]).sum()) + (front < n)
        stats.passes += 1
        stats.sweeps += sol.stats.iterations
        stats.rejected_steps += failed
        stats.history.append(PassRecord(n, sol.stats.iterations, counter.calls - rounds, counter.rows - nfe, failed,
                                        float(ratio.max())))
        j = n if failed == 0 else int(torch.nonzero(~passed)[0])  # steps [0, j) are final
        if j:
            done_grid.append(grid[:j])
            done_X.append(X[:j])
            worst = max(worst, float(ratio[:j].max()))
        if failed == 0:
            break
        if front < n:  # past a stalled front the iterate means nothing: restart there from the front state
            X[front + 1:], Z[front:] = X[front], 0.0
        if j:  # the next pass starts at step j, from its state and with its start's drift and Jacobian
            x0, f0, J0 = X[j].reshape(shape), trace.f_end[j - 1:j], trace.J_end[j - 1:j]
            after = direction * (outputs - grid[j]) > 0
            outputs = torch.cat([grid[j:j + 1], outputs[after]])
            grid, X, Z, ratio, front = grid[j:], X[j:], Z[j:], ratio[j:], front - j
        new = _next_grid(grid, ratio, front, outputs, tab, settings)
        X, Z = restage(tab, grid, X, Z, new)
        grid = new
    grid = torch.cat(done_grid + [grid[-1:]])
    X = torch.cat(done_X + [X[-1:]])
    ys = X[grids.positions(grid, t)].reshape(-1, *shape)
    if torch.is_grad_enabled() and _wants_grad(y0, settings.extra):  # the discrete adjoint of the final grid
        final = solve(drift, y0, grid, method="newton", options={"jacobian": "full"}, step=step.name,
                      init=X.reshape(-1, *shape),
                      tol=max(float(atol.min() + rtol.min() * X.abs().min()) * settings.newton_tol,
                              1e3 * torch.finfo(X.dtype).eps * float(X.abs().max())),
                      vectorized=True, **(settings.extra or {}))
        ys = final.ys[grids.positions(grid, t)]
    stats.drift_rounds, stats.nfe, stats.accepted_steps = counter.calls, counter.rows, grid.shape[0] - 1
    return OdeintResult(ys=ys, t=t, grid=grid, solution=sol, stats=stats, method=method, max_ratio=worst,
                        states=X.reshape(-1, *shape))


def _wants_grad(y0, extra) -> bool:
    params = (extra or {}).get("adjoint_params", ())
    return y0.requires_grad or any(isinstance(p, torch.Tensor) and p.requires_grad for p in params)


def first_grid(t: torch.Tensor, h0: float, pieces: int) -> torch.Tensor:
    """Output times ``t`` plus steps growing geometrically (doubling) from ``h0`` to ``|T| / pieces``."""
    direction = 1.0 if float(t[-1] - t[0]) > 0 else -1.0
    span = float((t[-1] - t[0]).abs())
    hmax = span / pieces
    h = min(max(h0, span * 1e-12), hmax) if math.isfinite(h0) else hmax
    s, points = 0.0, []
    while s + h < span * (1 - 1e-9):
        s += h
        points.append(s)
        h = min(2 * h, hmax)
    q = direction * (t - t[0]).double().cpu()
    ramp = torch.tensor(points, dtype=torch.float64)
    near = (ramp[:, None] - q[None, :]).abs().amin(1) <= 1e-6 * hmax  # leave the output times alone
    ramp = ramp[~near]
    s_all = torch.cat([q, ramp])
    order = torch.argsort(s_all)
    values = torch.cat([t.detach(), (t[0] + direction * ramp.to(t.dtype).to(t.device)).detach()])
    return values[order.to(t.device)]


def error_ratios(drift, tab, grid, X, trace, f00, J00, rtol, atol, shape) -> torch.Tensor:
    """Every step's error ratio ``RMS(err / (atol + rtol max(|x_i|, |x_{i+1}|)))`` (host, ``(N,)``)."""
    n, d = X.shape[0] - 1, X.shape[1]
    h = (grid[1:] - grid[:-1]).to(X.dtype)
    f0 = torch.cat([f00, trace.f_end[:n - 1]])
    J0 = torch.cat([J00, trace.J_end[:n - 1]])
    weights = torch.tensor(tab.err, dtype=X.dtype, device=X.device)
    ZE = (weights[:, None] * trace.Z[:n]).sum(1)
    M = torch.eye(d, dtype=X.dtype, device=X.device) - (tab.gamma * h)[:, None, None] * J0
    err = safe_solve(M, (tab.err0 * h[:, None] * f0 + ZE)[..., None])[..., 0]
    scale = atol + rtol * torch.maximum(X[:-1].abs(), X[1:].abs())
    ratio = (err / scale).square().mean(1).sqrt()
    ratio = torch.where(torch.isfinite(ratio), ratio, torch.full_like(ratio, float("inf")))
    redo = torch.nonzero(ratio > 1).reshape(-1)
    if tab.err0 and len(redo):  # Hairer's second estimate where the first fails (stiff components)
        f1 = drift(grid[redo], (X[redo] + err[redo]).reshape(-1, *shape)).reshape(-1, d)
        err2 = safe_solve(M[redo], (tab.err0 * h[redo, None] * f1 + ZE[redo])[..., None])[..., 0]
        ratio[redo] = torch.nan_to_num((err2 / scale[redo]).square().mean(1).sqrt(), nan=float("inf"))
    return ratio.double().cpu()


def _next_grid(grid, ratio, front, t, tab, settings: StiffSettings) -> torch.Tensor:
    """The controller's grid on the solved steps ``[0, front)``; after a stalled front, a ramp."""
    keep = torch.zeros(grid.shape[0], dtype=torch.bool)
    keep[grids.positions(grid, t)] = True
    n = grid.shape[0] - 1
    new = grid[:1]
    if front:
        new = grids.adapt(grid[:front + 1], ratio[:front], keep[:front + 1], tab.err_order, safety=settings.safety,
                          ifactor=settings.ifactor, dfactor=settings.dfactor)
    if front < n:
        h = (grid[1:] - grid[:-1]).abs().double().cpu()
        h_new = float(h[front]) / 4
        if front:  # what the controller would take after the last solved step
            h_new = min(h_new, float(grids.targets(grid[front - 1:front + 1], ratio[front - 1:front], tab.err_order,
                                                   settings.safety, settings.ifactor, settings.dfactor)[0]))
        new = torch.cat([new, ramp(grid[front:], h_new, keep[front:], RAMP)[1:]])
    if new.shape[0] - 1 > settings.max_num_steps:
        raise ConvergenceError(f"odeint: the error test asks for {new.shape[0] - 1} steps, more than "
                               f"options['max_num_steps'] = {settings.max_num_steps}; loosen rtol/atol or raise it.")
    h = (new[1:] - new[:-1]).abs()
    if float(h.min()) <= 4 * torch.finfo(new.dtype).eps * float(new.abs().max()):
        where = float(new[int(torch.argmin(h))])
        raise ConvergenceError(f"odeint: step size underflow near t={where:.6g} (the error test cannot be met "
                               f"in {new.dtype}); loosen rtol/atol, or the solution may blow up there.")
    return new


#: Growth factor of the steps after a stalled front (1.3 before: 1.15-1.25 took 10-20% fewer sweeps on
#: Van der Pol, the Oregonator's fewer or as many, with smaller errors; docs/stiff.md).
RAMP = 1.2


def ramp(grid: torch.Tensor, h0: float, keep: torch.Tensor, growth: float) -> torch.Tensor:
    """``grid`` from its first point on re-stepped by steps ``h0, growth h0, ..`` until they reach
    the grid's own spacing there; points in ``keep`` (output times) are kept exactly."""
    direction = 1.0 if float(grid[-1] - grid[0]) > 0 else -1.0
    s = direction * (grid - grid[0]).double().cpu()
    sl = s.tolist()  # a list: the loop below looks up one point per step
    points, pos, h = [], 0.0, h0
    while True:
        j = min(bisect.bisect_right(sl, pos + h) - 1, len(sl) - 2)
        if pos + h >= sl[-1] or h >= sl[j + 1] - sl[j]:
            break
        pos += h
        points.append(pos)
        h *= growth
    old = (s > pos + 0.5 * h) | keep.cpu()
    old[0] = False
    ramp_s = torch.tensor(points, dtype=torch.float64)
    if len(points):
        near = (ramp_s[:, None] - s[old][None, :]).abs().amin(1) < 0.25 * h0
        ramp_s = ramp_s[~near]
    merged = torch.cat([s[:1], ramp_s, s[old]])
    values = torch.cat([grid[:1], grid[0] + direction * ramp_s.to(grid.dtype).to(grid.device), grid[old.to(grid.device)]])
    return values[torch.argsort(merged).to(grid.device)]


def is_stiff(drift, t: torch.Tensor, y0: torch.Tensor, max_size: int = 64, ratio: float = 1000.0) -> bool:
    """Whether an explicit method would crawl: the drift's Jacobian (forward differences) at
    ``y0`` or at one of the Euler predictions ``y0 + tau f(t0, y0)``, ``tau = |T| 10^-k`` (k = 2..8:
    stiffness often appears only once a fast transient has started, as in Robertson's problem),
    has an eigenvalue with ``-Re(lambda) |T| > ratio`` -- an explicit step must then stay below
    about ``3 / |lambda|``, more than ``ratio / 3`` steps over the span whatever the tolerance.
    Two batched drift rounds; states above ``max_size`` components are not probed."""
    d = y0.numel()
    if d > max_size or y0.is_complex():
        return False
    span = float((t[-1] - t[0]).abs())
    with torch.no_grad():
        x0 = y0.detach().reshape(1, d)
        f0 = drift(t[:1], y0.detach()[None]).reshape(1, d)
        tau = span * 10.0 ** -torch.arange(2, 9, dtype=x0.dtype, device=x0.device)
        points = torch.cat([x0, x0 + tau[:, None] * f0])
        _, J = values_and_jacobians(drift, t[:1].expand(points.shape[0]), points, y0.shape)
    J = J.double().cpu()
    ok = torch.isfinite(J).flatten(1).all(1)
    if not bool(ok.any()):
        return False
    lam = torch.linalg.eigvals(J[ok])
    return float((-lam.real).max()) * span > ratio


__all__ = ["STIFF", "STIFF_OPTIONS", "StiffSettings", "solve_stiff", "is_stiff", "first_grid", "error_ratios"]
