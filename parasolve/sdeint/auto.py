"""``options["scheme"] = "auto"`` (the default): run the sequential loop unless measurements on
this SDE say that a parallel sweep pays.

A Picard sweep over a window of ``w`` steps costs about one batched call of ``w`` points per stage,
``tau(w)``; the sequential solve ``N`` calls of one point, ``N tau(1)``; Picard pays when
``K(w) tau(w) < N tau(1)`` for the sweeps ``K(w)`` it needs. Measured on the SDE itself, each
measurement within ``BUDGET`` of the sequential solve's estimate ``N tau(1)``:

1. ``tau(1)``: a warm-up call, then three one-step calls of the step map. Grids under
   ``MIN_STEPS`` steps stop here (sequential).
2. ``tau(b)`` for ``b = 4, 16, 64, ...`` up to the solve's window ``w`` (``options["window"]``,
   default ``N``), while the next call -- at most four times the last, or ``b tau(1)`` -- fits in
   ``BUDGET N tau(1)``; the last two are fitted by ``tau(w) = a + c w`` (a fixed cost per call --
   vmap, Python -- and a cost per point; ``c`` not taken below a twentieth of ``tau(b) / b``) and
   extrapolated to ``w``. A predicted gain ``w tau(1) / tau(w)`` under ``MIN_GAIN`` (6):
   sequential -- on a CPU a neural SDE with a batch of paths already fills the cores at one time
   point, the common case.
3. ``PROBE_SWEEPS`` Picard sweeps with the largest measured window ``b >= 16`` whose sweeps fit
   the same budget: the steps they accept give ``K(w)`` by the growing-advance model of
   :func:`parasolve.tuning.estimate_speedups` (the ``k``-th sweep accepting about ``c k`` steps;
   on the benchmark it overestimates ``K``, 16-19 against the 12 Picard takes, so the rule errs
   towards the sequential loop). Picard with window ``w`` is taken when ``N tau(1) / (K(w)
   tau(w))`` is at least ``MIN_SPEEDUP``, else the sequential loop.

The measurements cost a few per cent of the sequential solve; the choice is an estimate, and
``stats.auto`` (``full_output=True``) holds the numbers and the reason. On the CPU benchmark
(docs/benchmarks/sdeint.md) it picks the sequential loop where batching does not pay. Times are
CPU time on the CPU (robust to other processes on a shared machine), wall time on accelerators.
The probes' drift calls are not counted in the solve's stats.
"""

from __future__ import annotations

import time

import torch

from .._solve import solve_discrete
from ..adjoint import GradientRequest
from ..tuning import Probe, _with_growing_advance, synchronize

#: Grids shorter than this are solved sequentially (no parallel sweep could repay the probes).
MIN_STEPS = 64
#: Predicted batching gain at the solve's window below which the sequential loop is taken: a
#: Picard solve needs ``PROBE_SWEEPS`` sweeps or more on all but the easiest problems, so a gain
#: under ``MIN_SPEEDUP * PROBE_SWEEPS`` cannot reach ``MIN_SPEEDUP``.
MIN_GAIN = 6.0
#: The batch measurements, and the probe sweeps, may each cost this fraction of ``N tau(1)``.
BUDGET = 0.03
PROBE_SWEEPS = 4
MIN_SPEEDUP = 1.5
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
    clock = _clock(x0.device)
    _time(step, drift, grid, x0, 1, 1, clock)  # warm-up: the drift's first-call checks
    tau1 = _time(step, drift, grid, x0, 1, 3, clock)
    budget = BUDGET * n * tau1
    w = min(n, parallel.get("window") or n)
    info = {"tau1_s": tau1, "window": w}
    sizes, times, spent, b = [], [], 0.0, 4
    while b <= w and spent + (4 * times[-1] if times else b * tau1) <= budget:
        times.append(_time(step, drift, grid, x0, b, 1, clock))
        sizes.append(b)
        spent += times[-1]
        b *= 4
    if len(sizes) < 2:
        return "sequential", {**info, "reason": f"no two probe batches fit {BUDGET:.0%} of the sequential solve"}
    (b0, b1), (t0, t1) = sizes[-2:], times[-2:]
    c = max((t1 - t0) / (b1 - b0), t1 / b1 / 20)
    tau_w = max(t1 - c * b1, 0.0) + c * w
    gain = w * tau1 / tau_w
    info.update(probe_batches=sizes, probe_s=times, tau_window_s=tau_w, gain=gain)
    if gain < MIN_GAIN:
        return "sequential", {**info, "reason": f"predicted batching gain {gain:.2f} < {MIN_GAIN} at {w} points"}
    fits = [b for b, t in zip(sizes, times) if b >= 16 and PROBE_SWEEPS * t <= budget]
    if not fits:
        return "sequential", {**info, "reason": f"{PROBE_SWEEPS} probe sweeps of >= 16 steps would cost more "
                                                f"than {BUDGET:.0%} of the sequential solve"}
    sol = _probe_solve(parallel, drift, step, x0, grid, fits[-1])
    done, advanced = sol.stats.iterations, sum(rec.accepted for rec in sol.stats.history)
    probe = Probe(w, done, advanced, sol.converged and fits[-1] >= n, 0.0)
    sweeps = done if probe.converged else max(done, _with_growing_advance(probe, n, max(done, 1)))
    speedup = n * tau1 / (sweeps * tau_w)
    info.update(probe_sweeps=done, probe_advanced=advanced, est_sweeps=sweeps, est_speedup=speedup)
    if speedup >= MIN_SPEEDUP:
        return PARALLEL, {**info, "reason": f"estimated speedup {speedup:.2f} with window {w}"}
    return "sequential", {**info, "reason": f"estimated speedup {speedup:.2f} < {MIN_SPEEDUP}"}


def _clock(device):
    return time.process_time if torch.device(device).type == "cpu" else time.perf_counter


def _time(step, drift, grid, x0, b, repeats, clock):
    idx = torch.arange(min(b, grid.shape[0] - 1), device=grid.device)
    y = x0.expand(idx.shape[0], *x0.shape)
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = clock()
            step.increments(drift, grid, idx, y)
            synchronize(x0.device)
            times.append(clock() - start)
    return sorted(times)[len(times) // 2] if repeats > 2 else min(times)  # min: robust to load spikes


def _probe_solve(parallel, drift, step, x0, grid, window):
    with torch.no_grad():
        return solve_discrete(drift, step, x0, grid, method=PARALLEL, window=window, tol=parallel.get("tol"),
                              max_iters=PROBE_SWEEPS, save="last", throw=False, options=parallel.get("scheme_options"),
                              gradients=GradientRequest((), None, ()), cost_model=False)


def _g_counts(step):
    return [(p, p.calls, p.points) for p in (step.fns.g, step.fns._g_prod) if p is not None]


def _set_g_counts(step, counts):
    for p, calls, points in counts:
        p.calls, p.points = calls, points
