"""Sliding-window Picard (window ``p``): the windowed iterate, and how many sweeps a solve takes.

The core's loop (``parasolve/schemes/engine.py``) keeps slots ``b .. b+p``; a sweep measures the
defects, freezes the leading accepted steps plus one exact step (so ``b`` grows by ``1..p``), moves
the rest by the Picard rule anchored at the new ``b``, and fills the slots entering the window with
copies of the last one (or ``init``).

**Counting.** Each sweep advances ``b`` by at least 1 (the exact step) and at most ``p`` (the window
length), so for every ``tol``::

    ceil(N / p) <= sweeps <= N.

**The windowed iterate (tol = 0).** Then (generically) every sweep advances exactly one step, and
after ``k`` sweeps the window holds slots ``k .. k+p``. A fill is never a drift input before it
is overwritten, so slot ``j <= k+p-1`` holds the *full-window* Picard iterate ``x^{(k)}_j`` (the
window only truncates; checked against the solver in tests/test_theory_window.py), and the slots
from ``k+p`` on hold copies of slot ``k+p-1``. Hence, with ``D`` the bound of
``theory.discrete`` and ``J_i >= |x*_{i+1} - x*_i|``::

    |x_j - x*_j| <= D_j                                   (j <= k+p-1)
    |x_j - x*_j| <= D_{k+p-1} + sum_{i=k+p-1}^{j-1} J_i     (j >= k+p)

Both are equalities for Euler on ``y' = L y`` (all errors share one sign).

**Sweeps with a tolerance.** Let ``d^{(s)} = x^{(s)} - x^{(s-1)}`` be the change a sweep makes to
a slot. For a step whose two slots were both moved by the previous sweep, the defect is
``r_j = Phi_j(x^{(s-1)}_j) - Phi_j(x^{(s)}_j)``, so ``|r_j| <= l_j |d_j|``; and the changes obey
``|d^{(s)}_j| <= sum_{i=a-1}^{j-1} l_i |d^{(s-1)}_i|`` (``a`` the anchor, at most ``p`` terms),
whatever was accepted. With the *per-window contraction* ``Lambda = max_b sum_{i=b}^{b+p-1} l_i``
(< 1), the first change of a fresh slot is at most ``D1 = p G / (1 - Lambda)`` (``G >= |Phi_i(x)|``
over the states visited), and a slot moved ``q`` times has ``|d| <= D1 Lambda^(q-1)``. Unrolling
the recursion instead gives chains ``j > i_1 > i_2 > ...`` of length ``>= q-1``; slot ``j`` was in
every window the chain visits, so all indices lie in ``[j-p-1, j-1]`` and, with ``l = max l_i``,

    |d| <= D1 * min(Lambda^(q-1), T_q),    T_q = sum_{m=q-1}^{p+1} C(p+1, m) l^m,

superlinear like the full-window bound. Let ``k*`` be the least ``q`` with
``l_j D1 min(Lambda^(q-1), T_q) + floor <= tol |h_j| / |T|`` for all ``j`` (``floor``: round-off
of a measured defect). Every slot in the window at sweep ``s`` has been moved ``k*`` times by sweep
``s + k*``, so sweep ``s + k* + 1`` accepts the whole window: ``b`` advances by at least ``p``
every ``k* + 1`` sweeps, and

    sweeps <= min(N, (k* + 1) * ceil(N / p)).

For a linear drift (``Phi_i(0) = 0``) every visited state is within
``R = (max|x*| + S tol) / (1 - Lambda)`` (anchors are states of the final trajectory, window
states add at most ``Lambda R``), so ``G = max_i l_i R`` (:func:`linear_increment_bound`).
"""

from __future__ import annotations

import math

import numpy as np

from . import _sym
from .discrete import _as_array, _check_ell, _check_k, bound as picard_bound

__all__ = ["sweep_range", "contraction", "first_change_bound", "linear_increment_bound",
           "settle_sweeps", "sweep_bound", "error_bound", "derive", "verify"]


def _check_window(n: int, window) -> int:
    if window is None:
        return max(n, 1)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"`window` must be a positive int or None; got {window!r}.")
    return int(min(window, max(n, 1)))


def sweep_range(n_steps: int, window=None) -> tuple[int, int]:
    """``(ceil(N / p), N)``: the fewest and the most sweeps any solve can take (any ``tol``)."""
    p = _check_window(n_steps, window)
    return math.ceil(n_steps / p), n_steps


def contraction(ell, window=None) -> float:
    """Per-window contraction ``Lambda = max_b sum_{i=b}^{b+p-1} l_i``."""
    ell = _check_ell(ell)
    p = _check_window(ell.size, window)
    sums = np.convolve(ell, np.ones(p), mode="valid")
    return float(sums.max()) if sums.size else float(ell.sum())


def first_change_bound(ell, window, increment_max: float) -> float:
    """``D1 = p G / (1 - Lambda)``: the largest change of a slot's first move (``inf`` if ``Lambda >= 1``)."""
    lam = contraction(ell, window)
    p = _check_window(len(ell), window)
    return math.inf if lam >= 1 else p * increment_max / (1 - lam)


def linear_increment_bound(ell, window, x_max: float, stability: float, tol: float) -> float:
    """``G`` for a linear drift: ``max_i l_i * (max|x*| + S tol) / (1 - Lambda)``."""
    lam = contraction(ell, window)
    if lam >= 1:
        return math.inf
    return float(np.max(_check_ell(ell))) * (x_max + stability * tol) / (1 - lam)


