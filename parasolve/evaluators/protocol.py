"""The evaluator contract, the default evaluator, and the errors evaluators raise.

An *evaluator* runs one batch of drift calls: the core calls ``evaluator(fn, t, y)`` for every
batch of time points (``t`` of shape ``(n,)``, ``y`` of shape ``(n, *state)``) and uses what it
returns as ``fn(t, y)``. Rules every evaluator keeps:

1. **Same values.** It returns exactly what ``fn(t, y)`` would (shape, dtype, device, values up
   to the round-off of splitting the batch), however it spreads the rows over devices or
   processes; it calls only ``fn``.
2. **Rows in order.** Row ``k`` of the result belongs to ``(t[k], y[k])``.
3. **Typed failure.** A failure of the evaluator itself (a worker that died or timed out) raises
   :class:`EvaluatorError` (or a subclass), never a hang; an exception of ``fn`` propagates.
   The core never falls back past an ``EvaluatorError``.
"""

from __future__ import annotations

import contextvars
from typing import Callable, Protocol

import torch

from ..errors import ParasolveError

__all__ = ["Evaluator", "local_evaluator", "EvaluatorError", "DistributedEvaluatorError", "tangents_per_point"]


class Evaluator(Protocol):
    """``evaluator(fn, t, y) -> fn(t, y)`` under the rules above."""

    def __call__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], t: torch.Tensor,
                 y: torch.Tensor) -> torch.Tensor: ...


#: True while the first call's row check runs (through the evaluator); read it with :func:`in_contract_check`.
#: A context variable, not an argument: the drift-level counters (the kit's ``CountingDrift``, the
#: per-sample model merger) are called as the user's ``f(t, y)``, which has no room for a flag.
CHECKING = contextvars.ContextVar("parasolve_contract_check", default=False)


def in_contract_check() -> bool:
    """True while the drift is being called by the first call's row check, not by the solve
    (what :class:`parasolve.testing.CountingDrift` and the evaluators' counters leave out; the
    check runs through the evaluator, so that its timeout covers it)."""
    return CHECKING.get()


#: The forward-mode tangents that ride on each point of the drift call in progress (0: none); read
#: it with :func:`tangents_per_point`. A context variable for the same reason as :data:`CHECKING`.
TANGENTS = contextvars.ContextVar("parasolve_tangents", default=0)


def tangents_per_point() -> int:
    """How many forward-mode tangents ride on each point of the drift call in progress: ``D`` while
    Newton measures ``D x D`` Jacobians by JVP (``options={"jacobian": "full", "derivative": "jvp"}``),
    else 0. The solve's ``stats.nfe`` counts a tangent as one evaluation; a counter that sees the
    call's ``n`` points adds ``n * tangents_per_point()`` to match (the kit's and the evaluators' do)."""
    return TANGENTS.get()


def local_evaluator(fn, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The default evaluator: the whole batch in one call on the state's device."""
    return fn(t, y)


class EvaluatorError(ParasolveError, RuntimeError):
    """An evaluator could not produce the batch of drift values (a worker failed, timed out, ...)."""


class DistributedEvaluatorError(EvaluatorError):
    """A rank did not take part in a gather in time.

    ``ranks``: the ranks that did not reach the gather (empty when every rank reached it and
    the collective itself failed); ``call``: the number of the drift call (1-based) that failed.
    """

    def __init__(self, message: str, *, ranks=(), call: int = 0):
        super().__init__(message)
        self.ranks = list(ranks)
        self.call = call
