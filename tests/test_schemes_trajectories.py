"""Per-trajectory fronts (parasolve.schemes.trajectories): a batch of independent trajectories,
each accepted on its own. Oracles: the sequential solution (within the tolerance bound, per
trajectory), the shared-front solve, and the rows the drift was asked for, counted by the drift."""

import pytest
import torch

import parasolve
from parasolve import testing as pt
from parasolve.drift import BatchedDrift, in_contract_check
from parasolve.schemes import trajectories

TOL = 1e-9
NEWTON = {"jacobian": "full"}


class RowCounter:
    """A vectorized drift of a batch of damped rotations, ``(n, rows, 3)``; component 2 is each
    trajectory's rate ``k`` (constant in time), so every row is the same function of its own
    state. Counts the rows it evaluates (contract checks left out)."""

    def __init__(self):
        self.rows = 0

    def __call__(self, t, y):
        if not in_contract_check():
            self.rows += y.shape[0] * y.shape[1]
        k = y[..., 2]
        return torch.stack([-k * y[..., 0] + k * y[..., 1] - 0.1 * torch.sin(y[..., 0]),
                            -k * y[..., 0] - 0.1 * y[..., 1] ** 3, torch.zeros_like(k)], -1)


def _batch(rates, amplitude=1.0):
    """One trajectory per rate; the first one's amplitude scaled (its cubic term then dominates)."""
    y0 = torch.tensor([[1.0, 0.5, k] for k in rates], dtype=torch.float64)
    y0[0, :2] *= amplitude
    return y0, torch.linspace(0.0, 2.0, 161, dtype=torch.float64)


def _solve(y0, t, method, options, **kw):
    f = RowCounter()
    sol = parasolve.solve(f, y0, t, method=method, options=options, step="rk4", tol=TOL, vectorized=True, **kw)
    return sol, f.rows


@pytest.mark.parametrize("method, options, amplitude, saving", [("picard", {}, 1.0, 0.4), ("newton", NEWTON, 10.0, 0.7)])
def test_each_trajectory_reaches_its_sequential_answer_with_fewer_rows(method, options, amplitude, saving):
    """One slow trajectory (Picard: a fast rotation; Newton: a large amplitude, strongly
    nonlinear) beside quick ones (k ~ 0): each front moves at its own trajectory's pace, the quick
    ones leave the batch, and the drift is asked for fewer rows than with the shared front (Picard
    0.36x, Newton 0.62x when measured) -- the same answers within the tolerance bound."""
    y0, t = _batch([6.0 if method == "picard" else 2.0, 0.01, 0.01, 0.01, 0.01, 0.01], amplitude)
    seq = parasolve.solve(RowCounter(), y0, t, method="sequential", step="rk4", vectorized=True)
    own, own_rows = _solve(y0, t, method, {**options, "blocks": 6})
    shared, shared_rows = _solve(y0, t, method, {**options, "blocks": 6, "per_trajectory": False} if method == "newton"
                                 else options)
    pt.assert_near_sequential(own, seq, atol=10 * TOL)
    pt.assert_near_sequential(shared, seq, atol=10 * TOL)
    sweeps = [s.iterations for s in own.stats.per_sample]
    assert own.stats.iterations == max(sweeps) and min(sweeps) < max(sweeps)  # the quick ones stopped early
    assert own_rows < saving * shared_rows, (own_rows, shared_rows)
    checks = 4 * 6  # rows of the independence check (2 states) and of the rows-alone check (1 state, 6 rows)
    assert sum(s.nfe for s in own.stats.per_sample) == own_rows - checks  # each trajectory's own count
    assert own.stats.nfe == -(-(own_rows - checks) // 6)  # whole-state evaluations
    assert sum(r.accepted for r in own.stats.history) == t.shape[0] - 1


def test_save_last_max_iters_and_a_warm_start():
    y0, t = _batch([3.0, 0.5, 0.01])
    seq = parasolve.solve(RowCounter(), y0, t, method="sequential", step="rk4", vectorized=True)
    last, _ = _solve(y0, t, "picard", {"blocks": 3}, save="last")
    assert last.ys.shape == (1, 3, 3)
    pt.assert_near_sequential(last, seq, atol=10 * TOL)
    cut, _ = _solve(y0, t, "newton", {**NEWTON, "blocks": 3}, max_iters=2, throw=False)
    assert cut.status == parasolve.Status.MAX_ITERS and cut.stats.iterations == 2
    assert cut.ys.shape == seq.ys.shape and torch.isfinite(cut.ys).all()
    assert torch.equal(cut.ys[0], y0)
    warm, _ = _solve(y0, t, "picard", {"blocks": 3}, init=seq.ys.clone())
    assert warm.stats.iterations == 1
    pt.assert_near_sequential(warm, seq, atol=10 * TOL)


def test_rows_with_parameters_of_their_own_share_one_front():
    """``-k * y`` with ``k`` per row: a row alone is not the row in the batch, so the fronts are
    shared (no per-trajectory stats); the answer is the sequential one all the same."""
    k = torch.tensor([[5.0], [0.1], [1.0]], dtype=torch.float64)

    def f(t, y):
        return -k * y

    y0 = torch.ones(3, 2, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 51, dtype=torch.float64)
    one = BatchedDrift(f, (1, 2), y0.dtype, y0.device)
    assert not trajectories.rows_alone(BatchedDrift(f, y0.shape, y0.dtype, y0.device), one, t, y0)
    seq = parasolve.solve(f, y0, t, method="sequential", step="rk4")
    for method, options in (("picard", {"blocks": 3}), ("newton", {**NEWTON, "blocks": 3})):
        sol = parasolve.solve(f, y0, t, method=method, options=options, step="rk4", tol=TOL)
        assert sol.stats.per_sample is None
        pt.assert_near_sequential(sol, seq, atol=10 * TOL)


def test_a_nan_in_one_trajectory_is_reported_at_its_step():
    def f(t, y):  # row 1 (marked by component 1 > 0) turns NaN after t = 0.5
        bad = (t[:, None] > 0.5) & (y[..., 1] > 0)
        return torch.stack([torch.where(bad, float("nan"), -y[..., 0]), torch.zeros_like(y[..., 1])], -1)

    y0 = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)
    for options in ({"blocks": 2}, {}):  # per trajectory, and the shared front: the same failure
        with pytest.raises(parasolve.NonFiniteError) as info:
            parasolve.solve(f, y0, t, method="picard", options=options, vectorized=True)
        assert info.value.index == 11  # Euler's first step that samples t > 0.5 (t = 0.55)


