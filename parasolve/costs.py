"""``method="auto"``'s cost model: are parallel sweeps predicted to beat the sequential solver here?

Parallel-in-time trades work for depth. The sequential solver makes ``R`` rounds of one drift
call on one state; a parallel solve makes ``sweeps * stages`` rounds, each a call on a batch of
``B`` states (the window's steps times the points each step evaluates). It pays only where a call
on ``B`` states costs little more than one on a single state -- a call dominated by per-call
overhead (a small state on a CPU, kernel launches on a GPU). :func:`parallel_pays` measures the
batched call on the problem itself, on a ladder of batch sizes that stops at the first one already
too dear, so a drift whose cost grows with its batch (a batch of independent trajectories, a wide
network) is recognised after a few calls, and compares with the sequential solver's time
(measured, or predicted from one call). The constants are conservative estimates from the
benchmark suite (docs/pays.md); where they say no only because of the price, a caller that can run
a few sweeps of the parallel scheme (``probe=``) has the sweeps measured instead
(:func:`probed_sweeps`) and the price judged again.

Both :func:`parallel_pays` and :func:`pays_on_grid` fill ``record`` (a dict, when given) with what
they measured and why they answered as they did (``sdeint``'s ``stats.auto``):

- ``pays`` (bool) and ``reason`` (a sentence with the numbers); ``verdict``: ``"pays"``,
  ``"too short"`` (the sequential solve under ``MIN_SEQUENTIAL_S``, a grid too short to time a
  step on, a window of one step), ``"measuring share"``
  (finding out could pass ``MEASURE_SHARE``) or ``"too dear"`` (a batched call over its price);
- ``sequential_s``: the sequential solve's time, measured or predicted; ``call_budget_s``: what
  one batched call may take for the parallel solve to win by ``MARGIN``; ``batch``: the states
  of the batched call; ``rungs``: the ladder's ``(states, seconds)``;
- from :func:`pays_on_grid` also: ``steps``, ``window``, ``method``, ``step_s`` (one sequential
  step), ``timed`` (``"drift"``, or ``"step map"`` where a step calls more than the drift: an
  SDE's ``g`` and noise), ``sweeps`` priced and ``sweeps_from`` (``"expected"``:
  :func:`expected_sweeps`; ``"probe"``), ``probe`` (the probe's ``window``, ``sweeps``,
  ``advanced`` steps, ``converged`` and ``estimate``, or why none ran) and ``measure_s``, the
  seconds all the measuring took.
"""

from __future__ import annotations

import math
import time

import torch

#: Sweeps ``"auto"`` expects of Newton with full Jacobians: this many, plus ``NEWTON_PER_WINDOW``
#: for every window's worth of steps the front must cross (the suite's take 5-45, docs/pays.md).
NEWTON_SWEEPS, NEWTON_PER_WINDOW = 12, 2
#: ... and of Picard (and the other schemes): this many per window's worth of steps.
PICARD_PER_WINDOW = 40
#: A sweep costs about this many times its batched drift call (the scheme's own arithmetic: the
#: scan, the defects, the stop rule; measured on the suite's small states).
SWEEP_OVERHEAD = 1.5
#: ... and Newton's with full Jacobians about this many (the probes' Jacobians and the matrix scan
#: besides; 2.6-3.4 on the suite's classic rows, docs/benchmarks/pilot.md).
NEWTON_FULL_OVERHEAD = 3.0
#: The parallel solve must be predicted at least this much faster before ``"auto"`` takes it.
MARGIN = 1.5
#: A sequential solve predicted to take less than this (seconds) stays sequential: measuring the
#: batched calls (the first one resolves the batching, a few milliseconds) would cost a large
#: share of what parallel sweeps could save.
MIN_SEQUENTIAL_S = 0.02
#: The measuring calls may take at most this share of the sequential solve's (predicted) time,
#: the step that predicts it included; a ladder that cannot finish within it answers "does not
#: pay" (the sequential solver is the safe choice), so ``"auto"`` costs at most about this much
#: more than the sequential solver where it picks it.
MEASURE_SHARE = 0.08
#: :func:`pays_on_grid` times one step with this many calls (a warm-up, then the least of the
#: rest), so a grid of fewer than ``STEP_TIMING_CALLS / MEASURE_SHARE`` steps is not measured.
STEP_TIMING_CALLS = 3
#: Live memory the default window of a parallel solve may take (bytes): the window's states,
#: increments and stage values, probes included. ``window=`` overrides it.
MEMORY_BUDGET = 256 * 2 ** 20
#: The ladder of batch sizes timed: its first size holds about ``FIRST_RUNG_NUMBERS`` numbers (2 to
#: 8 states: a large state's batch is dear in time and memory from the start), and each size is at
#: most ``RUNG_GROWTH`` times the last (each stops the ladder if already too dear).
FIRST_RUNG_NUMBERS, RUNG_GROWTH = 1024, 8
#: A probe of the parallel scheme (``pays_on_grid(probe=...)``) runs this many sweeps on a window
#: of at least ``PROBE_MIN_WINDOW`` steps (the largest timed batch whose sweeps fit what is left of
#: ``MEASURE_SHARE``, priced at ``PROBE_OVERHEAD`` times its timed call per round: a short
#: solve's set-up and scan weigh more than a long one's; 1.3-1.5 measured on sdeint's benchmark
#: with windows of 512 steps).
PROBE_SWEEPS, PROBE_MIN_WINDOW, PROBE_OVERHEAD = 4, 16, 2.0


