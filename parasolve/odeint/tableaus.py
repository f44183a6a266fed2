"""Runge–Kutta step maps for ``odeint``: torchdiffeq's fixed-step rules and embedded pairs.

Fixed-step maps registered here under names parasolve did not use yet: ``heun3`` (Heun's
third-order rule) and ``rk38`` (Kutta's 3/8 rule, what torchdiffeq calls ``rk4``; parasolve's
``rk4`` stays the classic RK4).

Embedded pairs (:class:`EmbeddedRK`): ``dopri5`` (Dormand–Prince 5(4)), ``bosh3``
(Bogacki–Shampine 3(2)) and ``adaptive_heun`` (Heun 2(1)), registered as plain step maps of
their propagated order (``solve(..., step="dopri5")`` solves the discrete problem of the 5th-order
formula). :class:`ErrorEstimate` is the same map plus, per step, the error ratio of the embedded
estimate measured in torchdiffeq's norm, recorded from the very batched calls a sweep makes.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..steps import ExplicitRK, StepMap, register_step


def _bshape(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return h.reshape(h.shape[0], *([1] * (y.dim() - 1)))


def rms_ratio(err: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, rtol, atol) -> torch.Tensor:
    """torchdiffeq's error ratio per step: ``RMS(err / (atol + rtol * max(|y0|, |y1|)))``, shape ``(n,)``."""
    scale = atol + rtol * torch.maximum(y0.abs(), y1.abs())
    return (err / scale).abs().pow(2).reshape(err.shape[0], -1).mean(1).sqrt()


class EmbeddedRK(StepMap):
    """An explicit Runge–Kutta pair: tableau ``(a, c)``, solution weights ``b`` and error weights ``e``.

    ``e`` may have one entry more than ``b``: the weight of ``f(t_{i+1}, y_{i+1})`` (first same as
    last), an extra stage the error estimate needs but the solution does not. As a step map it
    makes ``stages = len(b)`` batched drift rounds; ``order`` is the propagated solution's and the
    step-size controller's exponent ``1/order`` (as torchdiffeq uses them).
    """

    def __init__(self, name: str, a: Sequence[Sequence[float]], b: Sequence[float], e: Sequence[float],
                 c: Sequence[float], order: int):
        self.name, self.a, self.b, self.e, self.c, self.order = name, a, b, e, c, order
        self.stages = len(b)
        self.error_stages = len(e)

    def stage_values(self, drift, t, idx, y, count: int):
        """The first ``count`` stages ``k_s`` (one batched drift round each) and the step lengths."""
        t0 = t[idx]
        h = t[idx + 1] - t0
        hb = _bshape(h, y)
        ks = []
        for s in range(count):
            if s < len(self.b):
                ys = y
                for aj, k in zip(self.a[s], ks):
                    if aj:
                        ys = ys + (aj * hb) * k
            else:  # first same as last: the stage at the propagated state
                ys = y + hb * sum(bj * k for bj, k in zip(self.b, ks) if bj)
            at_end = s >= len(self.c) or self.c[s] == 1.0
            ks.append(drift(t[idx + 1] if at_end else t0 + self.c[s] * h, ys))
        return ks, hb

    def increments(self, drift, t, idx, y, prev=None):
        ks, hb = self.stage_values(drift, t, idx, y, self.stages)
        return hb * sum(bj * k for bj, k in zip(self.b, ks) if bj), ks[0]


class ErrorEstimate(StepMap):
    """``method``'s increments, recording for every step evaluated its embedded error estimate.

    After each call, for the steps ``idx``: ``ratio[idx]`` the error ratio in torchdiffeq's norm
    (pass when <= 1), ``at[idx]`` the state it was measured at, ``f0``/``f1`` the drifts at the
    step's start and (approximately, for maps without the FSAL stage) its end -- the data of a
    cubic Hermite interpolant, used to warm-start the next grid. The windowed schemes evaluate
    each step last at its accepted state, so after a solve the records describe the solution;
    ``stale(ys)`` finds any that do not (e.g. under another scheme).
    """

    multistep = False

    def __init__(self, method: EmbeddedRK, rtol, atol, n_steps: int, like: torch.Tensor):
        self.method, self.rtol, self.atol = method, rtol, atol
        self.name, self.order, self.stages = method.name, method.order, method.error_stages
        shape = (n_steps, *like.shape)
        self.ratio = torch.full((n_steps,), float("inf"), dtype=torch.float64, device=like.device)
        self.at = torch.full(shape, float("nan"), dtype=like.dtype, device=like.device)
        self.f0 = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.f1 = torch.zeros(shape, dtype=like.dtype, device=like.device)

    def increments(self, drift, t, idx, y, prev=None):
        m = self.method
        ks, hb = m.stage_values(drift, t, idx, y, self.stages)
        inc = hb * sum(bj * k for bj, k in zip(m.b, ks) if bj)
        err = hb * sum(ej * k for ej, k in zip(m.e, ks) if ej)
        with torch.no_grad():
            self.ratio[idx] = rms_ratio(err, y, y + inc, self.rtol, self.atol).double()
            self.at[idx], self.f0[idx], self.f1[idx] = y.detach(), ks[0].detach(), ks[-1].detach()
        return inc, ks[0]

    def stale(self, ys: torch.Tensor) -> torch.Tensor:
        """Indices of the steps whose record was not measured at the states ``ys[:-1]``."""
        same = (self.at == ys[:-1].detach()).reshape(self.at.shape[0], -1).all(1)
        return torch.nonzero(~same).reshape(-1)


HEUN3 = register_step(ExplicitRK("heun3", [[], [1 / 3], [0.0, 2 / 3]], [1 / 4, 0.0, 3 / 4],
                                 [0.0, 1 / 3, 2 / 3], order=3))
RK38 = register_step(ExplicitRK("rk38", [[], [1 / 3], [-1 / 3, 1.0], [1.0, -1.0, 1.0]],
                                [1 / 8, 3 / 8, 3 / 8, 1 / 8], [0.0, 1 / 3, 2 / 3, 1.0], order=4))

_DP_B = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]
# Shampine's 4th-order companion (the error estimate torchdiffeq's dopri5 uses, so rtol/atol mean the same).
_DP_BHAT = [1951 / 21600, 0.0, 22642 / 50085, 451 / 720, -12231 / 42400, 649 / 6300, 1 / 60]
DOPRI5 = register_step(EmbeddedRK(
    "dopri5",
    [[], [1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
     [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
     [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656]],
    _DP_B, [b - bh for b, bh in zip(_DP_B + [0.0], _DP_BHAT)],
    [0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0], order=5))
BOSH3 = register_step(EmbeddedRK(
    "bosh3", [[], [1 / 2], [0.0, 3 / 4]], [2 / 9, 1 / 3, 4 / 9],
    [2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8], [0.0, 1 / 2, 3 / 4], order=3))
ADAPTIVE_HEUN = register_step(EmbeddedRK(
    "adaptive_heun", [[], [1.0]], [1 / 2, 1 / 2], [1 / 2, -1 / 2], [0.0, 1.0], order=2))

EMBEDDED = {m.name: m for m in (DOPRI5, BOSH3, ADAPTIVE_HEUN)}
