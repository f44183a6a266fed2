"""``options["scheme"] = "auto"`` (the default): run the sequential loop unless measurements on
this SDE say that a parallel sweep pays.

A Picard sweep over a window of ``w`` steps costs about one batched call of ``w`` points per stage,
``tau(w)``; the sequential solve ``N`` calls of one point, ``N tau(1)``. A sweep only pays when
batching gains: ``r(b) = b tau(1) / tau(b)`` well above 1. The measurements, cheapest first, each
taken only if the one before leaves room for a win and its own cost stays within a few per cent
of the sequential solve's estimate ``N tau(1)``:

1. ``tau(1)``: three one-step calls of the step map; grids under ``MIN_STEPS`` steps stop here.
2. ``tau(4)``: two four-point calls. On a CPU a neural SDE with a batch of paths already fills
   the cores at one time point and ``r(4) < MIN_GAIN``: sequential.
3. ``tau(w)`` for the probe window ``w = min(N, options["window"] or WINDOW)`` (one call, taken
   only if ``w tau(1) / r(4)``, its cost at the gain of step 2, is within ``BUDGET N tau(1)``).
4. ``PROBE_SWEEPS`` Picard sweeps with that window (only if they cost at most ``BUDGET N tau(1)``),
   extrapolated by :func:`parasolve.tuning.estimate_speedups`; the parallel scheme (with that
   window) is taken if its estimated speedup is at least ``MIN_SPEEDUP``.

So the measurements cost at most a few per cent of the sequential solve plus seven one-step
calls' worth, and the parallel scheme is chosen only on a measured estimate. The probes' drift
calls are not counted in the solve's stats (``stats.auto`` holds the measurements).
"""

from __future__ import annotations

import time

import torch

from ..tuning import Probe, estimate_speedups, synchronize

#: Grids shorter than this are solved sequentially (no parallel sweep could repay the probes).
MIN_STEPS = 64
#: Batching gain at 4 points below which the sequential loop is taken at once.
MIN_GAIN = 2.5
#: The probe window when ``options["window"]`` is not given.
WINDOW = 64
#: Each measurement beyond ``tau(1)`` and ``tau(4)`` may cost this fraction of ``N tau(1)``.
BUDGET = 0.03
PROBE_SWEEPS = 4
MIN_SPEEDUP = 1.3
#: The parallel scheme ``"auto"`` tries when batching gains.
PARALLEL = "picard"


def choose_scheme(parallel: dict, drift, step, x0, grid):
    """``(scheme, measurements)`` for ``options["scheme"]`` (default ``"auto"``); the measurements
    hold the ``window`` to use when a parallel scheme is chosen."""
    scheme = parallel.get("scheme", "auto")
    if scheme != "auto":
        return scheme, {}
    n = grid.shape[0] - 1
    if n < MIN_STEPS:
        return "sequential", {"reason": f"{n} < {MIN_STEPS} steps"}
    calls, nfe, gcounts = drift.calls, drift.nfe, _g_counts(step)
    try:
        return _measure(parallel, drift, step, x0, grid, n)
    finally:  # the probes are not part of the solve's counts
        drift.calls, drift.nfe = calls, nfe
        _set_g_counts(step, gcounts)


def _measure(parallel, drift, step, x0, grid, n):
    tau1 = _time(step, drift, grid, x0, 1, repeats=3)
    tau4 = _time(step, drift, grid, x0, 4, repeats=2)
    gain = 4 * tau1 / tau4
    info = {"tau1_s": tau1, "tau4_s": tau4, "gain4": gain}
    if gain < MIN_GAIN:
        return "sequential", {**info, "reason": f"batching gain {gain:.2f} < {MIN_GAIN} at 4 points"}
    budget = BUDGET * n * tau1
    window = min(n, parallel.get("window") or WINDOW)
    if window * tau1 / gain > budget:
        return "sequential", {**info, "reason": f"measuring a {window}-step window would cost more than "
                                                f"{BUDGET:.0%} of the sequential solve"}
    tau_w = _time(step, drift, grid, x0, window, repeats=1)
    info.update(window=window, tau_window_s=tau_w, gain_window=window * tau1 / tau_w)
    if PROBE_SWEEPS * tau_w > budget:
        return "sequential", {**info, "reason": f"{PROBE_SWEEPS} probe sweeps would cost more than "
                                                f"{BUDGET:.0%} of the sequential solve"}
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
