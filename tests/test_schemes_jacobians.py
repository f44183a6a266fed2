"""Newton with full per-step Jacobians (``method="newton", options={"jacobian": "full"}``):
the finite-difference Jacobians, exactness on linear problems, equality with sequential on
nonlinear ones, the conformance kit, honest evaluation counts and typed refusals."""

import math

import pytest
import torch

import parasolve
import parasolve.testing as pt
from parasolve import problems
from parasolve.errors import UnsupportedStepError
from parasolve.discrete_problem import Problem
from parasolve.drift import BatchedDrift
from parasolve.schemes import Newton
from parasolve.schemes.jacobians import increments_and_jacobians
from parasolve.schemes.scan import affine_scan
from parasolve.steps import STEPS

pytestmark = pytest.mark.usefixtures("one_thread")
FULL = {"jacobian": "full"}


class RecordingNewton(Newton):
    """Full-Jacobian Newton that keeps each update's window states ``x_a .. x_{b+w}``."""

    def __init__(self, **kw):
        super().__init__(jacobian="full", **kw)
        self.updates = []

    def update(self, state, window):
        new = super().update(state, window)
        self.updates.append((window.start + window.shift, torch.cat([window.anchor[None], new.iterate])))
        return new


def test_affine_scan_equals_the_sequential_recursion():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(37, 3, 3, generator=gen, dtype=torch.float64) * 0.5
    b = torch.randn(37, 3, generator=gen, dtype=torch.float64)
    u = torch.randn(3, generator=gen, dtype=torch.float64)
    out, ref = affine_scan(a, b, u), []
    for ai, bi in zip(a, b):
        u = ai @ u + bi
        ref.append(u)
    assert (out - torch.stack(ref)).abs().max() <= 1e-12 * torch.stack(ref).abs().max()


@pytest.mark.parametrize("step", ["euler", "rk4", "dopri5"])
def test_finite_difference_jacobians_match_autograd(step):
    prob = problems.van_der_pol(mu=2.0)
    t = prob.grid(20)
    ys = torch.tensor([[2.0, 0.5], [-1.5, 3.0], [0.3, -0.2]], dtype=torch.float64)
    drift = BatchedDrift(prob.f, prob.y0.shape, prob.y0.dtype, prob.y0.device, vectorized=True)
    problem = Problem(drift, STEPS[step], t, prob.y0, 1e-8, 20, 20)
    inc, _, jac = increments_and_jacobians(problem, 4, ys, None)
    assert torch.equal(inc, STEPS[step].increments(prob.f, t, torch.arange(4, 7), ys)[0])
    for i in range(3):
        exact = torch.autograd.functional.jacobian(
            lambda y: STEPS[step].increments(prob.f, t, torch.tensor([4 + i]), y[None])[0][0], ys[i])
        assert (jac[i] - exact).abs().max() <= 1e-6 * max(1.0, float(exact.abs().max()))


@pytest.mark.parametrize("step", ["euler", "rk4"])
@pytest.mark.parametrize("n", [100, 800])
def test_first_update_solves_a_linear_problem_to_the_differences_accuracy(step, n):
    """y' = A y (rotation, decay, coupling): the Newton system of an affine map is the map's own,
    so the first update leaves defects at the finite differences' sqrt(eps) level, and the
    solve ends within three sweeps -- for any N -- where Picard needs tens."""
    prob = problems.linear(t1=5.0)
    t = prob.grid(n)
    seq = parasolve.solve(prob.f, prob.y0, t, method="sequential", step=step)
    scheme = RecordingNewton()
    sol = parasolve.solve(prob.f, prob.y0, t, method=scheme, step=step, tol=1e-10)
    picard = parasolve.solve(prob.f, prob.y0, t, step=step, tol=1e-10, method="picard")
    first, states = scheme.updates[0]
    inc = STEPS[step].increments(prob.f, t, torch.arange(first, n), states[:-1])[0]
    initial = float((seq.ys - prob.y0).abs().max())  # the first guess's distance
    assert float((states[1:] - states[:-1] - inc).abs().max()) <= 1e-7 * initial
    assert sol.stats.iterations <= 3 < picard.stats.iterations / 5
    assert float((sol.ys - seq.ys).abs().max()) <= 1e-12


@pytest.mark.parametrize("make,n", [(lambda: problems.van_der_pol(mu=2.0, t1=10.0), 800),
                                    (lambda: problems.logistic(), 400), (lambda: problems.harmonic(t1=10.0), 400)])
def test_equals_sequential_within_the_bound_on_nonlinear_problems(make, n):
    prob = make()
    t = prob.grid(n)
    seq = parasolve.solve(prob.f, prob.y0, t, method="sequential", step="rk4")
    sol = parasolve.solve(prob.f, prob.y0, t, method="newton", options=FULL, step="rk4", tol=1e-10)
    picard = parasolve.solve(prob.f, prob.y0, t, step="rk4", tol=1e-10, method="picard")
    stability = math.exp(prob.lipschitz * float(t[-1] - t[0]))
    pt.assert_near_sequential(sol, seq, stability=stability, tol=1e-10, slack=1e-13)
    # Quadratic convergence: a fraction of Picard's sweeps (measured: VdP 17 vs 125, logistic 9 vs 29).
    assert 2 * sol.stats.iterations < picard.stats.iterations


