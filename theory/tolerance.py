"""What parasolve's ``tol`` guarantees: from the stop rule to ``max|x - x_sequential|``.

The core accepts step ``i`` only when the defect ``r_{i+1} = x_{i+1} - x_i - Phi_i(x_i)`` of the
iterate it keeps is at most ``tol |h_i| / |T|`` (max-norm), and the extra step it takes each sweep
is exact; so the returned trajectory has defects with ``sum_i |r_{i+1}| = defect_sum <= tol``.
Subtracting the sequential recursion, ``e_{i+1} = e_i + Phi_i(x_i) - Phi_i(x*_i) + r_{i+1}``; with
``J_i`` the (mean-value) Jacobian of ``x -> x + Phi_i(x)`` this solves to

    e_n = sum_{i<n} J_{n-1} ... J_{i+1} r_{i+1},

hence ``max_n |e_n| <= S * defect_sum <= S * tol`` with the discrete stability constant

    S = max_{1 <= a <= n <= N} || J_{n-1} ... J_a ||_inf     (the empty product counts: S >= 1).

For a linear drift ``f = A(t) y`` and a one-step map ``J_i`` is exact and :func:`stability_constant`
computes ``S`` exactly. For a drift with Lipschitz constant ``L``, ``||J_i|| <= 1 + l_i`` with
``l_i`` the step's constant (``theory.discrete.step_lipschitz``), so ``S <= prod_i (1 + l_i) <=
exp(L |T|)`` for Euler (``exp(sum l_i)`` in general).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import _sym
from .discrete import _check_ell

__all__ = ["linear_jacobians", "stability_constant", "stability_constant_linear",
           "product_bound", "exponential_bound", "gap_bound", "derive", "verify"]


def linear_jacobians(A, t, step="euler") -> np.ndarray:
    """Jacobians ``J_i = I + dPhi_i/dx`` (shape ``(N, d, d)``) of a one-step map on ``f(t, y) = A(t) y``.

    ``A``: a ``(d, d)`` matrix or a callable ``A(t) -> (d, d)``. The core's own step map is applied
    to the identity's columns, so the Jacobian is the one parasolve actually iterates.
    """
    from parasolve.steps import resolve_step

    step = resolve_step(step)
    if step.multistep:
        raise ValueError(f"`step` {step.name!r} is a multistep map: its error recursion couples two "
                         f"states, so a one-step Jacobian product does not apply; use a one-step map "
                         f"(e.g. 'euler', 'heun', 'rk4') or theory.discrete.step_lipschitz bounds.")
    grid = torch.as_tensor(t, dtype=torch.float64)
    if grid.dim() != 1 or grid.shape[0] < 2:
        raise ValueError(f"`t` must be a 1-D grid with at least 2 points; got shape {tuple(grid.shape)}.")
    mat = A if callable(A) else torch.as_tensor(A, dtype=torch.float64)
    if not callable(A) and (mat.dim() != 2 or mat.shape[0] != mat.shape[1]):
        raise ValueError(f"`A` must be a square matrix or a callable A(t); got shape {tuple(mat.shape)}.")

    def drift(tt, y):  # batched: tt (n,), y (n, d)
        if callable(A):
            mats = torch.stack([torch.as_tensor(A(s), dtype=torch.float64) for s in tt])
            return torch.einsum("nij,nj->ni", mats, y)
        return y @ mat.T

    d = (torch.as_tensor(A(grid[0])) if callable(A) else mat).shape[0]
    eye = torch.eye(d, dtype=torch.float64)
    jac = []
    for i in range(grid.shape[0] - 1):
        idx = torch.full((d,), i, dtype=torch.long)
        inc, _ = step.increments(drift, grid, idx, eye, None)  # row c: Phi_i(e_c)
        jac.append((eye + inc).T)  # column c of J_i is e_c + Phi_i(e_c)
    return torch.stack(jac).numpy()


def stability_constant(jacobians) -> float:
    """``S = max_{a <= n} ||J_{n-1} ... J_a||_inf`` over consecutive products (empty product = 1).

    ``jacobians``: ``(N, d, d)``; ``J_0`` never acts on an error (``e_0 = 0``) and is ignored.
    Exact in ``O(N^2 d^3)``.
    """
    jac = np.asarray(jacobians, dtype=float)
    if jac.ndim != 3 or jac.shape[1] != jac.shape[2]:
        raise ValueError(f"`jacobians` must have shape (N, d, d); got {jac.shape}.")
    best = 1.0
    d = jac.shape[1]
    for a in range(1, jac.shape[0]):
        prod = np.eye(d)
        for n in range(a, jac.shape[0]):
            prod = jac[n] @ prod
            best = max(best, float(np.abs(prod).sum(axis=1).max()))
    return best


def stability_constant_linear(A, t, step="euler") -> float:
    """Exact ``S`` for ``f(t, y) = A(t) y`` on grid ``t`` with a one-step map (max-norm)."""
    return stability_constant(linear_jacobians(A, t, step))


def product_bound(ell) -> float:
    """``prod_i (1 + l_i)`` over steps ``1..N-1``: ``S`` for any drift whose step constants are ``l_i``."""
    ell = _check_ell(ell)
    return float(np.prod(1.0 + ell[1:]))


def exponential_bound(L, T) -> float:
    """``exp(L |T|)``: ``S`` for Euler with drift Lipschitz constant ``L`` on an interval of length ``T``."""
    return math.exp(L * abs(T))


def gap_bound(stability, defect_sum) -> float:
    """``max|x - x_sequential| <= S * defect_sum`` (and ``defect_sum <= tol``)."""
    if stability < 1 or defect_sum < 0:
        raise ValueError(f"need stability >= 1 and defect_sum >= 0; got {stability!r}, {defect_sum!r}.")
    return stability * defect_sum


def derive() -> dict:
    sp = _sym.sympy()
    S, tol, L, T, D = sp.symbols("S tol L T defect_sum", nonnegative=True)
    return {
        "max_n |x_n - x*_n| <=": S * D,
        "defect_sum <=": tol,
        "S (exact, linear problems)": "max_{a<=n} ||J_{n-1} ... J_a||_inf",
        "S <= (Lipschitz l_i per step)": sp.Product(1 + sp.Symbol("l_i"), (sp.Symbol("i"), 1, sp.Symbol("N") - 1)),
        "S <= (Euler, drift Lipschitz L)": sp.exp(L * T),
    }


def verify() -> list:
    sp = _sym.sympy()
    checks = []
    n = 5
    r = sp.symbols(f"r1:{n + 1}")
    Js = sp.symbols(f"J0:{n}")  # scalar Jacobians suffice for the algebra of the recursion
    e = [sp.Integer(0)]
    for i in range(n):
        e.append(Js[i] * e[i] + r[i])  # e_{i+1} = J_i e_i + r_{i+1}
    closed = [sum(sp.Mul(*[Js[m] for m in range(i + 1, nn)]) * r[i] for i in range(nn)) for nn in range(n + 1)]
    ok = all(_sym.is_zero(e[nn] - closed[nn]) for nn in range(n + 1))
    checks.append(_sym.Check("e_n = sum_{i<n} J_{n-1}..J_{i+1} r_{i+1} solves e_{i+1} = J_i e_i + r_{i+1}, "
                             "so |e_n| <= S sum |r| (J_0 never acts)", ok))
    z = sp.Symbol("z", nonnegative=True)
    ok = sp.simplify(sp.diff(sp.exp(z) - 1 - z, z) - (sp.exp(z) - 1)) == 0 and (sp.exp(z) - 1 - z).subs(z, 0) == 0
    checks.append(_sym.Check("1 + z <= exp(z) (derivative exp(z) - 1 >= 0, equal at 0): "
                             "prod (1 + |h_i| L) <= exp(L |T|)", bool(ok)))
    return checks


if __name__ == "__main__":
    raise SystemExit(_sym.run_main("Meaning of tol (theory/tolerance.py)", derive, verify))
