"""Runge–Kutta step maps for ``odeint``: torchdiffeq's fixed-step rules and embedded pairs.

Fixed-step maps registered here under names parasolve did not use yet: ``heun3`` (Heun's
third-order rule) and ``rk38`` (Kutta's 3/8 rule, what torchdiffeq calls ``rk4``; parasolve's
``rk4`` stays the classic RK4).

Embedded pairs (:class:`EmbeddedRK`): ``dopri5`` (Dormand–Prince 5(4)), ``bosh3``
(Bogacki–Shampine 3(2)) and ``adaptive_heun`` (Heun 2(1)), registered as plain step maps of
their propagated order (``solve(..., step="dopri5")`` solves the discrete problem of the 5th-order
formula). :class:`ErrorEstimate` is the same map recording, from the very batched calls a sweep
makes, what each step's embedded error estimate in torchdiffeq's norm needs.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..evaluators.protocol import tangents_per_point
from ..steps import ExplicitRK, Increments, StepMap, _bshape, register_step


def rms_ratio(err: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, rtol, atol, norm=None) -> torch.Tensor:
    """torchdiffeq's error ratio per step: ``norm(err / (atol + rtol * max(|y0|, |y1|)))``, shape
    ``(n,)``; ``norm`` is the RMS unless a callable of one step's scaled error is given
    (``options["norm"]``), batched over the steps with vmap where it allows, else step by step."""
    scaled = err / (atol + rtol * torch.maximum(y0.abs(), y1.abs()))
    if norm is None:
        return scaled.abs().pow(2).reshape(err.shape[0], -1).mean(1).sqrt()
    return apply_norm(norm, scaled)


def apply_norm(norm, x: torch.Tensor) -> torch.Tensor:
    """``|norm(x[i])|`` for every row ``i`` of ``x``, shape ``(len(x),)``."""
    try:
        out = torch.vmap(norm)(x)
    except Exception:  # a norm vmap cannot batch (.item(), Python control flow): one call per row
        out = torch.stack([torch.as_tensor(norm(row)) for row in x])
    if out.shape != (x.shape[0],):
        raise ValueError(f"options['norm'] must return one number per call (a 0-d tensor); got shape "
                         f"{tuple(out.shape[1:])}.")
    return out.abs()


class EmbeddedRK(StepMap):
    """An explicit Runge–Kutta pair: tableau ``(a, c)``, solution weights ``b`` and error weights ``e``.

    ``e`` may have one entry more than ``b``: the weight of ``f(t_{i+1}, y_{i+1})`` (first same as
    last), an extra stage the error estimate needs but the solution does not. As a step map it
    makes ``stages = len(b)`` batched drift rounds; ``order`` is the propagated solution's and the
    step-size controller's exponent ``1/order`` (as torchdiffeq uses them).
    """

    def __init__(self, name: str, a: Sequence[Sequence[float]], b: Sequence[float], e: Sequence[float],
                 c: Sequence[float], order: int, mid: Sequence[float] | None = None):
        self.name, self.a, self.b, self.e, self.c, self.order = name, a, b, e, c, order
        self.mid = mid  # weights of the midpoint estimate y_i + h * sum(mid_j k_j) (dense output), or None
        self.stages = len(b)

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
        return Increments(hb * sum(bj * k for bj, k in zip(self.b, ks) if bj))


class ErrorEstimate(StepMap):
    """``method``'s increments, recording per step what its embedded error estimate needs.

    A sweep's batched calls give, for each step ``i`` evaluated: the state ``at[i]``, the
    drift there ``f0[i]``, the propagated end ``end[i]`` and the error estimate without its
    first-same-as-last term. That term is ``f(t_{i+1}, x_{i+1})``: at the solution it is step
    ``i+1``'s first stage, so :meth:`finish` completes every estimate with one more batched round
    (the end point's drift) instead of a seventh stage per sweep. The windowed schemes evaluate
    each step last at its accepted state, so after a solve the records describe the solution;
    :meth:`finish` re-measures any that do not (e.g. under another scheme). The error ratio is
    torchdiffeq's: ``RMS(err / (atol + rtol * max(|y_i|, |y_i + Phi_i|)))`` (or ``norm``), a pass when <= 1.
    A call under a JVP (Newton's ``derivative="jvp"``: its values are the transform's) records nothing.
    """

    def __init__(self, method: EmbeddedRK, rtol, atol, n_steps: int, like: torch.Tensor, norm=None):
        self.method, self.rtol, self.atol, self.norm = method, rtol, atol, norm
        self.name, self.order, self.stages = method.name, method.order, method.stages
        shape = (n_steps, *like.shape)
        self.at = torch.full(shape, float("nan"), dtype=like.dtype, device=like.device)
        self.f0, self.end, self.partial = (torch.zeros(shape, dtype=like.dtype, device=like.device)
                                           for _ in range(3))

    def increments(self, drift, t, idx, y, prev=None):
        m = self.method
        ks, hb = m.stage_values(drift, t, idx, y, self.stages)
        inc = hb * sum(bj * k for bj, k in zip(m.b, ks) if bj)
        if tangents_per_point():  # inside a JVP (Newton's exact Jacobians): no records; finish re-measures
            return Increments(inc)
        with torch.no_grad():
            keep = _first_occurrences(idx)  # a batch may repeat a step (Jacobian probes): its first entry
            at = idx[keep]
            self.at[at], self.f0[at], self.end[at] = y[keep].detach(), ks[0][keep].detach(), (y + inc)[keep].detach()
            self.partial[at] = (hb * sum(ej * k for ej, k in zip(m.e, ks) if ej))[keep].detach()
        return Increments(inc)

    @torch.no_grad()
    def finish(self, drift, t: torch.Tensor, ys: torch.Tensor):
        """Error ratios ``(K,)`` and the estimates' max-abs sizes ``(K,)`` (both on the host), and
        the end slopes ``f1``, of the solution ``ys`` on ``t``: the whole grid (``K = N``) or its
        first ``K`` steps (the part solved before a blow-up)."""
        ys = ys.detach()
        k = ys.shape[0] - 1
        stale = torch.nonzero(~(self.at[:k] == ys[:-1]).reshape(k, -1).all(1)).reshape(-1)
        if len(stale):
            self.increments(drift, t, stale, ys[stale])
        f1 = torch.cat([self.f0[1:k], drift(t[k:k + 1], ys[-1:])])
        err = self.partial[:k]
        if len(self.method.e) > len(self.method.b):
            h = (t[1:k + 1] - t[:k]).reshape(-1, *([1] * (ys.dim() - 1)))
            err = err + (self.method.e[-1] * h) * f1
        size = err.reshape(k, -1).abs().amax(1).double().cpu()
        return rms_ratio(err, self.at[:k], self.end[:k], self.rtol, self.atol, self.norm).double().cpu(), size, f1


def _first_occurrences(idx: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each distinct value of ``idx`` (``arange`` when all differ)."""
    order = torch.argsort(idx, stable=True)
    ranked = idx[order]
    first = torch.ones_like(ranked, dtype=torch.bool)
    first[1:] = ranked[1:] != ranked[:-1]
    return order[first]


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
    [0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0], order=5,
    # Shampine's fourth-order continuous extension at theta = 1/2 (Math. Comp. 46, 1986); the
    # seventh weight is the first-same-as-last stage's.
    mid=[6025192743 / 60171106304, 0.0, 51252292925 / 130801643196, -2691868925 / 90256659456,
         187940372067 / 3189068634112, -1776094331 / 39487288512, 11237099 / 470086768]))
BOSH3 = register_step(EmbeddedRK(
    "bosh3", [[], [1 / 2], [0.0, 3 / 4]], [2 / 9, 1 / 3, 4 / 9],
    [2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8], [0.0, 1 / 2, 3 / 4], order=3))
ADAPTIVE_HEUN = register_step(EmbeddedRK(
    "adaptive_heun", [[], [1.0]], [1 / 2, 1 / 2], [1 / 2, -1 / 2], [0.0, 1.0], order=2))

EMBEDDED = {m.name: m for m in (DOPRI5, BOSH3, ADAPTIVE_HEUN)}
