"""Discrete Picard on a grid: exactness of the first k steps and the error after k sweeps.

The discrete problem is ``x_{i+1} = x_i + Phi_i(x_i)``, ``x_0 = y0``; its solution ``x*`` is the
sequential loop. One (full-window, ``tol=0``) sweep of ``parasolve.solve(method="picard")`` is the
classic discrete Picard map

    x^{(k+1)}_j = y0 + sum_{i<j} Phi_i(x^{(k)}_i)

(the core re-anchors the sum at its window start, which changes only the order of summation).
With ``l_i`` a Lipschitz constant of ``Phi_i`` in the max-norm, the errors
``e^{(k)}_j = x^{(k)}_j - x*_j`` satisfy ``|e^{(k+1)}_j| <= sum_{i<j} l_i |e^{(k)}_i|`` and
``e^{(k)}_0 = 0``. Solving this recursion (see :func:`derive`) gives

* exactness: ``e^{(k)}_j = 0`` for ``j <= k``, so at most ``N`` sweeps are ever needed;
* the *initial-error form*, with ``e0 = max_{i>=1} |x^{(0)}_i - x*_i|``::

      |e^{(k)}_j| <= e0 * E_k(l_1, ..., l_{j-1})  (= e0 * C(j-1, k) l^k for uniform l)

  where ``E_k`` is the k-th elementary symmetric polynomial; since ``E_k(l) <= (sum l)^k / k!``
  it never exceeds the continuous Picard bound ``(L T)^k / k!`` for Euler;
* the *geometric form*: the discrete Picard map is Lipschitz with constant ``q = sum_i l_i``
  (``= N |h| L`` for Euler on a uniform grid) in the max-norm over the trajectory, so
  ``max_j |e^{(k)}_j| <= q^k e0`` (:func:`geometric_bound`); weaker than the forms above
  (``E_k <= q^k / k!``) but the familiar contraction estimate: for ``q < 1`` it also bounds the
  error by the last change, ``max|e^{(k)}| <= q / (1 - q) * max|x^{(k)} - x^{(k-1)}|``;
* the *increment form*, for the default start ``x^{(0)} = y0``: the changes between successive
  iterates obey the same recursion from ``|x^{(1)}_j - y0| <= sum_{i<j} |Phi_i(y0)|``, so with
  ``a_i = |Phi_i(y0)| / l_i``::

      |e^{(k)}_j| <= sum_{m=k+1}^{j} D^{(m)}_j,   D^{(m)}_j <= max(a) E_m(l_0, ..., l_{j-1})
                   (= max(a) * sum_{m>k} C(j, m) l^m for uniform l)

Both forms are equalities for Euler on ``y' = L y`` (``L, y0 > 0``), from a start with a constant
error (initial-error form) or from ``x^{(0)} = y0`` (increment form): the bounds are tight.

``step_lipschitz`` gives ``l_i`` for the core's step maps from a drift Lipschitz constant ``L``.
"""

from __future__ import annotations

import math

import numpy as np

from . import _sym

__all__ = ["step_lipschitz", "rk_lipschitz", "increments_at", "step_increments", "bound",
           "bound_from_increments", "geometric_bound", "a_posteriori_bound", "uniform_bound",
           "uniform_increment_bound", "derive", "verify"]


# --------------------------------------------------------------------------- Lipschitz constants

def rk_lipschitz(a, b, z):
    """Lipschitz constant of an explicit Runge-Kutta increment, per unit ``L``, at ``z = |h| L``.

    Stage ``s`` moves by at most ``kappa_s = L (1 + z sum_j |a_sj| kappa_j / L)`` per unit change of
    the state, so ``Phi`` moves by at most ``z * sum_s |b_s| kappa_s / L``. Works for floats,
    numpy arrays and sympy symbols alike.
    """
    kappas = []
    for row in a:
        kappas.append(1 + z * sum(abs(aj) * k for aj, k in zip(row, kappas)))
    return z * sum(abs(bs) * k for bs, k in zip(b, kappas))


def step_lipschitz(step, t, L) -> np.ndarray:
    """Per-step Lipschitz constants ``l_i`` (shape ``(N,)``) of a core step map for drift constant ``L``.

    ``step``: a name from ``parasolve.STEPS`` or a step-map instance; explicit Runge-Kutta maps use
    their tableau, ``"ab2"`` the coefficient of ``e_i`` in the two-step error recursion
    ``|h_i| L (1 + r_i) + |h_{i+1}| L r_{i+1}`` (``r_i = h_i / (2 h_{i-1})``).
    """
    from parasolve.steps import AdamsBashforth2, ExplicitRK, resolve_step

    step = resolve_step(step)
    h = np.abs(np.diff(_as_array(t, "t")))
    if not (isinstance(L, (int, float)) and L >= 0 and math.isfinite(L)):
        raise ValueError(f"`L` must be a finite Lipschitz constant >= 0; got {L!r}.")
    if isinstance(step, ExplicitRK):
        return np.asarray(rk_lipschitz(step.a, step.b, h * L), dtype=float)
    if isinstance(step, AdamsBashforth2):
        r = np.zeros_like(h)
        r[1:] = h[1:] / (2 * h[:-1])
        nxt = np.append(h[1:] * r[1:], 0.0)
        return L * (h * (1 + r) + nxt)
    raise TypeError(f"No Lipschitz formula for step map {step!r}; pass per-step constants `ell` "
                    f"to the bound functions yourself (|Phi_i(x) - Phi_i(y)| <= ell_i |x - y|).")


