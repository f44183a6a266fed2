"""Lanes: independent computations run side by side, their expensive calls merged into one per round.

Each lane is a function ``job(call) -> result`` run in a worker thread of its own; inside it,
``call(request)`` hands a request to the coordinator and blocks until its answer is back. The
coordinator (the calling thread) waits until every lane still running is blocked in ``call``,
passes the pending requests, in lane order, to ``merged(requests) -> answers`` -- one call per
round -- and wakes the lanes with their answers. A lane that returns drops out of later rounds,
so lanes may make different numbers of calls; the batch a round merges is deterministic (the
lanes still running, in lane order), whatever the thread timing.

Failure never hangs: an exception in a lane, or in ``merged``, stops every lane at its next
``call`` (with :class:`LaneAborted`, which ``except Exception`` does not catch), the workers are
joined, and the first exception is raised in the caller. The workers run with the caller's
grad mode, inference mode, context variables and current CUDA stream (all thread-local).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Any, Callable, Sequence

import torch

__all__ = ["run_lanes", "LaneAborted"]


class LaneAborted(BaseException):
    """Unwinds a lane whose sibling failed (a ``BaseException``, so a lane's own broad
    ``except Exception`` does not swallow it)."""


def run_lanes(jobs: Sequence[Callable[[Callable[[Any], Any]], Any]],
              merged: Callable[[list], Sequence]) -> list:
    """Run every ``job(call)`` in its own thread with their calls merged; their results, in order.

    ``merged(requests)`` gets the requests of one round (lanes in order) and returns one answer
    per request, in the same order.
    """
    lanes = _Lanes(len(jobs))
    enter = _caller_state()
    workers = [threading.Thread(target=lanes.work, args=(i, job, enter()), daemon=True,
                                name=f"parasolve-lane-{i}") for i, job in enumerate(jobs)]
    for w in workers:
        w.start()
    try:
        lanes.coordinate(merged)
    finally:
        lanes.abort()
        for w in workers:
            w.join()
    return lanes.results


class _Lanes:
    def __init__(self, n: int):
        self.n = n
        self.cv = threading.Condition()
        self.pending: dict[int, Any] = {}   # lane -> its request, waiting for this round
        self.answers: dict[int, Any] = {}   # lane -> its answer, not yet picked up
        self.finished: set[int] = set()
        self.results: list = [None] * n
        self.error: BaseException | None = None
        self.aborted = False

    def call(self, lane: int, request):
        with self.cv:
            if self.aborted:
                raise LaneAborted
            self.pending[lane] = request
            self.cv.notify_all()
            self.cv.wait_for(lambda: lane in self.answers or self.aborted)
            if lane not in self.answers:
                raise LaneAborted
            return self.answers.pop(lane)

    def work(self, lane: int, job, run_in_caller_state):
        error, result = None, None
        try:
            result = run_in_caller_state(lambda: job(lambda request: self.call(lane, request)))
        except LaneAborted:
            pass
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
            error = exc
        with self.cv:
            self.results[lane] = result
            self.finished.add(lane)
            if error is not None and self.error is None:
                self.error = error
            self.cv.notify_all()

    def coordinate(self, merged):
        with self.cv:
            while True:
                self.cv.wait_for(lambda: self.error is not None or len(self.pending) + len(self.finished) == self.n)
                if self.error is not None:
                    raise self.error
                if not self.pending:
                    return
                order = sorted(self.pending)
                answers = list(merged([self.pending.pop(i) for i in order]))
                if len(answers) != len(order):
                    raise RuntimeError(f"merged() returned {len(answers)} answers for {len(order)} requests.")
                self.answers.update(zip(order, answers))
                self.cv.notify_all()

    def abort(self):
        with self.cv:
            self.aborted = True
            self.cv.notify_all()


def _caller_state():
    """A factory of ``run(fn)`` that calls ``fn`` in a worker under the caller's thread-local state."""
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    stream = torch.cuda.current_stream() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def enter():
        context = contextvars.copy_context()  # one copy per lane: a lane's settings stay its own

        def run(fn):
            def inner():
                with torch.inference_mode(inference), torch.set_grad_enabled(grad), \
                        (torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()):
                    return fn()
            return context.run(inner)
        return run
    return enter