def test_keeps_the_scheme_contract():
    pt.check_scheme(Newton(jacobian="full"))
    pt.check_scheme(Newton(jacobian="full", safeguard=True, damping=0.8), steps=["euler", "rk4"])


def test_the_kit_catches_probes_left_out_of_the_declared_cost():
    class Undeclared(Newton):
        def points_per_step(self, y0):
            return 1

    with pytest.raises(AssertionError, match="honest stats"):
        pt.check_scheme(Undeclared(jacobian="full"), steps=["euler"])


def test_counts_every_probe():
    prob = problems.van_der_pol()
    t = prob.grid(64)
    sol = parasolve.solve(prob.f, prob.y0, t, method="newton", options=FULL, step="rk4", window=16)
    widths = sum(r.end - r.start for r in sol.stats.history)
    assert sol.stats.drift_calls == 4 * sol.stats.iterations
    assert sol.stats.nfe == 4 * 3 * widths  # 4 stages, D + 1 = 3 points per step


@pytest.mark.parametrize("options,y0,error,match", [
    ({"jacobian": "dense"}, None, ValueError, "jacobian"),
    ({"jacobian": "full", "max_size": 0}, None, ValueError, "max_size"),
    ({"jacobian": "full", "max_size": 2.5}, None, TypeError, "max_size"),
    ({"jacobian": "full"}, torch.ones(65, dtype=torch.float64), ValueError, "max_size"),
    ({"jacobian": "full", "max_size": 4}, torch.ones(5, dtype=torch.float64), ValueError, "jacobian': 'scalar'"),
    ({"jacobian": "full"}, torch.ones(2, dtype=torch.complex128), ValueError, "complex"),
])
def test_bad_options_and_states_raise_typed_errors(options, y0, error, match):
    y0 = torch.ones(2, dtype=torch.float64) if y0 is None else y0
    with pytest.raises(error, match=match):
        parasolve.solve(lambda t, y: -y, y0, torch.linspace(0, 1, 9, dtype=torch.float64), method="newton",
                        options=options)


def test_multistep_maps_are_refused_with_the_fix():
    with pytest.raises(UnsupportedStepError, match="jacobian"):
        parasolve.solve(lambda t, y: -y, torch.ones(2, dtype=torch.float64), torch.linspace(0, 1, 9, dtype=torch.float64),
                        method="newton", options=FULL, step="ab2")


