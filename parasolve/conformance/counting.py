"""Counters that are oracles for a solve's stats, independent of parasolve's own counters."""

from __future__ import annotations

import threading

from ..drift import in_contract_check


class CountingDrift:
    """A batched drift ``f(t, y)`` (``t`` of shape ``(n,)``) that counts its own ``calls`` and
    time ``points`` -- an oracle for a solve's stats independent of parasolve's counters. The one
    call of a vectorized drift's first-call row check (``parasolve.drift.in_contract_check()``) is
    not part of the solve and is not counted."""

    def __init__(self, f):
        self.f, self.calls, self.points = f, 0, 0

    def __call__(self, t, y):
        if not in_contract_check():
            self.calls += 1
            self.points += t.shape[0]
        return self.f(t, y)

    def reset(self):
        self.calls = self.points = 0


class CountingEvaluator:
    """An evaluator (``evaluator(fn, t, y) -> fn(t, y)``) that counts the ``calls`` and ``rows``
    it evaluates, thread-safe -- e.g. the inner evaluator of a multi-device or distributed one.
    Like the solve's stats, it leaves out the first call's row check (:func:`in_contract_check`)."""

    def __init__(self):
        self.calls, self.rows, self._lock = 0, 0, threading.Lock()

    def __call__(self, fn, t, y):
        if not in_contract_check():
            with self._lock:
                self.calls += 1
                self.rows += t.shape[0]
        return fn(t, y)
