"""One-step maps: the discrete problem ``x_{i+1} = x_i + Phi_i(x_i)`` that every scheme solves.

A step map computes the increments ``Phi_i`` for a batch of step indices at once, calling the
batched drift once per stage. Contract (subclass :class:`StepMap`)::

    increments(drift, t, idx, y, prev) -> (inc, first)

- ``t``: the whole grid ``(N+1,)``; ``idx``: the step indices ``(n,)``; ``y``: the states
  ``x_idx`` with shape ``(n, *state)``;
- ``prev``: for multistep maps (``multistep = True``), the first-stage drift at ``x_{idx[0]-1}``
  (``None`` at step 0); the drifts for the other entries come from ``first`` of the same batch,
  which is why ``idx`` must be consecutive;
- returns the increments ``(n, *state)`` and the first-stage drift values ``f(t_idx, x_idx)``.

Attributes the tests use as oracles: ``order`` (global order of accuracy) and ``stages``
(batched drift calls per sweep).
"""

from __future__ import annotations

from typing import Sequence

import torch

STEPS: dict[str, "StepMap"] = {}


def register_step(step: "StepMap") -> "StepMap":
    """Make ``step`` selectable by ``step=step.name``."""
    STEPS[step.name] = step
    return step


def resolve_step(step) -> "StepMap":
    if isinstance(step, StepMap):
        return step
    if isinstance(step, str) and step in STEPS:
        return STEPS[step]
    raise ValueError(f"Unknown `step` {step!r}; valid: {sorted(STEPS)} or a parasolve.steps.StepMap instance.")


def _bshape(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reshape per-step scalars ``(n,)`` to broadcast against states ``(n, *state)``."""
    return h.reshape(h.shape[0], *([1] * (y.dim() - 1)))


class StepMap:
    """Base class of one-step maps; see the module docstring for the contract."""

    name: str = ""
    order: int = 1
    stages: int = 1
    multistep: bool = False

    def increments(self, drift, t, idx, y, prev=None):
        raise NotImplementedError

    def linear_part(self):
        """Per-step scalars ``c_i`` (shape ``(N,)``, on the state's device) with
        ``dPhi_i/dx_i ~= c_i I`` when the model's prediction is held fixed, or ``None`` (the
        default: no such structure). Newton's ``prior="step"`` uses them where it has no secant."""
        return None

    def gains(self):
        """Per-step estimates ``g_i`` of ``||d(x + Phi_i(x))/dx||`` (host array ``(N,)``, or
        ``(K, N)``: one row per model of the drift, the worst counting), or ``None`` (the
        default: unknown). The stop rule (:mod:`parasolve.stop_rule`) divides each step's share
        of ``tol`` by the product of the later steps' gains."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ExplicitRK(StepMap):
    """An explicit Runge–Kutta method given by its Butcher tableau ``(a, b, c)``."""

    def __init__(self, name: str, a: Sequence[Sequence[float]], b: Sequence[float],
                 c: Sequence[float], order: int):
        self.name, self.a, self.b, self.c, self.order = name, a, b, c, order
        self.stages = len(b)

    def increments(self, drift, t, idx, y, prev=None):
        t0 = t[idx]
        h = t[idx + 1] - t0
        hb = _bshape(h, y)
        ks = []
        for s in range(self.stages):
            ys = y
            for aj, k in zip(self.a[s], ks):
                if aj:
                    ys = ys + (aj * hb) * k
            ks.append(drift(t0 + self.c[s] * h, ys))
        inc = sum(bj * k for bj, k in zip(self.b, ks) if bj)
        return hb * inc, ks[0]


class AdamsBashforth2(StepMap):
    """Variable-step two-step Adams–Bashforth; its first step is forward Euler.

    ``Phi_i = h_i * (f_i + h_i / (2 h_{i-1}) * (f_i - f_{i-1}))``: one drift call per step, the
    previous step's drift reused, so a Picard sweep still makes one batched call.
    """

    name, order, stages, multistep = "ab2", 2, 1, True

    def increments(self, drift, t, idx, y, prev=None):
        t0 = t[idx]
        h = t[idx + 1] - t0
        f = drift(t0, y)
        fprev = torch.cat([f[:1] if prev is None else prev[None], f[:-1]])
        h_prev = torch.where(idx > 0, t0 - t[(idx - 1).clamp(min=0)], h)
        ratio = _bshape(torch.where(idx > 0, h / (2 * h_prev), torch.zeros_like(h)), y)
        return _bshape(h, y) * (f + ratio * (f - fprev)), f


register_step(ExplicitRK("euler", [[]], [1.0], [0.0], order=1))
register_step(ExplicitRK("midpoint", [[], [0.5]], [0.0, 1.0], [0.0, 0.5], order=2))
register_step(ExplicitRK("heun", [[], [1.0]], [0.5, 0.5], [0.0, 1.0], order=2))
register_step(ExplicitRK("rk4", [[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]],
                         [1 / 6, 1 / 3, 1 / 3, 1 / 6], [0.0, 0.5, 0.5, 1.0], order=4))
register_step(AdamsBashforth2())

