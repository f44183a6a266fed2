"""The observer hook: ``solve(..., callback=)`` sees every sweep as the stop rule saw it, and
watching changes nothing."""

import pytest
import torch

import parasolve
from parasolve import diffusion, problems
from parasolve.observers import SweepInfo

F64 = torch.float64


def _watched(method, **kw):
    prob = problems.van_der_pol()
    seen = []
    sol = parasolve.solve(prob.f, prob.y0, prob.grid(64), method=method, callback=seen.append, **kw)
    return sol, seen


@pytest.mark.parametrize("method", ["picard", "anderson", "newton", "parareal"])
def test_one_info_per_sweep_matching_the_history(method):
    sol, seen = _watched(method, window=16, tol=1e-9)
    assert sol.converged and all(isinstance(i, SweepInfo) for i in seen)
    assert [(i.sweep, i.start, i.end, i.residual, i.accepted) for i in seen] == \
        [(r.sweep, r.start, r.end, r.residual, r.accepted) for r in sol.stats.history]
    assert sum(i.accepted for i in seen) == 64 and {i.n_steps for i in seen} == {64}
    assert {i.method for i in seen} == {method}


@pytest.mark.parametrize("method", ["picard", "anderson", "newton"])
def test_the_defects_the_rule_accepted_are_within_their_allowances(method):
    sol, seen = _watched(method, window=16, tol=1e-9)
    for info in seen:
        assert info.defects.shape == info.allowances.shape == (info.end - info.start,)
        assert info.budget is None  # euler declares no gains: each step on its own share
        met = info.met
        assert (info.defects[:met] <= info.allowances[:met]).all()
        if met < len(info.defects):  # the first step past them failed its allowance; one more is exact
            assert not info.defects[met] <= info.allowances[met]
            assert info.accepted == met + 1
    spent = [i.spent for i in seen]
    assert spent == sorted(spent) and spent[-1] <= sol.stats.weighted_defect_sum <= 1e-9


def test_the_sequential_loop_reports_each_step():
    sol, seen = _watched("sequential")
    assert [(i.sweep, i.start, i.end, i.accepted) for i in seen] == [(k + 1, k, k + 1, 1) for k in range(64)]
    assert all(i.defects is None and i.met is None for i in seen)


def test_a_map_with_gains_reports_the_carried_budget():
    den = diffusion.exact_denoiser(torch.rand(6, 4, generator=torch.Generator().manual_seed(0)), std=0.1,
                                   config={"data_std": 1.0})  # declares the sampler's gains
    seen = []
    out = diffusion.sample(den, (2, 4), sampler="ddim", steps=30, method="picard", window=30, callback=seen.append,
                           generator=torch.Generator().manual_seed(1))
    assert out.converged and seen and all(i.budget is not None for i in seen)
    tol = 1e-3  # float32's default
    for info in seen:  # tol times the shares of the steps up to each one: rising, tol at the grid's end
        assert info.budget.shape == info.defects.shape and (info.budget.diff() > 0).all()
        if info.end == info.n_steps:
            assert float(info.budget[-1]) == pytest.approx(tol, rel=1e-12)
    spent = [i.spent for i in seen]
    assert spent == sorted(spent) and out.stats.weighted_defect_sum <= tol


def test_watching_changes_nothing_and_progress_is_an_observer(capsys):
    prob = problems.harmonic()
    t = prob.grid(40)
    plain = parasolve.solve(prob.f, prob.y0, t, method="picard", window=10, tol=1e-10)
    count = []
    watched = parasolve.solve(prob.f, prob.y0, t, method="picard", window=10, tol=1e-10, progress=True,
                              callback=lambda info: count.append(info.sweep))
    assert torch.equal(plain.ys, watched.ys) and plain.stats.history == watched.stats.history
    assert count == list(range(1, plain.stats.iterations + 1))
    assert "sweep=" in capsys.readouterr().err


def test_a_differentiable_solve_is_watched_once():
    y0 = torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True)
    seen = []
    sol = parasolve.solve(lambda t, y: -y, y0, torch.linspace(0, 1, 21, dtype=F64), method="picard", tol=1e-10,
                          callback=seen.append)
    sol.ys.sum().backward()
    assert len(seen) == sol.stats.iterations and y0.grad is not None


@pytest.mark.parametrize("entry", ["solve", "solve_sde"])
def test_a_callback_that_is_not_callable_is_refused(entry):
    y0, t = torch.ones(2, dtype=F64), torch.linspace(0, 1, 5, dtype=F64)
    with pytest.raises(TypeError, match="`callback` must be callable.*got int"):
        if entry == "solve":
            parasolve.solve(lambda t, y: -y, y0, t, callback=3)
        else:
            parasolve.solve_sde(lambda t, y: -y, lambda t, y: y, y0, t, callback=3)
