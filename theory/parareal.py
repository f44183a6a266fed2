"""Parareal: exactness on the first k segments and the superlinear bound (Gander & Vandewalle 2007).

The grid is cut into segments ``j = 0..K-1`` with fine propagators ``F_j`` (the step map over the
segment's steps, so ``x*_{j+1} = F_j(x*_j)`` at the boundaries) and coarse ones ``G_j``. Iteration
``k`` corrects the segment starts ``U_{j+1}^k = G_j(U_j^k) + F_j(U_j^{k-1}) - G_j(U_j^{k-1})``.
Subtracting ``x*_{j+1} = G_j(x*_j) + F_j(x*_j) - G_j(x*_j)``, the boundary errors satisfy

    |e^k_{j+1}| <= beta_j |e^k_j| + alpha_j |e^{k-1}_j|,    e^k_0 = 0,

with ``beta_j`` a Lipschitz constant of ``G_j`` and ``alpha_j`` one of ``F_j - G_j``. Consequences
(:func:`verify`):

* exactness: ``e^k_j = 0`` for ``j <= k`` -- the first ``k`` segments are exact after ``k``
  iterations, so at most ``K`` iterations are needed;
* for constant ``alpha, beta`` and ``|e^0_j| <= e0`` the recursion is solved by counting lattice
  paths: ``E^k_j = e0 alpha^k sum_{s=0}^{j-k-1} C(s+k-1, k-1) beta^s``, and bounding the sum gives
  the superlinear bound ``e0 alpha^k C(j-1, k) max(1, beta)^(j-k-1)``
  (``C(j-1, k) = prod_{i=1}^k (j-i) / k!``: Gander & Vandewalle's form).

In parasolve (``parasolve/schemes/parareal.py``), after ``k`` iterations (``tol=0``, ``max_iters=k``)
``sol.ys`` is the fine trajectory glued from the starts ``U^{k-1}``: points ``0 .. n_k - 1`` are
exact, boundary ``j > k`` holds ``U_j^{k-1}`` (boundary ``k`` holds ``U_k^{k-1}`` or, where the scheme
writes it, the exact new start), and a point inside segment ``j`` is the fine propagation of
``U_j^{k-1}``, within ``prod (1 + l_i)`` (over the segment's earlier steps) times ``E^{k-1}_j``.

Constants. For a linear drift the propagators are matrices and :func:`linear_constants` gives
``alpha_j = ||F_j - G_j||_inf``, ``beta_j = ||G_j||_inf`` exactly. For a Lipschitz drift with step
constants ``l_i`` and the ``"frozen"`` coarse propagator ``G_j(x) = x + sum_{i in j} Phi_i(x)``:
``beta_j <= 1 + sum_i l_i`` and ``alpha_j <= sum_i l_i (prod_{m<i} (1 + l_m) + 1)``
(:func:`frozen_constants`): ``alpha = O(L H)`` per segment of length ``H``.
"""

from __future__ import annotations

import math

import numpy as np

from . import _sym
from .discrete import _check_ell, _check_k

__all__ = ["bound", "superlinear_bound", "trajectory_bound", "frozen_constants", "linear_constants",
           "frozen_prediction",
           "derive", "verify"]


def _check_constants(alpha, beta):
    a = np.atleast_1d(np.asarray(alpha, dtype=float))
    b = np.atleast_1d(np.asarray(beta, dtype=float))
    if a.ndim != 1 or a.shape != b.shape or np.any(a < 0) or np.any(b < 0):
        raise ValueError(f"`alpha` and `beta` must be per-segment constants >= 0 of equal length; "
                         f"got shapes {a.shape} and {b.shape}.")
    return a, b


