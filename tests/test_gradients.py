"""Gradients through solves: the discrete adjoint equals autograd through the plain sequential loop
of the same step map, within its stated bound; gradcheck; memory independent of the sweep count."""

import math
import weakref

import pytest
import torch
from hypothesis import given, settings

import parasolve
from parasolve import diffusion
from parasolve import testing as pt
from parasolve.adjoint import AdjointError
from parasolve.diffusion import samplers
from parasolve.diffusion.api import _grid

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


class Net(torch.nn.Module):
    """A small time-dependent drift with parameters."""

    def __init__(self, dim=3, width=8, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.W1 = torch.nn.Parameter(torch.randn(width, dim, generator=gen, dtype=F64) / dim ** 0.5)
        self.b = torch.nn.Parameter(torch.randn(width, generator=gen, dtype=F64))
        self.W2 = torch.nn.Parameter(torch.randn(dim, width, generator=gen, dtype=F64) / width ** 0.5)

    def forward(self, t, y):
        return torch.tanh(y @ self.W1.T + self.b) @ self.W2.T * torch.cos(t)


def loop(f, step, y0, t, g=None, noise=None):
    """The reference: ``x_{i+1} = x_i + Phi_i(x_i)`` one step at a time, differentiated by plain autograd."""
    xs, y, prev = [y0], y0, None
    for i in range(len(t) - 1):
        if noise is not None:  # Euler-Maruyama written out, independent of parasolve's step map
            h = t[i + 1] - t[i]
            y = y + h * f(t[i], y) + g(t[i], y) * h.abs().sqrt() * noise[i]
        else:
            batched = lambda tt, yy: torch.stack([f(tt[j], yy[j]) for j in range(len(tt))])  # noqa: E731
            inc, first = step.increments(batched, t, torch.tensor([i]), y[None], prev)
            y, prev = y + inc[0], first[0] if step.multistep else None
        xs.append(y)
    return torch.stack(xs)


LOSSES = {
    "sum_sq": lambda ys: (ys ** 2).sum(),
    "end_sin": lambda ys: ys[-1].sin().sum(),
    "weighted": lambda ys: (ys * torch.linspace(-1, 2, ys.numel(), dtype=ys.dtype).reshape(ys.shape)).sum(),
}


def grads(loss, inputs):
    return torch.autograd.grad(loss, inputs, allow_unused=True, retain_graph=True)


def max_gap(a, b):
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def check_against_loop(method, step, adjoint, window=None, losses=LOSSES, tol=1e-11):
    f = Net()
    y0 = torch.tensor([0.3, -0.7, 0.5], dtype=F64, requires_grad=True)
    t = torch.linspace(0.0, 1.5, 25, dtype=F64).requires_grad_(True)
    inputs = [y0, t, *f.parameters()]
    ref_ys = loop(f, parasolve.STEPS[step], y0, t)
    for name, loss in losses.items():
        sol = parasolve.solve(f, y0, t, method=method, step=step, window=window, tol=tol,
                              adjoint_options=dict(adjoint, tol=tol))
        got = grads(loss(sol.ys), inputs)
        want = grads(loss(ref_ys), inputs)
        scale = max(1.0, max(float(w.abs().max()) for w in want))
        # forward and adjoint both within tol (times stability constants of order e^{L T} ~ 10 here)
        assert max_gap(got, want) <= 1e-8 * scale, (method, step, adjoint, name, max_gap(got, want))
        assert sol.backward.calls == 1 and 1 <= sol.backward.sweeps <= len(t) - 1


@pytest.mark.parametrize("step", sorted(parasolve.STEPS))
@pytest.mark.parametrize("adjoint", [{"method": "picard"}, {"method": "picard", "window": 5}, {"method": "scan"},
                                     {"method": "scan", "window": 5}],
                         ids=["picard", "picard-window5", "scan", "scan-window5"])
def test_every_step_map_matches_autograd_through_the_sequential_loop(step, adjoint):
    check_against_loop("picard", step, adjoint)


@pytest.mark.parametrize("method", sorted(parasolve.SCHEMES))
def test_every_scheme_matches_autograd_through_the_sequential_loop(method):
    check_against_loop(method, "heun", {"method": "picard", "window": 6}, losses={"sum_sq": LOSSES["sum_sq"]})
    check_against_loop(method, "rk4", {"method": "scan"}, losses={"end_sin": LOSSES["end_sin"]})


def test_save_last_and_checkpoints_give_the_same_gradient():
    f = Net(seed=1)
    y0 = torch.tensor([0.1, 0.2, -0.3], dtype=F64, requires_grad=True)
    t = torch.linspace(0, 2, 31, dtype=F64)
    want = grads(loop(f, parasolve.STEPS["midpoint"], y0, t)[-1].sum(), [y0, *f.parameters()])
    for save, opts in [("last", {}), ("all", {"checkpoint": 4}), ("last", {"checkpoint": 7, "method": "picard"})]:
        sol = parasolve.solve(f, y0, t, step="midpoint", tol=1e-12, save=save, adjoint_options=opts)
        got = grads(sol.y.sum(), [y0, *f.parameters()])
        assert max_gap(got, want) < 1e-9, (save, opts)


def test_sde_gradient_is_the_pathwise_gradient_for_the_fixed_noise():
    f, g = Net(seed=2), Net(seed=3)
    y0 = torch.tensor([0.5, 0.0, -0.5], dtype=F64, requires_grad=True)
    t = torch.linspace(0, 1, 41, dtype=F64)
    noise = torch.randn(40, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    inputs = [y0, *f.parameters(), *g.parameters()]
    want = grads(LOSSES["sum_sq"](loop(f, None, y0, t, g=g, noise=noise)), inputs)
    for adjoint in ({"method": "picard", "window": 8}, {"method": "scan"}):
        sol = parasolve.solve_sde(f, g, y0, t, noise=noise, tol=1e-12, adjoint_options=adjoint)
        got = grads(LOSSES["sum_sq"](sol.ys), inputs)
        assert max_gap(got, want) < 1e-9, adjoint


def test_gradcheck_on_small_problems():
    W = torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=F64, requires_grad=True)
    y0 = torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True)
    t = torch.linspace(0, 1, 9, dtype=F64, requires_grad=True)

    def run(y0, W, t, adjoint):
        f = lambda s, y: torch.tanh(y @ W.T) * (1 + s)  # noqa: E731
        return parasolve.solve(f, y0, t, step="heun", tol=0.0, adjoint_params=(W,), adjoint_options=adjoint).ys

    for adjoint in ({"method": "picard", "tol": 0.0, "window": 3}, {"method": "scan"}):
        assert torch.autograd.gradcheck(lambda a, b, c, opts=adjoint: run(a, b, c, opts), (y0, W, t))


