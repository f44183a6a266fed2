"""The discrete problem a scheme solves: the drift, the step map, the grid and the settings (the
bookkeeping a scheme keeps while solving it is :class:`parasolve.schemes.Ledger`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .drift import BatchedDrift
from .errors import NonFiniteError, warn
from .solution import Solution, Stats, Status
from . import stop_rule
from .steps import StepMap, callable_names


@dataclass
class Problem:
    """``x_{i+1} = x_i + Phi_i(x_i)`` on the grid ``t`` from ``y0``, plus the solve's settings.

    ``tol`` is spread over the steps in proportion to their length and divided by how much the
    later steps amplify a defect in the returned states (the step map's gains,
    :mod:`parasolve.stop_rule`): step ``i`` is accepted when its defect
    max|x_{i+1} - x_i - Phi_i(x_i)| is at most ``tol * (|h_i| / |T|) / G_i`` -- and never below
    the dtype's floor -- so the gain-weighted defects of an accepted trajectory sum to at most
    ``tol`` (see docs/tolerance.md).
    """

    drift: BatchedDrift
    step: StepMap
    t: torch.Tensor
    y0: torch.Tensor
    tol: float
    window: int
    max_iters: int
    save: str = "all"
    progress: bool = False
    init: torch.Tensor | None = None
    _gain: torch.Tensor | None = field(default=None, init=False, repr=False)
    _cum: torch.Tensor | None = field(default=None, init=False, repr=False)
    _share: torch.Tensor | None = field(default=None, init=False, repr=False)
    _declared: bool = field(default=False, init=False, repr=False)
    _steps: torch.Tensor | None = field(default=None, init=False, repr=False)

    @property
    def n_steps(self) -> int:
        return self.t.shape[0] - 1

    def thresholds(self) -> torch.Tensor:
        """Per-step defect allowances ``tol * (|h_i| / |T|) / G_i`` (float64, host), shape ``(N,)``."""
        return self.tol * self._shares() / self.amplification()

    def _shares(self) -> torch.Tensor:
        """:func:`parasolve.stop_rule.shares` of the grid, computed once (it copies ``t`` to the host)."""
        if self._share is None:
            self._share = stop_rule.shares(self.t)
        return self._share

    def amplification(self) -> torch.Tensor:
        """``G_i`` of :func:`parasolve.stop_rule.amplification` for this step map and ``save`` (host)."""
        if self._gain is None:
            gains = self.step.gains()
            self._declared = gains is not None
            self._gain = stop_rule.amplification(gains, self.save, self.n_steps)
        return self._gain

    def _carry(self) -> bool:
        """Whether unused shares carry over: only where the step map declares its gains."""
        self.amplification()
        return self._declared

    def accept(self, start: int, defects: torch.Tensor, scale: torch.Tensor, stats: Stats, noise: float = 0.0) -> int:
        """How many leading steps ``start ..`` of a window are accepted, given their host
        ``defects`` and sizes ``scale = max|x_{i+1}| + max|Phi_i|`` (for the floating-point
        floor); adds the accepted defects, plain and weighted by ``G_i``, to ``stats``.

        Where the step map declares gains, a step is accepted when the weighted defects accepted
        so far, its own included, stay within the shares of ``tol`` of the steps up to it (unused
        shares carry over); without gains, when its defect is within its own share (the bound
        then carries the unknown stability constant, and moving allowance to later steps could
        enlarge it). Either way also when its defect is at the floor (none at ``tol=0``, the
        request for exact steps); see :func:`parasolve.stop_rule.within_budget`. ``noise``: a
        measured relative noise floor of the drift's evaluations (``noise * scale`` raises the
        floor; :class:`~parasolve.schemes.ledger.Ledger` measures it)."""
        last = torch.arange(start, start + len(defects))
        return self._accept(last, self._shares()[last], defects, scale, stats, noise)

    def accept_blocks(self, bounds: list[int], defects: torch.Tensor, stats: Stats) -> int:
        """:meth:`accept` for consecutive blocks of steps ``[bounds[j], bounds[j+1])`` whose only
        defect sits at the block's end, the state ``x_{bounds[j+1]}`` (parareal's segments). A
        block's defect is weighted by the gain of its last step; its own share is the sum of its
        steps' shares. No floating-point floor: parareal's boundary defects vanish at its fixed
        point (to the rounding of its correction) and its exact segment per iteration bounds
        the iterations by the segment count, so a small ``tol`` costs iterations, not a crawl."""
        last = torch.tensor(bounds[1:], dtype=torch.long) - 1
        share = self._shares()
        own = torch.tensor([float(share[lo:hi].sum()) for lo, hi in zip(bounds, bounds[1:])], dtype=torch.float64)
        return self._accept(last, own, defects, None, stats)

    def _accept(self, last, own_share, defects, scale, stats, noise: float = 0.0) -> int:
        """The rule of :meth:`accept` for defects sitting after steps ``last`` (host long tensor);
        ``own_share``: each defect's own share of ``tol`` (used only without declared gains);
        ``scale``: the sizes the floor is taken from (``None``: no floor)."""
        weights = self.amplification()[last]
        carry = self._carry()
        budget = self.tol * (self._cum_shares()[last] if carry else own_share)
        if scale is None or self.tol == 0:
            floor = torch.zeros_like(budget)
        else:
            floor = torch.maximum(stop_rule.floor(scale, self.y0.dtype), noise * scale.double())
        m = stop_rule.within_budget(defects, weights, budget, stats.weighted_defect_sum if carry else None, floor)
        accepted = defects[:m].double()
        stats.defect_sum += float(accepted.sum())
        stats.weighted_defect_sum += float((accepted * weights[:m]).sum())
        return m

    def _cum_shares(self) -> torch.Tensor:
        if self._cum is None:
            self._cum = torch.cumsum(self._shares(), 0)
        return self._cum

    def increments(self, start: int, ys: torch.Tensor, prev):
        """Increments of steps ``start .. start+len(ys)-1`` at states ``ys`` (one batched round per stage)."""
        if self._steps is None:  # every step index once (slices of it are views: no allocation per call)
            self._steps = torch.arange(self.n_steps, device=self.t.device)
        return self.step.increments(self.drift, self.t, self._steps[start:start + ys.shape[0]], ys, prev)

    def guess(self, start: int, count: int, last: torch.Tensor, hint=None) -> torch.Tensor:
        """Initial guess for states ``start .. start+count-1`` (``last``: the state before them):
        ``init`` if given; else the step map's ``predict(start, count, last, hint)`` where its
        ``predict_new`` is on and the scheme passes a ``hint`` (the latest evaluated step
        ``(j, x_j, Phi_j, carry_j)``); else ``last`` repeated."""
        if self.init is not None:
            return self.init[start:start + count]
        if hint is not None and self.step.predict_new:
            return self.step.predict(start, count, last, hint)
        return last.expand(count, *last.shape)

    def progress_bar(self, desc: str):
        return tqdm(total=self.n_steps, desc=desc, disable=not self.progress, leave=False, unit="step")

    def non_finite(self, index: int) -> NonFiniteError:
        time = float(self.t[index])
        what = callable_names(self.step)
        return NonFiniteError(
            f"The drift produced NaN or Inf at step {index} (t={time:.6g}); check {what} near that "
            f"time or use a finer grid `t`.", index=index, time=time)

    def solution(self, ys: torch.Tensor, status: Status, stats: Stats, method: str, failure=None) -> Solution:
        stats.nfe = self.drift.nfe
        stats.drift_calls = self.drift.calls
        if failure is None and stats.weighted_defect_sum > self.tol * (1 + stop_rule.FLOOR_SLACK):
            warn(stop_rule.floor_warning(self.tol, stats.weighted_defect_sum, self.y0.dtype,
                                         stats.noise_floor, declared=self._carry()))
        ts = self.t if self.save == "all" else self.t[-1:]
        return Solution(ts=ts, ys=ys, status=status, stats=stats, method=method, step=self.step.name,
                        failure=failure)
