"""An evaluator that counts what it evaluates: the oracle for a solve's drift stats."""

from __future__ import annotations

import threading

from .protocol import in_contract_check, local_evaluator, tangents_per_point


class CountingEvaluator:
    """``evaluator(fn, t, y) -> inner(fn, t, y)`` that counts the batched drift ``calls`` and the
    time points (``rows``) it evaluates, thread-safe, failed solves included -- e.g. the inner
    evaluator of a multi-device or distributed one, or odeint's count of its evaluations.

    Like the solve's stats it leaves out the first call's row check of a vectorized drift
    (:func:`~parasolve.evaluators.in_contract_check`), which is no part of the solve, and counts
    the forward-mode tangents a row carries as rows (:func:`~parasolve.evaluators.tangents_per_point`).
    ``inner``: the evaluator that does the work (default: a plain call).
    """

    def __init__(self, inner=None):
        self.inner = inner if inner is not None else local_evaluator
        self.calls, self.rows, self._lock = 0, 0, threading.Lock()

    def __call__(self, fn, t, y):
        if not in_contract_check():
            self.count(t.shape[0] * (1 + tangents_per_point()))
        return self.inner(fn, t, y)

    def count(self, rows: int) -> None:
        """Count one drift call on ``rows`` time points made outside this evaluator."""
        with self._lock:
            self.calls += 1
            self.rows += rows
