"""Counters that are oracles for a solve's stats, independent of parasolve's own counters."""

from __future__ import annotations

from ..evaluators.counting import CountingEvaluator  # noqa: F401  (the one counting evaluator)
from ..evaluators.protocol import in_contract_check, tangents_per_point


class CountingDrift:
    """A batched drift ``f(t, y)`` (``t`` of shape ``(n,)``) that counts its own ``calls`` and
    time ``points`` -- an oracle for a solve's stats independent of parasolve's counters. The one
    call of a vectorized drift's first-call row check (``parasolve.drift.in_contract_check()``) is
    not part of the solve and is not counted; the forward-mode tangents riding on a call's points
    (``parasolve.evaluators.tangents_per_point()``) count as points, as in the solve's stats."""

    def __init__(self, f):
        self.f, self.calls, self.points = f, 0, 0

    def __call__(self, t, y):
        if not in_contract_check():
            self.calls += 1
            self.points += t.shape[0] * (1 + tangents_per_point())
        return self.f(t, y)

    def reset(self):
        self.calls = self.points = 0
