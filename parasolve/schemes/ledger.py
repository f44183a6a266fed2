"""The bookkeeping every scheme shares: allowances, acceptance, defect sums, history, the output
buffer, NaN/Inf failures, progress and the final status.

A scheme opens one :class:`Ledger` per solve (``with Ledger(problem, window) as ledger:``), feeds
it what each sweep measured, and closes with :meth:`Ledger.solution`. The per-step allowances come
from :meth:`parasolve.problem.Problem.thresholds` and from nowhere else, so a change of the stop
rule reaches every scheme at once. The windowed schemes accept through :meth:`Ledger.accept_steps`,
parareal through :meth:`Ledger.accept_blocks` (its segments), both by
:meth:`~parasolve.problem.Problem.accept`'s rule: the gain-weighted budget, with unused shares
carried over where the step map declares gains, and (windowed schemes) the floating-point floor
(:mod:`parasolve.stop_rule`).
"""

from __future__ import annotations

import torch

from .. import stop_rule
from ..problem import Problem
from ..solution import Solution, Stats, Status, SweepRecord


class Ledger:
    """Per-solve record of a scheme's progress (it lives for one ``run``, never on the scheme).

    ``thresholds``: per-step allowances ``(N,)`` on the host; ``stats``: the :class:`Stats` being
    filled; ``out``: the ``(N+1, *state)`` trajectory buffer when ``save="all"`` (row 0 = ``y0``),
    else ``None``.
    """

    def __init__(self, problem: Problem, window: int, desc: str):
        self.problem = problem
        self._method = desc
        self.thresholds = problem.thresholds()
        self.stats = Stats(window=window)
        y0 = problem.y0
        self.out = None
        if problem.save == "all":
            self.out = torch.empty((problem.n_steps + 1, *y0.shape), dtype=y0.dtype, device=y0.device)
            self.out[0] = y0
        self._bar = problem.progress_bar(desc)
        # each step's defects in the last sweeps that measured it, oldest first (for the stall test)
        self._seen = torch.full((stop_rule.STALL_SWEEPS, problem.n_steps), float("nan"), dtype=torch.float64)

    def __enter__(self) -> "Ledger":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        self._bar.refresh()  # the final state, once
        return self._bar.__exit__(*exc)

    def allowances(self, bounds: list[int]) -> torch.Tensor:
        """The allowance of each block of steps ``[bounds[j], bounds[j+1])``: the sum of its steps'."""
        return torch.stack([self.thresholds[lo:hi].sum() for lo, hi in zip(bounds, bounds[1:])])

    def accept_blocks(self, bounds: list[int], defects: torch.Tensor) -> int:
        """Count one iteration of a scheme whose defects sit at the ends of the blocks of steps
        ``[bounds[j], bounds[j+1])`` and accept its leading blocks by the same stop rule
        (:meth:`parasolve.problem.Problem.accept_blocks`). Host tensors."""
        self.stats.iterations += 1
        return self.problem.accept_blocks(bounds, defects, self.stats)

    def accept_steps(self, start: int, defects: torch.Tensor, scale: torch.Tensor) -> int:
        """Count one sweep of a windowed scheme and accept its leading steps ``start ..`` by the
        stop rule (:meth:`parasolve.problem.Problem.accept`: gain-weighted budget, the
        floating-point floor from ``scale = max|x_{i+1}| + max|Phi_i|``). Host tensors."""
        self.stats.iterations += 1
        problem, stats = self.problem, self.stats
        m = problem.accept(start, defects, scale, stats, stats.noise_floor)
        if m < len(defects) and problem.tol > 0 and self._front_stalled(start + m, defects[m], scale[m]):
            stats.noise_floor = max(stats.noise_floor, stop_rule.STALL_MARGIN * float(defects[m] / scale[m]))
            m += problem.accept(start + m, defects[m:], scale[m:], stats, stats.noise_floor)
        steps = slice(start, start + len(defects))
        self._seen[:, steps] = torch.cat([self._seen[1:, steps], defects.double()[None]])
        return m

    def _front_stalled(self, step: int, defect, scale) -> bool:
        """Whether the first rejected step's defect has stopped decreasing near its floor
        (:func:`parasolve.stop_rule.stalled`): the drift's evaluations are that noisy."""
        floor = float(stop_rule.floor(scale[None], self.problem.y0.dtype)[0])
        history = [*self._seen[:, step].tolist(), float(defect)]
        return stop_rule.stalled(history, max(float(self.thresholds[step]), floor), floor)

    def record(self, start: int, end: int, residual: float, advanced: int):
        """Append the sweep's :class:`SweepRecord` and move the progress bar by ``advanced`` steps."""
        self.stats.history.append(SweepRecord(self.stats.iterations, start, end, residual, advanced))
        # no forced redraw: update() redraws at most every tqdm `mininterval`, not once per sweep
        self._bar.set_postfix(sweep=self.stats.iterations, residual=f"{residual:.2e}", refresh=False)
        self.advance(advanced)

    def advance(self, steps: int):
        self._bar.update(steps)

    def fail_at(self, index: int):
        """Raise :class:`~parasolve.NonFiniteError` for step ``index`` unless it is negative
        (no failure), with the partial result (status ``NON_FINITE``; ``throw=False`` returns it).
        Schemes call it only for failures that start from an accepted state."""
        if index >= 0:
            error = self.problem.non_finite(index)
            ys = self.out if self.out is not None else torch.full_like(self.problem.y0, float("nan"))[None]
            error.solution = self.problem.solution(ys, Status.NON_FINITE, self.stats, self._method, error)
            raise error

    def save(self, first: int, states: torch.Tensor):
        """Write ``states`` as points ``first, first+1, ..`` of the trajectory (``save="all"``)."""
        if self.out is not None:
            self.out[first:first + states.shape[0]] = states

    def save_from(self, first: int, state: torch.Tensor):
        """Write ``state`` to every point from ``first`` on (``save="all"``)."""
        if self.out is not None:
            self.out[first:] = state

    def solution(self, converged: bool, last: torch.Tensor, method: str) -> Solution:
        """The :class:`Solution`: the buffer (``save="all"``) or ``last`` (shape ``(1, *state)``)."""
        status = Status.SUCCESS if converged else Status.MAX_ITERS
        ys = self.out if self.out is not None else last
        return self.problem.solution(ys, status, self.stats, method)
