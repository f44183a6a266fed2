"""``options["scheme"] = "auto"`` (the default): run the sequential loop unless measurements on
this SDE say that a parallel sweep pays.

A Picard sweep over ``w`` steps costs about one batched call of ``w`` points per stage,
``tau(w)``; the sequential solve ``N`` calls of one point, ``N tau(1)``. The sweep only pays when
batching gains: ``r(b) = b tau(1) / tau(b)`` well above 1. On a CPU, a neural SDE with a batch of
paths already fills the cores at one time point, ``r`` stays near 1 and the sequential loop is
chosen after three one-step calls and two four-point calls (a few steps' worth of work). Where
``r`` is large (small states, accelerators), a probe of ``PROBE_SWEEPS`` parallel sweeps is timed
and :func:`parasolve.tuning.estimate_speedups` extrapolates the sweeps it would need; the parallel
scheme is taken only if its estimated speedup is at least ``MIN_SPEEDUP``. The probe's drift
calls are not counted in the solve's stats (they are in ``stats.auto``).
"""

from __future__ import annotations

import time

import torch

from ..tuning import Probe, estimate_speedups, synchronize

#: Grids shorter than this are solved sequentially (no parallel sweep could repay the probes).
MIN_STEPS = 64
#: Batching gain at 4 points below which the sequential loop is taken at once.
MIN_GAIN = 2.5
PROBE_SWEEPS = 4
MIN_SPEEDUP = 1.3
#: The parallel scheme ``"auto"`` tries when batching gains.
PARALLEL = "picard"


def choose_scheme(parallel: dict, drift, step, x0, grid):
    """``(scheme, measurements)`` for ``options["scheme"]`` (default ``"auto"``)."""
    scheme = parallel.get("scheme", "auto")
    if scheme != "auto":
        return scheme, {}
    n = grid.shape[0] - 1
    if n < MIN_STEPS:
        return "sequential", {"reason": f"{n} < {MIN_STEPS} steps"}
    calls, nfe, gcounts = drift.calls, drift.nfe, _g_counts(step)
    try:
        tau1 = _time(step, drift, grid, x0, 1, repeats=3)
        tau4 = _time(step, drift, grid, x0, 4, repeats=2)
        gain = 4 * tau1 / tau4
        info = {"tau1_s": tau1, "tau4_s": tau4, "gain4": gain}
        if gain < MIN_GAIN:
            return "sequential", {**info, "reason": f"batching gain {gain:.2f} < {MIN_GAIN} at 4 points"}
        window = min(n, parallel.get("window") or n)
        start = time.perf_counter()
        sol = _probe_solve(parallel, drift, step, x0, grid, window)
        synchronize(x0.device)
        wall = time.perf_counter() - start
        advanced = sum(rec.accepted for rec in sol.stats.history)
        est = estimate_speedups(n, tau1, [Probe(window, sol.stats.iterations, advanced, sol.converged, wall)])[0]
        info.update(probe_sweeps=sol.stats.iterations, probe_advanced=advanced, est_sweeps=est.sweeps,
                    est_speedup=est.speedup)
        if est.speedup >= MIN_SPEEDUP:
            return PARALLEL, {**info, "reason": f"estimated speedup {est.speedup:.2f}"}
        return "sequential", {**info, "reason": f"estimated speedup {est.speedup:.2f} < {MIN_SPEEDUP}"}
    finally:  # the probes are not part of the solve's counts
        drift.calls, drift.nfe = calls, nfe
        _set_g_counts(step, gcounts)


def _time(step, drift, grid, x0, b, repeats):
    idx = torch.arange(min(b, grid.shape[0] - 1), device=grid.device)
    y = x0.expand(idx.shape[0], *x0.shape)
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            step.increments(drift, grid, idx, y)
            synchronize(x0.device)
            times.append(time.perf_counter() - start)
    return min(times) if b > 1 else sorted(times)[len(times) // 2]


def _probe_solve(parallel, drift, step, x0, grid, window):
    from .._solve import _run
    from ..adjoint import GradientRequest

    with torch.no_grad():
        return _run(drift, step, x0, grid, PARALLEL, window, parallel.get("tol"), PROBE_SWEEPS, "last", False,
                    False, parallel.get("scheme_options"), None, GradientRequest((), None, ()))


def _g_counts(step):
    return [(p, p.calls, p.points) for p in (step.fns.g, step.fns._g_prod) if p is not None]


def _set_g_counts(step, counts):
    for p, calls, points in counts:
        p.calls, p.points = calls, points
