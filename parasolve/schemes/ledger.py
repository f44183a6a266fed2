"""The bookkeeping every scheme shares: acceptance, defect sums, history, the output buffer,
NaN/Inf failures, the observer, the warnings and the :class:`~parasolve.Solution`.

A scheme opens one :class:`Ledger` per solve (``with Ledger(problem, window, name) as ledger:``),
feeds it what each sweep measured, and closes with :meth:`Ledger.solution`, which builds the
solution once, whole. The per-step allowances come from
:meth:`parasolve.discrete_problem.Problem.thresholds` and from nowhere else, so a change of the stop rule
reaches every scheme at once. The windowed schemes accept through :meth:`Ledger.accept_steps`,
parareal through :meth:`Ledger.accept_blocks` (its segments), both by one rule
(:func:`parasolve.stop_rule.within_budget`): the gain-weighted budget, with unused shares carried
over where the step map declares gains, and (windowed schemes) the floating-point floor.
"""

from __future__ import annotations

import torch

from .. import stop_rule
from ..errors import warn
from ..observers import SweepInfo
from ..discrete_problem import Problem
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
        self._observer = problem.observer
        self._measured = None  # what the last acceptance saw, for the observer: (defects, allowances, budget, spent, met)
        self._steps_done = 0  # steps of the sequential loop so far (each one counts as a sweep for the observer)
        # each step's defects in the last sweeps that measured it, oldest first (for the stall test)
        self._seen = torch.full((stop_rule.STALL_SWEEPS, problem.n_steps), float("nan"), dtype=torch.float64)

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc):
        return None

    # ------------------------------------------------------------------ acceptance
    def allowances(self, bounds: list[int]) -> torch.Tensor:
        """The allowance of each block of steps ``[bounds[j], bounds[j+1])``: the sum of its steps'."""
        return torch.stack([self.thresholds[lo:hi].sum() for lo, hi in zip(bounds, bounds[1:])])

    def accept_blocks(self, bounds: list[int], defects: torch.Tensor) -> int:
        """Count one iteration of a scheme whose defects sit at the ends of the blocks of steps
        ``[bounds[j], bounds[j+1])`` (parareal's segments) and accept its leading blocks. A
        block's defect is weighted by the gain of its last step; its own share is the sum of its
        steps' shares. No floating-point floor: parareal's boundary defects vanish at its fixed
        point (to the rounding of its correction) and its exact segment per iteration bounds
        the iterations by the segment count, so a small ``tol`` costs iterations, not a crawl.
        Host tensors."""
        self.stats.iterations += 1
        last = torch.tensor(bounds[1:], dtype=torch.long) - 1
        share = self.problem.shares
        own = torch.tensor([float(share[lo:hi].sum()) for lo, hi in zip(bounds, bounds[1:])], dtype=torch.float64)
        return self._accept(last, own, defects, None)

    def accept_steps(self, start: int, defects: torch.Tensor, scale: torch.Tensor) -> int:
        """Count one sweep of a windowed scheme and accept its leading steps ``start ..``, given
        their host ``defects`` and sizes ``scale = max|x_{i+1}| + max|Phi_i|`` (for the
        floating-point floor); the accepted defects, plain and weighted by ``G_i``, go to the stats.

        Where the step map declares gains, a step is accepted when the weighted defects accepted
        so far, its own included, stay within the shares of ``tol`` of the steps up to it (unused
        shares carry over); without gains, when its defect is within its own share (the bound
        then carries the unknown stability constant, and moving allowance to later steps could
        enlarge it). Either way also when its defect is at the floor (none at ``tol=0``, the
        request for exact steps). A first rejected step whose defect stopped decreasing near its
        floor (:func:`parasolve.stop_rule.stalled`) measures the drift's noise: the floor is
        raised to it (``stats.noise_floor``) and the rest of the window judged again."""
        self.stats.iterations += 1
        problem, stats = self.problem, self.stats
        m = self._accept_window(start, defects, scale)
        if m < len(defects) and problem.tol > 0 and self._front_stalled(start + m, defects[m], scale[m]):
            stats.noise_floor = max(stats.noise_floor, stop_rule.STALL_MARGIN * float(defects[m] / scale[m]))
            first = self._measured
            m += self._accept_window(start + m, defects[m:], scale[m:])
            if first is not None:  # what the observer sees: the first verdict up to m, then the second
                d, a, b, spent, _ = first
                self._measured = (d, torch.cat([a[:len(d) - len(self._measured[0])], self._measured[1]]), b, spent, m)
        steps = slice(start, start + len(defects))
        self._seen[:, steps] = torch.cat([self._seen[1:, steps], defects.double()[None]])
        return m

    def _accept_window(self, start: int, defects: torch.Tensor, scale: torch.Tensor) -> int:
        last = torch.arange(start, start + len(defects))
        return self._accept(last, self.problem.shares[last], defects, scale, self.stats.noise_floor)

    def accept_trajectory(self, stats: Stats, start: int, defects: torch.Tensor, scale: torch.Tensor) -> int:
        """One trajectory's window in a batch solved trajectory by trajectory
        (``parasolve.schemes.trajectories``): its leading steps ``start ..`` accepted by the
        same rule as :meth:`accept_steps`, with ``tol`` its own budget, into its own ``stats``
        (the sweep is counted by the caller, once for the batch)."""
        last = torch.arange(start, start + len(defects))
        return self._accept(last, self.problem.shares[last], defects, scale, stats=stats)

    def _accept(self, last, own_share, defects, scale, noise: float = 0.0, stats: Stats | None = None) -> int:
        """The stop rule for defects sitting after steps ``last`` (host long tensor);
        ``own_share``: each defect's own share of ``tol`` (used only without declared gains);
        ``scale``: the sizes the floor is taken from (``None``: no floor); ``stats``: where the
        accepted defects go (default the solve's; another's is not shown to the observer)."""
        problem, own_stats = self.problem, stats is None
        stats = self.stats if own_stats else stats
        weights = problem.amplification()[last]
        carry = problem.carries
        budget = problem.tol * (problem.cumulative_shares[last] if carry else own_share)
        if scale is None or problem.tol == 0:
            floor = torch.zeros_like(budget)
        else:
            floor = torch.maximum(stop_rule.floor(scale, problem.y0.dtype), noise * scale.double())
        spent = stats.weighted_defect_sum
        m = stop_rule.within_budget(defects, weights, budget, spent if carry else None, floor)
        if self._observer is not None and own_stats:
            own = problem.tol * own_share / weights
            self._measured = (defects.double(), torch.maximum(own, floor), budget if carry else None, spent, m)
        accepted = defects[:m].double()
        stats.defect_sum += float(accepted.sum())
        stats.weighted_defect_sum += float((accepted * weights[:m]).sum())
        return m

    def _front_stalled(self, step: int, defect, scale) -> bool:
        """Whether the first rejected step's defect has stopped decreasing near its floor
        (:func:`parasolve.stop_rule.stalled`): the drift's evaluations are that noisy."""
        floor = float(stop_rule.floor(scale[None], self.problem.y0.dtype)[0])
        history = [*self._seen[:, step].tolist(), float(defect)]
        return stop_rule.stalled(history, max(float(self.thresholds[step]), floor), floor)

    # ------------------------------------------------------------------ the record and the observer
    def record(self, start: int, end: int, residual: float, advanced: int):
        """Append the sweep's :class:`SweepRecord` and tell the observer."""
        record = SweepRecord(self.stats.iterations, start, end, residual, advanced)
        self.stats.history.append(record)
        if self._observer is not None:
            defects, allowances, budget, spent, met = self._measured or (None, None, None, 0.0, None)
            self._measured = None
            self._observer(SweepInfo(self._method, self.problem.n_steps, record.sweep, start, end, residual, advanced,
                                     defects, allowances, budget, spent, met))

    def advance(self, steps: int):
        """``steps`` more steps of the sequential loop, each a sweep for the observer."""
        if self._observer is not None:
            for _ in range(steps):
                self._steps_done += 1
                i = self._steps_done
                self._observer(SweepInfo(self._method, self.problem.n_steps, i, i - 1, i, 0.0, 1))

    # ------------------------------------------------------------------ the trajectory and the result
    def fail_at(self, index: int):
        """Raise :class:`~parasolve.NonFiniteError` for step ``index`` unless it is negative
        (no failure), with the partial result (status ``NON_FINITE``; ``throw=False`` returns it).
        Schemes call it only for failures that start from an accepted state."""
        if index >= 0:
            error = self.problem.non_finite(index)
            ys = self.out if self.out is not None else torch.full_like(self.problem.y0, float("nan"))[None]
            error.solution = self._build(ys, Status.NON_FINITE, self._method, None, error)
            raise error

    def save(self, first: int, states: torch.Tensor):
        """Write ``states`` as points ``first, first+1, ..`` of the trajectory (``save="all"``)."""
        if self.out is not None:
            self.out[first:first + states.shape[0]] = states

    def save_from(self, first: int, state: torch.Tensor):
        """Write ``state`` to every point from ``first`` on (``save="all"``)."""
        if self.out is not None:
            self.out[first:] = state

    def solution(self, converged: bool, last: torch.Tensor, method: str, step: str | None = None) -> Solution:
        """The :class:`Solution`: the buffer (``save="all"``) or ``last`` (shape ``(1, *state)``);
        ``step``: the name it reports for the discretisation (default: the step map's)."""
        status = Status.SUCCESS if converged else Status.MAX_ITERS
        ys = self.out if self.out is not None else last
        return self._build(ys, status, method, step)

    def _build(self, ys, status, method, step, failure=None) -> Solution:
        """The solution, whole: the drift's counts in the stats, and the warning where the
        weighted defects ended above ``tol`` (accepted at the floating-point floor)."""
        problem, stats = self.problem, self.stats
        stats.nfe = problem.drift.nfe
        stats.drift_calls = problem.drift.calls
        if failure is None and stats.weighted_defect_sum > problem.tol * (1 + stop_rule.FLOOR_SLACK):
            warn(stop_rule.floor_warning(problem.tol, stats.weighted_defect_sum, problem.y0.dtype,
                                         stats.noise_floor, declared=problem.carries))
        ts = problem.t if problem.save == "all" else problem.t[-1:]
        return Solution(ts=ts, ys=ys, status=status, stats=stats, method=method,
                        step=problem.step.name if step is None else step, failure=failure)