def step_increments(f, states, t, step="euler", idx=None, *, vectorized=False):
    """``Phi_i(states[r])`` for steps ``idx`` (default ``0..N-1``), by the core's step map (one batched call).

    ``states``: ``(len(idx), *state)``. One-step maps only evaluate at the given states; for
    ``"ab2"`` the previous drift is taken from the same batch (as in a Picard sweep).
    """
    import torch

    from parasolve.drift import BatchedDrift
    from parasolve.steps import resolve_step

    step = resolve_step(step)
    grid = torch.as_tensor(t, dtype=states.dtype, device=states.device)
    idx = torch.arange(grid.shape[0] - 1, device=states.device) if idx is None else torch.as_tensor(idx)
    drift = BatchedDrift(f, states.shape[1:], states.dtype, states.device, vectorized=vectorized)
    inc, _ = step.increments(drift, grid, idx, states, None)
    return inc


def increments_at(f, y0, t, step="euler", *, vectorized=False) -> np.ndarray:
    """``|Phi_i(y0)|`` (max-norm) for every step ``i`` (shape ``(N,)``): the data of the increment form.

    One batched evaluation of the core's step map at the initial state, the start of every solve.
    """
    n = len(t) - 1
    inc = step_increments(f, y0.expand(n, *y0.shape), t, step, vectorized=vectorized)
    return inc.flatten(1).abs().amax(1).double().cpu().numpy()


def _as_array(x, name) -> np.ndarray:
    try:
        arr = np.asarray(x.detach().cpu().double() if hasattr(x, "detach") else x, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be array-like of numbers; got {type(x).__name__}.") from None
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D; got shape {arr.shape}.")
    return arr


def _check_ell(ell) -> np.ndarray:
    ell = _as_array(ell, "ell")
    if not np.all(np.isfinite(ell)) or np.any(ell < 0):
        raise ValueError("`ell` (per-step Lipschitz constants) must be finite and >= 0.")
    return ell


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"`k` (number of sweeps) must be an integer >= 0; got {k!r}.")
    return int(k)


# --------------------------------------------------------------------------- numeric bounds

def _picard_majorant(ell: np.ndarray, err: np.ndarray) -> np.ndarray:
    """One application of the error recursion: ``E'_j = sum_{i<j} l_i E_i`` (``E'_0 = 0``)."""
    return np.concatenate([[0.0], np.cumsum(ell * err[:-1])])


def bound(ell, k, e0) -> np.ndarray:
    """Bound on ``max|x^{(k)}_j - x*_j|`` for every grid point ``j`` (shape ``(N+1,)``).

    ``ell``: per-step Lipschitz constants ``(N,)``; ``k``: sweeps; ``e0``: the initial iterate's
    error, a number (``max_{i>=1} |x^{(0)}_i - x*_i|``) or per grid point ``(N+1,)``.
    Zero for ``j <= k`` (exactness). For scalar ``e0`` it equals ``e0 * E_k(l_1..l_{j-1})``.
    """
    ell, k = _check_ell(ell), _check_k(k)
    err = np.broadcast_to(np.asarray(e0, dtype=float), (ell.size + 1,)).copy()
    if np.any(err < 0) or not np.all(np.isfinite(err)):
        raise ValueError(f"`e0` must be finite and >= 0; got {e0!r}.")
    err[0] = 0.0  # the initial state is given
    for _ in range(k):
        err = _picard_majorant(ell, err)
    return err


def bound_from_increments(ell, k, increments0) -> np.ndarray:
    """Bound on ``max|x^{(k)}_j - x*_j|`` for the default start ``x^{(0)} = y0`` (shape ``(N+1,)``).

    ``increments0``: ``|Phi_i(y0)|`` per step ``(N,)`` (one evaluation of the step at ``y0``).
    The error is the sum of the later changes ``x^{(m)} - x^{(m-1)}``, ``m = k+1 .. N``; each obeys
    the Picard recursion, starting from ``|x^{(1)}_j - y0| <= sum_{i<j} |Phi_i(y0)|``.
    """
    ell, k = _check_ell(ell), _check_k(k)
    inc = _as_array(increments0, "increments0")
    if inc.shape != ell.shape or np.any(inc < 0):
        raise ValueError(f"`increments0` must be |Phi_i(y0)| >= 0 with shape {ell.shape}; got {inc.shape}.")
    change = np.concatenate([[0.0], np.cumsum(inc)])  # bound on |x^{(1)} - x^{(0)}|
    total = np.zeros_like(change)
    for m in range(1, ell.size + 1):
        if m > k:
            total += change
        change = _picard_majorant(ell, change)
    return total


