"""One Newton iteration over every step's stage equations: an implicit trajectory solved parallel in time.

The unknowns are the states ``x_1 .. x_N`` and every step's stage increments ``Z_i``; the
equations are the stage equations ``G_i(x_i, Z_i) = 0`` and the step equations
``x_{i+1} - x_i - Z_{i,s} = 0`` (:mod:`.stages`). Eliminating each step's stages by its own
linearisation ``dZ_i = a_i + B_i dx_i`` leaves the block-bidiagonal recursion

    dx_{i+1} = (I + B_{i,s}) dx_i + a_{i,s} - (x_{i+1} - x_i - Z_{i,s}),

solved for the whole window by the parallel scan :func:`parasolve.schemes.scan.affine_scan`
(the one ``method="newton"`` uses for explicit maps). One iteration is one batched drift round
(the stage values and their Jacobians' probes at every step) plus batched ``sD x sD`` solves and
the scan. ``I + B_{i,s}`` is the derivative of the exact step, so for an L-stable method the scan
is contractive however stiff the problem.

A step is accepted by the solve's stop rule (:class:`parasolve.schemes.Ledger`) when its measured
defect ``|x_{i+1} - x_i - Z_{i,s}| + |a_{i,s}|`` (the step equation's residual plus the stage
Newton correction, so a first-order bound of ``|x_{i+1} - x_i - Phi_i(x_i)|``) is within its
allowance; accepted steps are frozen, and the window slides on as the explicit schemes' does.
Damping: an iteration that accepts no step and makes the front step's measured defect grow is
undone and retried with half the Newton step (down to 1/64), so the iteration also converges from
a poor guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schemes.base import per_step
from ..schemes.scan import affine_scan
from ..schemes.ledger import Ledger
from .stages import correction, factorize, newton_stages, residual, scaled_matrix, values_and_jacobians

#: Smallest fraction of the Newton step the backtracking tries.
MIN_DAMPING = 1 / 64
#: With ``reuse``, a step's Jacobians (and its Newton matrix's factors) are kept from sweep to
#: sweep while its measured defect shrinks at least by this factor per sweep; else they are
#: measured again, at the next sweep's iterate (a simplified Newton iteration, as scipy's Radau).
#: HIRES (the benchmark's one ``reuse`` problem): 0.05 -> 41 sweeps, 0.005 -> 33 and about 15% less
#: CPU time (0.002-0.01 alike; 0.2 and 0.5 up to 109 sweeps, docs/stiff.md).
CONTRACTION = 0.005


@dataclass
class Factors:
    """The window's Newton matrices kept between sweeps: LU factors and pivots, ``B``, the drift's
    Jacobian at each step's last stage point, and which steps have them (host bools)."""

    LU: torch.Tensor
    piv: torch.Tensor
    B: torch.Tensor
    J_end: torch.Tensor
    have: torch.Tensor
    last: torch.Tensor

    def slide(self, m: int, w: int) -> "Factors":
        """Drop the first ``m`` steps; steps that enter after them (up to ``w`` in all) have none."""
        parts = [v[m:] for v in (self.LU, self.piv, self.B, self.J_end, self.have, self.last)]
        extra = w - parts[0].shape[0]
        if extra > 0:
            parts = [torch.cat([v, v.new_zeros(extra, *v.shape[1:])]) for v in parts]
        return Factors(*parts)


@dataclass
class Trace:
    """What the solve leaves for ``odeint``'s error estimate (flattened states): the stages ``Z``
    ``(N, s, D)`` and the drift and its Jacobian at each step's last stage point, ``(N, D)`` and
    ``(N, D, D)`` (the next step's start)."""

    Z: torch.Tensor
    f_end: torch.Tensor
    J_end: torch.Tensor


def linear_guess(tab, X: torch.Tensor) -> torch.Tensor:
    """Stage increments read off a trajectory guess ``X`` (``(w + 1, D)``): ``Z_j = c_j (x_{i+1} - x_i)``."""
    c = tab.nodes(X.dtype, X.device)
    return c[None, :, None] * (X[1:] - X[:-1])[:, None, :]


