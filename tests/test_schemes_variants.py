"""Newton's derivative and robustness variants (issue 22, "Larger states"): exact Jacobians by
forward-mode AD (``options={"jacobian": "full", "derivative": "jvp"}``) against autograd and the
sequential answer, their honest count, their fallback to finite differences, and typed refusals."""

import warnings

import numpy as np
import pytest
import torch

import parasolve
import parasolve.testing as pt
from parasolve import problems
from parasolve.discrete_problem import Problem
from parasolve.drift import BatchedDrift
from parasolve.schemes import Newton
from parasolve.schemes.jacobians import increments_and_jacobians
from parasolve.steps import STEPS

pytestmark = pytest.mark.usefixtures("one_thread")
JVP = {"jacobian": "full", "derivative": "jvp"}


class FirstUpdate(Newton):
    """Full-Jacobian Newton that keeps its first update's window (anchor first)."""

    def __init__(self, **kw):
        super().__init__(jacobian="full", **kw)
        self.first = None

    def update(self, state, window):
        new = super().update(state, window)
        if self.first is None:
            self.first = (window.start + window.shift, torch.cat([window.anchor[None], new.iterate]))
        return new


@pytest.mark.parametrize("step", ["euler", "rk4", "dopri5"])
def test_jvp_jacobians_are_autograd_s_and_counted_like_the_probes(step):
    prob = problems.van_der_pol(mu=2.0)
    t = prob.grid(20)
    ys = torch.tensor([[2.0, 0.5], [-1.5, 3.0], [0.3, -0.2]], dtype=torch.float64)
    drift = BatchedDrift(prob.f, prob.y0.shape, prob.y0.dtype, prob.y0.device, vectorized=True)
    problem = Problem(drift, STEPS[step], t, prob.y0, 1e-8, 20, 20)
    inc, _, jac = increments_and_jacobians(problem, 4, ys, None, derivative="jvp")
    assert torch.allclose(inc, STEPS[step].increments(prob.f, t, torch.arange(4, 7), ys)[0], rtol=1e-14, atol=1e-15)
    for i in range(3):
        exact = torch.autograd.functional.jacobian(
            lambda y: STEPS[step].increments(prob.f, t, torch.tensor([4 + i]), y[None])[0][0], ys[i])
        assert (jac[i] - exact).abs().max() <= 1e-13 * max(1.0, float(exact.abs().max()))  # exact, not sqrt(eps)
    stages = STEPS[step].stages
    assert drift.calls == stages and drift.nfe == stages * 3 * 3  # D + 1 = 3 per state: a tangent counts as one


@pytest.mark.parametrize("step", ["euler", "rk4"])
def test_exact_jacobians_solve_a_linear_problem_in_one_update(step):
    """y' = A y: Newton's system is the map's own, so with exact Jacobians the first update lands
    on the sequential answer to round-off and the next sweep only measures it (2 sweeps); the
    finite differences' sqrt(eps) error leaves defects about 1e-8 of the first guess's distance."""
    prob = problems.linear(t1=5.0)
    t = prob.grid(400)
    seq = parasolve.solve(prob.f, prob.y0, t, method="sequential", step=step)
    initial = float((seq.ys - prob.y0).abs().max())
    for derivative, level in (("jvp", 1e-13), ("fd", 1e-7)):
        scheme = FirstUpdate(derivative=derivative)
        sol = parasolve.solve(prob.f, prob.y0, t, method=scheme, step=step, tol=1e-10)
        first, states = scheme.first
        inc = STEPS[step].increments(prob.f, t, torch.arange(first, 400), states[:-1])[0]
        defect = float((states[1:] - states[:-1] - inc).abs().max())
        assert defect <= level * initial
        assert float((sol.ys - seq.ys).abs().max()) <= 1e-12
        if derivative == "jvp":
            assert sol.stats.iterations == 2 and defect <= 1e-13 * initial
        else:
            assert defect > 1e-13 * initial  # the differences' error is visible: exactness is what jvp adds


def test_jvp_newton_equals_fd_newton_on_a_nonlinear_problem():
    """Van der Pol: the same sweeps and evaluations as the probes (their error is far below the
    iteration's), the answer within the tolerance bound of the sequential one."""
    prob = problems.van_der_pol(mu=2.0, t1=10.0)
    t = prob.grid(800)
    seq = parasolve.solve(prob.f, prob.y0, t, method="sequential", step="rk4")
    fd = parasolve.solve(prob.f, prob.y0, t, method="newton", options={"jacobian": "full"}, step="rk4", tol=1e-10)
    jvp = parasolve.solve(prob.f, prob.y0, t, method="newton", options=JVP, step="rk4", tol=1e-10)
    assert (jvp.stats.iterations, jvp.stats.nfe, jvp.stats.drift_calls) == \
        (fd.stats.iterations, fd.stats.nfe, fd.stats.drift_calls)
    pt.assert_near_sequential(jvp, seq, stability=float(np.exp(prob.lipschitz * 10.0)), tol=1e-10, slack=1e-13)


def test_jvp_blocks_per_trajectory_match_the_probes():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    y0 = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0.0, 4.0, 201, dtype=torch.float64)
    with torch.no_grad():
        seq = parasolve.solve(lambda s, y: net(y), y0, t, method="sequential", step="rk4")
        sols = [parasolve.solve(lambda s, y: net(y), y0, t, method="newton", step="rk4", tol=1e-9,
                                options={"jacobian": "full", "blocks": 6, "derivative": d}) for d in ("fd", "jvp")]
    for sol in sols:
        assert sol.converged and (sol.ys - seq.ys).abs().max() <= 10 * 1e-9
    fd, jvp = sols
    assert [s.nfe for s in jvp.stats.per_sample] == [s.nfe for s in fd.stats.per_sample]
    assert jvp.stats.nfe == fd.stats.nfe


