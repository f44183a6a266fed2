"""Measure what a drift call costs, and pick the window that maximises the expected speedup.

A Picard sweep over a window of ``w`` steps costs about one batched call of ``w`` points per
stage, ``tau(w)``; the sequential solve costs ``N`` calls of one point, ``N * tau(1)``. If the
solve needs ``sweeps(w)`` sweeps, the speedup is ``N * tau(1) / (sweeps(w) * tau(w))``.
:func:`choose_window` measures both factors on the problem itself with short probe solves:
``tau`` as wall time per sweep (so padding, gathers and bookkeeping are included, not only the
model), and ``sweeps(w)`` extrapolated from the steps accepted during ``probe_sweeps`` sweeps
from the start of the grid (exact when the probe already converges).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from . import _checks as checks
from ._checks import check_positive_int
from ._solve import solve_checked
from .costs import probed_sweeps
from .costs import synchronize, time_call  # noqa: F401  (re-exported: benchmarks time with them)
from .drift import BatchedDrift
from .evaluators.distributed import DistributedEvaluator


#: :func:`choose_window` takes the largest window whose estimated speedup is at least this
#: fraction of the best one.
NEAR_BEST = 0.8


def cost_curve(f, y0: torch.Tensor, t: torch.Tensor, batches, *, vectorized: bool = False,
               evaluator=None, repeats: int = 5, warmup: int = 2) -> dict[int, float]:
    """Seconds per batched drift call for each batch size in ``batches`` (median of ``repeats``).

    The drift is called as the solver calls it (batched like ``solve(..., vectorized=...)``,
    through ``evaluator``), at the first ``b`` grid times with every state equal to ``y0``.
    """
    drift = BatchedDrift(f, y0.shape, y0.dtype, y0.device, vectorized=vectorized, evaluator=evaluator)
    grid = torch.as_tensor(t, dtype=y0.real.dtype if y0.is_complex() else y0.dtype, device=y0.device)
    curve = {}
    for b in batches:
        b = check_positive_int("batches", b, fix="`batches` lists the batch sizes to time.")
        tb = grid[torch.arange(b, device=grid.device) % grid.shape[0]]
        yb = y0.expand(b, *y0.shape).clone()
        curve[b] = time_call(drift, tb, yb, repeats=repeats, warmup=warmup)
    return curve


@dataclass
class WindowEstimate:
    """One candidate window: measured seconds per sweep, steps accepted per probe sweep,
    extrapolated sweeps and the estimated speedup over the sequential solve."""

    window: int
    sweep_s: float
    advance: float
    sweeps: int
    speedup: float


@dataclass
class WindowChoice:
    """The chosen ``window`` and its estimated ``speedup``; ``step_s`` the sequential time per
    step; ``table`` every candidate; ``probe_s`` the wall time the probes cost."""

    window: int
    speedup: float
    step_s: float
    table: list[WindowEstimate] = field(default_factory=list)
    probe_s: float = 0.0

    def __str__(self) -> str:
        rows = [f"window {e.window:>5}: {1e3 * e.sweep_s:8.3f} ms/sweep, {e.advance:6.1f} steps/sweep, "
                f"~{e.sweeps} sweeps, est. speedup {e.speedup:5.2f}x" for e in self.table]
        return "\n".join([f"chosen window {self.window} (est. {self.speedup:.2f}x; sequential "
                          f"{1e3 * self.step_s:.3f} ms/step; probes took {self.probe_s:.2f} s)"] + rows)


@dataclass
class Probe:
    """A short solve with ``window``: ``sweeps`` run, steps ``advanced``, whether it ``converged``
    (then ``sweeps`` is the exact count), and its wall time ``wall_s``."""

    window: int
    sweeps: int
    advanced: int
    converged: bool
    wall_s: float


def estimate_speedups(n: int, step_s: float, probes) -> list[WindowEstimate]:
    """Speedup estimates ``n * step_s / (sweeps(w) * sweep_s(w))`` from probe solves of an
    ``n``-step problem, ``sweeps(w)`` by :func:`parasolve.costs.probed_sweeps` (exact for a
    converged probe, else extrapolated from the steps it accepted)."""
    table = []
    for p in probes:
        done = max(p.sweeps, 1)
        sweeps = probed_sweeps(p.sweeps, p.advanced, p.converged, n, p.window)
        sweep_s = p.wall_s / done
        table.append(WindowEstimate(p.window, sweep_s, p.advanced / done, sweeps, n * step_s / (sweeps * sweep_s)))
    return table


def choose_window(f, y0: torch.Tensor, t, *, g=None, candidates=None, probe_sweeps: int = 8,
                  evaluator_factory=None, **solve_kwargs) -> WindowChoice:
    """Pick the window with the largest estimated speedup ``N tau(1) / (sweeps(w) tau(w))``
    (the largest window within ``NEAR_BEST`` of it).

    ``f, y0, t`` and ``solve_kwargs`` (``step``, ``tol``, ``vectorized``, ``evaluator``,
    ``method``, ``options``, ``noise`` ...) are those of the solve to be tuned; with ``g``
    the probes run :func:`parasolve.solve_sde` (pass the same ``noise``). ``candidates``:
    windows to try (default: powers of two up to ``N``, and ``N``, probed from the smallest until
    the estimates have passed their peak, :func:`past_the_peak` -- all of them with a
    :class:`DistributedEvaluator`, so that every rank runs the same probes; given ones are all
    probed). Each probe runs
    ``probe_sweeps`` sweeps after one warm-up sweep. With a :class:`DistributedEvaluator`,
    rank 0's choice is broadcast so that every rank uses the same window.

    ``evaluator_factory``: instead of one ``evaluator``, a callable ``window -> evaluator``
    called once per candidate (and with 1 for the sequential baseline), so a fixed-batch
    evaluator is sized to each probe, e.g. ``evaluator_factory=CudaGraphEvaluator``: one
    ``CudaGraphEvaluator(64)`` would pad every candidate's batch to 64 and bias the choice.
    Solve with ``evaluator=evaluator_factory(choice.window)`` afterwards.
    """
    for reserved in ("window", "max_iters", "throw", "save", "progress"):
        if reserved in solve_kwargs:
            raise TypeError(f"choose_window() sets `{reserved}` itself for its probes; remove it.")
    probe_sweeps = check_positive_int("probe_sweeps", probe_sweeps)
    if evaluator_factory is not None:
        if not callable(evaluator_factory):
            raise TypeError(f"`evaluator_factory` must be callable as evaluator_factory(window) -> evaluator; "
                            f"got {type(evaluator_factory).__name__}.")
        if solve_kwargs.get("evaluator") is not None:
            raise TypeError("Pass either `evaluator` (one for every candidate) or `evaluator_factory` "
                            "(one per candidate window), not both.")
    evaluators = {}

    def evaluator_for(w):
        if evaluator_factory is None:
            return solve_kwargs.get("evaluator")
        if w not in evaluators:
            evaluators[w] = evaluator_factory(w)
        return evaluators[w]

    n = len(t) - 1
    prune = candidates is None  # (not across ranks: each rank's timings would stop it elsewhere)
    if candidates is None:
        candidates = sorted({2 ** k for k in range(1, max(1, int(math.log2(max(n, 2)))) + 1) if 2 ** k <= n} | {n})
    else:
        fix = "`candidates` lists the windows to try."
        candidates = sorted({min(check_positive_int("candidates", w, fix=fix), n) for w in candidates})
    device = y0.device if isinstance(y0, torch.Tensor) else torch.device("cpu")

    def run(steps_or_sweeps, **kw):
        kw = {**solve_kwargs, **kw, "max_iters": steps_or_sweeps, "throw": False, "save": "last",
              "evaluator": evaluator_for(kw["window"])}
        if kw.get("method") == "sequential":
            kw.pop("options", None)  # the tuned scheme's options do not apply to the baseline
        return solve_checked(f, y0, grid, g=g, cost_model=False, **kw)

    def timed(count, **kw):
        run(1, **kw)  # warm-up: first-call checks, vmap resolution, graph capture
        synchronize(device)
        start = time.perf_counter()
        sol = run(count, **kw)
        synchronize(device)
        return sol, time.perf_counter() - start

    y0 = checks.check_y0(y0)  # once: the probes take them as checked
    grid = checks.check_grid(t, y0)
    began = time.perf_counter()
    seq_steps = min(n, max(probe_sweeps, 16))
    _, seq_s = timed(seq_steps, method="sequential", window=1)
    step_s = seq_s / seq_steps
    probes = []
    for w in candidates:
        sol, wall = timed(probe_sweeps, window=w)
        advanced = sum(rec.accepted for rec in sol.stats.history)
        probes.append(Probe(w, sol.stats.iterations, advanced, sol.converged, wall))
        if prune and not isinstance(evaluator_for(w), DistributedEvaluator) and \
                past_the_peak(estimate_speedups(n, step_s, probes)):
            break
    table = estimate_speedups(n, step_s, probes)
    top = max(e.speedup for e in table)
    # The largest window within NEAR_BEST of the best estimate: larger windows never need more
    # sweeps, and the timings of small probes are noisy.
    best = max((e for e in table if e.speedup >= NEAR_BEST * top), key=lambda e: e.window)
    window = _agree(best.window, evaluator_for(best.window), device)
    chosen = next(e for e in table if e.window == window)
    return WindowChoice(window, chosen.speedup, step_s, table, time.perf_counter() - began)


def past_the_peak(table: list[WindowEstimate]) -> bool:
    """Whether the default candidates' probes can stop: the last two estimates each fell, to below
    ``NEAR_BEST`` of the best so far. Larger windows are then taken to fall further (the speedup
    rises while a bigger batch costs little more than a smaller one, and falls once the cost grows
    with the batch), so none of them could be chosen."""
    if len(table) < 3:
        return False
    before, last, now = (e.speedup for e in table[-3:])
    return now < last < before and last < NEAR_BEST * max(e.speedup for e in table)


def _agree(window: int, evaluator, device) -> int:
    """Rank 0's window on every rank when the solve is distributed (timings differ per rank)."""
    if not isinstance(evaluator, DistributedEvaluator):
        return window
    import torch.distributed as dist

    value = torch.tensor([window], dtype=torch.int64, device=device)
    dist.broadcast(value, src=dist.get_global_rank(evaluator.group, 0) if evaluator.group else 0,
                   group=evaluator.group)
    return int(value)
