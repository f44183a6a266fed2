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

import functools

import torch

from ..errors import ConvergenceError
from ..schemes.jacobians import probe_sizes


class StageConvergenceError(ConvergenceError):
    """Newton's method for the stage equations of an implicit step did not converge at step
    ``index`` (time ``time``); the message says how to get past it."""

    def __init__(self, message: str, index: int, time: float, solution=None):
        super().__init__(message, solution=solution)
        self.index, self.time = index, time


def values_and_jacobians(drift, times: torch.Tensor, points: torch.Tensor, shape, probed: torch.Tensor | None = None):
    """``F`` (``(k, D)``) and ``J`` of the drift at ``k`` points (flattened states ``(k, D)``;
    ``shape`` the state's shape), from one batched call of ``k + D p`` points: ``J`` at the ``p``
    points ``probed`` (indices; default all), ``(p, D, D)``."""
    k, d = points.shape
    at = points if probed is None else points[probed]
    p = at.shape[0]
    if p == 0:
        return drift(times, points.reshape(k, *shape)).reshape(k, d), points.new_zeros(0, d, d)
    step = probe_sizes(at).T                                                     # (D, p)
    if probed is None:  # the points and D copies of them, in one tensor
        batch = points.repeat(d + 1, 1)
        batch_times = times.repeat(d + 1)
        batch.view(d + 1, k, d)[1:].diagonal(dim1=0, dim2=2).add_(step.T)       # probe j moves component j
    else:
        probes = at.repeat(d, 1).reshape(d, p, d)
        probes.diagonal(dim1=0, dim2=2).add_(step.T)
        batch = torch.cat([points, probes.reshape(d * p, d)])
        batch_times = torch.cat([times, times[probed].repeat(d)])
    out = drift(batch_times, batch.reshape(k + d * p, *shape)).reshape(k + d * p, d)
    F = out[:k]
    base = F if probed is None else F[probed]
    J = ((out[k:].reshape(d, p, d) - base) / step[:, :, None]).permute(1, 2, 0)  # (p, out, in)
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
    hA = scaled_matrix(tab, h, Z.dtype)
    M, C = newton_system(hA, J)
    G = residual(hA, F, Z)
    rhs = -G.reshape(n, s * d, 1)
    if coupled:
        rhs = torch.cat([rhs, C.reshape(n, s * d, d)], 2)
    sol = safe_solve(M, rhs)
    a = sol[..., 0].reshape(n, s, d)
    B = sol[..., 1:].reshape(n, s, d, d) if coupled else None
    return G, M, a, B


def scaled_matrix(tab, h: torch.Tensor, dtype) -> torch.Tensor:
    """Every step's ``h A`` (``(n, s, s)``), computed once per grid and sliced per window."""
    return h.to(dtype)[:, None, None] * tab.matrix(dtype, h.device)


def residual(hA: torch.Tensor, F: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
    """The stage equations' residual ``G = Z - h (A ⊗ I) F`` (``(n, s, D)``), ``hA`` from :func:`scaled_matrix`."""
    return Z - hA @ F


@functools.lru_cache(maxsize=16)
def _identity(size: int, dtype, device) -> torch.Tensor:
    """A cached identity matrix (read-only: callers must not modify it in place)."""
    return torch.eye(size, dtype=dtype, device=device)


def newton_system(hA: torch.Tensor, J: torch.Tensor):
    """``(M, C)`` for stage Jacobians ``J`` (``(n, s, D, D)``): the Newton matrix
    ``M = I - h (A ⊗ I) diag(J_j)`` (``(n, sD, sD)``) and the derivative of the stage equations in
    the step's start, ``C_i = sum_j h a_ij J_j`` (``(n, s, D, D)``: the block rows of ``I - M`` summed)."""
    n, s, d, _ = J.shape
    K = hA[:, :, None, :, None] * J.permute(0, 2, 1, 3)[:, None]  # [n, i, p, j, q] = h a_ij J_j[p, q]
    return _identity(s * d, J.dtype, J.device) - K.reshape(n, s * d, s * d), K.sum(3)


def factorize(hA: torch.Tensor, J: torch.Tensor, G: torch.Tensor | None = None):
    """``(LU, pivots, B, a)``: the LU factors of the Newton matrix for stage Jacobians ``J``,
    ``B = M^-1 h (A ⊗ I) J (1 ⊗ I)`` (``(n, s, D, D)``) and, given the residual ``G``, the Newton
    correction ``a = -M^-1 G`` from the same solve (else ``None``). The singular steps' factors NaN,
    so :func:`correction` gives NaN there (a failed iteration, never an answer)."""
    n, s, d, _ = J.shape
    M, C = newton_system(hA, J)
    LU, piv, info = torch.linalg.lu_factor_ex(M)
    LU = torch.where((info != 0)[:, None, None], float("nan"), LU)
    rhs = C.reshape(n, s * d, d)
    if G is not None:
        rhs = torch.cat([G.reshape(n, s * d, 1).neg(), rhs], 2)
    sol = torch.linalg.lu_solve(LU, piv, rhs)
    a = None if G is None else sol[..., 0].reshape(n, s, d)
    return LU, piv, sol[..., -d:].reshape(n, s, d, d), a


def correction(hA: torch.Tensor, F: torch.Tensor, Z: torch.Tensor, LU: torch.Tensor, piv: torch.Tensor):
    """The (simplified) Newton correction ``a = -M^-1 G(Z)`` with ``M``'s LU factors from :func:`factorize`."""
    n, s, d = Z.shape
    return torch.linalg.lu_solve(LU, piv, (hA @ F - Z).reshape(n, s * d, 1)).reshape(n, s, d)


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
