"""Errors raised by evaluators."""

from __future__ import annotations


from ..errors import EvaluatorError

__all__ = ["EvaluatorError", "DistributedEvaluatorError"]


class DistributedEvaluatorError(EvaluatorError):
    """A rank did not take part in a gather in time.

    ``ranks``: the ranks that did not reach the gather (empty when every rank reached it and
    the collective itself failed); ``call``: the number of the drift call (1-based) that failed.
    """

    def __init__(self, message: str, *, ranks=(), call: int = 0):
        super().__init__(message)
        self.ranks = list(ranks)
        self.call = call
