"""The discrete problem a scheme solves: the drift, the step map, the grid and the settings (the
bookkeeping a scheme keeps while solving it is :class:`parasolve.schemes.Ledger`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .drift import BatchedDrift
from .errors import NonFiniteError
from .solution import Solution, Stats, Status
from .steps import StepMap, callable_names


@dataclass
class Problem:
    """``x_{i+1} = x_i + Phi_i(x_i)`` on the grid ``t`` from ``y0``, plus the solve's settings.

    ``tol`` is spread over the steps in proportion to their length: step ``i`` is accepted when
    its defect max|x_{i+1} - x_i - Phi_i(x_i)| is at most ``tol * |h_i| / |T|``, so the defects
    of an accepted trajectory sum to at most ``tol`` (see docs/tolerance.md).
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

    @property
    def n_steps(self) -> int:
        return self.t.shape[0] - 1

    def thresholds(self) -> torch.Tensor:
        """Per-step defect allowance ``tol * |h_i| / |T|`` on the host, shape ``(N,)``."""
        h = (self.t[1:] - self.t[:-1]).abs().double().cpu()
        return self.tol * h / h.sum()

    def increments(self, start: int, ys: torch.Tensor, prev):
        """Increments of steps ``start .. start+len(ys)-1`` at states ``ys`` (one batched round per stage)."""
        idx = torch.arange(start, start + ys.shape[0], device=self.t.device)
        return self.step.increments(self.drift, self.t, idx, ys, prev)

    def guess(self, start: int, count: int, last: torch.Tensor) -> torch.Tensor:
        """Initial guess for states ``start .. start+count-1``: ``init`` if given, else ``last`` repeated."""
        if self.init is not None:
            return self.init[start:start + count]
        return last.expand(count, *last.shape)

    def progress_bar(self, desc: str):
        return tqdm(total=self.n_steps, desc=desc, disable=not self.progress, leave=False, unit="step")

    def non_finite(self, index: int) -> NonFiniteError:
        time = float(self.t[index])
        what = callable_names(self.step)
        return NonFiniteError(
            f"The drift produced NaN or Inf at step {index} (t={time:.6g}); check {what} near that "
            f"time or use a finer grid `t`.", index=index, time=time)

    def solution(self, ys: torch.Tensor, status: Status, stats: Stats, method: str) -> Solution:
        stats.nfe = self.drift.nfe
        stats.drift_calls = self.drift.calls
        ts = self.t if self.save == "all" else self.t[-1:]
        return Solution(ts=ts, ys=ys, status=status, stats=stats, method=method, step=self.step.name)
