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


class UnsupportedStepError(ValueError):
    """A scheme cannot solve the discrete problem of this step map (e.g. parareal with a
    multistep map, or ``fine="odeint"`` with a map whose drift is not an ODE right-hand side).
    ``scheme`` and ``step`` name the two."""

    def __init__(self, message: str, scheme: str = "", step: str = ""):
        super().__init__(message)
        self.scheme = scheme
        self.step = step
