"""Picard iteration in a sliding window (the ParaDiGMS scheme), with a defect-based stop rule.

A sweep evaluates the increments ``Phi_i`` of every step in the window ``[b, b+w)`` in one batched
round per stage, then:

1. measures each step's *defect* ``r_{i+1} = x_{i+1} - x_i - Phi_i(x_i)`` of the current iterate;
2. accepts the leading steps whose defect is within their share of ``tol`` (they are frozen as
   they are, so every frozen step has a measured defect), plus one more step computed exactly
   from the last accepted state -- so each sweep advances at least one step and at most
   ``N`` sweeps are ever needed;
3. updates the rest by the Picard rule ``x_{j+1} = x_a + sum_{i=a}^{j} Phi_i(x_i)`` anchored at
   the new window start ``a``, and fills the slots that enter the window from ``init`` (a warm
   start) or else with the last state. Iterate slots that overflow are restarted from ``x_a``,
   so a NaN/Inf error is raised only when the drift fails at an accepted state.

Only the window (``w + 1`` states) is live; frozen states are written out when ``save="all"``.
"""

from __future__ import annotations

import torch

from ..problem import Problem
from ..solution import Stats, Status, SweepRecord
from .base import Scheme, per_step, register_scheme


def leading_accepted(defects: torch.Tensor, thresholds: torch.Tensor) -> int:
    """Number of leading steps whose defect is within its threshold (NaN never is)."""
    ok = defects <= thresholds
    return int(ok.long().cumprod(0).sum())


def _restart_after_blowup(rest: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Reset iterate slots from the first non-finite one on to the anchor state (no host sync).

    A large window on a nonlinear drift can make the iterate overflow far ahead of the accepted
    part; restarting those slots keeps the solve going instead of poisoning every later sweep.
    """
    finite = torch.isfinite(per_step(rest)).all(1).long().cumprod(0).bool()
    return torch.where(finite.reshape(-1, *([1] * anchor.dim())), rest, anchor)


class WindowedScheme(Scheme):
    """The sliding-window loop shared by Picard and the accelerated schemes.

    A subclass provides :meth:`update`, which maps the current window iterate and its
    increments to the next iterate of the non-accepted part; everything else -- acceptance,
    the tolerance rule, stats, history, saving, progress -- is here, once. During ``update``,
    ``self.start`` is the grid index of window slot 0.
    """

    start: int = 0

    def update(self, anchor, ys, inc, shift):
        """Next iterate for window slots ``shift+1 ..`` given the anchor state at slot ``shift``."""
        return anchor + torch.cumsum(inc[shift:], dim=0)

    def reset(self):
        """Called when the window moves, for schemes that keep per-window memory."""

    #: Iterate slots whose defect per unit time exceeds this multiple of the largest increment
    #: per unit time at the accepted states are worse than a fresh guess: they and the slots
    #: after them restart from the last trusted state. ``None`` keeps every slot (plain
    #: ParaDiGMS behaviour, the iteration the bounds of theory/ describe).
    divergence_ratio: float | None = 10.0

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

    def run(self, problem: Problem):
        n, p = problem.n_steps, min(problem.window, problem.n_steps)
        thr = problem.thresholds()
        steps = (problem.t[1:] - problem.t[:-1]).abs().double().cpu()
        keep_all = problem.save == "all"
        out = torch.empty((n + 1, *problem.y0.shape), dtype=problem.y0.dtype,
                          device=problem.y0.device) if keep_all else None
        if keep_all:
            out[0] = problem.y0
        stats = Stats(window=p)
        b, prev = 0, None
        ys = torch.cat([problem.y0[None], problem.guess(1, p, problem.y0)])  # slots: x_b .. x_{b+w}
        self.reset()
        with problem.progress_bar(self.name) as bar:
            while b < n and stats.iterations < problem.max_iters:
                w = min(p, n - b)
                inc, first = problem.increments(b, ys[:w], prev)
                defect = per_step(ys[1:w + 1] - ys[:w] - inc).abs().amax(1)
                size = per_step(inc).abs().amax(1)
                defect_host, size_host = torch.stack([defect, size]).detach().cpu()  # the one host sync
                stats.iterations += 1
                m = leading_accepted(defect_host, thr[b:b + w])
                if m < w and not torch.isfinite(defect_host[m]):
                    raise problem.non_finite(b + m)
                stats.defect_sum += float(defect_host[:m].sum())
                # Freeze slots 1..m as measured; step b+m (if any) is exact from the frozen x_{b+m}.
                shift = m + 1 if m < w else w
                anchor = ys[m] + inc[m] if m < w else ys[w]
                if keep_all:
                    out[b + 1:b + m + 1] = ys[1:m + 1]
                    out[b + shift] = anchor
                if problem.step.multistep:
                    prev = first[shift - 1]
                stats.history.append(SweepRecord(stats.iterations, b, b + w, float(defect_host.max()), shift))
                if shift < w:
                    self.start = b
                    rest = _restart_after_blowup(self.update(anchor, ys, inc, shift), anchor)
                    rest = rest[:self._trusted(defect_host, size_host, steps[b:b + w], shift)]
                else:
                    rest = ys[:0]
                    self.reset()
                b += shift
                w_next = min(p, n - b)
                fill = problem.guess(b + 1 + len(rest), w_next - len(rest), rest[-1] if len(rest) else anchor)
                ys = torch.cat([anchor[None], rest, fill]) if b < n else anchor[None]
                bar.set_postfix(sweep=stats.iterations, residual=f"{float(defect_host.max()):.2e}", refresh=False)
                bar.update(shift)  # redraws at most every tqdm `mininterval`, not once per sweep
            bar.refresh()  # the final state, once
        status = Status.SUCCESS if b >= n else Status.MAX_ITERS
        if keep_all and b < n:  # unconverged: the current iterate, then its last state
            w = ys.shape[0] - 1
            out[b:b + w + 1] = ys
            out[b + w + 1:] = ys[-1]
        final = out if keep_all else ys[-1:] if b < n else ys[:1]
        return problem.solution(final, status, stats, self.name)


class SafeguardedScheme(WindowedScheme):
    """A windowed scheme with an accelerated update and a safeguard that can fall back to Picard.

    Subclasses list their constructor options in ``options`` (for ``repr``) and add one to
    ``self.fallbacks`` whenever the safeguard takes the Picard update; the count of a solve is
    reported as ``sol.stats.fallbacks``.
    """

    options: tuple[str, ...] = ()
    fallbacks: int = 0

    def run(self, problem: Problem):
        self.fallbacks = 0
        sol = super().run(problem)
        sol.stats.fallbacks = self.fallbacks
        return sol

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.options)})"


@register_scheme
class Picard(WindowedScheme):
    """Sliding-window Picard iteration (ParaDiGMS): ``x_{j+1} = x_b + sum_{i<=j} Phi_i(x_i)``."""

    name = "picard"