def solve_stages(problem, name: str, damping: float = 1.0, stages=None, accept=None, keep: bool = False,
                 stall: int | None = None, exact_front: bool = True, reuse: bool = False):
    """Solve ``problem`` (an implicit step map's discrete problem) by the iteration above.

    ``stages``: a guess of every step's ``Z`` (``(N, s, D)``; default read off ``problem.init``);
    ``accept(start, comp, x_next) -> m``: replaces the stop rule (``comp``: the per-component
    measured defects ``(w, D)``, ``x_next``: the window's states ``x_{start+1} ..``, host);
    ``stall``: stop (unconverged) after this many iterations in a row that accept no step (the first
    iteration, on the warm start, not counted);
    ``exact_front``: when no more sweeps are left than steps, a sweep that does not accept the front
    step solves it on its own (:func:`.stages.newton_stages`, more rounds in that sweep), so the solve
    ends within ``N`` sweeps as the explicit schemes' do; ``keep``: also return a :class:`Trace`;
    ``reuse``: keep each step's Newton matrices from sweep to sweep while its defect contracts
    (:data:`CONTRACTION`), a simplified Newton iteration, else measure them every sweep. Its measured
    defects use the old matrices, so a step's defect is a looser bound: only for a caller that
    checks the accepted steps afterwards (``odeint``'s error test), with ``accept``.
    Returns ``(Solution, Trace or None)``.
    """
    tab, t, y0 = problem.step.tableau, problem.t, problem.y0
    n, p, shape = problem.n_steps, min(problem.window, problem.n_steps), y0.shape
    hs = t[1:] - t[:-1]
    hA_all = scaled_matrix(tab, hs, y0.dtype)  # every step's h A and stage times, sliced per window
    times_all = t[:-1, None] + tab.nodes(hs.dtype, hs.device) * hs[:, None]
    eye = None
    trace = None
    b = 0
    X = per_step(torch.cat([y0[None], problem.guess(1, p, y0)]))
    Z = linear_guess(tab, X) if stages is None else stages[:p].clone()
    back = None  # (X, Z, dX, dZ, lam, merit, stale) of the last update, for backtracking
    factors, refresh = None, True
    if reuse and accept is None:
        raise ValueError("solve_stages(reuse=True) needs `accept`: the caller must check the accepted steps "
                         "(the simplified iteration's measured defects are no bound); pass reuse=False.")
    with Ledger(problem, p, name) as ledger:
        if keep:
            d = X.shape[1]
            trace = Trace(torch.zeros(n, tab.stages, d, dtype=X.dtype, device=X.device),
                          torch.zeros(n, d, dtype=X.dtype, device=X.device),
                          torch.zeros(n, d, d, dtype=X.dtype, device=X.device))
        fresh, since = False, -1  # the first sweep measures the warm start: it never counts towards `stall`
        while b < n and ledger.stats.iterations < problem.max_iters and (stall is None or since < stall):
            w = X.shape[0] - 1
            hA = hA_all[b:b + w]
            d = X.shape[1]
            points = (X[:w, None] + Z).reshape(-1, d)
            F, factors, measured, a = _measure(problem.drift, hA, times_all[b:b + w].reshape(-1), points, Z, shape,
                                               factors, refresh, reuse)
            refresh = not reuse
            if a is None:
                a = correction(hA, F, Z, factors.LU, factors.piv)
            B = factors.B
            defect = X[1:] - X[:w] - Z[:, -1]
            comp = defect.abs() + a[:, -1].abs()
            if accept is None:
                e = comp.amax(1)
                scale = X[1:].abs().amax(1) + Z[:, -1].abs().amax(1)
                e_host, scale_host = torch.stack([e, scale]).detach().cpu()
                m = ledger.accept_steps(b, e_host, scale_host)
            else:
                ledger.stats.iterations += 1
                comp_host = comp.detach().cpu()
                e_host = comp_host.amax(1)
                m = accept(b, comp_host, X[1:].detach().cpu())
                ledger.stats.defect_sum += float(e_host[:m].sum())
            stale = not (measured is None or bool(measured[m if m < w else 0]))  # the front step's matrices are old
            if m < w and not torch.isfinite(e_host[m]):
                if stale:  # measure the Newton matrices at this iterate before calling it a blow-up
                    refresh = True
                    continue
                ledger.fail_at(b + m if fresh else -1)  # blew up from a fresh start at a frozen state
                X[m + 1:], Z[m:], back, fresh, refresh = X[m], 0.0, None, True, True
                ledger.record(b, b + w, float("inf"), m)
                b, X, Z, factors = _slide(problem, tab, ledger, trace, b, m, X, Z, F, factors, None, None)
                continue
            fresh, since = False, 0 if m else since + 1
            shift = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device)  # of the new anchor x_{b+m}
            if exact_front and m < w and problem.max_iters - ledger.stats.iterations <= n - b - m:
                # the sweep budget is tight: solve the front step on its own, so every sweep advances
                j = b + m
                Zf = newton_stages(problem.drift, tab, t[j:j + 1], hs[j:j + 1], X[m:m + 1], shape,
                                   torch.tensor([j]))[0][0]
                new_end = X[m] + Zf[-1]
                shift = new_end - X[m + 1]
                X, Z = X.clone(), Z.clone()
                X[m + 1], Z[m] = new_end, Zf
                m, since, back = m + 1, 0, None
            ledger.record(b, b + w, float(e_host.max()), m)
            if m == w:
                b, X, Z, factors = _slide(problem, tab, ledger, trace, b, m, X, Z, F, factors, None, None)
                back = None
                continue
            merit = float(e_host[m])  # the front step's: the one the iteration must converge first
            if back is not None and m == 0 and not merit <= back[5] and (back[6] or back[4] > MIN_DAMPING):
                Xp, Zp, dXp, dZp, lam, meritp, stale_p = back  # the last step made things worse
                X, Z = Xp.clone(), Zp.clone()
                if stale_p:  # with old Newton matrices: measure them again there
                    refresh, back = True, None
                    continue
                lam /= 2  # with fresh ones: half of it
                X[1:] += lam * dXp
                Z += lam * dZp
                back = (Xp, Zp, dXp, dZp, lam, meritp, False)
                continue
            if reuse:  # where the simplified iteration contracts too slowly, new Jacobians next sweep
                e64 = e_host.double()
                factors.have &= ~(e64 > CONTRACTION * factors.last)
                factors.last = e64
            if eye is None:
                eye = torch.eye(d, dtype=X.dtype, device=X.device)
            dX = affine_scan(eye + B[m:, -1], a[m:, -1] - defect[m:], shift)
            start = torch.cat([shift[None], dX[:-1]])
            dZ = a[m:] + (B[m:] @ start[:, None, :, None])[..., 0]
            lam = damping
            back = (X, Z, dX, dZ, lam, merit, stale) if m == 0 else None  # X, Z: not changed in place from here
            new_X, new_Z = X.clone(), Z.clone()
            new_X[m + 1:] += dX if lam == 1 else lam * dX
            new_Z[m:] += dZ if lam == 1 else lam * dZ
            if not bool(torch.isfinite(dX[-1].sum() + dZ.sum())):  # the scan carries a NaN to its end
                _restart_after_blowup(new_X, new_Z, m)
            b, X, Z, factors = _slide(problem, tab, ledger, trace, b, m, new_X, new_Z, F, factors, X, Z)
        converged = b >= n
        if not converged:
            if trace is not None:  # the open steps' last iterate, a warm start for the caller
                trace.Z[b:b + Z.shape[0]] = Z
            ledger.save(b, X.reshape(-1, *shape))
            ledger.save_from(b + X.shape[0], X[-1].reshape(shape))
        last = X[:1].reshape(1, *shape) if converged else X[-1:].reshape(1, *shape)
        return ledger.solution(converged, last, name), trace


