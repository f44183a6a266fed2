"""The stop rule (parasolve.stop_rule): gain weights, the budget, the floating-point floor.

Oracles: direct substitution in the scalar error recursion (theory.stop_rule.propagation); the
exact denoiser of Gaussian data, on which every sampler step is affine and the gain model is
exact, so ``max|x - x_seq| <= tol`` must hold with no estimate in between; the float32 floor
on the real digits sampler.
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

import parasolve
from parasolve import diffusion, stop_rule, zoo
from parasolve import testing as pt
from parasolve.diffusion import samplers
from theory import stop_rule as theory

pytestmark = pytest.mark.usefixtures("one_thread")


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), two_step=st.booleans(), save=st.sampled_from(["last", "all"]), data=st.data())
def test_amplification_is_the_propagation_of_the_error_recursion(n, two_step, save, data):
    coef = st.floats(-1.5, 1.5, allow_nan=False)
    p = np.array(data.draw(st.lists(coef, min_size=n, max_size=n)))
    q = np.array(data.draw(st.lists(coef, min_size=n, max_size=n))) if two_step else None
    E = np.abs(theory.propagation(p, q))
    expected = E[:, n] if save == "last" else E.max(axis=1)
    got = stop_rule.amplification((p, q) if two_step else p, save, n).numpy()
    assert np.allclose(got, np.maximum(expected, stop_rule.MIN_AMPLIFICATION), rtol=1e-12, atol=0)
    if save == "all":
        assert (got >= 1).all()


def test_amplification_takes_the_worst_model_and_rejects_bad_gains():
    rows = np.array([[0.5, 0.5, 0.5], [2.0, 2.0, 2.0]])
    assert stop_rule.amplification(rows, "last", 3).tolist() == [4.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="3 entries"):
        stop_rule.amplification(np.ones(4), "last", 3)
    with pytest.raises(ValueError, match="finite"):
        stop_rule.amplification(np.array([1.0, np.nan, 1.0]), "last", 3)


def test_budget_carries_unused_shares_forward():
    budget = torch.tensor([1.0, 2.0, 3.0])  # tol * cumulative shares
    ones, none = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    # Step 1 alone exceeds its own share (1.5 > 1) but fits the cumulative budget (0.1 + 1.5 <= 2).
    assert stop_rule.within_budget(torch.tensor([0.1, 1.5, 1.3]), ones, budget, 0.0, none) == 3
    assert stop_rule.within_budget(torch.tensor([0.1, 1.5, 1.5]), ones, budget, 0.0, none) == 2
    assert stop_rule.within_budget(torch.tensor([0.1, 1.5, 1.3]), ones, budget, 0.5, none) == 1
    assert stop_rule.within_budget(torch.tensor([5.0, 0.0, 0.0]), ones, budget, 0.0, torch.full((3,), 5.0)) == 3
    assert stop_rule.within_budget(torch.tensor([float("nan"), 0.0]), ones[:2], budget[:2], 0.0, none[:2]) == 0
    overflow = stop_rule.floor(torch.tensor([1.0, float("inf"), float("nan")]), torch.float32)
    assert overflow[0] > 0 and overflow[1:].tolist() == [0.0, 0.0]
    assert stop_rule.within_budget(torch.tensor([0.0, float("inf")]), ones[:2], budget[:2], 0.0, overflow[:2]) == 1
    # Without carry-over each step keeps its own share.
    assert stop_rule.within_budget(torch.tensor([0.1, 1.5, 1.3]), ones, torch.ones(3), None, none) == 1


def gaussian(std, data_std):
    """Exact denoiser of N(0.3, std^2 I) on 4x4 samples, declaring ``data_std``."""
    mean = torch.full((1, 1, 4, 4), 0.3, dtype=torch.float64)
    return diffusion.exact_denoiser(mean, std=std, config={"data_std": data_std})


def sequential_from(step, den, ts, x, start, shape):
    """The sequential chain from state ``x`` before step ``start`` to the end (one-step samplers)."""
    drift = den.drift(shape)
    with torch.no_grad():
        for j in range(start, len(ts)):
            out = drift(torch.tensor([float(ts[j])], dtype=x.dtype), x[None])
            x = step.advance(torch.tensor([j]), x[None], out, None)[0][0]
    return x


@pytest.mark.parametrize("name,steps", [("ddpm", 50), ("ddim", 20)])
def test_gaussian_gains_are_exact_on_gaussian_data(name, steps):
    std = 0.7
    den, shape = gaussian(std, data_std=std), (2, 1, 4, 4)
    ts, step = samplers.build(den, name, steps, dtype=torch.float64)
    seq = diffusion.sample(den, shape, sampler=name, steps=steps, method="sequential", save="all",
                           generator=torch.Generator().manual_seed(1), x_T=None)
    step.prepare(torch.float64, torch.device("cpu"), seq.noise)
    p = step.gains()[-1]  # the row of sigma = data_std: this data's exact recursion
    E = theory.propagation(p)
    delta = 1e-4 * torch.sign(torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    for i in (0, steps // 3, steps - 3):
        base = sequential_from(step, den, ts, seq.solution.ys[i + 1], i + 1, shape)
        moved = sequential_from(step, den, ts, seq.solution.ys[i + 1] + delta, i + 1, shape)
        assert torch.allclose(moved - base, E[i, steps] * delta, rtol=1e-6, atol=1e-13)
    G = stop_rule.amplification(step.gains(), "last", steps).numpy()
    assert np.all(G >= np.maximum(np.abs(E[:, steps]), stop_rule.MIN_AMPLIFICATION) * (1 - 1e-12))


@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(["ddpm", "ddim", "dpmsolver++"]), std=st.floats(0.05, 2.0),
       method=st.sampled_from(["picard", "newton", "parareal"]), window=st.integers(2, 40),
       tol=st.floats(1e-6, 1e-1), seed=st.integers(0, 3))
def test_final_gap_within_tol_on_gaussian_data(name, std, method, window, tol, seed):
    """Gaussian data: the chain is affine and the gains exact, so tol bounds the final sample
    (parareal's boundary defects weighted like a window's steps)."""
    assume(not (method == "parareal" and name == "dpmsolver++"))  # a multistep map: parareal refuses it
    den, shape, steps = gaussian(std, data_std=std), (2, 1, 4, 4), 40
    gen = torch.Generator().manual_seed(seed)
    seq = diffusion.sample(den, shape, sampler=name, steps=steps, method="sequential", generator=gen)
    par = diffusion.sample(den, shape, sampler=name, steps=steps, method=method, window=window, tol=tol,
                           x_T=seq.x_T, noise=seq.noise)
    assert par.stats.weighted_defect_sum <= tol * (1 + 1e-9)
    pt.assert_near_sequential(par, seq, weighted=True, slack=1e-12)


@pytest.mark.parametrize("name,tol", [("ddpm", 1e-1), ("ddim", 1e-2)])
def test_parareal_accepts_by_the_gain_weighted_rule(name, tol):
    """Parareal's segment defects are weighted by the gains too: on Gaussian data (exact gains)
    its weighted sum is within tol and bounds the final gap."""
    den, shape, steps = gaussian(0.5, data_std=0.5), (2, 1, 4, 4), 40
    seq = diffusion.sample(den, shape, sampler=name, steps=steps, method="sequential",
                           generator=torch.Generator().manual_seed(0))
    par = diffusion.sample(den, shape, sampler=name, steps=steps, method="parareal", window=10, tol=tol,
                           x_T=seq.x_T, noise=seq.noise)
    assert par.stats.iterations < par.stats.window  # segments accepted by the rule, not only the exact one
    assert 0 < par.stats.weighted_defect_sum <= tol * (1 + 1e-9)
    pt.assert_near_sequential(par, seq, weighted=True, slack=1e-12)


def test_without_declared_gains_the_rule_is_length_proportional():
    t = torch.tensor([0.0, 0.1, 0.3, 1.0], dtype=torch.float64)
    sol = parasolve.solve(lambda t, y: -y, torch.ones(2, dtype=torch.float64), t, tol=1e-6)
    assert sol.stats.weighted_defect_sum == sol.stats.defect_sum <= 1e-6
    problem = parasolve.discrete_problem.Problem(drift=None, step=parasolve.steps.resolve_step("euler"), t=t,
                                        y0=torch.ones(2), tol=1.0, window=3, max_iters=3)
    assert torch.allclose(problem.thresholds(), torch.tensor([0.1, 0.2, 0.7], dtype=torch.float64))


def test_tol_below_the_floor_warns_and_stays_parallel():
    """float32 digits DDPM-200: tol far below float32's resolution is raised to the floor, with a
    warning naming what was reached, instead of turning into one step per sweep."""
    den, shape = zoo.pretrained("digits"), (1, 1, 16, 16)
    seq = diffusion.sample(den, shape, steps=200, method="sequential", generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="resolves") as record:
        par = diffusion.sample(den, shape, steps=200, window=64, tol=1e-9, x_T=seq.x_T, noise=seq.noise)
    assert par.stats.iterations < 100  # sequential-like would be ~200
    reached = par.stats.weighted_defect_sum
    assert f"{reached:.3g}" in str(record[0].message)
    pt.assert_near_sequential(par, seq, weighted=True, stability=10, slack=1e-5)  # measured gains: <= ~6x
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tol=0 asks for exact steps: no floor, no warning
        exact = parasolve.solve(lambda t, y: -y, torch.ones(3), torch.linspace(0, 1, 9), tol=0.0, method="picard")
    assert exact.stats.iterations == 8


def test_stalled_defects_near_the_allowance_are_a_noise_floor():
    allow = floor = 1e-6
    assert stop_rule.STALL_SWEEPS == 3
    assert stop_rule.stalled((3e-6, 3e-6, 2.5e-6, 2.4e-6), allow, floor)  # hovering within 100x the floor
    assert not stop_rule.stalled((6e-6, 3e-6, 1.5e-6, 0.9e-6), allow, floor)  # converging (halves per sweep)
    assert not stop_rule.stalled((3e-6, 3e-6, 2.5e-6, 1.2e-6), allow, floor)  # converging in the last sweep
    assert not stop_rule.stalled((6e-6, 3e-6, 2.5e-6, 2.4e-6), allow, floor)  # converging three sweeps ago
    assert not stop_rule.stalled((3e-4, 3e-4, 2.9e-4, 2.8e-4), allow, floor)  # hovering far above round-off
    assert not stop_rule.stalled((3e-6, 3e-6, 2.5e-6, 2.4e-6), 1e-4, 1e-12)  # float64-like: a scheme's stall
    assert not stop_rule.stalled((3e-6, 3e-6, 2.5e-6, 0.9e-6), 1e-6, floor)  # accepted anyway
    assert not stop_rule.stalled((float("nan"), 3e-6, 2.5e-6, 2.4e-6), allow, floor)  # measured three times only
    assert not stop_rule.stalled((3e-6, 2.5e-6, 2.4e-6), allow, floor)  # too short a history


def _noisy_rotation(level):
    """A damped rotation whose evaluations carry relative noise ``level`` (a stand-in for kernels
    whose results depend on the batch, as TF32 does on a GPU), and its noise-free solution."""
    gen = torch.Generator().manual_seed(5)
    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]])

    def f(t, y):
        out = y @ A.T
        return out * (1 + level * torch.randn(out.shape, generator=gen))

    y0, t = torch.tensor([1.0, 0.0]), torch.linspace(0, 5, 501)
    clean = parasolve.solve(lambda t, y: y @ A.T, y0, t, method="sequential", vectorized=True)
    return f, y0, t, clean


@pytest.mark.parametrize("method", ["picard", "newton"])
def test_noisy_evaluations_do_not_turn_a_solve_sequential(method, monkeypatch):
    """Defects that stop decreasing at the front are taken as the drift's noise floor: the solve stays
    parallel, says what it reached, and stays within that of the noise-free answer. Without the
    test (STALL_RANGE = 0) the same solve crawls through half its 500 steps one sweep at a time."""
    f, y0, t, clean = _noisy_rotation(1e-4)
    with pytest.warns(UserWarning, match="stopped decreasing at about") as record:
        sol = parasolve.solve(f, y0, t, method=method, vectorized=True, tol=1e-4)
    reached = sol.stats.weighted_defect_sum
    assert sol.stats.iterations <= 40 and sol.stats.noise_floor > 0
    assert f"{reached:.3g}" in str(record[0].message)
    assert float((sol.ys - clean.ys).abs().max()) <= reached  # this rotation damps: S <= 1.5, measured 0.1-0.2
    monkeypatch.setattr(stop_rule, "STALL_RANGE", 0.0)
    f, y0, t, clean = _noisy_rotation(1e-4)
    crawl = parasolve.solve(f, y0, t, method=method, vectorized=True, tol=1e-4, throw=False)
    assert crawl.stats.iterations >= 200 and crawl.stats.noise_floor == 0


def test_deterministic_drift_at_the_floor_measures_no_noise():
    """float32 far below its resolution (every step at the floor) converges without the noise floor."""
    f, y0, t, clean = _noisy_rotation(0.0)
    with pytest.warns(UserWarning, match="resolves"):
        sol = parasolve.solve(f, y0, t, method="newton", vectorized=True, tol=1e-9)
    assert sol.stats.noise_floor == 0 and sol.stats.iterations < 100


def test_data_std_is_validated():
    den = gaussian(0.5, data_std=-1.0)
    with pytest.raises(ValueError, match="data_std"):
        diffusion.sample(den, (1, 1, 4, 4), steps=5)


def test_digits_data_std_is_its_top_principal_std():
    from parasolve.zoo import digits
    from parasolve.zoo.pretrained import DIGITS_DATA_STD

    x, _ = digits.load_digits_16("train")
    top = float(torch.linalg.eigvalsh(torch.cov(x.reshape(len(x), -1).double().T))[-1]) ** 0.5
    assert abs(top - DIGITS_DATA_STD) < 5e-3


def test_amplification_is_a_function_of_its_inputs_alone():
    """The cache behind amplification() is keyed on the gains and ``save``: a caller that changes
    its copy changes nothing for the next, and other gains get their own answer."""
    doubling = np.full(5, 2.0)
    first = stop_rule.amplification(doubling, "last", 5)
    assert first.tolist() == [16.0, 8.0, 4.0, 2.0, 1.0]
    first[0] = -1.0
    assert stop_rule.amplification(doubling, "last", 5).tolist() == [16.0, 8.0, 4.0, 2.0, 1.0]
    assert stop_rule.amplification(doubling, "all", 5).tolist() == [16.0, 8.0, 4.0, 2.0, 1.0]
    assert stop_rule.amplification(np.full(5, 0.5), "all", 5).tolist() == [1.0] * 5
