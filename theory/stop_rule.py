"""The stop rule of :mod:`parasolve.stop_rule`: why ``tol`` bounds the returned answer.

1. **Weighted bound.** With ``e_i = x_i - x*_i`` and accepted defects ``r_{i+1}``, the error
   recursion ``e_{i+1} = J_i e_i + r_{i+1}`` (``J_i`` the mean-value Jacobian) gives
   ``e_n = sum_{i<n} P_{i,n} r_{i+1}`` with ``P_{i,n} = J_{n-1} ... J_{i+1}``; so for the states
   returned (the last one, or all), ``max |e| <= sum_i G_i |r_{i+1}|`` with ``G_i >= ||P_{i,n}||``.
2. **Budget.** The rule accepts step ``j`` only while ``sum_{i<=j} G_i |r_{i+1}| <= tol W_j``
   (``W_j`` the cumulative share, ``W_{N-1} = 1``); at the end the weighted sum is ``<= tol``,
   so ``max |e| <= tol`` whenever the ``G_i`` are true bounds.
3. **Gaussian-data gains.** For ``x = a x0 + s z`` with ``x0 ~ N(mu, sigma^2)`` along an
   eigendirection, ``E[x0 | x] = mu + k (x - a mu)``, ``k = a sigma^2 / (a^2 sigma^2 + s^2)``:
   the optimal denoiser is affine, each sampler step is affine, and its error gain is exactly
   ``A + B k + E (1 - a k) / s`` (+ ``C`` terms for DPM-Solver's two-step form).
4. Two checks of the model: on unit-variance data DDPM's step gain is ``sqrt(alpha_t)`` (so a
   defect at ``abar_t`` reaches the end damped by ``sqrt(abar_t / abar_end)``), and DDIM's is
   ``cos(theta' - theta) <= 1`` with ``abar = cos^2 theta`` (neither damps nor amplifies).

The model is exact for Gaussian data (tested with ``exact_denoiser``); for a trained model its
error is measured, not derived (docs/tolerance.md).
"""

from __future__ import annotations

import numpy as np

from . import _sym

__all__ = ["posterior_slope", "propagation", "derive", "verify"]


def posterior_slope(a, s, sigma):
    """``k = dE[x0|x]/dx = a sigma^2 / (a^2 sigma^2 + s^2)`` on Gaussian data of std ``sigma``."""
    return a * sigma ** 2 / (a ** 2 * sigma ** 2 + s ** 2)


def propagation(p, q=None) -> np.ndarray:
    """``E[i, m] = de_m / dr_{i+1}`` of ``e_{j+1} = p_j e_j + q_j e_{j-1} + r_{j+1}`` (``(N, N+1)``),
    by direct substitution -- the reference for :func:`parasolve.stop_rule.amplification`."""
    p = np.asarray(p, dtype=float)
    q = np.zeros_like(p) if q is None else np.asarray(q, dtype=float)
    n = len(p)
    E = np.zeros((n, n + 1))
    for i in range(n):
        e = np.zeros(n + 1)
        e[i + 1] = 1.0
        for j in range(i + 1, n):
            e[j + 1] = p[j] * e[j] + q[j] * e[j - 1]
        E[i] = e
    return E


def derive() -> dict:
    sp = _sym.sympy()
    a, s, sig, tol = sp.symbols("a s sigma tol", positive=True)
    return {
        "max |x - x_seq| <=": sp.Sum(sp.Symbol("G_i") * sp.Abs(sp.Symbol("r_{i+1}")), (sp.Symbol("i"), 0, sp.Symbol("N") - 1)),
        "<= (budget rule)": tol,
        "G_i (save='last')": "|de_N / dr_{i+1}| of the scalar recursion, worst data std",
        "G_i (save='all')": "max_{n>i} |de_n / dr_{i+1}| (>= 1)",
        "k = dE[x0|x]/dx (Gaussian data)": posterior_slope(a, s, sig),
    }


def verify() -> list:
    sp = _sym.sympy()
    checks = []
    # 3: the Gaussian posterior mean's slope is Cov(x0, x) / Var(x).
    a, s, sig, mu = sp.symbols("a s sigma mu", positive=True)
    cov, var = a * sig ** 2, a ** 2 * sig ** 2 + s ** 2
    checks.append(_sym.Check("E[x0|x] = mu + k (x - a mu), k = Cov(x0,x)/Var(x) = a sigma^2/(a^2 sigma^2 + s^2)",
                             _sym.is_zero(cov / var - posterior_slope(a, s, sig))))
    # 4a: DDPM on unit-variance data (VP: s^2 = 1 - abar): A + B k = sqrt(alpha).
    ab_prev, alpha = sp.symbols("abar_prev alpha", positive=True)
    ab = alpha * ab_prev
    A = sp.sqrt(alpha) * (1 - ab_prev) / (1 - ab)
    B = sp.sqrt(ab_prev) * (1 - alpha) / (1 - ab)
    k = posterior_slope(sp.sqrt(ab), sp.sqrt(1 - ab), 1)
    checks.append(_sym.Check("DDPM, unit-variance data: step gain A + B k = sqrt(alpha_t), so the end sees "
                             "a defect at abar_t damped by sqrt(abar_t / abar_end)",
                             _sym.is_zero(sp.simplify(A + B * k - sp.sqrt(alpha)))))
    # 4b: DDIM on unit-variance data: gain = cos(theta_prev - theta) with abar = cos^2(theta).
    th, thp = sp.symbols("theta theta_prev", positive=True)
    a_t, s_t, a_p, s_p = sp.cos(th), sp.sin(th), sp.cos(thp), sp.sin(thp)
    k = posterior_slope(a_t, s_t, 1)
    gain = a_p * k + s_p * (1 - a_t * k) / s_t  # B = sqrt(abar_prev), E = sqrt(1 - abar_prev)
    checks.append(_sym.Check("DDIM, unit-variance data: step gain = cos(theta_prev - theta) <= 1",
                             _sym.is_zero(sp.simplify(sp.expand_trig(gain - sp.cos(thp - th))))))
    # 1: the weighted bound, on a symbolic 4-step two-term recursion.
    n = 4
    p, q, r = sp.symbols(f"p0:{n}"), sp.symbols(f"q0:{n}"), sp.symbols(f"r1:{n + 1}")
    e = [sp.Integer(0)] * (n + 1)
    for j in range(n):
        e[j + 1] = p[j] * e[j] + (q[j] * e[j - 1] if j > 0 else 0) + r[j]
    ok = True
    for i in range(n):  # de_N/dr_{i+1} by substitution equals the forward propagation's entry
        forward = [sp.Integer(0)] * (n + 1)
        forward[i + 1] = sp.Integer(1)
        for j in range(i + 1, n):
            forward[j + 1] = p[j] * forward[j] + q[j] * forward[j - 1]
        ok = ok and _sym.is_zero(sp.diff(e[n], r[i]) - forward[n])
    checks.append(_sym.Check("e_N = sum_i (de_N/dr_{i+1}) r_{i+1} with de_N/dr_{i+1} from the forward "
                             "propagation (what parasolve.stop_rule.amplification computes)",
                             ok and _sym.is_zero(e[n] - sum(sp.diff(e[n], ri) * ri for ri in r))))
    return checks


if __name__ == "__main__":
    raise SystemExit(_sym.run_main("The stop rule (theory/stop_rule.py)", derive, verify))
