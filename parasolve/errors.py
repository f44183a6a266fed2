"""The exceptions parasolve raises: every one derives from :class:`ParasolveError`.

Each also keeps its built-in base (``ValueError`` for bad values, ``RuntimeError`` for a solve
that could not finish, ...), so ``except ValueError`` goes on catching what it caught before and
``except parasolve.ParasolveError`` catches whatever parasolve raised on purpose. (The one
exception is ``parasolve.diffusion.lanes.LaneAborted``: a control-flow signal between worker threads that
never reaches the caller and must not be caught by ``except Exception``.)
"""

from __future__ import annotations

import os
import sys
import warnings


class ParasolveError(Exception):
    """Base class of the errors parasolve raises (its subclasses also derive from a built-in error)."""


class ParasolveValueError(ParasolveError, ValueError):
    """A value parasolve cannot use (the message names the argument, the value and the fix)."""


class ParasolveTypeError(ParasolveError, TypeError):
    """An argument of the wrong type (the message names the argument, the type and the fix)."""


class ConvergenceError(ParasolveError, RuntimeError):
    """The fixed-point iteration stopped before every step met the tolerance.

    Raised by :func:`parasolve.solve` with ``throw=True``; the partial result is in ``.solution``.
    """

    def __init__(self, message: str, solution=None):
        super().__init__(message)
        self.solution = solution


class NonFiniteError(ParasolveError, FloatingPointError):
    """The drift (or the state it produced) became NaN or Inf at step ``index`` (time ``time``).

    ``solution``: the partial result (status ``NON_FINITE``), which ``throw=False`` returns instead.
    """

    def __init__(self, message: str, index: int, time: float, solution=None):
        super().__init__(message)
        self.index = index
        self.time = time
        self.solution = solution


class UnsupportedStepError(ParasolveError, ValueError):
    """A scheme cannot solve the discrete problem of this step map (e.g. parareal with a
    multistep map, or ``fine="odeint"`` with a map whose drift is not an ODE right-hand side).
    ``scheme`` and ``step`` name the two."""

    def __init__(self, message: str, scheme: str = "", step: str = ""):
        super().__init__(message)
        self.scheme = scheme
        self.step = step


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside parasolve (and outside torch,
    whose autograd machinery runs parasolve's forward and backward passes): the user's line."""
    skip = [_PACKAGE] + [os.path.dirname(m.__file__) + os.sep for m in (sys.modules.get("torch"),)
                         if m is not None and getattr(m, "__file__", None)]
    frame, level = sys._getframe(1), 2  # level 2: warn()'s caller
    while frame.f_back is not None and frame.f_code.co_filename.startswith(tuple(skip)):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