def _restart_after_blowup(X: torch.Tensor, Z: torch.Tensor, m: int) -> None:
    """In place: from the first open step whose new state or stages are not finite on, restart the
    iterate from the last finite state (stages 0). A NaN left in the iterate would reach every later
    step through the scan and stay there, so only the front would ever converge."""
    finite = torch.isfinite(X[m + 1:]).all(1) & torch.isfinite(Z[m:]).flatten(1).all(1)
    bad = torch.nonzero(~finite)
    if len(bad):
        k = m + int(bad[0])  # step k: its end state or stages went bad; x_k is finite
        X[k + 1:], Z[k:] = X[k], 0.0


def _measure(drift, hA, times, points, Z, shape, factors, refresh, reuse):
    """One batched drift round at the window's stage points, with Jacobian probes at the steps
    whose Newton matrices are measured now (all with ``refresh``, else those without); returns
    ``(F, factors, measured, a)``: the drift values ``(w, s, D)``, the window's :class:`Factors`,
    which steps' matrices were measured now (host bools, ``None``: all; the others' are from an
    earlier iterate) and, where all were, the Newton correction from the same solve (else ``None``).
    Without ``reuse`` the factors' bookkeeping (``have``, ``last``) is left out."""
    w, s, d = Z.shape
    if refresh or factors is None:
        need = None
    else:
        need = torch.nonzero(~factors.have).reshape(-1)
    probed = None if need is None else (need[:, None] * s + torch.arange(s)).reshape(-1).to(points.device)
    F, J = values_and_jacobians(drift, times, points, shape, probed)
    F = F.reshape(w, s, d)
    if need is not None and len(need) == 0:
        return F, factors, torch.zeros(w, dtype=torch.bool), None
    J = J.reshape(-1, s, d, d)
    if need is None:
        LU, piv, B, a = factorize(hA, J, residual(hA, F, Z))
        book = (torch.ones(w, dtype=torch.bool), torch.full((w,), float("inf"), dtype=torch.float64)) if reuse \
            else (None, None)
        return F, Factors(LU, piv, B, J[:, -1], *book), None, a
    dev = need.to(points.device)
    LU, piv, B, _ = factorize(hA[dev], J)
    factors.LU[dev], factors.piv[dev], factors.B[dev], factors.J_end[dev] = LU, piv, B, J[:, -1]
    factors.have[need] = True
    measured = torch.zeros(w, dtype=torch.bool)
    measured[need] = True
    return F, factors, measured, None


