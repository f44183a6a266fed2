"""Continuous Picard iteration: the k-th iterate is within ``(L T)^k / k! * sup|x^0 - x*|``.

For ``x' = f(t, x)`` on ``[t0, t0 + T]`` with ``f`` Lipschitz in ``x`` (constant ``L``), Picard's map
``P[x](t) = x(t0) + int_{t0}^t f(s, x(s)) ds`` gives the errors ``e_k = x^k - x*`` the bound
``|e_{k+1}(t)| <= L int_{t0}^t |e_k(s)| ds``. Starting from ``|e_0| <= e0`` the solution is

    |e_k(t)| <= e0 (L (t - t0))^k / k!,

an equality for ``x' = L x`` from a start with constant error ``e0`` (:func:`verify`). The discrete
iteration parasolve runs obeys the same bound: with Euler its per-step constants ``|h_i| L`` sum to
``L T`` and ``E_k(l) <= (sum l)^k / k!`` (``theory.discrete``), so the k-th sweep of
``solve(method="picard", step="euler", tol=0)`` is within ``(L T)^k / k! * max_i |x^0_i - x*_i|``
of the sequential solution. For a higher-order step replace ``L T`` by ``sum_i l_i``.
"""

from __future__ import annotations

import math

from . import _sym

__all__ = ["bound", "derive", "verify"]


def bound(L, T, k, e0=1.0) -> float:
    """``e0 * (L |T|)^k / k!``: the error of the k-th Picard iterate on an interval of length ``T``."""
    for name, val in (("L", L), ("e0", e0)):
        if not (isinstance(val, (int, float)) and val >= 0 and math.isfinite(val)):
            raise ValueError(f"`{name}` must be a finite number >= 0; got {val!r}.")
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"`k` (number of sweeps) must be an integer >= 0; got {k!r}.")
    z = L * abs(T)
    if k == 0:
        return float(e0)
    if z == 0 or e0 == 0:
        return 0.0
    return float(e0) * math.exp(k * math.log(z) - math.lgamma(k + 1))  # no overflow for large k


def derive() -> dict:
    sp = _sym.sympy()
    L, T, e0 = sp.symbols("L T e0", nonnegative=True)
    k = sp.Symbol("k", integer=True, nonnegative=True)
    return {"sup |x^k - x*| on [t0, t0+T] <=": e0 * (L * T) ** k / sp.factorial(k)}


def verify() -> list:
    sp = _sym.sympy()
    L, t, s, e0, y0, T = sp.symbols("L t s e0 y0 T", positive=True)
    k = sp.Symbol("k", integer=True, nonnegative=True)
    checks = []
    E = lambda kk, tt: e0 * (L * tt) ** kk / sp.factorial(kk)  # noqa: E731
    induction = sp.simplify(L * sp.integrate(E(k, s), (s, 0, t)) - E(k + 1, t))
    checks.append(_sym.Check("e0 (L t)^k / k! solves E_{k+1}(t) = L int_0^t E_k(s) ds for symbolic k "
                             "(induction step)", induction == 0))

    # Tightness: x' = L x from x^0 = x* + e0 (constant error): e_k(t) = e0 (L t)^k / k! exactly.
    x = lambda tt: y0 * sp.exp(L * tt)  # noqa: E731
    it = x(t) + e0
    ok = True
    for kk in range(1, 6):
        it = y0 + sp.integrate(L * it.subs(t, s), (s, 0, t))
        ok &= sp.simplify(it - x(t) - E(kk, t)) == 0
    checks.append(_sym.Check("x' = L x from x* + e0: the k-th iterate's error equals the bound (k <= 5)", ok))

    # From the constant start x^0 = y0 the iterates are Taylor polynomials; the tail obeys the bound
    # with e0 = y0 (e^{LT} - 1) because k! i! / (k+i)! <= 1 termwise.
    i = sp.Symbol("i", integer=True, positive=True)
    ratio = sp.factorial(k) * sp.factorial(i) / sp.factorial(k + i)
    ok = sp.simplify(ratio - 1 / sp.binomial(k + i, i)) == 0
    it = y0
    for kk in range(1, 6):
        it = y0 + sp.integrate(L * it.subs(t, s), (s, 0, t))
        ok &= sp.simplify(it - y0 * sum((L * t) ** m / sp.factorial(m) for m in range(kk + 1))) == 0
    checks.append(_sym.Check("x' = L x from x^0 = y0: x^k = y0 sum_{m<=k} (Lt)^m/m!, tail <= (LT)^k/k! * "
                             "y0 (e^{LT} - 1) since k! i!/(k+i)! = 1/C(k+i, i) <= 1", bool(ok)))
    return checks


if __name__ == "__main__":
    raise SystemExit(_sym.run_main("Continuous Picard (theory/picard.py)", derive, verify))
