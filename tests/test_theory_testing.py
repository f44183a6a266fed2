"""parasolve.testing: the public strategies keep their promises and the assertions catch failures."""

import sys

import pytest
import torch
from hypothesis import given, settings, strategies as st

import parasolve
from parasolve import testing as pt


@settings(max_examples=30, deadline=None)
@given(f=pt.drifts(max_lipschitz=2.5), seed=st.integers(0, 2 ** 16))
def test_drift_lipschitz_constant_is_an_upper_bound(f, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, f.dim, dtype=torch.float64, generator=gen)
    y = x + 1e-3 * torch.randn(64, f.dim, dtype=torch.float64, generator=gen)
    s = torch.rand(64, dtype=torch.float64, generator=gen)
    ratio = (f(s, x) - f(s, y)).abs().amax(1) / (x - y).abs().amax(1)
    assert float(ratio.max()) <= f.lipschitz * (1 + 1e-9) + 1e-12
    assert f.lipschitz <= 2.5 * (1 + 1e-12)
    per_point = torch.stack([f(s[i], x[i]) for i in range(4)])
    assert torch.allclose(per_point, f(s[:4], x[:4]))  # the same drift per point and batched


@settings(max_examples=30, deadline=None)
@given(f=pt.linear_drifts(min_lipschitz=0.5, max_lipschitz=2.0))
def test_linear_drift_constant_is_exact(f):
    assert 0.5 - 1e-12 <= f.lipschitz <= 2.0 + 1e-12
    row = int(f.A.abs().sum(1).argmax())
    e = f.A[row].sign()  # the max-norm-1 vector that attains ||A||_inf
    assert abs(float(f(0.0, e)[row].abs()) - f.lipschitz) < 1e-12


@settings(max_examples=40, deadline=None)
@given(t=pt.grids(min_steps=3, max_steps=20, span=(0.5, 1.5)), down=pt.grids(direction="decreasing"),
       tol=pt.tolerances(1e-9, 1e-4), w=pt.windows(8, allow_none=False))
def test_grids_windows_and_tolerances_are_in_range(t, down, tol, w):
    h = t[1:] - t[:-1]
    assert 3 <= len(h) <= 20 and (bool((h > 0).all()) or bool((h < 0).all()))
    assert 0.5 - 1e-12 <= float(h.abs().sum()) <= 1.5 + 1e-12
    assert bool((down[1:] < down[:-1]).all())
    assert tol == 0.0 or 1e-9 * (1 - 1e-9) <= tol <= 1e-4 * (1 + 1e-9)
    assert 1 <= w <= 8


def test_assertions_catch_wrong_answers():
    f = pt.LinearDrift(torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64))
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0, 3, 31, dtype=torch.float64)
    pt.assert_matches_sequential(f, y0, t, tol=1e-9, lipschitz=f.lipschitz)
    with pytest.raises(AssertionError, match="did not converge"):
        pt.assert_matches_sequential(f, y0, t, tol=1e-9, max_iters=3, throw=False, lipschitz=1.0, method="picard")
    with pytest.raises(AssertionError, match="max.x - x_sequential"):  # a 1e-3 answer claimed to 1e-9
        pt.assert_matches_sequential(f, y0, t, tol=1e-3, atol=1e-9, method="picard")
    with pytest.raises(ValueError, match="atol"):
        pt.assert_matches_sequential(f, y0, t)
    ref = pt.sequential(f, y0, t)
    two = pt.picard_iterate(f, y0, t, 2)
    pt.assert_exact_prefix(two.ys, ref.ys, 2, atol=1e-15)
    with pytest.raises(AssertionError, match="point 3"):
        pt.assert_exact_prefix(two.ys, ref.ys, 3)
    with pytest.raises(AssertionError, match="index 1"):
        pt.assert_within_bound([0.1, 0.3, 0.2], [0.2, 0.2, 0.2])
    with pytest.raises(ValueError, match="`k`"):
        pt.picard_iterate(f, y0, t, 0)


def test_near_sequential_states_the_bound_and_catches_what_breaks_it():
    """assert_near_sequential passes a real solve within S * defect_sum and fails a wrong answer,
    a sum above tol, an unconverged solve and mismatched saves, each with its own message."""
    import dataclasses
    f = pt.LinearDrift(torch.tensor([[-1.0, 0.5], [0.0, -1.0]], dtype=torch.float64))
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    t = torch.linspace(0, 2, 41, dtype=torch.float64)
    ref = pt.sequential(f, y0, t)
    sol = parasolve.solve(f, y0, t, method="picard", window=10, tol=1e-6)
    gap = pt.assert_near_sequential(sol, ref, stability=1.5, tol=1e-6)  # ||I + hA|| <= 1: S <= 1
    assert 0 < gap <= 1.5 * sol.stats.defect_sum + pt.roundoff(ref.ys, 40, 1.5)
    off = dataclasses.replace(sol, ys=sol.ys + 1e-5)  # at least 9e-6 off; S * tol = 1e-6 allowed
    with pytest.raises(AssertionError, match="max.x - x_sequential"):
        pt.assert_near_sequential(off, ref, stability=1.0)
    with pytest.raises(AssertionError, match="> tol"):
        pt.assert_near_sequential(sol, ref, stability=1.0, tol=sol.stats.defect_sum / 2)
    with pytest.raises(AssertionError, match="max.x - x_sequential"):  # tol caps the gap at S * tol
        pt.assert_near_sequential(off, ref, stability=1.0, tol=1e-6, slack=1.0)
    cut = parasolve.solve(f, y0, t, method="picard", tol=1e-12, max_iters=2, throw=False)
    with pytest.raises(AssertionError, match="did not converge"):
        pt.assert_near_sequential(cut, ref, stability=1.0)
    last = parasolve.solve(f, y0, t, method="picard", window=10, tol=1e-6, save="last")  # sol.y, bit for bit
    assert pt.assert_near_sequential(last, ref, stability=1.0) <= gap  # the end point of ref's trajectory
    with pytest.raises(ValueError, match="same `save="):
        pt.assert_near_sequential(sol, pt.sequential(f, y0, t, save="last"), stability=1.0)
    with pytest.raises(TypeError, match="`ref` must be a parasolve.Solution"):
        pt.assert_near_sequential(sol, ref.ys, stability=1.0)


def test_drifts_work_vectorized_in_solve():
    f = pt.TanhDrift(torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                     torch.ones(2, dtype=torch.float64), -torch.eye(2, dtype=torch.float64),
                     torch.zeros(2, dtype=torch.float64))
    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    a = parasolve.solve(f, y0, t, vectorized=True, tol=1e-12)
    b = parasolve.solve(f, y0, t, tol=1e-12)
    assert torch.allclose(a.ys, b.ys, atol=1e-12)


def test_strategies_say_how_to_get_hypothesis(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(ImportError, match=r"parasolve\[dev\]"):
        pt.grids()