def first_rung(y0: torch.Tensor) -> int:
    """The first batch size the ladder times for states like ``y0``."""
    return max(2, min(8, FIRST_RUNG_NUMBERS // max(y0.numel(), 1)))


def expected_sweeps(method: str, steps: int, window: int) -> int:
    """The sweeps the cost model expects of ``method`` on ``steps`` steps with a sliding ``window``
    (conservative; never more than ``steps``, which always suffice)."""
    windows = -(-steps // window)
    if method == "newton":
        return min(steps, NEWTON_SWEEPS + NEWTON_PER_WINDOW * windows)
    return min(steps, PICARD_PER_WINDOW * windows)


def probed_sweeps(done: int, advanced: int, converged: bool, steps: int, window: int) -> int:
    """The sweeps a solve of ``steps`` steps with ``window`` needs, from a probe that ran ``done``
    sweeps and accepted ``advanced`` steps (exact where it ``converged``): with the accepted front
    advancing a constant ``advanced / done`` steps a sweep, or, when fewer, growing linearly (the
    ``k``-th sweep accepting ``c k`` steps, at most ``window``, as Picard's front does), ``c``
    fitted to the probe."""
    done = max(done, 1)
    if converged:
        return done
    constant = math.ceil(steps / max(advanced / done, 1.0))
    return min(steps, max(done, min(constant, _with_growing_advance(advanced, done, window, steps))))


def _with_growing_advance(advanced: int, done: int, window: int, steps: int) -> int:
    """Sweeps ``K`` with ``sum_{k<=K} min(c k, window) >= steps``, ``c = 2 advanced / done^2``."""
    c = 2.0 * max(advanced, 1) / done ** 2
    k_cap = window / c  # from this sweep on, the window caps the advance
    full = c * k_cap * (k_cap + 1) / 2
    if full >= steps:
        return math.ceil((math.sqrt(1 + 8 * steps / c) - 1) / 2)
    return math.ceil(k_cap + (steps - full) / window)


def memory_window(steps: int, y0: torch.Tensor, stages: int, points: int) -> int:
    """The default window: all ``steps``, or fewer where their live memory would pass
    ``MEMORY_BUDGET`` -- per step ``points`` evaluated states (probes included) with ``stages``
    stage values each, three trajectory-sized buffers, and a full Jacobian's ``(points - 1)^2``
    numbers in float64 where ``points > 1``; doubled for the temporaries (the scan's copies)."""
    size, item = y0.numel(), y0.element_size()
    per_step = item * size * (points * (stages + 1) + 3) + 8 * (points - 1) ** 2 * max(1, size // max(points - 1, 1))
    per_step *= 2
    return max(1, min(steps, MEMORY_BUDGET // per_step))


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op off CUDA)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, *args, repeats: int = 5, warmup: int = 2, best: bool = False) -> float:
    """Median (``best``: least) wall time in seconds of ``fn(*args)``, with the tensors' device
    synchronised. The least of a few runs is the estimate robust to a loaded machine (the
    scheduler only ever adds time)."""
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
    for _ in range(warmup):
        fn(*args)
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times) if best else sorted(times)[len(times) // 2]


@torch.no_grad()
def parallel_pays(drift, t: torch.Tensor, y0: torch.Tensor, batch: int, rounds: int, sequential_s: float,
                  spent: float = 0.0, call_s: float | None = None, record: dict | None = None,
                  overhead: float = SWEEP_OVERHEAD) -> bool:
    """Whether ``rounds`` parallel rounds on ``batch`` states are predicted to beat ``sequential_s``
    seconds of the sequential solver by ``MARGIN``. ``drift`` is the batched call
    (``drift(t (n,), y (n, *state))``, ``t`` drawn from ``t`` in turn), timed on a ladder of batch
    sizes up to ``batch``, each at most ``RUNG_GROWTH`` times the last. The ladder stops, answering
    no, at the first size already too dear, and where the measuring could pass ``MEASURE_SHARE`` of
    ``sequential_s`` (``spent`` seconds of it already used by the caller's own timing): the next
    size is the largest whose calls, priced linearly from the last size (an upper bound for affine
    costs), fit in what is left. ``call_s``, the measured cost of a call on one state, if known,
    prices the first size too. ``record`` is filled (module docstring); rungs already in it (an
    earlier call on the same problem, with other ``rounds``) are judged again, not timed again.
    ``overhead``: a round's cost over its drift call's (``SWEEP_OVERHEAD``, ``NEWTON_FULL_OVERHEAD``)."""
    record = {} if record is None else record
    record.update(sequential_s=sequential_s, batch=batch)
    rungs = record.setdefault("rungs", [])
    if sequential_s < MIN_SEQUENTIAL_S:
        return _answer(record, "too short", f"the sequential solve is predicted to take {sequential_s:.3g} s, "
                                            f"under MIN_SEQUENTIAL_S = {MIN_SEQUENTIAL_S} s")
    budget = sequential_s / (MARGIN * overhead * max(rounds, 1))  # seconds one call may take
    record["call_budget_s"] = budget
    allowance = MEASURE_SHARE * sequential_s - spent
    # ``priced``: the last size timed (or one state's call, which prices the first size only: a
    # single state takes a plainer path than a batch, so it is no point of the batch's curve).
    last, priced = None, (None if call_s is None else (1, call_s))
    for m, cost in rungs:
        dear = _too_dear(m, cost, last, batch, budget)
        if dear:
            return _answer(record, "too dear", dear)
        last = priced = (m, cost)
    while last is None or last[0] < batch:
        warmup = int(last is None)  # the first batched call resolves the batching
        m = min(batch, first_rung(y0) if last is None else RUNG_GROWTH * last[0])
        if priced is not None:
            m = min(m, int(allowance * priced[0] / ((2 + warmup) * priced[1])))
            if m < min(batch, 2 * priced[0]):
                return _answer(record, "measuring share",
                               f"timing a batch of {min(batch, 2 * priced[0])} or more states could pass "
                               f"MEASURE_SHARE = {MEASURE_SHARE:.0%} of the sequential solve's {sequential_s:.3g} s")
        tb = t[torch.arange(m, device=t.device) % t.shape[0]]
        yb = y0.expand(m, *y0.shape).clone()
        start = time.perf_counter()
        cost = time_call(drift, tb, yb, repeats=2, warmup=warmup, best=True)
        allowance -= time.perf_counter() - start
        rungs.append((m, cost))
        dear = _too_dear(m, cost, last, batch, budget)
        if dear:
            return _answer(record, "too dear", dear)
        last = priced = (m, cost)
    return _answer(record, "pays", f"a call on {batch} states takes {last[1]:.3g} s, within the {budget:.3g} s "
                                   f"that {rounds} rounds may take each to beat {sequential_s:.3g} s by {MARGIN}x")


def _too_dear(m: int, cost: float, last, batch: int, budget: float) -> str:
    """Why a call on ``m`` states costing ``cost`` seconds rules the batch out ("" if it does not)."""
    if cost > budget:
        return f"a call on {m} states takes {cost:.3g} s, over the {budget:.3g} s a call may take"
    if last is not None and cost > last[1]:
        # The curve's slope so far, extended to the whole batch: cost curves steepen with the
        # batch, so this under-predicts -- and still too dear means no larger size can pass.
        slope = math.log(cost / last[1]) / math.log(m / last[0])
        predicted = cost * (batch / m) ** slope
        if predicted > budget:
            return (f"calls on {last[0]} and {m} states ({last[1]:.3g} s, {cost:.3g} s) extrapolate to "
                    f"{predicted:.3g} s on {batch}, over the {budget:.3g} s a call may take")
    return ""


def _answer(record: dict, verdict: str, reason: str) -> bool:
    record.update(pays=verdict == "pays", verdict=verdict, reason=reason)
    return record["pays"]


def pays_on_grid(drift, step_map, grid, y0, method, options, window, step=None, probe=None,
                 record: dict | None = None) -> bool:
    """The cost model on a fixed grid: the sequential loop's time predicted from one timed step
    (``step(grid, y0)``, default ``step_map`` on ``drift`` for one state), against the expected
    sweeps on the window's batch (its steps times the points each step evaluates). Where a step
    calls more than the drift (``step_map.callables``: an SDE's ``g``, its noise), the whole step
    map is timed on the batch instead of the drift. ``probe(window, sweeps) -> (sweeps run, steps
    accepted, converged)``, a short solve with the parallel scheme, where given, measures the sweeps
    when the expected ones price the batch out (:func:`probed_sweeps`). The measuring calls are not
    counted in ``drift``'s ``nfe`` (they are no part of the solve's answer); ``record`` is filled
    (module docstring)."""
    record = {} if record is None else record
    n = grid.shape[0] - 1
    record.update(steps=n, window=window, method=method)
    if window < 2:
        return _answer(record, "too short", f"a window of {window} step cannot sweep in parallel")
    if n * MEASURE_SHARE < STEP_TIMING_CALLS:
        return _answer(record, "too short", f"timing one step ({STEP_TIMING_CALLS} calls) would pass MEASURE_SHARE = "
                                            f"{MEASURE_SHARE:.0%} of {n} steps")
    full = method == "newton" and (options or {}).get("jacobian") == "full"
    points = 1 + y0.numel() // options.get("blocks", 1) if full else 1
    whole = len(step_map.callables) > 1
    nfe, calls = drift.nfe, drift.calls
    y = y0.detach()
    if step is None:
        first = torch.zeros(1, dtype=torch.long, device=grid.device)

        def step(grid, y):
            return step_map.increments(drift, grid, first, y[None])
    start = time.perf_counter()
    try:
        step_s = time_call(step, grid, y, repeats=STEP_TIMING_CALLS - 1, warmup=1, best=True)
        if whole:
            def call(idx, yb):
                return step_map.increments(drift, grid, idx, yb)
            at, per_sweep, call_s = torch.arange(n, device=grid.device), 1, step_s
        else:
            call, at, per_sweep, call_s = drift, grid, step_map.stages, step_s / step_map.stages
        sweeps = expected_sweeps(method, n, window)
        record.update(step_s=step_s, timed="step map" if whole else "drift", sweeps=sweeps, sweeps_from="expected")
        overhead = NEWTON_FULL_OVERHEAD if full and not whole else SWEEP_OVERHEAD
        pays = parallel_pays(call, at, y, window * points, sweeps * per_sweep, n * step_s,
                             time.perf_counter() - start, call_s, record, overhead)
        if not pays and probe is not None and record["verdict"] == "too dear":
            probed = _probe(probe, record, n, window, points, per_sweep, time.perf_counter() - start)
            if probed < sweeps:
                record.update(sweeps=probed, sweeps_from="probe")
                pays = parallel_pays(call, at, y, window * points, probed * per_sweep, n * step_s,
                                     time.perf_counter() - start, call_s, record, overhead)
    finally:
        drift.nfe, drift.calls = nfe, calls
        record["measure_s"] = time.perf_counter() - start
    return pays


def _probe(probe, record, n, window, points, per_sweep, spent) -> int:
    """The sweeps measured by ``probe`` with the largest window that fits what is left of the
    measuring share: a timed batch's steps (at least ``PROBE_MIN_WINDOW``, a smaller batch's call
    priced up linearly), at most ``window``; ``n`` (as good as unknown) where none fits."""
    left = MEASURE_SHARE * record["sequential_s"] - spent
    fits = []
    for m, cost in record["rungs"]:
        steps = min(window, max(m // points, PROBE_MIN_WINDOW))
        if PROBE_SWEEPS * per_sweep * PROBE_OVERHEAD * cost * max(1.0, steps * points / m) <= left:
            fits.append(steps)
    if not fits:
        record["probe"] = f"none: {PROBE_SWEEPS} sweeps of {PROBE_MIN_WINDOW} steps or more would pass the " \
                          f"{max(left, 0.0):.3g} s left of MEASURE_SHARE"
        return n
    w = max(fits)
    done, advanced, converged = probe(w, PROBE_SWEEPS)
    estimate = probed_sweeps(done, advanced, converged, n, window)
    record["probe"] = {"window": w, "sweeps": done, "advanced": advanced, "converged": converged,
                       "estimate": estimate}
    return estimate
