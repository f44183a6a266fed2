"""Exceptions raised by parasolve beyond the built-in ``ValueError``/``TypeError``."""

from __future__ import annotations


class ConvergenceError(RuntimeError):
    """The fixed-point iteration stopped before every step met the tolerance.

    Raised by :func:`parasolve.solve` with ``throw=True``; the partial result is in ``.solution``.
    """

    def __init__(self, message: str, solution=None):
        super().__init__(message)
        self.solution = solution


class NonFiniteError(FloatingPointError):
    """The drift (or the state it produced) became NaN or Inf at step ``index`` (time ``time``)."""

    def __init__(self, message: str, index: int, time: float):
        super().__init__(message)
        self.index = index
        self.time = time


class EvaluatorError(RuntimeError):
    """An evaluator could not produce the batch of drift values (a worker failed, timed out, ...)."""