def test_adjoint_error_is_within_the_stated_bound():
    """f = A y, Euler: the Jacobians are exact, so max|lambda_0 - exact| <= S * defect_sum with
    S = max_i ||M_0 ... M_{i-1}||_inf, M_k = I + h_k A^T (the transposed recurrence's constant)."""
    A = torch.tensor([[-1.0, 2.0], [-2.0, -1.0]], dtype=F64)
    f = pt.LinearDrift(A)
    t = torch.linspace(0, 2, 61, dtype=F64)
    y0 = torch.tensor([1.0, 0.0], dtype=F64, requires_grad=True)
    weights = torch.randn(61, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    exact = grads((loop(f, parasolve.STEPS["euler"], y0, t) * weights).sum(), [y0])[0]
    P, S = torch.eye(2, dtype=F64), 1.0
    for k in range(60):
        P = P @ (torch.eye(2, dtype=F64) + (t[k + 1] - t[k]) * A.T)
        S = max(S, float(torch.linalg.matrix_norm(P, ord=float("inf"))))
    for tol, window in [(1e-2, None), (1e-3, 10), (1e-5, 25)]:
        sol = parasolve.solve(f, y0, t, tol=1e-13, adjoint_options={"method": "picard", "tol": tol, "window": window})
        (got,) = grads((sol.ys * weights).sum(), [y0])
        st = sol.backward
        assert st.defect_sum <= tol * st.cotangent_sum * (1 + 1e-12)
        pt.assert_within_bound(float((got - exact).abs().max()), S * st.defect_sum, slack=1e-10,
                               what=f"adjoint error at tol={tol}")
        assert st.sweeps < 60  # fewer sweeps than the 60 sequential VJPs


@settings(max_examples=25, deadline=None)
@given(pt.drifts(max_lipschitz=2.0), pt.grids(max_steps=20), pt.windows(max_window=12), pt.tolerances(1e-12, 1e-9))
def test_random_drifts_match_autograd(f, t, window, tol):
    tensors = [getattr(f, k) for k in ("A", "W1", "b", "c", "W2", "d") if hasattr(f, k)]
    for x in tensors:
        x.requires_grad_(True)
    y0 = torch.linspace(-0.5, 0.8, f.dim, dtype=F64).requires_grad_(True)
    sol = parasolve.solve(f, y0, t, window=window, tol=tol, adjoint_params=tensors,
                          adjoint_options={"method": "picard", "tol": tol, "window": window})
    ref = loop(f, parasolve.STEPS["euler"], y0, t)
    w = torch.cos(torch.arange(ref.numel(), dtype=F64)).reshape(ref.shape)
    got, want = grads((sol.ys * w).sum(), [y0, *tensors]), grads((ref * w).sum(), [y0, *tensors])
    stability = math.exp(2 * f.lipschitz * abs(float(t[-1] - t[0])))
    scale = max(1.0, max(float(x.abs().max()) for x in want))
    # both the forward (linearisation point) and the adjoint are within S * tol of exact
    assert max_gap(got, want) <= 10 * stability * max(tol, 1e-13) * scale * len(t), (max_gap(got, want))


class LiveSaved:
    """Peak bytes of tensors autograd holds for backward, as they are packed and released.

    The holder keeps ``x.detach()``: holding a saved *output* itself would tie it to its own graph
    node in a reference cycle the collector cannot see, and nothing would ever be released.
    """

    def __init__(self):
        self.live = self.peak = 0

    def pack(self, x):
        holder = _Holder(x.detach())
        self.live += x.numel() * x.element_size()
        self.peak = max(self.peak, self.live)
        weakref.finalize(holder, self._release, x.numel() * x.element_size())
        return holder

    def _release(self, size):
        self.live -= size

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda h: h.x)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


