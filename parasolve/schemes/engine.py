"""The sliding-window engine shared by Picard, Anderson and Newton.

A sweep evaluates the increments ``Phi_i`` of every step in the window ``[b, b+w)`` in one batched
round per stage, then:

1. measures each step's *defect* ``r_{i+1} = x_{i+1} - x_i - Phi_i(x_i)`` of the current iterate
   (one host synchronisation per sweep: the defects and the increments' sizes);
2. accepts the leading steps whose defect is within their allowance
   (:meth:`~parasolve.discrete_problem.Problem.thresholds`), frozen as they are, so every frozen step has a
   measured defect, plus one more step computed exactly from the last accepted state -- so each
   sweep advances at least one step and at most ``N`` sweeps are ever needed;
3. hands the rest to the scheme's :meth:`WindowedScheme.update` as a :class:`Window`, with the
   scheme's explicit per-solve state, and gets the next iterate and the next state back
   (:class:`Update`); then fills the slots that enter the window from ``init`` (a warm start) or
   else with the last state. Iterate slots that overflow are restarted from the anchor, so a
   NaN/Inf error is raised only when the drift fails at an accepted state.

Only the window (``w + 1`` states) is live; frozen states are written out when ``save="all"``.
The bookkeeping (allowances, acceptance, stats, history, buffer, status) is the
:class:`~parasolve.schemes.ledger.Ledger` every scheme uses. The safeguard helpers below
(:func:`aligned`, :func:`picard_from`, :func:`residual_grew`) serve the accelerated schemes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import torch

from .._checks import check_real
from ..discrete_problem import Problem
from ..solution import Solution
from .base import Scheme, per_step
from .ledger import Ledger


@dataclass(frozen=True)
class Window:
    """What one sweep hands to :meth:`WindowedScheme.update`.

    ``start``: the grid index of window slot 0; ``ys``: the iterate ``x_start .. x_{start+w}``
    (``w + 1`` slots); ``inc``: the increments ``Phi`` of steps ``start .. start+w-1`` at
    ``ys[:w]``; ``shift``: the slots accepted by this sweep (``1 <= shift < w``), so slot ``shift``
    is the next window's start; ``anchor``: its exact state ``x_{start+shift}``; ``extra``: what
    the scheme's :meth:`WindowedScheme.evaluate` measured beside the increments (``None`` by default).
    """

    start: int
    ys: torch.Tensor
    inc: torch.Tensor
    shift: int
    anchor: torch.Tensor
    extra: Any = None

    @property
    def width(self) -> int:
        """``w``: the steps in the window."""
        return self.ys.shape[0] - 1

    @cached_property
    def picard(self) -> torch.Tensor:
        """The Picard update of slots ``shift+1 .. w``: ``anchor + cumsum(inc[shift:])``."""
        return self.anchor + torch.cumsum(self.inc[self.shift:], dim=0)


class Update(NamedTuple):
    """What :meth:`WindowedScheme.update` returns: the next ``iterate`` of slots ``shift+1 .. w``
    (shape ``(w - shift, *state)``), the scheme's next ``state``, and whether a safeguard took the
    plain Picard update instead of the scheme's own (``fallback``, counted in ``stats.fallbacks``)."""

    iterate: torch.Tensor
    state: Any = None
    fallback: bool = False