def geometric_bound(ell, k, e0) -> float:
    """``e0 * (sum_i l_i)^k``: the contraction bound on ``max_j |x^{(k)}_j - x*_j|`` after ``k`` sweeps."""
    ell, k = _check_ell(ell), _check_k(k)
    if not (isinstance(e0, (int, float)) and e0 >= 0 and math.isfinite(e0)):
        raise ValueError(f"`e0` must be a finite number >= 0; got {e0!r}.")
    q = float(ell.sum())
    return float(e0) if k == 0 else (0.0 if q == 0 or e0 == 0 else float(e0) * q ** k)


def a_posteriori_bound(ell, change) -> float:
    """``q / (1 - q) * change`` with ``q = sum_i l_i < 1``: the error of an iterate from its last change.

    ``change``: ``max|x^{(k)} - x^{(k-1)}|`` between the last two full-window sweeps.
    """
    q = float(_check_ell(ell).sum())
    if not q < 1:
        raise ValueError(f"the a-posteriori bound needs a contraction, sum(ell) < 1; got {q:.3g}: "
                         f"use a smaller window or a finer grid.")
    if not (isinstance(change, (int, float)) and change >= 0 and math.isfinite(change)):
        raise ValueError(f"`change` must be a finite number >= 0; got {change!r}.")
    return q / (1 - q) * float(change)


def uniform_bound(l, k, j, e0):
    """Closed form of :func:`bound` for uniform ``l`` and scalar ``e0``: ``e0 * C(j-1, k) * l^k``."""
    return e0 * math.comb(j - 1, k) * l ** k if j >= 1 else 0.0


def uniform_increment_bound(l, k, j, a):
    """Closed form of :func:`bound_from_increments` for uniform ``l``, ``|Phi_i(y0)| = a l``:
    ``a * sum_{m=k+1}^{j} C(j, m) l^m``."""
    return a * sum(math.comb(j, m) * l ** m for m in range(k + 1, j + 1))


# --------------------------------------------------------------------------- derivation (sympy)

def derive() -> dict:
    """Closed forms: the uniform-step solutions of the error recursion and the RK step constants."""
    sp = _sym.sympy()
    l, e0, a, z = sp.symbols("l e0 a z", nonnegative=True)
    j, k, m = sp.symbols("j k m", integer=True, nonnegative=True)
    from parasolve.steps import STEPS, ExplicitRK

    forms = {
        "error after k sweeps at point j (initial-error form)": e0 * sp.binomial(j - 1, k) * l ** k,
        "error after k sweeps at point j (increment form, x0 = y0)":
            a * sp.Sum(sp.binomial(j, m) * l ** m, (m, k + 1, j)),
        "sweeps needed for the exact solution": sp.Symbol("N"),
    }
    for name, step in STEPS.items():
        if isinstance(step, ExplicitRK):
            forms[f"Lipschitz constant of the {name} step, z = |h| L"] = sp.expand(
                rk_lipschitz([[sp.nsimplify(x) for x in row] for row in step.a],
                             [sp.nsimplify(x) for x in step.b], z))
    return forms


