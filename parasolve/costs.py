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
benchmark suite (docs/pays.md).
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
#: Live memory the default window of a parallel solve may take (bytes): the window's states,
#: increments and stage values, probes included. ``window=`` overrides it.
MEMORY_BUDGET = 256 * 2 ** 20
#: The ladder of batch sizes timed: its first size holds about ``FIRST_RUNG_NUMBERS`` numbers (2 to
#: 8 states: a large state's batch is dear in time and memory from the start), and each size is at
#: most ``RUNG_GROWTH`` times the last (each stops the ladder if already too dear).
FIRST_RUNG_NUMBERS, RUNG_GROWTH = 1024, 8


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
                  spent: float = 0.0, call_s: float | None = None) -> bool:
    """Whether ``rounds`` parallel rounds on ``batch`` states are predicted to beat ``sequential_s``
    seconds of the sequential solver by ``MARGIN``. ``drift`` is the batched call
    (``drift(t (n,), y (n, *state))``), timed on a ladder of batch sizes up to ``batch``, each at
    most ``RUNG_GROWTH`` times the last. The ladder stops, answering no, at the first size already
    too dear, and where the measuring could pass ``MEASURE_SHARE`` of ``sequential_s``
    (``spent`` seconds of it already used by the caller's own timing): the next size is the
    largest whose calls, priced linearly from the last size (an upper bound for affine costs), fit
    in what is left. ``call_s``, the measured cost of a call on one state, if known, prices the
    first size too."""
    if sequential_s < MIN_SEQUENTIAL_S:
        return False
    budget = sequential_s / (MARGIN * SWEEP_OVERHEAD * max(rounds, 1))  # seconds one call may take
    allowance = MEASURE_SHARE * sequential_s - spent
    # ``priced``: the last size timed (or one state's call, which prices the first size only: a
    # single state takes a plainer path than a batch, so it is no point of the batch's curve).
    last, priced = None, (None if call_s is None else (1, call_s))
    while last is None or last[0] < batch:
        warmup = int(last is None)  # the first batched call resolves the batching
        m = min(batch, first_rung(y0) if last is None else RUNG_GROWTH * last[0])
        if priced is not None:
            m = min(m, int(allowance * priced[0] / ((2 + warmup) * priced[1])))
            if m < min(batch, 2 * priced[0]):
                return False  # finding out could cost more than the sequential solve may lose
        tb = t[torch.arange(m, device=t.device) % t.shape[0]]
        yb = y0.expand(m, *y0.shape).clone()
        start = time.perf_counter()
        cost = time_call(drift, tb, yb, repeats=2, warmup=warmup, best=True)
        allowance -= time.perf_counter() - start
        if cost > budget:
            return False
        if last is not None and cost > last[1]:
            # The curve's slope so far, extended to the whole batch: cost curves steepen with the
            # batch, so this under-predicts -- and still too dear means no larger size can pass.
            slope = math.log(cost / last[1]) / math.log(m / last[0])
            if cost * (batch / m) ** slope > budget:
                return False
        last = priced = (m, cost)
    return True


def pays_on_grid(drift, step_map, grid, y0, method, options, window, step=None) -> bool:
    """The cost model on a fixed grid: the sequential loop's time predicted from one timed step
    (``step(grid, y0)``, default ``step_map`` on ``drift`` for one state), against the expected
    sweeps on the window's batch (its steps times the points each step evaluates). The measuring
    calls are not counted in ``drift``'s ``nfe`` (they are no part of the solve's answer)."""
    n = grid.shape[0] - 1
    if window < 2:
        return False
    full = method == "newton" and (options or {}).get("jacobian") == "full"
    points = 1 + y0.numel() // options.get("blocks", 1) if full else 1
    nfe, calls = drift.nfe, drift.calls
    y = y0.detach()
    if step is None:
        first = torch.zeros(1, dtype=torch.long, device=grid.device)

        def step(grid, y):
            return step_map.increments(drift, grid, first, y[None])
    start = time.perf_counter()
    step_s = time_call(step, grid, y, repeats=2, warmup=1, best=True)
    spent = time.perf_counter() - start
    rounds = expected_sweeps(method, n, window) * step_map.stages
    pays = parallel_pays(drift, grid, y, window * points, rounds, n * step_s, spent, step_s / step_map.stages)
    drift.nfe, drift.calls = nfe, calls
    return pays
