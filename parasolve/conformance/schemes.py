"""Rules 1-6 of the :class:`~parasolve.schemes.Scheme` contract, one check each. Rules 2-4 read the
same solves (every accepted map, two problems, whole-grid and windowed), run once per case."""

from __future__ import annotations

import math

import torch

from .. import stop_rule
from .._solve import solve
from ..errors import ConvergenceError, UnsupportedStepError
from ..schemes.base import Scheme, per_step, resolve_scheme
from ..solution import Status
from .counting import CountingDrift
from .rules import EPS64, Rule, default_grid, sequential, tanh_drift


def kit_problems():
    """(name, batched drift, y0, T, Lipschitz constant in the max-norm) the scheme rules run on."""
    A = torch.tensor([[-0.5, 1.0, 0.0], [-1.0, -0.5, 0.3], [0.0, -0.3, -0.2]], dtype=torch.float64)
    y0 = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    tanh = tanh_drift(3, torch.float64)
    return [("linear", lambda t, y: y @ A.T, y0, 1.5, float(torch.linalg.matrix_norm(A, ord=float("inf")))),
            ("tanh", tanh, y0, 1.5, 1.3)]


def _stability(step, lipschitz: float, t) -> float:
    """``S``, bounding how much the steps amplify a defect over the grid: ``exp(L |T|)`` (the
    exponent doubled for a multistep map, whose carry is a second state)."""
    return math.exp((2 if step.multistep else 1) * lipschitz * float((t[-1] - t[0]).abs()))


class SchemeCase:
    """A scheme, the maps it is run with, the grid and ``tol``; the solves rules 2-4 read are run
    on first use and kept (an exception a solve raised is kept and raised again)."""

    def __init__(self, scheme: Scheme, maps, n_steps: int, tol: float):
        self.scheme, self.maps, self.tol = scheme, maps, tol
        self.t = default_grid(n_steps) * 1.5
        self._accepted = self._runs = None

    @property
    def n(self) -> int:
        return self.t.shape[0] - 1

    def accepted(self, fail) -> list:
        """The maps ``check_step`` accepts (rule 1 checks the refusals)."""
        if self._accepted is None:
            kept = []
            for step in self.maps:
                try:
                    self.scheme.check_step(step)
                except Exception:  # noqa: BLE001 -- a refusal (typed or not: rule 1's business)
                    continue
                kept.append(step)
            self._accepted = kept
        if not self._accepted:
            fail(f"nothing to check: check_step refuses every map given ({[s.name for s in self.maps]}; rule 1)")
        return self._accepted

    def runs(self, fail) -> list:
        """``(case name, step, drift, y0, Lipschitz constant, counted drift, solution)`` of every solve."""
        accepted = self.accepted(fail)
        if self._runs is None:
            runs = []
            try:
                for step in accepted:
                    for name, f, y0, _, lipschitz in kit_problems():
                        for window in (None, 5):
                            counted = CountingDrift(f)
                            sol = solve(counted, y0, self.t, method=self.scheme, step=step, window=window,
                                        tol=self.tol, vectorized=True, throw=False)
                            runs.append((f"{name}/{step.name}/window={window}", step, f, y0, lipschitz, counted, sol))
            except Exception as exc:  # noqa: BLE001 -- raised again by every rule that reads the runs
                runs = exc
            self._runs = runs
        if isinstance(self._runs, Exception):
            raise self._runs
        return self._runs


def _refusal(case, fail):
    scheme, t = case.scheme, case.t
    for step in case.maps:
        try:
            scheme.check_step(step)
        except UnsupportedStepError as exc:
            if scheme.name not in str(exc) or step.name not in str(exc):
                fail(f"the refusal of {step.name!r} must name the scheme and the map: {exc}")
            name, f, y0, _, _ = kit_problems()[0]
            try:
                solve(f, y0, t, method=scheme, step=step, vectorized=True)
            except UnsupportedStepError:
                continue
            fail(f"check_step refuses {step.name!r} but run() solved with it")
        except Exception as exc:  # noqa: BLE001
            fail(f"check_step({step.name!r}) raised {type(exc).__name__}, not UnsupportedStepError: {exc}")
    case.accepted(fail)


def _answer(case, fail):
    """SUCCESS only when the returned trajectory's defects, weighted by the stop rule's ``G_i`` (the
    map's gains; 1 without), sum to at most ``tol`` -- the plain sum may exceed it where gains are
    declared -- and it is within ``S * defect_sum`` of the sequential loop."""
    scheme, t, tol, n = case.scheme, case.t, case.tol, case.n
    for label, step, f, y0, lipschitz, _, sol in case.runs(fail):
        stats = sol.stats
        if sol.converged != (sol.status is Status.SUCCESS):
            fail(f"{label}: converged={sol.converged} but status={sol.status}")
        if not (scheme.discrete and sol.converged):
            continue
        ys = sol.ys
        inc = step.increments(f, t, torch.arange(n), ys[:-1], None)[0]
        defects = per_step(ys[1:] - ys[:-1] - inc).abs().amax(1).double()
        weights = stop_rule.amplification(step.gains(), "all", n)
        slack = 64 * EPS64 * n * max(1.0, float(ys.abs().max()))
        total, weighted = float(defects.sum()), float((defects * weights).sum())
        if not weighted <= tol + slack:
            fail(f"{label}: claims convergence, but the returned trajectory's defects weighted by G_i (the map's "
                 f"gains) sum to {weighted:.3e} > tol = {tol:.1e}")
        if not total <= stats.defect_sum + slack:
            fail(f"{label}: stats.defect_sum = {stats.defect_sum:.3e} under-reports the trajectory's defects "
                 f"({total:.3e})")
        if not stats.weighted_defect_sum <= tol * (1 + 1e-12):
            fail(f"{label}: stats.weighted_defect_sum = {stats.weighted_defect_sum:.3e} > tol = {tol:.1e}")
        ref = sequential(step, f, t, y0)
        stability = _stability(step, lipschitz, t)
        gap = float(per_step(ys - ref).abs().max())
        allowed = stability * (stats.defect_sum + slack)
        if not gap <= allowed:
            fail(f"{label}: max|x - x_sequential| = {gap:.3e} > S * defect_sum = {allowed:.3e}")