def _restart_after_blowup(rest: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Reset iterate slots from the first non-finite one on to the anchor state (no host sync).

    A large window on a nonlinear drift can make the iterate overflow far ahead of the accepted
    part; restarting those slots keeps the solve going instead of poisoning every later sweep.
    """
    finite = torch.isfinite(per_step(rest)).all(1).long().cumprod(0).bool()
    return torch.where(finite.reshape(-1, *([1] * anchor.dim())), rest, anchor)


class WindowedScheme(Scheme):
    """A scheme that is the sliding-window loop above plus an update rule.

    Subclasses implement (diffrax-style, no per-solve attributes on the scheme):

    - :meth:`init` ``(problem) -> state``: the per-solve state (default ``None``);
    - :meth:`update` ``(state, window) -> Update``: the next iterate of the window's open slots;
    - :meth:`reset` ``(state) -> state``: the state after a sweep accepted the whole window
      (memory of the old slots means nothing for the new ones; default: unchanged).
    """

    #: Iterate slots whose defect per unit time exceeds this multiple of the largest increment
    #: per unit time at the accepted states are worse than a fresh guess: they and the slots
    #: after them restart from the last trusted state. ``None`` keeps every slot (plain
    #: ParaDiGMS behaviour, the iteration the bounds of theory/ describe).
    divergence_ratio: float | None = 10.0
    windowed = True

    def init(self, problem: Problem) -> Any:
        """The per-solve state handed to the first :meth:`update`."""
        return None

    def update(self, state: Any, window: Window) -> Update:
        """The next iterate of slots ``shift+1 ..``; the default is the Picard update."""
        return Update(window.picard, state)

    def reset(self, state: Any) -> Any:
        """The state once a sweep accepted every slot of the window."""
        return state

    def evaluate(self, problem: Problem, start: int, ys: torch.Tensor, prev, state: Any = None):
        """The sweep's batched drift rounds: ``(inc, carry, extra)`` for steps ``start ..`` at
        ``ys`` (``state``: the scheme's, from :meth:`init`); the default is the step map's
        increments and no ``extra``. A scheme may evaluate more points in the same rounds
        (declared by :meth:`~parasolve.schemes.Scheme.points_per_step`)."""
        inc, carry = problem.increments(start, ys, prev)
        return inc, carry, None

    def _trusted(self, defect, size, h, shift) -> int:
        """How many updated slots after the anchor to keep (the rest restart from the last kept).

        Defects and increments are compared per unit of time, so short steps (non-uniform
        grids, diffusion schedules) do not make healthy slots look divergent.
        """
        if self.divergence_ratio is None:
            return len(defect)
        scale = float((size[:shift + 1] / h[:shift + 1]).max())
        bad = torch.nonzero(defect[shift:] / h[shift:] > self.divergence_ratio * scale)
        return len(defect) if len(bad) == 0 else int(bad[0]) + 1

    def _run(self, problem: Problem) -> Solution:
        n, p = problem.n_steps, min(problem.window, problem.n_steps)
        steps = (problem.t[1:] - problem.t[:-1]).abs().double().cpu()
        state = self.init(problem)
        b, prev = 0, None
        ys = torch.cat([problem.y0[None], problem.guess(1, p, problem.y0)])  # slots: x_b .. x_{b+w}
        with Ledger(problem, p, self.name) as ledger:
            while b < n and ledger.stats.iterations < problem.max_iters:
                w = min(p, n - b)
                inc, carry, extra = self.evaluate(problem, b, ys[:w], prev, state)
                defect = per_step(ys[1:w + 1] - ys[:w] - inc).abs().amax(1)
                size = per_step(inc).abs().amax(1)
                scale = per_step(ys[1:w + 1]).abs().amax(1) + size  # for the floating-point floor
                defect_host, size_host, scale_host = torch.stack([defect, size, scale]).detach().cpu()  # the one host sync
                m = ledger.accept_steps(b, defect_host, scale_host)
                ledger.fail_at(b + m if m < w and not torch.isfinite(defect_host[m]) else -1)
                # Freeze slots 1..m as measured; step b+m (if any) is exact from the frozen x_{b+m}.
                shift = m + 1 if m < w else w
                anchor = ys[m] + inc[m] if m < w else ys[w]
                ledger.save(b + 1, ys[1:m + 1])
                ledger.save(b + shift, anchor[None])
                if problem.step.multistep:
                    prev = carry[shift - 1]
                ledger.record(b, b + w, float(defect_host.max()), shift)
                if shift < w:
                    iterate, state, fallback = self.update(state, Window(b, ys, inc, shift, anchor, extra))
                    ledger.stats.fallbacks += bool(fallback)
                    rest = _restart_after_blowup(iterate, anchor)
                    rest = rest[:self._trusted(defect_host, size_host, steps[b:b + w], shift)]
                else:
                    rest = ys[:0]
                    state = self.reset(state)
                hint = (b + w - 1, ys[w - 1], inc[w - 1],  # the latest evaluated step, for predict
                        carry[w - 1] if isinstance(carry, torch.Tensor) else None)
                b += shift
                w_next = min(p, n - b)
                fill = problem.guess(b + 1 + len(rest), w_next - len(rest), rest[-1] if len(rest) else anchor,
                                     hint)
                ys = torch.cat([anchor[None], rest, fill]) if b < n else anchor[None]
            converged = b >= n
            if not converged:  # the current iterate, then its last state
                ledger.save(b, ys)
                ledger.save_from(b + ys.shape[0], ys[-1])
            return ledger.solution(converged, ys[:1] if converged else ys[-1:], self.name)


class SafeguardedScheme(WindowedScheme):
    """A windowed scheme with an accelerated update and a safeguard that falls back to Picard.

    ``safeguard``: take the Picard update when the residual grew after an accelerated step;
    ``growth``: the factor of growth that counts. Subclasses list their constructor options in
    ``options`` (for ``repr``) and return ``Update(..., fallback=True)`` when the safeguard acts.
    """

    options: tuple[str, ...] = ()

    def __init__(self, safeguard: bool = True, growth: float = 1.0):
        self.safeguard = bool(safeguard)
        self.growth = check_real("growth", growth, low=0.0, open_low=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.options)})"


# --------------------------------------------------------------------------- safeguard helpers

def aligned(first: int, values: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """``values`` stored for window slots ``first, first+1, ..`` laid out on slots ``lo .. hi-1``;
    NaN on slots the stored values do not cover (states that entered the window since)."""
    out = torch.full((hi - lo, *values.shape[1:]), float("nan"), dtype=values.dtype, device=values.device)
    a, b = max(first, lo), min(first + values.shape[0], hi)
    if b > a:
        out[a - lo:b - lo] = values[a - first:b - first]
    return out


def picard_from(anchor: torch.Tensor, inc_before: torch.Tensor, inc_now: torch.Tensor) -> torch.Tensor:
    """The Picard update from the previous iterate, re-anchored at ``anchor``: its increments
    ``inc_before`` (aligned, NaN on steps it did not cover, which take ``inc_now``)."""
    return anchor + torch.cumsum(torch.where(torch.isnan(inc_before), inc_now, inc_before), 0)


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """``dtype`` raised to at least single precision (16-bit -> float32/complex64; others kept)."""
    return torch.promote_types(dtype, torch.float32)


def residual_grew(residual: torch.Tensor, previous: torch.Tensor, growth: float) -> bool:
    """Whether ``residual`` exceeds ``growth`` times ``previous`` (aligned, NaN where unknown),
    in the 2-norm over the states both carry. A non-finite current residual counts as growth.

    One host synchronisation: the states ``previous`` does not cover are zeroed, not dropped.
    """
    now, prev = (per_step(v).to(work_dtype(v.dtype)) for v in (residual, previous))
    known = torch.isfinite(prev).all(1, keepdim=True)
    zero = torch.zeros((), dtype=now.dtype, device=now.device)
    now_norm = torch.where(known, now, zero).norm()
    prev_norm = torch.where(known, prev, zero).norm()
    return bool(known.any() & ~(now_norm <= growth * prev_norm))
