"""The discrete problem a scheme solves: the drift, the step map, the grid and the settings -- an
immutable value, assembled once per solve (the bookkeeping a scheme keeps while solving it, the
acceptance and the :class:`~parasolve.Solution` it returns, is :class:`parasolve.schemes.Ledger`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch

from .drift import BatchedDrift
from .errors import NonFiniteError
from . import stop_rule
from .steps import StepMap, callable_names


@dataclass(frozen=True, eq=False)
class Problem:
    """``x_{i+1} = x_i + Phi_i(x_i)`` on the grid ``t`` from ``y0``, plus the solve's settings.

    ``tol`` is spread over the steps in proportion to their length and divided by how much the
    later steps amplify a defect in the returned states (the step map's gains,
    :mod:`parasolve.stop_rule`): step ``i`` is accepted when its defect
    max|x_{i+1} - x_i - Phi_i(x_i)| is at most ``tol * (|h_i| / |T|) / G_i`` -- and never below
    the dtype's floor -- so the gain-weighted defects of an accepted trajectory sum to at most
    ``tol`` (see docs/tolerance.md). ``observer``: called with a
    :class:`~parasolve.observers.SweepInfo` after each sweep (``None``: nobody watches).
    The derived quantities below are computed once, on first use.
    """

    drift: BatchedDrift
    step: StepMap
    t: torch.Tensor
    y0: torch.Tensor
    tol: float
    window: int
    max_iters: int
    save: str = "all"
    init: torch.Tensor | None = None
    observer: Callable | None = None

    @property
    def n_steps(self) -> int:
        return self.t.shape[0] - 1

    def thresholds(self) -> torch.Tensor:
        """Per-step defect allowances ``tol * (|h_i| / |T|) / G_i`` (float64, host), shape ``(N,)``."""
        return self.tol * self.shares / self.amplification()

    @cached_property
    def shares(self) -> torch.Tensor:
        """:func:`parasolve.stop_rule.shares` of the grid (it copies ``t`` to the host once)."""
        return stop_rule.shares(self.t)

    @cached_property
    def cumulative_shares(self) -> torch.Tensor:
        """The shares of every step up to each one (the budget where unused shares carry over)."""
        return torch.cumsum(self.shares, 0)

    @cached_property
    def _gains(self) -> tuple[torch.Tensor, bool]:
        gains = self.step.gains()
        return stop_rule.amplification(gains, self.save, self.n_steps), gains is not None

    def amplification(self) -> torch.Tensor:
        """``G_i`` of :func:`parasolve.stop_rule.amplification` for this step map and ``save`` (host)."""
        return self._gains[0]

    @property
    def carries(self) -> bool:
        """Whether unused shares carry over: only where the step map declares its gains."""
        return self._gains[1]

    @cached_property
    def _step_indices(self) -> torch.Tensor:  # every step index once (slices of it are views)
        return torch.arange(self.n_steps, device=self.t.device)

    def increments(self, start: int, ys: torch.Tensor, prev):
        """Increments of steps ``start .. start+len(ys)-1`` at states ``ys`` (one batched round per stage)."""
        return self.step.increments(self.drift, self.t, self._step_indices[start:start + ys.shape[0]], ys, prev)

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

    def non_finite(self, index: int) -> NonFiniteError:
        time = float(self.t[index])
        what = callable_names(self.step)
        return NonFiniteError(
            f"The drift produced NaN or Inf at step {index} (t={time:.6g}); check {what} near that "
            f"time or use a finer grid `t`.", index=index, time=time)