def bound(alpha, beta, k, e0) -> np.ndarray:
    """Bound on the boundary errors ``|U^k_j - x*_{n_j}|``, ``j = 0..K`` (shape ``(K+1,)``).

    ``alpha``, ``beta``: per segment ``(K,)``; ``e0``: the coarse prediction's errors, a number or
    per boundary ``(K+1,)``. Solves ``E^k_{j+1} = beta_j E^k_j + alpha_j E^{k-1}_j`` exactly.
    """
    a, b = _check_constants(alpha, beta)
    k = _check_k(k)
    err = np.broadcast_to(np.asarray(e0, dtype=float), (a.size + 1,)).copy()
    if np.any(err < 0):
        raise ValueError(f"`e0` must be >= 0; got {e0!r}.")
    err[0] = 0.0
    for _ in range(k):
        new = np.zeros_like(err)
        for j in range(a.size):
            new[j + 1] = b[j] * new[j] + a[j] * err[j]
        err = new
    return err


def superlinear_bound(alpha: float, beta: float, k: int, j: int, e0: float) -> float:
    """Gander-Vandewalle: ``e0 alpha^k C(j-1, k) max(1, beta)^(j-k-1)`` (0 for ``j <= k``)."""
    if j <= k:
        return 0.0
    return e0 * alpha ** k * math.comb(j - 1, k) * max(1.0, beta) ** (j - k - 1)


def trajectory_bound(ell, bounds, boundary_errors) -> np.ndarray:
    """Per grid point bound of the glued fine trajectory from starts with errors ``boundary_errors``.

    ``bounds``: segment boundaries ``n_0 = 0 < .. < n_K = N``; ``boundary_errors``: ``(K,)`` errors
    of the starts ``U_0..U_{K-1}``. Inside segment ``j`` the error grows by at most ``1 + l_i`` a step.
    """
    ell = _check_ell(ell)
    out = np.zeros(ell.size + 1)
    for j in range(len(bounds) - 1):
        lo, hi = bounds[j], bounds[j + 1]
        growth = np.concatenate([[1.0], np.cumprod(1.0 + ell[lo:hi])])
        out[lo:hi + 1] = boundary_errors[j] * growth
    return out


def frozen_constants(ell, bounds) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha_j, beta_j)`` for the ``"frozen"`` coarse propagator and a Lipschitz drift."""
    ell = _check_ell(ell)
    alpha, beta = [], []
    for j in range(len(bounds) - 1):
        seg = ell[bounds[j]:bounds[j + 1]]
        grown = np.concatenate([[1.0], np.cumprod(1.0 + seg)[:-1]])  # prod_{m<i} (1 + l_m)
        alpha.append(float(np.sum(seg * (grown + 1.0))))
        beta.append(1.0 + float(seg.sum()))
    return np.array(alpha), np.array(beta)


def linear_constants(jacobians, bounds, coarse_jacobians=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(||F_j - G_j||_inf, ||G_j||_inf)`` for a linear drift.

    ``jacobians``: the fine steps' ``J_i`` ``(N, d, d)`` (``theory.tolerance.linear_jacobians``);
    ``coarse_jacobians``: ``(K, d, d)`` matrices of ``G_j`` (e.g. one coarse step), default the
    frozen propagator ``I + sum_{i in j} (J_i - I)``.
    """
    jac = np.asarray(jacobians, dtype=float)
    d = jac.shape[1]
    alpha, beta = [], []
    for j in range(len(bounds) - 1):
        F = np.eye(d)
        for i in range(bounds[j], bounds[j + 1]):
            F = jac[i] @ F
        if coarse_jacobians is None:
            G = np.eye(d) + sum(jac[i] - np.eye(d) for i in range(bounds[j], bounds[j + 1]))
        else:
            G = np.asarray(coarse_jacobians[j], dtype=float)
        alpha.append(float(np.abs(F - G).sum(axis=1).max()))
        beta.append(float(np.abs(G).sum(axis=1).max()))
    return np.array(alpha), np.array(beta)


def frozen_prediction(f, y0, t, bounds, step="euler"):
    """The initial starts ``U^0_{j+1} = G_j(U^0_j)`` of the ``"frozen"`` coarse propagator,
    ``G_j(x) = x + sum_{i in segment j} Phi_i(x)`` (shape ``(K, *state)``), from the core's step map."""
    import torch

    from .discrete import step_increments

    starts = [y0]
    for j in range(len(bounds) - 2):
        idx = torch.arange(bounds[j], bounds[j + 1])
        inc = step_increments(f, starts[-1].expand(len(idx), *y0.shape), t, step, idx)
        starts.append(starts[-1] + inc.sum(0))
    return torch.stack(starts)