def test_picard_blocks_are_checked():
    def coupled(t, y):
        return -y + y.mean(-2, keepdim=True)

    y0 = torch.randn(4, 2, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"options\['blocks'\] = 4 .* couples"):
        parasolve.solve(coupled, y0, t, method="picard", options={"blocks": 4})
    with pytest.raises(ValueError, match="blocks"):
        parasolve.solve(coupled, y0, t, method="picard", options={"blocks": 0})
    with pytest.raises(TypeError, match="per_trajectory"):
        parasolve.solve(coupled, y0, t, method="newton", options={**NEWTON, "per_trajectory": "yes"})


def _vdp(t, y):
    return torch.stack([y[..., 1], (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)


def test_chord_newton_reuses_jacobians_and_keeps_the_answer():
    """``chord``: a step keeps its Jacobian while its defect shrinks fast; on Van der Pol with a
    window of a tenth of the grid it probes fewer points (measured 8.3 vs 11.4 evaluations per
    step and stage) and still reaches the sequential answer within the tolerance bound."""
    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, 10.0, 1001, dtype=torch.float64)
    seq = parasolve.solve(_vdp, y0, t, method="sequential", step="rk4", vectorized=True)
    runs = {chord: parasolve.solve(_vdp, y0, t, method="newton", window=100, step="rk4", tol=1e-8, vectorized=True,
                                   options={**NEWTON, "chord": chord}) for chord in (0.0, 0.2)}
    for sol in runs.values():
        pt.assert_near_sequential(sol, seq, atol=10 * 1e-8)
    assert runs[0.2].stats.nfe < 0.85 * runs[0.0].stats.nfe
    last = parasolve.solve(_vdp, y0, t, method="newton", step="rk4", tol=1e-8, vectorized=True, save="last",
                           options={**NEWTON, "chord": 0.2})
    assert last.ys.shape == (1, 2)
    pt.assert_near_sequential(last, seq, atol=10 * 1e-8)
    cut = parasolve.solve(_vdp, y0, t, method="newton", step="rk4", tol=1e-8, vectorized=True, max_iters=3,
                          throw=False, options={**NEWTON, "chord": 0.2})
    assert cut.status == parasolve.Status.MAX_ITERS and cut.ys.shape == seq.ys.shape


def test_chord_is_checked():
    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    with pytest.raises(ValueError, match="chord"):
        parasolve.solve(_vdp, y0, t, method="newton", options={**NEWTON, "chord": 1.0})
    with pytest.raises(ValueError, match="chord.*jacobian='full' only"):
        parasolve.solve(_vdp, y0, t, method="newton", options={"chord": 0.2})


def test_gradients_through_per_trajectory_fronts_match_the_sequential_ones():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    y0 = torch.randn(8, 2, dtype=torch.float64)
    t = torch.linspace(0.0, 2.0, 101, dtype=torch.float64)

    def gradient(**kw):
        net.zero_grad()
        sol = parasolve.solve(lambda s, y: net(y), y0, t, step="rk4", **kw)
        sol.ys[-1].pow(2).sum().backward()
        return sol, torch.cat([p.grad.flatten() for p in net.parameters()])

    _, want = gradient(method="sequential")
    sol, got = gradient(method="newton", options={**NEWTON, "blocks": 8}, tol=1e-10)
    assert sol.stats.per_sample is not None and (got - want).abs().max() <= 1e-7 * want.abs().max()
