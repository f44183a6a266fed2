"""Parareal: a cheap coarse propagator run sequentially, the exact fine one in parallel over segments.

The grid is cut into ``K`` segments (longer ones first). Each parareal iteration

1. runs the fine propagator ``F`` -- the problem's own step map over each segment's fine steps --
   from every segment's current start state ``U_j``, all segments at once: fine steps are
   sequential inside a segment but batched across segments (one batched round of the step map
   per fine-step position, ``ceil(N / K)`` rounds);
2. measures the boundary defects ``|U_{j+1} - F(U_j)|``, the only non-zero defects of the glued
   fine trajectory, and accepts the leading segments whose defect fits the segment's share of
   ``tol`` (``tol * |segment span| / |T|``, weighted by the step map's gains like every
   scheme's: docs/tolerance.md), plus one more whose start ``F(U_j)`` is exact;
3. corrects the remaining starts by the coarse propagator ``G``, sequentially:
   ``U_{j+1} <- G(U_j) + F(U_j^old) - G(U_j^old)``.

After k iterations the first k segments equal the sequential solution, so at most ``K <= N``
iterations are needed. ``stats.iterations`` counts **parareal iterations**. Each costs one fine
sweep (``ceil(N/K)`` rounds of batched drift calls times the map's stages) plus the coarse sweep
(one coarse application per remaining segment, in sequence), so the sequential depth in batched
drift rounds is ``stats.drift_calls`` -- compare that, not ``iterations``, with other schemes'
sweeps x stages. Unlike the sweep count, that depth has no ``N`` bound: parareal can cost more
depth than the sequential loop when the coarse propagator is poor (docs/schemes.md).

Coarse propagators (``coarse=``):
- ``"frozen"`` (default): ``G_j(x) = x + sum_{i in segment j} Phi_i(x)``, every fine increment of the
  segment evaluated at the segment's start state, in one batched round per stage (split into
  calls of at most ``window`` points where the segment -- or, with ``init``, the whole grid -- is
  longer, so no drift call ever holds more than ``window`` points). It works for any
  step map -- SDE noise and diffusion sampler coefficients included -- since it calls the problem's
  own map. With ``coarse_steps=k`` the segment's fine steps are split into ``k`` consecutive groups
  (sizes within one, the longer first, as segments are), each frozen at its own start state
  (``k`` rounds in sequence; ``k >=`` the segment length makes ``G`` the fine propagator itself).
- a step map (name or :class:`~parasolve.steps.StepMap`): ``coarse_steps`` (default 1) equal steps
  of it per segment, with ``f`` as an ODE right-hand side: a good prediction only where the map
  declares ``ode_rhs`` (for other maps it only costs iterations, never accuracy).

Fine propagators (``fine=``): ``"step"`` (default; converges to the discrete problem, i.e. to
``method="sequential"``) or ``"odeint"``: torchdiffeq's adaptive ``odeint`` (dopri5 by default) on
every segment, batched across segments by rescaling each segment to ``[0, 1]``. With ``"odeint"``
the answer is **not** the discrete problem's: it converges to the segments' odeint solutions glued
end to end (within ``tol`` at the boundaries), which differ from the step map's solution by the
step map's discretisation error and from a single odeint solve by about ``rtol``. Since adaptive
steps are shared by the batch, a segment's odeint solution also depends on its batch-mates at the
level of ``rtol``. Stats stay honest: every dopri5 stage is a counted, sequential drift call.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_choice, check_positive_int
from ..evaluators.chunks import split_bounds
from ..discrete_problem import Problem
from ..steps import StepMap, resolve_step
from .base import Scheme, per_step, register_scheme
from .ledger import Ledger


def segment_bounds(n_steps: int, segments: int) -> list[int]:
    """Boundaries ``0 = n_0 < .. < n_K = N`` of ``K`` segments, the longer ones (by one step) first
    (:func:`~parasolve.evaluators.split_bounds`, the rule every split of parasolve follows)."""
    return [0] + [stop for _, stop in split_bounds(n_steps, segments)]


def _increments_within_window(problem: Problem, idx: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """The step map's increments at steps ``idx`` from states ``ys``, in calls of at most
    ``problem.window`` points (one-step maps: each step's increment depends on its own state only)."""
    w = problem.window
    parts = [problem.step.increments(problem.drift, problem.t, idx[i:i + w], ys[i:i + w], None)[0]
             for i in range(0, len(idx), w)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


@register_scheme
class Parareal(Scheme):
    """Parareal over ``segments`` segments (default ``round(sqrt(N))``, at most ``window``).

    Options (``solve(..., method="parareal", options={...})``):
        segments: number of segments ``K`` (fine-sweep batch size).
        coarse: ``"frozen"`` (default) or a step map name / StepMap for the coarse grid.
        coarse_steps: steps of the coarse propagator per segment (default 1): more cost per coarse
            application, a better prediction, fewer iterations.
        fine: ``"step"`` (default) or ``"odeint"``.
        odeint_options: keyword arguments for ``torchdiffeq.odeint`` when ``fine="odeint"``
            (default ``method="dopri5"``, ``rtol = atol =`` a tenth of the smallest segment's share
            of ``tol``, at least 100 machine epsilons).
    """

    name = "parareal"

    def __init__(self, segments: int | None = None, coarse="frozen", fine: str = "step",
                 odeint_options: dict | None = None, coarse_steps: int = 1):
        check_positive_int("segments", segments, none_ok=True, fix="None picks round(sqrt(N)).")
        check_positive_int("coarse_steps", coarse_steps, fix="It counts the coarse steps per segment.")
        if not (coarse == "frozen" or isinstance(coarse, StepMap)):
            try:
                coarse = resolve_step(coarse)
            except ValueError:
                raise ValueError(f"`coarse` must be 'frozen', a step name or a StepMap; got {coarse!r}.") from None
        if isinstance(coarse, StepMap) and coarse.multistep:
            raise ValueError(f"`coarse` must be a one-step map; {coarse.name!r} is multistep.")
        check_choice("fine", fine, ("step", "odeint"))
        if odeint_options is not None and not isinstance(odeint_options, dict):
            raise TypeError(f"`odeint_options` must be a dict of torchdiffeq.odeint keywords; got {odeint_options!r}.")
        if odeint_options and fine != "odeint":
            raise ValueError("`odeint_options` only applies with fine='odeint'.")
        self.segments, self.coarse, self.fine, self.coarse_steps = segments, coarse, fine, coarse_steps
        self.odeint_options = dict(odeint_options or {})

    @property
    def discrete(self) -> bool:
        """Whether it converges to the discrete problem (``fine="step"``) rather than to glued
        odeint solutions (``fine="odeint"``)."""
        return self.fine == "step"

    def check_step(self, step: StepMap) -> None:
        if step.multistep:
            raise self.refuse(step, "it is multistep, and parareal propagates its segments independently",
                              "Use method='picard', 'anderson' or 'newton', or a one-step map.")
        if not step.ode_rhs and self.fine == "odeint":
            raise self.refuse(step, "fine='odeint' integrates the drift as an ODE, and this map's drift is "
                                    "not an ODE right-hand side (ode_rhs=False)", "Use fine='step'.")

    def __repr__(self) -> str:
        coarse = self.coarse if isinstance(self.coarse, str) else self.coarse.name
        return (f"Parareal(segments={self.segments}, coarse={coarse!r}, coarse_steps={self.coarse_steps}, "
                f"fine={self.fine!r})")

    # ------------------------------------------------------------------ the iteration
    def _run(self, problem: Problem):
        n = problem.n_steps
        k_seg = self.segments if self.segments is not None else max(1, round(math.sqrt(n)))
        k_seg = min(k_seg, n, problem.window)
        bounds = segment_bounds(n, k_seg)
        y0 = problem.y0
        starts = torch.empty((k_seg, *y0.shape), dtype=y0.dtype, device=y0.device)  # U_j
        starts[0] = y0
        coarse_old = torch.empty_like(starts)                                       # G(U_j)
        if problem.init is not None:  # warm start: all starts known, their coarse images in one batch
            starts[1:] = problem.init[bounds[1:-1]]
            coarse_old[:] = self._coarse(problem, bounds, list(range(k_seg)), starts)
        else:
            self._coarse_sweep(problem, bounds, 0, starts, coarse_old, None)
        a, ends = 0, None
        with Ledger(problem, k_seg, self.name) as ledger:
            share = ledger.allowances(bounds)  # segment j's allowance: the sum of its steps'
            odeint_tol = self._odeint_tol(float(share.min()), y0.dtype)
            while a < k_seg and ledger.stats.iterations < problem.max_iters:
                ends, bad_step = self._fine(problem, bounds, a, starts, ledger.out, odeint_tol)  # F(U_j)
                if ledger.out is not None:  # the glued trajectory holds the starts; defects sit at the boundaries
                    ledger.out[bounds[a:k_seg]] = starts[a:]
                defect = per_step(starts[a + 1:] - ends[:-1]).abs().amax(1)
                host = torch.cat([defect.double(), bad_step.double()]).cpu()  # the one host sync
                defect_host, bad_host = host[:len(defect)], host[len(defect):].long()
                m = ledger.accept_blocks(bounds[a:k_seg], defect_host)
                bad = bad_host[:m + 1]  # a failure inside a segment that starts from an accepted state
                ledger.fail_at(int(bad[bad >= 0].min()) if bool((bad >= 0).any()) else -1)
                a_next = a + m + 1
                ledger.record(bounds[a], n, float(defect_host.max()) if len(defect_host) else 0.0,
                              bounds[a_next] - bounds[a])
                if a_next < k_seg:
                    starts[a_next] = ends[m]                                  # exact from an accepted state
                    self._coarse_sweep(problem, bounds, a_next, starts, coarse_old, ends[m + 1:])
                a = a_next
            if a < k_seg:  # stopped early: the start of the first open segment is exact
                ledger.save(bounds[a], starts[a:a + 1])
            step = f"odeint:{self._odeint_kwargs(odeint_tol)['method']}" if self.fine == "odeint" else None
            return ledger.solution(a >= k_seg, ends[-1:], self.name, step=step)

    def _coarse_sweep(self, problem, bounds, a, starts, coarse_old, fine_ends):
        """``U_{j+1} = G(U_j) + F(U_j^old) - G(U_j^old)`` for ``j = a .. K-2``, in sequence
        (``fine_ends`` None: the initial prediction ``U_{j+1} = G(U_j)``)."""
        for j in range(a, len(bounds) - 2):
            g = self._coarse(problem, bounds, [j], starts[j:j + 1])[0]
            nxt = g if fine_ends is None else g + fine_ends[j - a] - coarse_old[j]
            # A start that overflowed restarts from the last exact one (never accepted as it is).
            starts[j + 1] = torch.where(torch.isfinite(nxt).all(), nxt, starts[a])
            coarse_old[j] = g

    # ------------------------------------------------------------------ propagators
    def _coarse(self, problem, bounds, segs: list[int], xs: torch.Tensor) -> torch.Tensor:
        """``G_j(x_j)`` for the segments ``segs`` at states ``xs`` (``coarse_steps`` batched rounds per stage)."""
        k, t = self.coarse_steps, problem.t
        if isinstance(self.coarse, StepMap):  # k equal steps per segment on a local grid, segments batched
            t0, t1 = t[[bounds[j] for j in segs]], t[[bounds[j + 1] for j in segs]]
            frac = torch.arange(k + 1, dtype=t.dtype, device=t.device) / k
            grid = (t0[:, None] + (t1 - t0)[:, None] * frac).reshape(-1)  # row r: r (k+1) .. r (k+1) + k
            first = torch.arange(len(segs), device=t.device) * (k + 1)
            for r in range(k):
                inc, _ = self.coarse.increments(problem.drift, grid, first + r, xs, None)
                xs = xs + inc
            return xs
        splits = [split_bounds(bounds[j + 1] - bounds[j], k) for j in segs]
        for r in range(k):  # group r of each segment's fine steps, frozen at the group's start state
            groups = [(row, bounds[j] + splits[row][r][0], bounds[j] + splits[row][r][1])
                      for row, j in enumerate(segs)]
            groups = [(row, lo, hi) for row, lo, hi in groups if hi > lo]
            if not groups:
                continue
            seg_of = torch.cat([torch.full((hi - lo,), row, dtype=torch.long) for row, lo, hi in groups]).to(xs.device)
            idx = torch.cat([torch.arange(lo, hi) for _, lo, hi in groups]).to(t.device)
            inc = _increments_within_window(problem, idx, xs[seg_of])
            xs = xs + torch.zeros_like(xs).index_add_(0, seg_of, inc)
        return xs

    def _fine(self, problem, bounds, a, starts, out, odeint_tol) -> torch.Tensor:
        """End states of the fine propagation of segments ``a..K-1`` (trajectories into ``out``) and,
        per segment, the first step that produced NaN/Inf (-1 if none)."""
        if self.fine == "odeint":
            return self._fine_odeint(problem, bounds, a, starts, out, odeint_tol)
        first = torch.tensor(bounds[a:-1], device=problem.t.device)
        lengths = [bounds[j + 1] - bounds[j] for j in range(a, len(bounds) - 1)]  # non-increasing
        ys = starts[a:].clone()
        bad_step = torch.full((len(lengths),), -1, dtype=torch.long, device=ys.device)  # per segment, no sync
        for r in range(lengths[0]):
            rows = sum(length > r for length in lengths)
            idx = first[:rows] + r
            inc, _ = problem.step.increments(problem.drift, problem.t, idx, ys[:rows], None)
            ys[:rows] = ys[:rows] + inc
            bad = ~torch.isfinite(per_step(ys[:rows])).all(1)
            bad_step[:rows] = torch.where(bad & (bad_step[:rows] < 0), idx, bad_step[:rows])
            if out is not None:
                out[idx + 1] = ys[:rows]
        return ys, bad_step

    @staticmethod
    def _odeint_tol(share: float, dtype) -> float:
        """Default rtol = atol: a tenth of the smallest boundary allowance (at least 100 machine
        epsilons), so the batch-dependence of adaptive steps stays below what the stop rule sees."""
        return max(0.1 * share, 100 * torch.finfo(dtype).eps)

    def _odeint_kwargs(self, tol: float) -> dict:
        """torchdiffeq.odeint settings: dopri5 at ``tol``, overridden by ``odeint_options``."""
        kwargs = {"method": "dopri5", "rtol": tol, "atol": tol}
        kwargs.update(self.odeint_options)
        return kwargs

    def _fine_odeint(self, problem, bounds, a, starts, out, tol) -> torch.Tensor:
        segs = list(range(a, len(bounds) - 1))
        try:
            ends = self._odeint_segments(problem, bounds, segs, starts[a:], out, tol)
        except (AssertionError, RuntimeError) as exc:  # e.g. dt underflow from a wild start state
            try:  # the first segment starts from an exact state: it alone must succeed
                first = self._odeint_segments(problem, bounds, segs[:1], starts[a:a + 1], out, tol)
            except (AssertionError, RuntimeError):
                t0, t1 = float(problem.t[bounds[a]]), float(problem.t[bounds[a + 1]])
                raise RuntimeError(f"parareal: torchdiffeq.odeint failed on the segment [{t0:.6g}, {t1:.6g}] "
                                   f"from an accepted state ({exc}); loosen `odeint_options` rtol/atol, "
                                   f"use more segments, or use fine='step'.") from exc
            ends = torch.full_like(starts[a:], float("nan"))  # the others: never accepted this time
            ends[0] = first[0]
        bad = ~torch.isfinite(per_step(ends)).all(1)
        bad_step = torch.where(bad, torch.tensor(bounds[a:-1], device=bad.device), -1)
        return ends, bad_step

    def _odeint_segments(self, problem, bounds, segs, starts, out, tol) -> torch.Tensor:
        """odeint over the segments ``segs`` from ``starts``, each rescaled to ``s in [0, 1]`` so one
        batched solve covers them; output at the union of their grid points."""
        from torchdiffeq import odeint

        t = problem.t
        t0 = t[[bounds[j] for j in segs]]
        span = t[[bounds[j + 1] for j in segs]] - t0
        local = [(t[bounds[j]:bounds[j + 1] + 1] - t[bounds[j]]) / (t[bounds[j + 1]] - t[bounds[j]]) for j in segs]
        s_grid, where = torch.unique(torch.cat(local).clamp(0, 1), sorted=True, return_inverse=True)
        shape = (-1, *([1] * (starts.dim() - 1)))

        def rhs(s, ys):
            return span.reshape(shape).to(ys.dtype) * problem.drift(t0 + s * span, ys)

        traj = odeint(rhs, starts, s_grid, **self._odeint_kwargs(tol))  # (S, rows, *state)
        ends = torch.empty_like(starts)
        offset = 0
        for row, j in enumerate(segs):
            seg = traj[where[offset:offset + len(local[row])], row]
            offset += len(local[row])
            ends[row] = seg[-1]
            if out is not None:
                out[bounds[j] + 1:bounds[j + 1] + 1] = seg[1:]
        return ends
