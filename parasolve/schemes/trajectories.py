"""Per-trajectory fronts: a batch of independent trajectories, each accepted on its own.

A state whose leading dimension holds ``B`` independent trajectories (torchdiffeq's
``(batch, features)``; :func:`~parasolve.schemes.jacobians.independent_rows`) solved as one
coupled state advances every trajectory's window only as fast as the slowest trajectory's, and
re-evaluates the drift on trajectories that converged long ago. Here trajectory ``k`` keeps its
own window front ``f_k`` (as :mod:`parasolve.diffusion.per_sample` does for diffusion samples):
its window slot ``j`` is its step ``f_k + j``, its defects are accepted by the same stop rule
(:meth:`parasolve.schemes.ledger.Ledger.accept_trajectory`, its own budget of ``tol``), and once its front reaches
the end it leaves the batch. Each sweep is still one batched call (per stage) of the drift, on
the rows the running trajectories ask for: a row is evaluated as a state of one trajectory,
``(1, *row)``, at its own time, so rows of different trajectories at different steps share a call.

That needs a drift that gives a row alone what it gives it in the full batch -- the rows are the
same function, not rows with parameters of their own (``-k * y`` with ``k`` of shape ``(B, 1)``).
:func:`rows_alone` checks it on ``y0`` (two calls, not counted); where it fails the schemes use
their shared front. The schemes' updates run per trajectory: Picard's cumulative sum, or Newton's
with each trajectory's ``D x D`` Jacobian (``D`` probe rows per row, :func:`jacobians.measure`)
by the matrix scan. Every trajectory's answer is the one its own solve would give, up to the
round-off of evaluating its rows next to other rows.

Stats: ``stats.per_sample[k]`` are trajectory ``k``'s (its sweeps; ``nfe`` its row evaluations);
``stats.nfe`` counts whole-state evaluations (row evaluations / ``B``, rounded up) and
``defect_sum`` is the largest trajectory's, whose bound holds per trajectory.
"""

from __future__ import annotations

import math

import torch

from ..drift import BatchedDrift, row_tolerance
from ..discrete_problem import Problem
from ..solution import Solution, Stats
from .base import per_step
from .jacobians import measure
from .ledger import Ledger
from .scan import affine_scan


def applies(problem: Problem) -> BatchedDrift | None:
    """The drift on one trajectory (:func:`row_drift`) where ``problem`` can be solved with
    per-trajectory fronts -- a one-step, deterministic, explicit map of an ODE's right-hand side,
    and a drift whose rows may be evaluated alone -- else ``None``."""
    if not one_step_ode(problem) or problem.y0.dim() < 2:
        return None
    return row_drift(problem)


def one_step_ode(problem: Problem) -> bool:
    """Whether the engine here takes ``problem``'s step map: one-step, deterministic, explicit, of
    an ODE's right-hand side (what it evaluates at any step index, row by row or whole)."""
    step = problem.step
    return not (step.multistep or step.stochastic or step.implicit or not step.ode_rhs)


def row_drift(problem: Problem) -> BatchedDrift | None:
    """The drift on one trajectory's state ``(1, *row)``, if :func:`rows_alone` holds; else ``None``."""
    drift = problem.drift
    one = BatchedDrift(drift.f, (1, *problem.y0.shape[1:]), problem.y0.dtype, problem.y0.device,
                       vectorized=drift.mode == "vectorized", name=drift.name, evaluator=drift.evaluator)
    return one if rows_alone(drift, one, problem.t, problem.y0.detach()) else None


@torch.no_grad()
def rows_alone(drift: BatchedDrift, one: BatchedDrift, t: torch.Tensor, y0: torch.Tensor) -> bool:
    """Whether every row of ``drift(t0, y0)`` is what ``one`` (the drift on single rows) gives that
    row alone, within the round-off of another batch size (:func:`parasolve.drift.row_tolerance`).
    Two calls (one state, ``B`` rows), neither counted in the stats."""
    counts = drift.nfe, drift.calls
    try:
        full = drift(t[:1], y0[None])[0]
        alone = one(t[:1].expand(y0.shape[0]), y0[:, None])[:, 0]
    except Exception:  # noqa: BLE001 -- a drift that cannot take one row: the shared front
        return False
    finally:
        drift.nfe, drift.calls = counts
        one.nfe, one.calls = 0, 0
    finite = torch.isfinite(full)
    if alone.shape != full.shape or not torch.equal(finite, torch.isfinite(alone)):
        return False
    scale = float(full[finite].abs().max()) if bool(finite.any()) else 0.0
    gap = float((alone - full)[finite].abs().max()) if bool(finite.any()) else 0.0
    return gap <= row_tolerance(full, drift.f) * scale


