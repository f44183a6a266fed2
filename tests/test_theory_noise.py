"""theory.noise against solve_sde: with the noise drawn up front, the Picard bounds hold per sample."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import parasolve
from parasolve import testing as pt
from theory import discrete, noise, window


def sde_iterate(f, g, y0, t, xi, k, p=None):
    return parasolve.solve_sde(f, g, y0, t, noise=xi, tol=0.0, max_iters=k, throw=False, window=p,
                               method=pt.PlainPicard())


@settings(max_examples=30, deadline=None)
@given(f=pt.drifts(max_lipschitz=2.0), t=pt.grids(min_steps=2, max_steps=30), sigma=st.floats(0, 1.5),
       additive=st.booleans(), p=st.one_of(st.none(), st.integers(1, 10)), k_frac=st.floats(0, 1),
       seed=st.integers(0, 2 ** 16))
def test_picard_on_sde_within_per_sample_bound(f, t, sigma, additive, p, k_frac, seed):
    n = len(t) - 1
    k = 1 + int(k_frac * (n - 1))
    gen = torch.Generator().manual_seed(seed)
    y0 = torch.randn(f.dim, dtype=torch.float64, generator=gen)
    xi = torch.randn(n, f.dim, dtype=torch.float64, generator=gen)
    shift = torch.randn(f.dim, dtype=torch.float64, generator=gen)
    if additive:
        def g(s, y):
            return sigma * shift + 0 * y
    else:
        def g(s, y):
            return sigma * y  # multiplicative: L_g = sigma
    ref = parasolve.solve_sde(f, g, y0, t, noise=xi, method="sequential")
    sol = sde_iterate(f, g, y0, t, xi, k, p)
    ell = noise.step_lipschitz(t, xi, f.lipschitz, 0.0 if additive else sigma)
    if additive:  # the same constants as the ODE's Euler step
        assert torch.allclose(torch.as_tensor(ell), torch.as_tensor(discrete.step_lipschitz("euler", t, f.lipschitz)))
    slack = pt.roundoff(torch.cat([ref.ys, sol.ys]), n, math.exp(2 * ell.sum()))
    pt.assert_exact_prefix(sol.ys, ref.ys, k, atol=slack)
    e_init = pt.max_error(y0.expand_as(ref.ys), ref.ys).numpy()
    if p is None:
        bound = discrete.bound(ell, k, e_init)
    else:
        jumps = pt.max_error(ref.ys[1:], ref.ys[:-1]).numpy()
        bound = window.error_bound(ell, k, p, e_init, jumps)
    if p is None or all(r.accepted == 1 for r in sol.stats.history):  # windowed form: one step per sweep
        pt.assert_within_bound(pt.max_error(sol.ys, ref.ys), bound, slack=slack, what="SDE Picard error")


def test_multiplicative_noise_breaks_the_ode_constant():
    """f = 0, g = y: the ODE constant (0) claims one sweep is exact; the per-sample one does not."""
    t = torch.linspace(0, 1, 21, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    xi = torch.randn(20, 1, dtype=torch.float64, generator=gen)
    y0 = torch.ones(1, dtype=torch.float64)

    def f(s, y):
        return 0 * y

    def g(s, y):
        return y

    ref = parasolve.solve_sde(f, g, y0, t, noise=xi, method="sequential")
    sol = sde_iterate(f, g, y0, t, xi, 1)
    err = pt.max_error(sol.ys, ref.ys).numpy()
    e_init = pt.max_error(y0.expand_as(ref.ys), ref.ys).numpy()
    ode_bound = discrete.bound(discrete.step_lipschitz("euler", t, 0.0), 1, e_init)
    assert err.max() > 1e-3 > ode_bound.max()  # the "same Lipschitz constant" claim fails here
    pt.assert_within_bound(err, discrete.bound(noise.step_lipschitz(t, xi, 0.0, 1.0), 1, e_init),
                           slack=pt.roundoff(ref.ys, 20, 10.0))


def test_bad_noise_shape_is_rejected():
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="`noise`"):
        noise.step_lipschitz(t, torch.zeros(3, 2), 1.0, 1.0)


def test_symbolic_derivations_hold():
    checks = noise.verify()
    assert all(c.ok for c in checks), "\n".join(map(str, checks))
