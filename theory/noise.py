"""SDEs with the noise drawn up front: a deterministic problem per noise sample.

``parasolve.solve_sde`` draws the standard normals ``xi_i`` before the solve, so Euler-Maruyama
is the deterministic step map

    Phi_i(x) = h_i f(t_i, x) + g(t_i, x) * sqrt|h_i| * xi_i        (diagonal noise)

and every bound of ``theory.discrete``/``theory.window``/``theory.tolerance`` holds per sample with
the step constants

    l_i = |h_i| L_f + sqrt|h_i| ||xi_i||_inf L_g,

``L_f``, ``L_g`` the Lipschitz constants of ``f`` and ``g`` in ``x`` (max-norm; for diagonal noise
``|g(x) xi - g(y) xi| <= ||xi||_inf L_g |x - y|``).

**Additive noise** (``g`` independent of ``x``, as in the reverse diffusion SDE): ``L_g = 0`` and
``l_i = |h_i| L_f`` -- the same constants as the ODE, the claim of ParaDiGMS. **Multiplicative
noise** is different: the constants grow by ``sqrt|h_i| |xi_i| L_g``, which dominates ``|h_i| L_f``
for small steps; ``sum_i l_i`` then scales like ``sqrt(N)``-times the noise-free sum, not like
``L T``. Using the ODE's constant there is wrong (tests/test_theory_noise.py shows a case where
the error after one sweep is positive while the ODE-constant bound says 0).
"""

from __future__ import annotations

import numpy as np

from . import _sym
from .discrete import _as_array

__all__ = ["step_lipschitz", "derive", "verify"]


def step_lipschitz(t, noise, L_f: float, L_g: float = 0.0) -> np.ndarray:
    """Per-sample Euler-Maruyama step constants ``|h_i| L_f + sqrt|h_i| ||xi_i||_inf L_g`` (shape ``(N,)``).

    ``noise``: the pre-drawn standard normals, shape ``(N, *state)`` (what ``solve_sde`` takes).
    """
    h = np.abs(np.diff(_as_array(t, "t")))
    xi = np.asarray(noise.detach().cpu().double() if hasattr(noise, "detach") else noise, dtype=float)
    if xi.shape[0] != h.size:
        raise ValueError(f"`noise` must have one row per step ({h.size}); got shape {xi.shape}.")
    for name, val in (("L_f", L_f), ("L_g", L_g)):
        if not (val >= 0 and np.isfinite(val)):
            raise ValueError(f"`{name}` must be a finite Lipschitz constant >= 0; got {val!r}.")
    xi_max = np.abs(xi.reshape(h.size, -1)).max(axis=1) if xi.size else np.zeros(h.size)
    return h * L_f + np.sqrt(h) * xi_max * L_g


def derive() -> dict:
    sp = _sym.sympy()
    h, Lf, Lg, xi = sp.symbols("h L_f L_g xi", nonnegative=True)
    return {"l_i (Euler-Maruyama, pre-drawn xi_i)": h * Lf + sp.sqrt(h) * xi * Lg,
            "l_i (additive noise, L_g = 0)": (h * Lf + sp.sqrt(h) * xi * Lg).subs(Lg, 0)}


def verify() -> list:
    sp = _sym.sympy()
    x, t, xi = sp.symbols("x t xi", real=True)
    hp = sp.Symbol("h", positive=True)
    f, g = sp.Function("f"), sp.Function("g")
    phi = hp * f(t, x) + g(t, x) * sp.sqrt(hp) * xi
    dphi = sp.diff(phi, x)
    expected = hp * sp.Derivative(f(t, x), x) + sp.sqrt(hp) * xi * sp.Derivative(g(t, x), x)
    checks = [_sym.Check("dPhi/dx = h f_x + sqrt(h) xi g_x, so |dPhi/dx| <= h L_f + sqrt(h) |xi| L_g",
                         sp.simplify(dphi - expected) == 0)]
    g_add = sp.Function("c")(t)  # additive noise: g depends on t only
    dphi_add = sp.diff(hp * f(t, x) + g_add * sp.sqrt(hp) * xi, x)
    checks.append(_sym.Check("additive noise: dPhi/dx = h f_x, the ODE's step constant (noise drops out)",
                             sp.simplify(dphi_add - hp * sp.Derivative(f(t, x), x)) == 0))
    n = sp.Symbol("N", positive=True)
    T, Lg = sp.symbols("T L_g", positive=True)
    ratio = sp.limit((n * sp.sqrt(T / n) * Lg) / (n * (T / n)), n, sp.oo)
    checks.append(_sym.Check("multiplicative noise: sum_i sqrt(h) L_g / sum_i h -> oo as N -> oo "
                             "(the per-sample constant is not the ODE's)", ratio == sp.oo))
    return checks


if __name__ == "__main__":
    raise SystemExit(_sym.run_main("Up-front noise (theory/noise.py)", derive, verify))