def solve(problem: Problem, drift: BatchedDrift | None, name: str, newton: bool, damping: float = 1.0,
          divergence_ratio: float | None = None, chord: float = 0.0, derivative: str = "fd") -> Solution:
    """Solve ``problem`` with per-trajectory fronts, evaluating ``drift`` (:func:`applies`'; ``None``:
    the state is one trajectory, evaluated by the problem's own drift): Picard's update, or with
    ``newton`` the full-Jacobian Newton step (scaled by ``damping``). ``chord`` in ``[0, 1)``: a
    step keeps the Jacobian measured at an earlier sweep while its defect shrank by at least this
    factor in the last sweep (0: every sweep measures every step's); ``derivative``: ``"fd"`` or
    ``"jvp"`` (:func:`parasolve.schemes.jacobians.measure`). Iterate slots whose defect
    per unit time exceeds ``divergence_ratio`` times the accepted increments' restart from the
    last trusted state (as :class:`~parasolve.schemes.engine.WindowedScheme` does)."""
    batched = drift is not None
    y, t = (problem.y0 if batched else problem.y0[None]), problem.t      # (B, *row)
    count, dev = y.shape[0], y.device
    n, p = problem.n_steps, min(problem.window, problem.n_steps)
    h = (t[1:] - t[:-1]).abs().double().cpu()
    front = torch.zeros(count, dtype=torch.long)
    active = torch.arange(count)
    per = [Stats(window=p) for _ in range(count)]
    final = y.clone()
    ys = torch.cat([y[None], _guess(problem, front + 1, p, y, active, batched)])  # (p + 1, A, *row)
    memory = _Chord(p, count) if newton and chord > 0 else None
    with Ledger(problem, p, name) as ledger:
        out = ledger.out if batched or ledger.out is None else ledger.out[:, None]
        while len(active) and ledger.stats.iterations < problem.max_iters:
            f = front[active]
            w = (n - f).clamp(max=p)
            slots = torch.arange(p)
            valid = slots[:, None] < w[None]                                   # (p, A) host
            valid_dev = valid.to(dev)
            idx = (f[None] + slots[:, None])[valid].to(t.device)
            points = ys[:p][valid_dev]                                         # (P, *row)
            if batched:
                points = points[:, None]
            inc = torch.zeros_like(ys[:p])
            probe = valid if memory is None else valid & ~memory.reuse
            if newton:
                probed = torch.nonzero(probe[valid]).flatten().to(dev)
                inc_p, _, jac_p = measure(problem.step, drift or problem.drift, t, idx, points, None,
                                          probed=None if memory is None else probed, derivative=derivative)
                jac = memory.jacobians(jac_p, dev) if memory is not None else \
                    torch.zeros((p, len(active), *jac_p.shape[1:]), dtype=jac_p.dtype, device=dev)
                jac[probe.to(dev)] = jac_p
            else:
                inc_p, _ = problem.step.increments(drift or problem.drift, t, idx, points, None)
            inc[valid_dev] = inc_p[:, 0] if batched else inc_p
            defect = per_step(ys[1:] - ys[:p] - inc, 2).abs().amax(2)
            size = per_step(inc, 2).abs().amax(2)
            scale = per_step(ys[1:], 2).abs().amax(2) + size
            defect, size, scale = torch.stack([defect, size, scale]).detach().cpu()  # the one host sync
            if batched:
                ledger.stats.iterations += 1
                m = torch.tensor([ledger.accept_trajectory(per[int(k)], int(f[a]), defect[:w[a], a], scale[:w[a], a])
                                  for a, k in enumerate(active)], dtype=torch.long)
            else:  # one trajectory: the ledger's own rule (its stall test included)
                m = torch.tensor([ledger.accept_steps(int(f[0]), defect[:w[0], 0], scale[:w[0], 0])])
            stages = problem.step.stages
            for a, k in enumerate(active.tolist()):
                per[k].iterations += 1
                per[k].nfe += (int(w[a]) + int(probe[:, a].sum()) * (points.shape[-1] if newton else 0)) * stages
                if m[a] < w[a] and not math.isfinite(float(defect[m[a], a])):
                    ledger.fail_at(int(f[a] + m[a]))
            shift = torch.where(m < w, m + 1, w)
            cols = torch.arange(len(active), device=dev)
            m_dev, w_dev = m.clamp(max=p - 1).to(dev), w.to(dev)
            exact = ys[m_dev, cols] + inc[m_dev, cols]
            anchor = torch.where(_rows(m < w, ys).to(dev), exact, ys[w_dev, cols])
            _save(out, ys, anchor, f, m, shift, active)
            old_front = int(front.min())
            front[active] += shift
            ledger.record(old_front, int((f + w).max()), float(defect.max()), int(front.min()) - old_front)
            final[active.to(dev)] = anchor
            ys, kept = _next_window(problem, ys, inc, jac if newton else None, anchor, shift, w, defect, size, h, f,
                                    active, damping, divergence_ratio, batched)
            keep = front[active] < n
            if memory is not None:
                memory.advance(jac, defect, shift, w, kept, keep, chord)
            active, ys = active[keep], ys[:, keep.to(dev)]
        converged = not len(active)
        for a, k in enumerate(active.tolist()):  # not converged: the current iterate, then its last state
            f, w = int(front[k]), int(min(p, n - int(front[k])))
            if out is not None:
                out[f:f + w + 1, k] = ys[:w + 1, a]
                out[f + w + 1:, k] = ys[w, a]
            final[k] = ys[w, a]
        if batched:
            stats = ledger.stats
            stats.defect_sum = max(s.defect_sum for s in per)
            stats.weighted_defect_sum = max(s.weighted_defect_sum for s in per)
            stats.per_sample = per
            problem.drift.nfe += -(-drift.nfe // count)
            problem.drift.calls += drift.calls
        return ledger.solution(converged, final[None] if batched else final, name)


class _Chord:
    """What the chord (simplified) Newton keeps between sweeps, per window slot and trajectory:
    the last Jacobians, the last defects, and whether the next sweep reuses the Jacobian there."""

    def __init__(self, p: int, count: int):
        self.stored = None
        self.last = torch.full((p, count), math.nan, dtype=torch.float64)
        self.reuse = torch.zeros((p, count), dtype=torch.bool)

    def jacobians(self, fresh: torch.Tensor, dev) -> torch.Tensor:
        """The sweep's Jacobians, the stored ones where they are reused (fresh ones fill the rest)."""
        if self.stored is None:
            return torch.zeros((*self.reuse.shape, *fresh.shape[1:]), dtype=fresh.dtype, device=dev)
        return self.stored.clone()

    def advance(self, jac, defect, shift, w, kept, keep, chord: float):
        """Move the memory with each trajectory's window (its slots ``shift ..`` become ``0 ..``);
        reuse where the defect shrank by ``chord`` and the iterate was kept (not restarted)."""
        p = defect.shape[0]
        old = (shift[None] + torch.arange(p)[:, None])                       # new slot j <- old slot shift + j
        inside = old < w[None]
        old = old.clamp(max=p - 1)
        cols = torch.arange(defect.shape[1])[None]
        shrank = (defect <= chord * self.last) & torch.isfinite(defect)
        self.last = torch.where(inside, defect[old, cols], math.nan)[:, keep]
        slots = torch.arange(p)[:, None]
        self.reuse = (inside & shrank[old, cols] & (slots <= kept[None]))[:, keep]
        self.stored = jac[old.to(jac.device), cols.to(jac.device)][:, keep.to(jac.device)]


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``(A,)`` mask shaped to broadcast against ``(A, *row)`` states (``like``: ``(L, A, *row)``)."""
    return mask.reshape(-1, *([1] * (like.dim() - 2)))


def _save(out, ys, anchor, f, m, shift, active):
    """Write each trajectory's accepted slots and its exact next state into ``out`` (``(N+1, B, *row)``)."""
    if out is None:
        return
    for a, k in enumerate(active.tolist()):
        first, count = int(f[a]), int(m[a])
        out[first + 1:first + count + 1, k] = ys[1:count + 1, a]
        out[first + int(shift[a]), k] = anchor[a]


def _guess(problem: Problem, first: torch.Tensor, count: int, last: torch.Tensor, active, batched) -> torch.Tensor:
    """Initial guesses ``(count, A, *row)`` of each trajectory's states ``first[a] ..``: ``init``'s
    (past the grid's end its last state), else ``last`` (``(A, *row)``) repeated."""
    if problem.init is None:
        return last.expand(count, *last.shape)
    init = problem.init if batched else problem.init[:, None]
    steps = (first[None] + torch.arange(count)[:, None]).clamp(max=problem.n_steps)
    return init[steps.to(init.device), active.to(init.device)[None]]


def _next_window(problem, ys, inc, jac, anchor, shift, w, defect, size, h, f, active, damping, ratio, batched):
    """Every trajectory's next window ``(p + 1, A, *row)`` -- its anchor, the updated slots its
    iterate still covers (trusted ones only), then guesses -- and how many updated slots each kept."""
    p, dev = ys.shape[0] - 1, ys.device
    cols = torch.arange(ys.shape[1], device=dev)[None]
    old = (shift[None] + torch.arange(p + 1)[:, None]).clamp(max=p)         # new slot j <- old slot shift + j
    X = ys[old.to(dev), cols]
    old_inc = old[:p].clamp(max=p - 1).to(dev)
    INC = inc[old_inc, cols]
    if jac is None:  # Picard: anchor + the increments summed
        iterate = anchor + torch.cumsum(INC, 0)
    else:  # Newton: delta_{j+1} = (I + J_j) delta_j - F_j, per trajectory
        J = jac[old_inc, cols]
        J = torch.where(torch.isfinite(J), J, torch.zeros_like(J))
        work, lead = J.dtype, (p, ys.shape[1], -1)
        F = per_step(X[1:] - X[:p] - INC, 2).to(work).reshape(lead)
        eye = torch.eye(J.shape[-1], dtype=work, device=dev)
        delta = affine_scan(eye + J, -F, per_step(anchor - X[0], 1).to(work))
        iterate = X[1:] + (damping * delta).to(ys.dtype).reshape(X[1:].shape)
    finite = torch.isfinite(per_step(iterate, 2)).all(2).long().cumprod(0).bool()  # restart after a blow-up
    iterate = torch.where(finite.reshape(p, -1, *([1] * (ys.dim() - 2))), iterate, anchor)
    keep = (w - shift).clamp(min=0)                                        # updated slots each still covers
    if ratio is not None:
        keep = torch.minimum(keep, _trusted(defect, size, h, f, shift, w, ratio))
    slots = torch.arange(1, p + 1)[:, None]
    kept = (slots <= keep[None]).to(dev).reshape(p, -1, *([1] * (ys.dim() - 2)))
    last = torch.where(_rows(keep > 0, ys).to(dev), iterate[(keep - 1).clamp(min=0).to(dev), cols[0]], anchor)
    fill = _guess(problem, f + shift + 1, p, last, active, batched)
    return torch.cat([anchor[None], torch.where(kept, iterate, fill)]), keep


def _trusted(defect, size, h, f, shift, w, ratio) -> torch.Tensor:
    """Per trajectory, the updated slots to keep: those before the first whose step's defect per
    unit time exceeds ``ratio`` times the largest increment per unit time up to the anchor."""
    p = defect.shape[0]
    slot = torch.arange(p)[:, None]
    step = (f[None] + slot).clamp(max=len(h) - 1)
    per_time_def, per_time_size = defect / h[step], size / h[step]
    scale = torch.where(slot <= shift[None].clamp(max=p - 1), per_time_size, torch.zeros_like(per_time_size)).amax(0)
    bad = (per_time_def > ratio * scale[None]) & (slot >= shift[None]) & (slot < w[None])
    first = torch.where(bad, slot, p).amin(0)                               # first bad old slot (p: none)
    return (first - shift + 1).clamp(min=0)