def verify() -> list:
    """Symbolic proofs (sympy) of the claims in the module docstring."""
    sp = _sym.sympy()
    checks = []
    l, e0, y0, hL = sp.symbols("l e0 y0 hL", positive=True)
    i, j, k = sp.symbols("i j k", integer=True, nonnegative=True)

    # 1. C(j-1, k) l^k solves E^{(k+1)}_j = l sum_{i=1}^{j-1} E^{(k)}_i (hockey stick), for all j, k.
    kp = sp.Symbol("k", integer=True, positive=True)
    residual = sp.summation(sp.binomial(i - 1, kp), (i, 1, j - 1)) - sp.binomial(j - 1, kp + 1)
    ok = sp.simplify(sp.combsimp(residual)) == 0  # k >= 1 symbolically; k = 0 is sum 1 = j - 1
    ok &= sp.summation(sp.binomial(i - 1, 0), (i, 1, j - 1)) - sp.binomial(j - 1, 1) == 0
    ok &= all(sp.binomial(jj - 1, kk) == 0 for kk in range(1, 9) for jj in range(1, kk + 1))
    checks.append(_sym.Check("sum_{i=1}^{j-1} C(i-1,k) = C(j-1,k+1): e0 C(j-1,k) l^k solves the "
                             "uniform recursion, and it is 0 for j <= k (first k steps exact)", bool(ok)))

    # 2. Non-uniform steps: E_k of the prefix solves the recursion (polynomial identity, n = 6).
    ls = sp.symbols("l1:7", nonnegative=True)

    def esym(vals, kk):
        if kk == 0:
            return sp.Integer(1)
        if len(vals) < kk:
            return sp.Integer(0)
        return sp.expand(esym(vals[:-1], kk) + vals[-1] * esym(vals[:-1], kk - 1))

    ok = all(_sym.is_zero(esym(ls[:jj], kk + 1) - sum(ls[ii] * esym(ls[:ii], kk) for ii in range(jj)))
             for jj in range(len(ls) + 1) for kk in range(4))
    checks.append(_sym.Check("E_{k+1}(l_1..l_{j-1}) = sum_i l_i E_k(l_1..l_{i-1}): the non-uniform "
                             "recursion is solved by elementary symmetric polynomials", ok))

    # 3. Maclaurin: E_k(l) <= (sum l)^k / k!, so the discrete bound never exceeds (L T)^k / k!.
    ok = all(_sym.nonnegative_coefficients(sum(ls) ** kk - sp.factorial(kk) * esym(ls, kk), ls)
             for kk in range(1, 5))
    checks.append(_sym.Check("(sum l)^k - k! E_k(l) has non-negative coefficients: "
                             "discrete bound <= (sum_i l_i)^k / k! = (L T)^k / k! for Euler", ok))
    ok = all(_sym.nonnegative_coefficients(sum(ls) ** kk - esym(ls, kk), ls) for kk in range(1, 5))
    checks.append(_sym.Check("(sum l)^k - E_k(l) has non-negative coefficients: the geometric "
                             "(contraction) bound q^k e0, q = sum_i l_i, holds too", ok))
    q, d = sp.symbols("q d", positive=True)  # |e_k| <= q |e_{k-1}| and |e_{k-1}| <= |e_k| + d
    ok = _sym.is_zero(sp.solve(sp.Eq(sp.Symbol("e"), q * (sp.Symbol("e") + d)), sp.Symbol("e"))[0] - q * d / (1 - q))
    checks.append(_sym.Check("e <= q (e + d) gives e <= q d / (1 - q): the a-posteriori bound", ok))

    # 4. Tightness: Euler on y' = L y, start with constant error e0: the error IS the bound.
    n = 7
    exact = [y0 * (1 + hL) ** jj for jj in range(n + 1)]
    x = [y0] + [exact[jj] + e0 for jj in range(1, n + 1)]
    ok = True
    for kk in range(1, n + 1):
        x = [y0 + sum(hL * x[ii] for ii in range(jj)) for jj in range(n + 1)]
        ok &= all(_sym.is_zero(x[jj] - exact[jj] - e0 * sp.binomial(jj - 1, kk) * hL ** kk)
                  for jj in range(1, n + 1))
    checks.append(_sym.Check("Euler on y' = L y from x* + e0: e^{(k)}_j = e0 C(j-1,k) (hL)^k exactly "
                             "(initial-error form is tight)", ok))

    # 5. Tightness of the increment form: from x0 = y0, x^{(k)}_j = y0 sum_{m<=k} C(j,m)(hL)^m.
    x = [y0] * (n + 1)
    ok = True
    for kk in range(1, n + 1):
        x = [y0 + sum(hL * x[ii] for ii in range(jj)) for jj in range(n + 1)]
        ok &= all(_sym.is_zero(exact[jj] - x[jj] - y0 * sum(sp.binomial(jj, m) * hL ** m
                                                            for m in range(kk + 1, jj + 1)))
                  for jj in range(n + 1))
    checks.append(_sym.Check("Euler on y' = L y from x0 = y0: x* - x^{(k)} = y0 sum_{m>k} C(j,m)(hL)^m "
                             "(increment form is tight; the brief's binomial-tail form)", ok))

    # 6. RK4's step constant is the exponential series truncated at degree 4.
    from parasolve.steps import STEPS
    z = sp.Symbol("z", nonnegative=True)
    rk4 = STEPS["rk4"]
    lip = sp.expand(rk_lipschitz([[sp.nsimplify(v) for v in row] for row in rk4.a],
                                 [sp.nsimplify(v) for v in rk4.b], z))
    checks.append(_sym.Check("rk4: l = z + z^2/2 + z^3/6 + z^4/24 <= e^z - 1 with z = |h| L",
                             _sym.is_zero(lip - sum(z ** q / sp.factorial(q) for q in range(1, 5)))))
    return checks


if __name__ == "__main__":
    raise SystemExit(_sym.run_main("Discrete Picard (theory/discrete.py)", derive, verify))