class _Holder:
    def __init__(self, x):
        self.x = x


def peak_saved(run):
    with LiveSaved() as meter:
        run()
    return meter.peak


def test_memory_does_not_grow_with_the_sweep_count():
    f = Net(seed=5)
    t = torch.linspace(0, 3, 101, dtype=F64)
    y0 = torch.tensor([0.2, 0.4, -0.1], dtype=F64, requires_grad=True)

    def adjoint(tol, window):
        def run():
            sol = parasolve.solve(f, y0, t, tol=tol, window=window, method="newton", options={"jacobian": "full"},
                                  adjoint_options={"method": "picard", "tol": tol, "window": 20})
            sol.y.sum().backward()
            run.sweeps = sol.stats.iterations + sol.backward.sweeps
        return run

    few, many = adjoint(1e-2, None), adjoint(1e-12, 20)
    peaks = peak_saved(few), peak_saved(many)
    assert many.sweeps > 2 * few.sweeps
    assert peaks[0] == peaks[1]

    def through_sweeps(k):  # the contrast: autograd through k Picard sweeps keeps every sweep's graph
        def run():
            h = (t[1:] - t[:-1])[:, None]
            x = y0.expand(101, 3)
            for _ in range(k):
                x = torch.cat([y0[None], y0 + torch.cumsum(h * f(t[:-1, None], x[:-1]), 0)])
            x[-1].sum().backward()
        return run

    assert peak_saved(through_sweeps(20)) > 5 * peak_saved(through_sweeps(2))


def test_backward_costs_fewer_rounds_than_the_sequential_loop():
    f = Net(seed=6)
    t = torch.linspace(0, 1, 201, dtype=F64)
    y0 = torch.tensor([0.2, 0.4, -0.1], dtype=F64, requires_grad=True)
    for opts in ({"method": "picard"}, {"method": "scan"}):
        sol = parasolve.solve(f, y0, t, step="rk4", tol=1e-10, adjoint_options=opts)
        sol.y.sum().backward()
        b = sol.backward
        assert b.vjp_rounds < 200 / 4 and b.drift_calls == 4, opts  # one linearisation of 4 stages
        assert b.nfe == 4 * 200


# --------------------------------------------------------------------------- diffusion

class TinyEps(torch.nn.Module):
    def __init__(self, dim=4):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.W = torch.nn.Parameter(torch.randn(dim, dim, generator=gen, dtype=F64) * 0.3)
        self.c = torch.nn.Parameter(torch.randn(dim, generator=gen, dtype=F64) * 0.1)

    def forward(self, x, t, cond=None):
        return torch.tanh(x @ self.W.T + self.c * (t[:, None] / 1000.0))


def sampler_loop(den, name, steps, x_T, noise, shape):
    ts, step = samplers.build(den, name, steps, 0.0, F64)
    step.prepare(F64, torch.device("cpu"), noise)
    return loop_steps(step, den.drift(shape), _grid(ts, F64), x_T)


def loop_steps(step, drift, t, y):
    prev = None
    for i in range(len(t) - 1):
        inc, first = step.increments(drift, t, torch.tensor([i]), y[None], prev)
        y, prev = y + inc[0], first[0] if step.multistep else None
    return y


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpmsolver++", "sde-dpmsolver++"])
@pytest.mark.parametrize("window,method", [(4, "picard"), (64, "picard"), (4, "scan")])
def test_sample_gradients_wrt_x_T_and_model_parameters(name, window, method):
    model, shape, steps = TinyEps(), (2, 4), 20
    den = diffusion.Denoiser(model, diffusion.exact_denoiser(torch.zeros(3, 4)).alphas_cumprod, dtype=F64,
                             config={"clip_sample": False})
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=F64, requires_grad=True)
    out = diffusion.sample(den, shape, sampler=name, steps=steps, window=window, tol=1e-12, x_T=x_T,
                           generator=torch.Generator().manual_seed(2), adjoint_params=tuple(model.parameters()),
                           adjoint_options={"tol": 1e-12, "method": method})
    inputs = [x_T, *model.parameters()]
    got = grads((out.x ** 2).sum(), inputs)
    want = grads((sampler_loop(den, name, steps, x_T, out.noise, shape) ** 2).sum(), inputs)
    assert max_gap(got, want) < 1e-9
    assert out.solution.backward.calls == 1