def test_auto_is_full_newton_for_small_states_and_picard_for_large():
    """``method="auto"`` (solve's default) and odeint's default scheme follow one rule."""
    from parasolve.odeint.dispatch import default_scheme as _default_scheme
    from parasolve.schemes.choice import FULL_NEWTON_SIZE
    for size, expected in ((2, {"scheme": "newton", "scheme_options": FULL}),
                           (FULL_NEWTON_SIZE + 1, {"scheme": "picard", "scheme_options": None})):
        options = {}
        _default_scheme(options, torch.ones(size, dtype=torch.float64), keep_auto=False)
        assert options == expected
    given = {"scheme_options": {"damping": 0.5}}
    _default_scheme(given, torch.ones(2, dtype=torch.float64), keep_auto=True)
    assert given["scheme_options"] == {"jacobian": "full", "damping": 0.5}
    t = torch.linspace(0.0, 2.0, 3, dtype=torch.float64)
    for size in (2, FULL_NEWTON_SIZE + 1):
        res = parasolve.odeint(lambda s, y: -y, torch.ones(size, dtype=torch.float64), t, full_output=True,
                               options={"evaluator": parasolve.evaluators.local_evaluator})  # the parallel driver
        assert res.solution.method == ("newton" if size == 2 else "picard")
        assert (res.ys[:, 0] - torch.exp(-t)).abs().max() <= 1e-6
    grid = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)
    for size, step, expected in ((2, "rk4", "newton"), (FULL_NEWTON_SIZE + 1, "rk4", "picard"), (2, "ab2", "picard")):
        sol = parasolve.solve(lambda s, y: -y, torch.ones(size, dtype=torch.float64), grid, step=step,
                              evaluator=parasolve.evaluators.local_evaluator)  # no cost model: the rule
        seq = parasolve.solve(lambda s, y: -y, torch.ones(size, dtype=torch.float64), grid, step=step,
                              method="sequential")
        assert sol.method == expected
        pt.assert_near_sequential(sol, seq, stability=2.0, slack=1e-15)  # S <= 1 here (decay)
    from parasolve.schemes.choice import FULL_NEWTON_ENTRIES, auto_scheme
    y0 = torch.ones(16, dtype=torch.float64)
    assert auto_scheme(y0, False, None, FULL_NEWTON_ENTRIES // 256)[0] == "newton"
    assert auto_scheme(y0, False, None, FULL_NEWTON_ENTRIES // 256 + 1)[0] == "picard"  # Jacobians too big


def test_sde_paths_with_up_front_noise_equal_sequential():
    """Euler-Maruyama is a one-step map whose noise is fixed per step, so the probes see the same
    noise as the states: full-Jacobian Newton lands on the sequential path."""
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    y0 = torch.tensor([2.0, -1.0], dtype=torch.float64)
    noise = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def f(s, y):
        return -1.5 * (y - 0.5) + 0.3 * torch.sin(y)

    def g(s, y):
        return 0.8 + 0.1 * torch.cos(y)

    seq = parasolve.solve_sde(f, g, y0, t, method="sequential", noise=noise)
    sol = parasolve.solve_sde(f, g, y0, t, method="newton", options=FULL, tol=1e-10, noise=noise)
    picard = parasolve.solve_sde(f, g, y0, t, tol=1e-10, noise=noise, method="picard")
    pt.assert_near_sequential(sol, seq, stability=math.exp(1.8), slack=1e-13)
    assert sol.stats.iterations < picard.stats.iterations / 2  # measured: 5 against 16


# --------------------------------------------------------------------------- independent trajectories

def _rowwise_net(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    return lambda s, y: net(y)


def test_block_jacobians_solve_a_batch_with_d_probes_not_b_times_d():
    """A batch of 6 independent 2-component trajectories: ``blocks`` measures each one's 2x2 Jacobian
    with 2 probes per step for the whole batch (3 points per step and stage, not 13) and reaches
    the sequential answer within the tolerance bound, like the full 12x12 Jacobian."""
    net = _rowwise_net()
    batches = []

    def f(s, y):  # vectorized: records each call's batch of time points
        if not parasolve.drift.in_contract_check():
            batches.append(y.shape[0])
        return net(s, y)

    y0 = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0.0, 4.0, 201, dtype=torch.float64)
    with torch.no_grad():
        seq = parasolve.solve(f, y0, t, method="sequential", step="rk4", vectorized=True)
        batches.clear()
        blocks = parasolve.solve(f, y0, t, method="newton", step="rk4", tol=1e-9, vectorized=True,
                                 options={"jacobian": "full", "blocks": 6, "per_trajectory": False})
        block_batches = batches[1:]  # (the first call is the blocks check: 2 points)
        batches.clear()
        full = parasolve.solve(f, y0, t, method="newton", options={"jacobian": "full"}, step="rk4", tol=1e-9,
                               vectorized=True)
    assert blocks.converged and (blocks.ys - seq.ys).abs().max() <= 10 * 1e-9
    assert all(b % 3 == 0 for b in block_batches) and max(block_batches) == 3 * 200  # the state and 2 probes
    assert all(b % 13 == 0 for b in batches) and max(batches) == 13 * 200          # the state and 12 probes
    assert blocks.stats.iterations <= full.stats.iterations + 1  # the same Newton, its blocks exact


def test_declared_blocks_on_coupled_rows_are_refused():
    f = _rowwise_net()
    y0 = torch.randn(6, 2, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)

    def coupled(s, y):
        return f(s, y) - y.mean(-2, keepdim=True)

    with pytest.raises(ValueError, match=r"options\['blocks'\] = 6 .* couples"):
        parasolve.solve(coupled, y0, t, method="newton", options={"jacobian": "full", "blocks": 6})
    with pytest.raises(ValueError, match="leading dimension"):
        parasolve.solve(f, y0, t, method="newton", options={"jacobian": "full", "blocks": 3})
    with pytest.raises(ValueError, match="jacobian='full' only"):
        parasolve.solve(f, y0, t, method="newton", options={"blocks": 6})


def test_auto_finds_independent_rows_and_takes_per_trajectory_newton():
    from parasolve.schemes.jacobians import independent_rows
    f = _rowwise_net()
    y0 = torch.randn(12, 2, dtype=torch.float64)  # 24 components: too many for one full Jacobian
    t = torch.linspace(0.0, 1.0, 41, dtype=torch.float64)
    drift = BatchedDrift(f, y0.shape, y0.dtype, y0.device)
    assert independent_rows(drift, t, y0)
    assert not independent_rows(drift, t, torch.zeros(1, 2, dtype=torch.float64))  # one row: nothing to tell
    coupled = BatchedDrift(lambda s, y: f(s, y) + y.sum(-2, keepdim=True), y0.shape, y0.dtype, y0.device)
    assert not independent_rows(coupled, t, y0)
    with torch.no_grad():
        sol = parasolve.solve(f, y0, t, step="rk4", evaluator=parasolve.evaluators.local_evaluator)  # no cost model
    per = sol.stats.per_sample  # each trajectory on its own front: rk4's 4 stages, each row and its 2 probes
    assert sol.method == "newton" and len(per) == 12 and all(s.nfe % (4 * 3) == 0 for s in per)
    assert all(s.nfe <= s.iterations * 4 * 40 * 3 for s in per)
