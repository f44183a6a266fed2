"""The stage equations of an implicit Runge–Kutta step and their Newton linearisation.

A step of length ``h`` from ``x`` has stage increments ``Z`` (``s`` of them) solving

    G(Z) = Z - h (A ⊗ I) F(t + c h, x + Z) = 0,        x_next = x + Z_s

(the tableaus are stiffly accurate). Its Newton matrix is ``M = I - h (A ⊗ I) J`` with ``J`` the
block diagonal of the drift's Jacobians at the stage points; the linearisation in both the stages
and the step's start ``x`` is ``dZ = a + B dx`` with ``a = -M^-1 G`` and
``B = M^-1 h (A ⊗ I) J (1 ⊗ I)``. The step map (:mod:`.maps`) iterates ``Z <- Z + a`` with ``x``
fixed; the whole-trajectory Newton (:mod:`.newton_stage`) couples the steps through ``B``.

The Jacobians are measured by forward differences in the same batched drift call as the stage
values (``D + 1`` points per stage point, :func:`parasolve.schemes.jacobians.probe_sizes`), so a
Newton iteration is one round of drift calls however many stages and steps it covers.
"""

from __future__ import annotations

import torch

from ..errors import ConvergenceError
from ..schemes.jacobians import probe_sizes


class StageConvergenceError(ConvergenceError):
    """Newton's method for the stage equations of an implicit step did not converge at step
    ``index`` (time ``time``); the message says how to get past it."""

    def __init__(self, message: str, index: int, time: float, solution=None):
        super().__init__(message, solution=solution)
        self.index, self.time = index, time


def values_and_jacobians(drift, times: torch.Tensor, points: torch.Tensor, shape):
    """``F`` (``(k, D)``) and ``J`` (``(k, D, D)``) of the drift at ``k`` points (flattened states
    ``(k, D)``; ``shape`` the state's shape), from one batched call of ``(D + 1) k`` points."""
    k, d = points.shape
    step = probe_sizes(points)                                                   # (k, D)
    probes = points[None] + torch.eye(d, dtype=points.dtype, device=points.device)[:, None, :] * step.T[:, :, None]
    batch = torch.cat([points, probes.reshape(d * k, d)]).reshape(k * (d + 1), *shape)
    out = drift(times.repeat(d + 1), batch).reshape(d + 1, k, d)
    F = out[0]
    J = ((out[1:] - F[None]) / step.T[:, :, None]).permute(1, 2, 0)             # (k, out, in)
    return F, J


def stage_points(tab, t0: torch.Tensor, h: torch.Tensor, x: torch.Tensor, Z: torch.Tensor):
    """Times ``(n*s,)`` and flattened states ``(n*s, D)`` of the stage points ``x + Z_j`` at ``t0 + c_j h``."""
    c = tab.nodes(h.dtype, h.device)
    times = (t0[:, None] + c * h[:, None]).reshape(-1)
    return times, (x[:, None] + Z).reshape(-1, x.shape[-1])


def linearize(tab, h: torch.Tensor, F: torch.Tensor, J: torch.Tensor, Z: torch.Tensor, coupled: bool = False):
    """``(G, M, a, B)`` of the stage equations at ``Z`` (``(n, s, D)``), ``F``/``J`` the drift and its
    Jacobian at the stage points (``(n, s, D)``/``(n, s, D, D)``). ``B`` only with ``coupled``
    (``(n, s, D, D)``), else ``None``. ``a`` has ``Z``'s shape."""
    n, s, d = Z.shape
    Ah = h.to(Z.dtype)[:, None, None] * tab.matrix(Z.dtype, Z.device)           # (n, s, s)
    G = Z - Ah @ F
    M = (Ah[:, :, None, :, None] * J.permute(0, 2, 1, 3)[:, None]).neg_().reshape(n, s * d, s * d)  # [n, i, p, j, q]
    M.diagonal(dim1=1, dim2=2).add_(1.0)
    rhs = -G.reshape(n, s * d, 1)
    if coupled:  # h (A ⊗ I) J (1 ⊗ I): sum_j h a_ij J_j
        rhs = torch.cat([rhs, (Ah @ J.reshape(n, s, d * d)).reshape(n, s * d, d)], 2)
    sol = safe_solve(M, rhs)
    a = sol[..., 0].reshape(n, s, d)
    B = sol[..., 1:].reshape(n, s, d, d) if coupled else None
    return G, M, a, B


def safe_solve(M: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``M^-1 rhs`` for a batch of matrices; NaN for the singular (or non-finite) ones, which the
    callers treat as a failed iteration, never as an answer."""
    sol, info = torch.linalg.solve_ex(M, rhs)
    bad = (info != 0).reshape(-1, *([1] * (rhs.dim() - 1)))
    return torch.where(bad, torch.full_like(sol, float("nan")), sol)


def newton_stages(drift, tab, t0, h, x, shape, idx, max_iters: int = 50):
    """Stage increments ``Z`` (``(n, s, D)``) of the steps from the flattened states ``x`` (``(n, D)``),
    each step's own Newton iteration from ``Z = 0`` run to round-off (one batched drift round per
    iteration over the steps still moving); returns ``(Z, M, rounds)`` with ``M`` each step's last
    Newton matrix. Raises :class:`StageConvergenceError` naming the first step that does not converge."""
    n, d = x.shape
    s = tab.stages
    Z = torch.zeros(n, s, d, dtype=x.dtype, device=x.device)
    M = torch.zeros(n, s * d, s * d, dtype=x.dtype, device=x.device)
    active = torch.arange(n, device=x.device)
    last = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    eps = torch.finfo(x.dtype).eps
    for it in range(max_iters):
        Za = Z[active]
        times, points = stage_points(tab, t0[active], h[active], x[active], Za)
        F, J = values_and_jacobians(drift, times, points, shape)
        _, Ma, a, _ = linearize(tab, h[active], F.reshape(-1, s, d), J.reshape(-1, s, d, d), Za)
        Z[active], M[active] = Za + a, Ma
        size = a.abs().flatten(1).amax(1)
        scale = torch.maximum(x[active].abs().amax(1), Z[active].abs().flatten(1).amax(1)).clamp_min(1.0)
        done = (size <= 8 * eps * scale) | ((size >= 0.5 * last[active]) & (size <= 1e-10 * scale))
        bad = ~torch.isfinite(size)
        last[active] = size
        if bool(bad.any()):
            active = active[bad]
            break
        active = active[~done]
        if len(active) == 0:
            return Z, M, it + 1
    first = int(active[0])
    step, time = int(idx[first]), float(t0[first])
    raise StageConvergenceError(
        f"implicit step map {tab.name!r}: Newton's method for the stage equations did not converge at step "
        f"{step} (t={time:.6g}, h={float(h[first]):.3g}) within {max_iters} iterations (last correction "
        f"{float(last[first]):.3g}). Use a finer grid `t` there (smaller steps), or parasolve.odeint(..., "
        f"method='radau') to choose the steps adaptively.", index=step, time=time)