def test_sample_is_inference_unless_gradients_are_asked_for():
    model = TinyEps()
    den = diffusion.Denoiser(model, diffusion.exact_denoiser(torch.zeros(3, 4)).alphas_cumprod, dtype=F64)
    out = diffusion.sample(den, (2, 4), sampler="ddim", steps=10, x_T=torch.zeros(2, 4, dtype=F64))
    assert not out.x.requires_grad and out.solution.backward is None


# --------------------------------------------------------------------------- bad input and refusals

def test_bad_requests_get_typed_errors_naming_the_fix():
    y0 = torch.ones(2, dtype=F64, requires_grad=True)
    t = torch.linspace(0, 1, 5, dtype=F64)
    k = torch.tensor(0.5, dtype=F64, requires_grad=True)
    # (a closure over a tensor requiring grad is differentiated: tests/test_reliability.py)
    with pytest.raises(TypeError, match="sequence of tensors"):
        parasolve.solve(lambda s, y: -k * y, y0, t, adjoint_params=k)
    with pytest.raises(TypeError, match="only tensors"):
        parasolve.solve(lambda s, y: -k * y, y0, t, adjoint_params=[k, 3.0])
    with pytest.raises(TypeError, match="Unknown `adjoint_options`"):
        parasolve.solve(lambda s, y: -y, y0, t, adjoint_options={"rtol": 1e-3})
    with pytest.raises(ValueError, match="'method'"):
        parasolve.solve(lambda s, y: -y, y0, t, adjoint_options={"method": "newton"})
    with pytest.raises(ValueError, match="'window'"):
        parasolve.solve(lambda s, y: -y, y0, t, adjoint_options={"window": 0})
    with pytest.raises(AdjointError, match="ab2"):
        parasolve.solve(lambda s, y: -y, y0, t, step="ab2", adjoint_options={"checkpoint": 2})
    with pytest.raises(AdjointError, match="max_dense"):
        parasolve.solve(lambda s, y: -y, torch.ones(70, dtype=F64, requires_grad=True), t,
                        adjoint_options={"method": "scan"})
    with pytest.raises(ValueError, match="noise"):
        parasolve.solve_sde(lambda s, y: -y, lambda s, y: y, y0, t, noise=torch.zeros(4, 2, dtype=F64,
                                                                                     requires_grad=True))
    sol = parasolve.solve(lambda s, y: -k * y, y0, t, tol=0.0, max_iters=1, throw=False, adjoint_params=(k,))
    with pytest.raises(parasolve.ConvergenceError, match="did not converge"):
        sol.y.sum().backward()
    sol = parasolve.solve(lambda s, y: -k * y, y0, t, adjoint_params=(k,),
                          adjoint_options={"method": "picard", "max_iters": 1, "tol": 0.0})
    with pytest.raises(parasolve.ConvergenceError, match="max_iters"):
        sol.y.sum().backward()


def test_plain_solves_build_no_graph_and_keep_their_counts():
    calls = []

    def f(s, y):
        calls.append(1)
        return -y

    t = torch.linspace(0, 1, 11, dtype=F64)
    sol = parasolve.solve(f, torch.ones(2, dtype=F64), t, method="sequential")
    assert not sol.ys.requires_grad and sol.backward is None and len(calls) == 10



def test_guidance_gradient_through_the_shipped_digits_unet():
    """d loss(x_0) / d x_T through DDIM on the real UNet (float32): the parallel adjoint agrees with a
    sequential backward (window 1) of the same sampler within float32 round-off of the chain."""
    from parasolve.zoo import pretrained

    den = pretrained("digits")
    x_T = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    grads_by = {}
    for label, kwargs in [("parallel", {"tol": 1e-4}), ("sequential", {"method": "sequential",
                                                                       "adjoint_options": {"window": 1}})]:
        out = diffusion.sample(den, (2, 1, 16, 16), sampler="ddim", steps=10, window=10, x_T=x_T, **kwargs)
        (grads_by[label],) = torch.autograd.grad((out.x ** 2).mean(), [x_T])
        grads_by[label + "_sweeps"] = out.solution.backward.sweeps
    scale = float(grads_by["sequential"].abs().max())
    assert float((grads_by["parallel"] - grads_by["sequential"]).abs().max()) < 1e-4 * scale
    assert grads_by["sequential_sweeps"] == 10 and grads_by["parallel_sweeps"] < 10