def settle_sweeps(ell, window, thresholds, first_change: float, floor: float = 0.0) -> float:
    """``k*``: moves after which every slot's defect is within its threshold (``inf`` if never)."""
    ell = _check_ell(ell)
    thr = _as_array(thresholds, "thresholds")
    if thr.shape != ell.shape:
        raise ValueError(f"`thresholds` must have one entry per step {ell.shape}; got {thr.shape}.")
    p = _check_window(ell.size, window)
    lam = contraction(ell, window)
    room = thr - floor
    if np.any(room <= 0) or lam >= 1 or not math.isfinite(first_change):
        return math.inf
    l_max = float(ell.max()) if ell.size else 0.0
    terms = [math.comb(p + 1, m) * l_max ** m for m in range(p + 2)]
    for q in range(1, p + 1):  # a slot is moved at most p times before it becomes the anchor
        change = first_change * min(lam ** (q - 1), sum(terms[q - 1:]))
        if np.all(ell * change <= room):
            return q
    return math.inf


def sweep_bound(ell, window, thresholds, first_change: float, floor: float = 0.0) -> int:
    """``min(N, (k* + 1) ceil(N / p))``: an upper bound on the sweeps of a windowed Picard solve."""
    n = len(_check_ell(ell))
    p = _check_window(n, window)
    k_star = settle_sweeps(ell, window, thresholds, first_change, floor)
    if not math.isfinite(k_star):
        return n
    return int(min(n, (k_star + 1) * math.ceil(n / p)))


def error_bound(ell, k, window, e0, jumps) -> np.ndarray:
    """Bound on ``max|x_j - x*_j|`` after ``k`` windowed sweeps with ``tol=0`` (shape ``(N+1,)``).

    ``e0``: initial errors (as in ``theory.discrete.bound``); ``jumps``: ``J_i >= |x*_{i+1} - x*_i|``
    ``(N,)``, needed for the slots past the window that hold its last state. Assumes each sweep
    advanced one step (``all(r.accepted == 1 for r in sol.stats.history)``, generic for ``tol=0``).
    """
    ell, k = _check_ell(ell), _check_k(k)
    n = ell.size
    p = _check_window(n, window)
    jumps = _as_array(jumps, "jumps")
    if jumps.shape != ell.shape or np.any(jumps < 0):
        raise ValueError(f"`jumps` must be |x*_(i+1) - x*_i| >= 0 with shape {ell.shape}; got {jumps.shape}.")
    full = picard_bound(ell, k, e0)
    last = k + p - 1  # the last slot holding a Picard value
    if k == 0 or last >= n:
        return full
    out = full.copy()
    out[last + 1:] = full[last] + np.cumsum(jumps[last:])
    return out


def derive() -> dict:
    sp = _sym.sympy()
    N, p, k, lam, D1, l, thr = sp.symbols("N p k* Lambda D1 l thr", positive=True)
    return {
        "sweeps, any tol": "ceil(N/p) <= sweeps <= N",
        "sweeps <=": sp.Min(N, (k + 1) * sp.ceiling(N / p)),
        "k* = least q with l D1 Lambda^(q-1) <= thr:": 1 + sp.ceiling(sp.log(thr / (l * D1)) / sp.log(lam)),
        "first change of a fresh slot D1 <=": p * sp.Symbol("G") / (1 - lam),
        "windowed iterate, j >= k+p (tol = 0)": "D_{k+p-1} + sum_{i=k+p-1}^{j-1} |x*_{i+1} - x*_i|",
    }


def verify() -> list:
    sp = _sym.sympy()
    checks = []
    lam, D1, G, p = sp.symbols("Lambda D1 G p", positive=True)
    q = sp.Symbol("q", integer=True, positive=True)
    fixed = sp.solve(sp.Eq(D1, lam * D1 + p * G), D1)[0]
    checks.append(_sym.Check("D1 = Lambda D1 + p G  =>  D1 = p G / (1 - Lambda)",
                             sp.simplify(fixed - p * G / (1 - lam)) == 0))
    Dq = sp.Function("D")
    sol = sp.rsolve(Dq(q + 1) - lam * Dq(q), Dq(q), {Dq(1): D1})
    checks.append(_sym.Check("D_{q+1} = Lambda D_q, D_1 = D1  =>  D_q = D1 Lambda^(q-1)",
                             sp.simplify(sol - D1 * lam ** (q - 1)) == 0))
    l, thr = sp.symbols("l thr", positive=True)
    kstar = 1 + sp.log(thr / (l * D1)) / sp.log(lam)
    at = sp.simplify(l * D1 * lam ** (kstar - 1))
    checks.append(_sym.Check("l D1 Lambda^(k*-1) = thr at k* = 1 + log(thr/(l D1))/log(Lambda)",
                             sp.simplify(at - thr) == 0))
    # The defect of a step whose two slots the last sweep moved: the update's sum telescopes.
    phi = sp.Function("Phi")
    anchor, *old = sp.symbols("A o0:4")
    new = [anchor + sum(phi(o) for o in old[:m]) for m in range(len(old) + 1)]
    ok = all(sp.simplify(new[m + 1] - new[m] - phi(new[m]) - (phi(old[m]) - phi(new[m]))) == 0
             for m in range(len(old)))
    checks.append(_sym.Check("after x_{j+1} = A + sum_{i<=j} Phi(x_old_i): defect r_j = Phi(x_old_j) - "
                             "Phi(x_j), so |r_j| <= l_j |d_j|", ok))
    return checks


if __name__ == "__main__":
    raise SystemExit(_sym.run_main("Sliding-window Picard (theory/window.py)", derive, verify))