def derive() -> dict:
    sp = _sym.sympy()
    a, b, e0 = sp.symbols("alpha beta e0", nonnegative=True)
    j, k, s = sp.symbols("j k s", integer=True, nonnegative=True)
    return {
        "boundary error after k iterations (exact majorant)":
            e0 * a ** k * sp.Sum(sp.binomial(s + k - 1, k - 1) * b ** s, (s, 0, j - k - 1)),
        "superlinear bound (Gander-Vandewalle)": e0 * a ** k * sp.binomial(j - 1, k) * sp.Max(1, b) ** (j - k - 1),
        "iterations needed": sp.Symbol("K"),
    }


def verify() -> list:
    sp = _sym.sympy()
    a, b, e0 = sp.symbols("alpha beta e0", positive=True)
    checks = []
    K = 7

    def closed(kk, jj):
        if kk == 0:
            return e0 if jj >= 1 else sp.Integer(0)
        return e0 * a ** kk * sum(sp.binomial(s + kk - 1, kk - 1) * b ** s for s in range(0, jj - kk))

    ok = True
    for kk in range(1, K + 1):
        for jj in range(K):
            ok &= _sym.is_zero(closed(kk, jj + 1) - (b * closed(kk, jj) + a * closed(kk - 1, jj)))
        ok &= all(closed(kk, jj) == 0 for jj in range(kk + 1))
    checks.append(_sym.Check("E^k_j = e0 a^k sum_{s<j-k} C(s+k-1,k-1) b^s solves E^k_{j+1} = b E^k_j + "
                             "a E^{k-1}_j and vanishes for j <= k (K = 7)", bool(ok)))
    ok = all(_sym.is_zero(closed(kk, jj).subs(b, 1) - e0 * a ** kk * sp.binomial(jj - 1, kk))
             for kk in range(1, K) for jj in range(kk + 1, K + 2))
    ok &= all(_sym.is_zero(sp.binomial(jj - 1, kk) - sp.Mul(*[jj - i for i in range(1, kk + 1)]) / sp.factorial(kk))
              for kk in range(1, K) for jj in range(kk + 1, K + 2))
    checks.append(_sym.Check("beta = 1: E^k_j = e0 a^k C(j-1,k) = e0 a^k prod_{i<=k}(j-i)/k! (GV form)", bool(ok)))
    x = sp.Symbol("x", positive=True)
    ok = True
    for kk in range(1, K):
        for jj in range(kk + 1, K + 2):
            gap_le1 = sp.binomial(jj - 1, kk) - closed(kk, jj).subs({b: x, a: 1, e0: 1})  # beta = x <= 1
            gap_ge1 = sp.binomial(jj - 1, kk) * (1 + x) ** (jj - kk - 1) - closed(kk, jj).subs({b: 1 + x, a: 1, e0: 1})
            ok &= _poly_nonneg_on_unit(gap_le1, x)
            ok &= _sym.nonnegative_coefficients(gap_ge1, [x])
    checks.append(_sym.Check("exact majorant <= e0 a^k C(j-1,k) max(1,b)^(j-k-1) for all b >= 0", bool(ok)))
    return checks


def _poly_nonneg_on_unit(expr, x) -> bool:
    """``expr(x) >= 0`` on ``[0, 1]``: each power ``x^s`` there is at most 1 and the coefficients sum
    to ``C(j-1,k) - sum C(s+k-1,k-1) = 0``, with only the constant term positive."""
    sp = _sym.sympy()
    poly = sp.Poly(sp.expand(expr), x)
    coeffs = dict(zip([m[0] for m in poly.monoms()], poly.coeffs()))
    const = coeffs.pop(0, 0)
    return all(c <= 0 for c in coeffs.values()) and const + sum(coeffs.values()) >= 0


if __name__ == "__main__":
    raise SystemExit(_sym.run_main("Parareal (theory/parareal.py)", derive, verify))