def _slide(problem, tab, ledger, trace, b, m, X, Z, F, factors, X_meas, Z_meas):
    """Freeze the ``m`` accepted steps (as measured: ``X_meas``/``Z_meas`` if the iterate was
    updated since, else ``X``/``Z``), move the window to start at step ``b + m`` and fill the slots
    that enter it. Returns ``(b, X, Z, factors)`` of the next window."""
    shape, n = problem.y0.shape, problem.n_steps
    Xm = X if X_meas is None else X_meas
    Zm = Z if Z_meas is None else Z_meas
    if m:
        ledger.save(b + 1, Xm[1:m + 1].reshape(-1, *shape))
        X[m] = Xm[m]
        if trace is not None:
            trace.Z[b:b + m] = Zm[:m]
            trace.f_end[b:b + m] = F[:m, -1]
            trace.J_end[b:b + m] = factors.J_end[:m]
    b += m
    if b >= n:
        return b, X[m:m + 1], Z[:0], None
    p = min(problem.window, problem.n_steps)
    rest_X, rest_Z = X[m:], Z[m:]
    want = min(p, n - b)
    have = rest_X.shape[0] - 1
    if want > have:
        fill = per_step(problem.guess(b + have + 1, want - have, rest_X[-1].reshape(shape)))
        ext = torch.cat([rest_X[-1:], fill])
        rest_X = torch.cat([rest_X, fill])
        rest_Z = torch.cat([rest_Z, linear_guess(tab, ext)])
    return b, rest_X, rest_Z, factors.slide(m, rest_Z.shape[0]) if factors.have is not None else None