def _sweeps(case, fail):
    scheme, n = case.scheme, case.n
    for label, _, _, _, _, _, sol in case.runs(fail):
        stats = sol.stats
        if not sol.converged:
            fail(f"{label}: did not converge within the default max_iters = N = {n}: {sol.message}")
        if not 1 <= stats.iterations <= n:
            fail(f"{label}: {stats.iterations} iterations for {n} steps")
        if scheme.iterative:
            if len(stats.history) != stats.iterations:
                fail(f"{label}: {len(stats.history)} sweep records for {stats.iterations} iterations")
            advanced = sum(r.accepted for r in stats.history)
            if advanced != n:
                fail(f"{label}: the sweep records accept {advanced} steps of {n}")


def _honest_stats(case, fail):
    scheme, n = case.scheme, case.n
    for label, step, _, y0, _, counted, sol in case.runs(fail):
        stats = sol.stats
        if stats.nfe != counted.points or stats.drift_calls != counted.calls:
            fail(f"{label}: stats say nfe={stats.nfe}, drift_calls={stats.drift_calls}; the drift counted "
                 f"{counted.points} points in {counted.calls} calls")
        if step.implicit:  # Newton rounds vary: no fixed count
            continue
        if scheme.windowed:
            probes = scheme.points_per_step(y0)
            points = step.stages * probes * sum(r.end - r.start for r in stats.history)
            if counted.calls != stats.iterations * step.stages or counted.points != points:
                fail(f"{label}: a windowed scheme makes {step.stages} calls per sweep over its window ({probes} "
                     f"point(s) per step): expected {stats.iterations * step.stages} calls of {points} points, "
                     f"counted {counted.calls} of {counted.points}")
        elif not scheme.iterative and (counted.calls != n * step.stages or counted.points != n * step.stages):
            fail(f"{label}: a non-iterative scheme makes {step.stages} one-point calls per step; counted "
                 f"{counted.calls} calls of {counted.points} points")


def _settings(case, fail):
    scheme, t, n = case.scheme, case.t, case.n
    step = case.accepted(fail)[0]
    _, f, y0, _, lipschitz = kit_problems()[1]
    kw = dict(method=scheme, step=step, vectorized=True)
    first = solve(f, y0, t, tol=1e-8, **kw)
    again = solve(f, y0, t, tol=1e-8, **kw)
    if not torch.equal(first.ys, again.ys) or first.stats.iterations != again.stats.iterations:
        fail("a second solve with the same instance gave a different answer (per-solve state kept on the scheme?)")
    last = solve(f, y0, t, tol=1e-8, save="last", **kw)
    if last.ys.shape != (1, *y0.shape):
        fail(f"save='last' must return ys of shape {(1, *y0.shape)}; got {tuple(last.ys.shape)}")
    if step.gains() is None and not torch.equal(last.ys[0], first.ys[-1]):
        fail("save='last' must return the end point of save='all' (the map declares no gains, so the stop rule "
             "is the same for both)")
    # with gains the stop rule weighs each defect by its effect on the returned states: the two
    # answers may differ, each within S * defect_sum of the sequential one
    stability = _stability(step, lipschitz, t)
    allowed = stability * (last.stats.defect_sum + first.stats.defect_sum) + 64 * EPS64 * n
    gap = float((last.ys[0] - first.ys[-1]).abs().max())
    if not gap <= allowed:
        fail(f"save='last' ends {gap:.3e} away from save='all' (allowed S * their defect sums = {allowed:.3e})")
    warm = solve(f, y0, t, tol=1e-8, init=first.ys, **kw)
    if not warm.converged or float((warm.ys - first.ys).abs().max()) > 1e-6:
        fail("a warm start (init = the answer) must converge to the same answer")
    stopped = solve(f, y0, t, tol=0.0, max_iters=1, throw=False, **kw)
    if stopped.stats.iterations != 1 or stopped.converged or stopped.status is not Status.MAX_ITERS:
        fail(f"max_iters=1 with tol=0 on {n} steps must stop after 1 iteration, unconverged; got "
             f"{stopped.stats.iterations} iterations, status {stopped.status.value}")
    if stopped.ys.shape != first.ys.shape or not torch.isfinite(stopped.ys).all():
        fail("a stopped solve must return the whole (finite) partial trajectory")
    try:
        solve(f, y0, t, tol=0.0, max_iters=1, **kw)
    except ConvergenceError:
        pass
    else:
        fail("throw=True must raise ConvergenceError when max_iters stops the solve")


def _bad_input(case, fail):
    try:
        resolve_scheme(type(case.scheme), {"no_such_option": 1})
    except (TypeError, ValueError):
        pass
    else:
        fail("an unknown option was accepted silently")


RULES = (Rule(1, "refusal", _refusal), Rule(2, "answer", _answer), Rule(3, "sweeps", _sweeps),
         Rule(4, "honest stats", _honest_stats), Rule(5, "settings", _settings), Rule(6, "bad input", _bad_input))