def test_keeps_the_scheme_contract_with_jvp():
    pt.check_scheme(Newton(jacobian="full", derivative="jvp"), steps=["euler", "rk4", "dopri5"])


@pytest.mark.parametrize("drift,why", [
    (lambda s, y: torch.as_tensor(-np.asarray(y.detach())), "raised"),   # numpy: jvp cannot run
    (lambda s, y: -y.detach() + 0 * y, "drops tangents"),                # runs, but the tangent is lost
])
def test_a_drift_forward_mode_cannot_differentiate_falls_back_to_differences(drift, why):
    y0, t = torch.ones(2, dtype=torch.float64), torch.linspace(0, 1, 9, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = parasolve.solve(drift, y0, t, method="newton", options=JVP, tol=1e-10)
    assert any("falls back to finite differences" in str(w.message) and why in str(w.message) for w in caught)
    seq = parasolve.solve(drift, y0, t, method="sequential")
    assert sol.converged and (sol.ys - seq.ys).abs().max() <= 1e-9
    assert sol.stats.iterations <= 3  # the probes' Newton on a linear drift


@pytest.mark.parametrize("options,error,match", [
    ({"jacobian": "full", "derivative": "exact"}, ValueError, "derivative"),
    ({"jacobian": "full", "derivative": 1}, TypeError, "derivative"),
    ({"derivative": "jvp"}, ValueError, "jacobian='full' only"),
    ({"jacobian": "full", "derivative": "jvp", "chord": 0.2}, ValueError, "derivative='fd' with chord"),
])
def test_bad_derivative_options_raise_typed_errors(options, error, match):
    with pytest.raises(error, match=match):
        parasolve.solve(lambda t, y: -y, torch.ones(2, dtype=torch.float64),
                        torch.linspace(0, 1, 9, dtype=torch.float64), method="newton", options=options)


def test_odeint_with_jvp_jacobians_keeps_its_error_estimates():
    """odeint's step map records its error estimate's stages per step; under a JVP it records
    nothing and the pass's end re-measures them (counted): the same sweeps and answer as the probes."""
    f = problems.van_der_pol(mu=1.0).f
    y0, t = torch.tensor([2.0, 0.0], dtype=torch.float64), torch.linspace(0.0, 10.0, 11, dtype=torch.float64)
    runs = {d: parasolve.odeint(f, y0, t, rtol=1e-6, atol=1e-9, full_output=True,
                                options={"scheme": "newton", "scheme_options": {"jacobian": "full", "derivative": d}})
            for d in ("fd", "jvp")}
    fd, jvp = runs["fd"], runs["jvp"]
    assert jvp.stats.sweeps == fd.stats.sweeps
    assert fd.stats.nfe < jvp.stats.nfe <= 1.1 * fd.stats.nfe  # + one re-measuring round per pass
    assert (jvp.ys - fd.ys).abs().max() <= 1e-9


class Recording(parasolve.StepMap):
    """Forward Euler that writes the first state it is handed into a buffer it holds (an in-place
    write into a tensor from outside the call: a side effect torch.func refuses)."""

    name, order = "recording-euler", 1

    def __init__(self):
        self.first = torch.zeros(2, dtype=torch.float64)

    def increments(self, drift, t, idx, y, prev=None):
        self.first.copy_(y[0])
        return parasolve.steps.Increments((t[idx + 1] - t[idx])[:, None] * drift(t[idx], y))


def test_a_step_map_forward_mode_cannot_transform_measures_by_differences():
    y0, t = torch.tensor([1.0, -0.5], dtype=torch.float64), torch.linspace(0, 2, 41, dtype=torch.float64)
    f = problems.van_der_pol(mu=1.0).f
    with pytest.warns(RuntimeWarning, match="could not differentiate step map 'recording-euler'"):
        sol = parasolve.solve(f, y0, t, step=Recording(), method="newton", options=JVP, tol=1e-10)
    seq = parasolve.solve(f, y0, t, step=Recording(), method="sequential")
    fd = parasolve.solve(f, y0, t, step=Recording(), method="newton", options={"jacobian": "full"}, tol=1e-10)
    assert sol.converged and (sol.ys - seq.ys).abs().max() <= 1e-8
    assert (sol.stats.iterations, sol.stats.nfe) == (fd.stats.iterations, fd.stats.nfe)


def test_an_evaluator_counts_the_tangents_as_the_stats_do():
    """A counter that sees the calls (``CountingEvaluator``) adds ``tangents_per_point()`` per row:
    its rows equal ``stats.nfe``, and the setup check on ``y0`` is left out, like the row check."""
    counting = parasolve.evaluators.CountingEvaluator()
    prob = problems.van_der_pol(mu=2.0)
    t = prob.grid(64)
    sol = parasolve.solve(prob.f, prob.y0, t, method="newton", options=JVP, step="rk4", window=16,
                          evaluator=counting)
    widths = sum(r.end - r.start for r in sol.stats.history)
    assert counting.rows == sol.stats.nfe == 4 * 3 * widths  # 4 stages, the state and its 2 tangents
    assert counting.calls == sol.stats.drift_calls == 4 * sol.stats.iterations
    assert parasolve.evaluators.tangents_per_point() == 0  # reset after the measurement
