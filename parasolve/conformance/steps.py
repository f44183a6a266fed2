"""Rules 1-8 of the :class:`~parasolve.steps.StepMap` contract, one check each (rules 9-13, the
optional capabilities, are in :mod:`.protocols`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..steps import StepMap
from .counting import CountingDrift
from .rules import Rule, one_at_a_time, sequential


@dataclass
class StepCase:
    """The problem a step map's rules run on: grid ``t``, drift, and ``y``, random states
    ``x_0 .. x_{N-1}`` near ``y0``."""

    step: StepMap
    t: torch.Tensor
    y0: torch.Tensor
    drift: object
    y: torch.Tensor

    @property
    def n(self) -> int:
        return self.t.shape[0] - 1

    @property
    def idx(self) -> torch.Tensor:
        return torch.arange(self.n, device=self.t.device)

    def increments(self, drift=None):
        """``increments`` of every step of the grid in one call from step 0."""
        return self.step.increments(self.drift if drift is None else drift, self.t, self.idx, self.y, None)

    def tolerance(self, inc: torch.Tensor) -> float:
        """Round-off allowed between two ways of computing the increments ``inc``."""
        return 1e3 * torch.finfo(self.y.dtype).eps * max(1.0, float(inc.abs().max()))


def _increments(case, fail):
    y, n = case.y, case.n
    try:
        out = case.increments()
    except Exception as exc:  # noqa: BLE001 -- reported as the broken rule
        fail(f"increments(drift, t, arange({n}), y) raised {type(exc).__name__}: {exc}")
    if not (isinstance(out, tuple) and len(out) == 2):
        fail(f"returned {type(out).__name__}, not Increments(inc, carry)")
    inc = out[0]
    if not isinstance(inc, torch.Tensor) or inc.shape != y.shape or inc.dtype != y.dtype:
        got = f"{tuple(inc.shape)} {inc.dtype}" if isinstance(inc, torch.Tensor) else type(inc).__name__
        fail(f"inc must have y's shape {tuple(y.shape)} and dtype {y.dtype}; got {got}")


def _batched(case, fail):
    step, drift, t, idx, y, n = case.step, case.drift, case.t, case.idx, case.y, case.n
    inc = case.increments()[0]
    tol = case.tolerance(inc)
    single, _ = one_at_a_time(step, drift, t, idx, y)
    gap = float((single - inc).abs().max())
    if not gap <= tol:
        fail(f"batched increments differ from one-at-a-time ones by {gap:.3e} (allowed {tol:.1e})")
    half = n // 2
    if half >= 1:
        first = step.increments(drift, t, idx[:half], y[:half], None)
        rest = step.increments(drift, t, idx[half:], y[half:], first[1][-1] if step.multistep else None)
        gap = float((torch.cat([first[0], rest[0]]) - inc).abs().max())
        if not gap <= tol:
            fail(f"a batch split at step {half} (carry handed over) differs from the whole batch by {gap:.3e}")


def _order(case, fail):
    """Global error at ``T = 2`` of ``y' = cos(t) y`` (exact ``exp(sin t)``) on uniform grids of 16,
    32 and 64 steps; the observed rate must be the declared order (-0.3, +0.7). Maps that do not
    declare ``ode_rhs`` have no order to check."""
    step = case.step
    if not step.ode_rhs:
        return

    def f(t, y):
        return torch.cos(t)[:, None] * y

    y0 = torch.tensor([1.0], dtype=torch.float64)
    errors = []
    for n in (16, 32, 64):
        t = torch.linspace(0.0, 2.0, n + 1, dtype=torch.float64)
        end = sequential(step, f, t, y0)[-1]
        errors.append(abs(float(end[0]) - math.exp(math.sin(2.0))))
    if errors[-1] < 1e-13:  # exact to round-off: no rate to measure, and no order to contradict
        return
    rate = math.log2(errors[-2] / errors[-1]) if errors[-1] > 0 else math.inf
    if not step.order - 0.3 <= rate <= step.order + 0.7:
        fail(f"declares order {step.order}; on y' = cos(t) y the global error fell from {errors[-2]:.3e} to "
             f"{errors[-1]:.3e} when h halved: observed order {rate:.2f}")


def _stages(case, fail):
    step, n = case.step, case.n
    counted = CountingDrift(case.drift)
    case.increments(counted)
    if step.implicit:  # one round per Newton iteration: at least one call
        if counted.calls < 1:
            fail(f"an implicit map must call the drift; it made {counted.calls} calls")
    elif counted.calls != step.stages or counted.points != step.stages * n:
        fail(f"declares stages={step.stages}: one call of {n} steps must make {step.stages} drift calls of {n} "
             f"points; it made {counted.calls} calls of {counted.points} points")


def _carry(case, fail):
    step, drift, t, idx, y, n = case.step, case.drift, case.t, case.idx, case.y, case.n
    carry = case.increments()[1]
    if not step.multistep:
        if carry is not None:
            fail(f"a one-step map returns carry=None; got {type(carry).__name__}")
        return
    if not isinstance(carry, torch.Tensor) or carry.shape[0] != n:
        got = tuple(carry.shape) if isinstance(carry, torch.Tensor) else repr(carry)
        fail(f"a multistep map must return a tensor carry with a leading dimension of {n}; got {got}")
    if n >= 2:
        try:
            step.increments(drift, t, idx[1:], y[1:], None)
        except ValueError:
            pass
        else:
            fail("increments() from step 1 without `prev` must raise ValueError, not guess")


def _deterministic(case, fail):
    inc, again = case.increments()[0], case.increments()[0]
    if not torch.equal(again, inc):
        fail(f"two identical calls differ by {float((again - inc).abs().max()):.3e}")


def _linear_part(case, fail):
    step, n = case.step, case.n
    before = step.linear_part()
    inc = case.increments()[0]
    after = step.linear_part()
    if not step.linear:
        if before is not None or after is not None:
            fail("declares linear=False but linear_part() returned a value")
        return
    for part in (before, after):
        if not isinstance(part, torch.Tensor) or part.dim() != 1 or part.device.type != "cpu" \
                or not torch.isfinite(part).all():
            got = tuple(part.shape) if isinstance(part, torch.Tensor) else repr(part)
            fail(f"declares linear=True, so linear_part() must return finite per-step scalars of shape (N,) on "
                 f"the CPU; got {got}")
        if part.shape[0] != n:
            fail(f"linear_part() has {part.shape[0]} entries for a {n}-step grid")
    if not torch.equal(before, after):
        fail(f"linear_part() changed after an increments() call (by {float((after - before).abs().max()):.3e}): "
             f"it must be a function of the map as built")
    if not torch.equal(case.increments()[0], inc):
        fail("the increments changed after a linear_part() call")


def _declarations(case, fail):
    step = case.step
    for attr, value in (("order", step.order), ("stages", step.stages), ("carry_depth", step.carry_depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fail(f"`{attr}` must be an integer >= 1; got {value!r}")
    for attr, value in (("multistep", step.multistep), ("stochastic", step.stochastic), ("ode_rhs", step.ode_rhs),
                        ("linear", step.linear)):
        if not isinstance(value, bool):
            fail(f"`{attr}` must be a bool; got {value!r}")
    names = step.callables
    if not (isinstance(names, tuple) and names and all(isinstance(c, str) for c in names)):
        fail(f"`callables` must be a non-empty tuple of names; got {names!r}")
    if not isinstance(step.name, str) or not step.name:
        fail(f"`name` must be a non-empty string; got {step.name!r}")


RULES = (Rule(1, "increments", _increments), Rule(2, "batched = one at a time", _batched),
         Rule(3, "declared order", _order), Rule(4, "declared stages", _stages), Rule(5, "carry", _carry),
         Rule(6, "deterministic", _deterministic), Rule(7, "linear part", _linear_part),
         Rule(8, "declarations", _declarations))
