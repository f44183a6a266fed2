"""Samplers on exact denoisers: parallel == sequential within the tol bound, prediction types,
guidance, reproducibility and bad input."""

import time
import warnings

import numpy as np
import pytest
import torch

from parasolve import diffusion
from parasolve import testing as pt
from parasolve.diffusion import samplers
from parasolve.drift import BatchedDrift


pytestmark = pytest.mark.usefixtures("one_thread")

SAMPLERS = [("ddpm", {}), ("ddim", {}), ("ddim", {"eta": 0.5}), ("dpmsolver++", {}), ("sde-dpmsolver++", {})]


def points(n=12, dim=6, seed=0, dtype=torch.float64):
    return torch.rand(n, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


def start(shape, seed=1, dtype=torch.float64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("name,kw", SAMPLERS)
def test_prediction_types_give_the_same_samples(name, kw):
    shape, steps = (3, 6), 30
    x_T = start(shape)
    ref = diffusion.sample(diffusion.exact_denoiser(points(), prediction_type="epsilon"), shape, sampler=name,
                           steps=steps, method="sequential", x_T=x_T, generator=torch.Generator().manual_seed(2), **kw)
    for kind in ("sample", "v_prediction"):
        den = diffusion.exact_denoiser(points(), prediction_type=kind)
        out = diffusion.sample(den, shape, sampler=name, steps=steps, method="sequential", x_T=x_T, noise=ref.noise,
                               **kw)
        assert torch.allclose(out.x, ref.x, atol=1e-9), kind


@pytest.mark.parametrize("name,kw", SAMPLERS)
@pytest.mark.parametrize("window", [4, 64])
def test_zero_tolerance_reproduces_the_sequential_sampler(name, kw, window):
    """tol=0 accepts only exact steps: the parallel result is the sequential one up to round-off,
    across window boundaries too (DPM-Solver's multistep `prev` is handed over between windows)."""
    shape, steps = (2, 6), 25
    den = diffusion.exact_denoiser(points())
    seq = diffusion.sample(den, shape, sampler=name, steps=steps, method="sequential", x_T=start(shape),
                           generator=torch.Generator().manual_seed(3), **kw)
    par = diffusion.sample(den, shape, sampler=name, steps=steps, window=window, tol=0.0, x_T=seq.x_T,
                           noise=seq.noise, **kw)
    assert par.stats.iterations <= steps
    pt.assert_near_sequential(par, seq, atol=1e-12)


def stability_constant(den, name, steps, eta, dim):
    """S = max_{i<n} |prod_{k=i+1}^{n-1} m_k| for a sampler whose steps are scalar-affine, x -> m_k x + c_k."""
    ts, step = samplers.build(den, name, steps, eta, torch.float64)
    step.prepare(torch.float64, torch.device("cpu"), torch.zeros(steps, 1, 1, dtype=torch.float64))
    idx = torch.arange(steps)
    t = torch.from_numpy(ts)

    def apply(value):
        x = torch.full((steps, 1, dim), value, dtype=torch.float64)
        return step.advance(idx, x, den(x[:, 0], t)[:, None], None)[0][:, 0]

    diff = apply(1.0) - apply(0.0)  # isotropic data: every coordinate has the same multiplier
    assert torch.allclose(diff, diff[:, :1].expand_as(diff), rtol=1e-12)
    m = diff[:, 0].numpy()
    best = 1.0
    for i in range(steps):
        best = max(best, np.abs(np.cumprod(m[i + 1:])).max(initial=1.0))
    return best


@pytest.mark.parametrize("name,eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.8)])
def test_parallel_sample_is_within_the_tolerance_bound(name, eta):
    """Gaussian data: each step is x -> m_k x + c_k, so S is known and max|x - x_seq| <= S * defect_sum <= S * tol."""
    dim, steps, tol = 16, 200, 0.05
    den = diffusion.exact_denoiser(torch.full((1, dim), 0.5, dtype=torch.float64), std=0.3)
    S = stability_constant(den, name, steps, eta, dim)
    shape = (4, dim)
    seq = diffusion.sample(den, shape, sampler=name, steps=steps, eta=eta, method="sequential", x_T=start(shape),
                           generator=torch.Generator().manual_seed(4))
    par = diffusion.sample(den, shape, sampler=name, steps=steps, eta=eta, window=32, tol=tol, x_T=seq.x_T,
                           noise=seq.noise)
    assert 0 < par.stats.defect_sum <= tol
    pt.assert_near_sequential(par, seq, stability=S * (1 + 1e-9), slack=1e-12)
    assert par.stats.iterations < steps // 4  # and the parallel run needs far fewer sweeps


@pytest.mark.parametrize("name,steps,most", [("ddpm", 1000, 150), ("ddim", 100, 20), ("dpmsolver++", 25, 12)])
def test_picard_needs_few_sweeps_and_lands_on_the_data(name, steps, most):
    """Finite data set (float32, 16x16): the parallel sampler takes far fewer sweeps than steps, and the
    deterministic samplers end on a data point, as the exact probability-flow map must."""
    data = points(50, 256, seed=5, dtype=torch.float32).reshape(50, 1, 16, 16)
    den = diffusion.exact_denoiser(data)
    shape = (4, 1, 16, 16)
    out = diffusion.sample(den, shape, sampler=name, steps=steps, window=64, x_T=start(shape, dtype=torch.float32),
                           generator=torch.Generator().manual_seed(6))
    assert out.converged and out.stats.iterations <= most
    assert out.stats.nfe <= out.stats.iterations * 64
    nearest = torch.cdist(out.x.reshape(4, -1).double(), data.reshape(50, -1).double()).min(dim=1).values
    assert float(nearest.max()) < (0.05 if name == "ddpm" else 1e-5)


def test_generator_reproduces_runs_and_returns_its_noise():
    den = diffusion.exact_denoiser(points())
    a = diffusion.sample(den, (2, 6), steps=50, method="sequential", generator=torch.Generator().manual_seed(9))
    b = diffusion.sample(den, (2, 6), steps=50, window=16, generator=torch.Generator().manual_seed(9))
    c = diffusion.sample(den, (2, 6), steps=50, method="sequential", x_T=a.x_T, noise=a.noise)
    assert torch.equal(a.x_T, b.x_T) and torch.equal(a.noise, b.noise)
    assert torch.equal(a.x, c.x)
    # diffusers' order: x_T first, then one draw per noisy step (none at timestep 0).
    gen = torch.Generator().manual_seed(9)
    draws = [torch.randn((2, 6), generator=gen, dtype=torch.float64) for _ in range(50)]
    assert torch.equal(a.x_T, draws[0]) and torch.equal(a.noise[:49], torch.stack(draws[1:]))
    assert a.timesteps[-1] == 0 and not a.noise[-1].any()


def test_classifier_free_guidance_on_a_labelled_data_set():
    data, labels = points(12, 6), torch.arange(12) % 3
    den = diffusion.exact_denoiser(data, labels=labels)
    shape, x_T = (3, 6), start((3, 6))
    cond = torch.tensor([0, 1, 2])
    kw = dict(sampler="ddim", steps=50, x_T=x_T, method="sequential")
    plain = diffusion.sample(den, shape, cond=cond, **kw)
    uncond = diffusion.sample(den, shape, **kw)
    assert torch.allclose(diffusion.sample(den, shape, cond=cond, guidance_scale=1.0, **kw).x, plain.x, atol=1e-10)
    assert torch.allclose(diffusion.sample(den, shape, cond=cond, guidance_scale=0.0, **kw).x, uncond.x, atol=1e-10)
    # The conditional samples end on a point carrying the requested label.
    guided = diffusion.sample(den, shape, cond=cond, guidance_scale=2.0, sampler="ddim", steps=50, x_T=x_T, window=32)
    nearest = torch.cdist(guided.x, data).argmin(dim=1)
    assert torch.equal(labels[nearest], cond)
    assert float(torch.cdist(plain.x, data).min(dim=1).values.max()) < 1e-3
    assert torch.equal(labels[torch.cdist(plain.x, data).argmin(dim=1)], cond)


def test_guidance_is_one_model_call_per_sweep_on_the_doubled_batch():
    data, labels = points(12, 6), torch.arange(12) % 3
    den = diffusion.exact_denoiser(data, labels=labels)
    batches = []
    inner = den.model
    den.model = lambda x, t, c: batches.append(x.shape[0]) or inner(x, t, c)
    out = diffusion.sample(den, (3, 6), cond=torch.tensor([0, 1, 2]), guidance_scale=3.0, sampler="ddim", steps=40,
                           window=8, x_T=start((3, 6)))
    check = BatchedDrift.CHECK_POINTS  # the first call's row check: one call, not in the stats
    assert len(batches) == out.stats.drift_calls + 1
    assert sum(batches) == 2 * 3 * (out.stats.nfe + check)


def test_trajectory_is_saved_on_the_timestep_grid():
    den = diffusion.exact_denoiser(points())
    out = diffusion.sample(den, (2, 6), sampler="ddim", steps=10, save="all", x_T=start((2, 6)))
    assert out.solution.ys.shape == (11, 2, 6)
    assert out.timesteps.tolist() == list(range(900, -1, -100))
    assert out.solution.ts.tolist() == list(range(900, -101, -100))
    assert torch.equal(out.solution.ys[0], out.x_T) and torch.equal(out.solution.ys[-1], out.x)


def test_bad_input_errors():
    den = diffusion.exact_denoiser(points())
    shape = (2, 6)
    meta = torch.empty(shape, device="meta")
    with pytest.raises(TypeError, match="parasolve.diffusion.Denoiser"):
        diffusion.sample(lambda x, t: x, shape)
    with pytest.raises(ValueError, match=r"`shape\[1\]` must be an integer >= 1; got 0"):
        diffusion.sample(den, (2, 0))
    with pytest.raises(ValueError, match="Unknown `sampler` 'lms'; valid: \\['ddpm', 'ddim'.*'euler'.*'flow-euler'"):
        diffusion.sample(den, shape, sampler="lms")
    with pytest.raises(ValueError, match="`steps`=1001 is larger than the 1000 training steps"):
        diffusion.sample(den, shape, steps=1001)
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1; got 0"):
        diffusion.sample(den, shape, steps=0)
    with pytest.raises(ValueError, match=r"`x_T` must have shape shape = \(2, 6\); got \(2, 5\)"):
        diffusion.sample(den, shape, steps=5, x_T=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="`x_T` is on meta but the model is on cpu"):
        diffusion.sample(den, shape, steps=5, x_T=meta)
    with pytest.raises(ValueError, match=r"`noise` must have shape \(steps, \*shape\) = \(5, 2, 6\); got \(4, 2, 6\)"):
        diffusion.sample(den, shape, steps=5, noise=torch.zeros(4, 2, 6))
    with pytest.raises(ValueError, match="`noise` is on meta but the model is on cpu"):
        diffusion.sample(den, shape, steps=5, noise=torch.empty(5, 2, 6, device="meta"))
    with pytest.raises(ValueError, match="`noise` contains NaN"):
        diffusion.sample(den, shape, steps=5, noise=torch.full((5, 2, 6), float("nan")))
    with pytest.raises(ValueError, match="ddim sampler is deterministic"):
        diffusion.sample(den, shape, sampler="ddim", steps=5, noise=torch.zeros(5, 2, 6))
    with pytest.raises(ValueError, match="`eta`=0.5 only applies to the 'ddim' sampler"):
        diffusion.sample(den, shape, steps=5, eta=0.5)
    with pytest.raises(ValueError, match="`eta`=3.0 makes the DDIM noise larger"):
        diffusion.sample(den, shape, sampler="ddim", steps=5, eta=3.0)
    with pytest.raises(ValueError, match="needs a conditional model"):
        diffusion.sample(den, shape, steps=5, guidance_scale=2.0, cond=torch.zeros(2))
    with pytest.raises(ValueError, match="`cond` was given but exact denoiser is unconditional"):
        diffusion.sample(den, shape, steps=5, cond=torch.zeros(2))
    labelled = diffusion.exact_denoiser(points(), labels=torch.arange(12) % 2)
    with pytest.raises(ValueError, match="needs `cond`"):
        diffusion.sample(labelled, shape, steps=5, guidance_scale=2.0)
    with pytest.raises(ValueError, match="`cond` must have a leading batch dimension of 2"):
        diffusion.sample(labelled, shape, steps=5, cond=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="`timestep_spacing` must be one of .*got 'middle'"):
        diffusion.sample(diffusion.exact_denoiser(points(), config={"timestep_spacing": "middle"}), shape, steps=5)


def test_model_with_wrong_output_shape_is_reported():
    den = diffusion.Denoiser(lambda x, t, c: x[..., :-1], diffusion.alphas_cumprod(), name="cropper")
    with pytest.raises(ValueError, match=r"cropper returned outputs of shape \(3, 5\) for samples of shape \(3, 6\)"):
        diffusion.sample(den, (2, 3, 6), steps=5)


def test_warm_start_from_the_sequential_trajectory_converges_in_fewer_sweeps():
    """init= a trajectory on the solver's grid: from the sequential one every window is accepted in
    one sweep, and the sample is still the sequential one within S * defect_sum."""
    dim, steps, window, tol = 16, 200, 32, 0.05
    den = diffusion.exact_denoiser(torch.full((1, dim), 0.5, dtype=torch.float64), std=0.3)
    S = stability_constant(den, "ddpm", steps, 0.0, dim)
    shape = (4, dim)
    seq = diffusion.sample(den, shape, steps=steps, method="sequential", x_T=start(shape), save="all",
                           generator=torch.Generator().manual_seed(4))
    kw = dict(steps=steps, window=window, tol=tol, x_T=seq.x_T, noise=seq.noise)
    cold = diffusion.sample(den, shape, **kw)
    warm = diffusion.sample(den, shape, **kw, init=seq.solution.ys)
    assert warm.stats.iterations == -(-steps // window) < cold.stats.iterations
    pt.assert_near_sequential(warm, seq, stability=S * (1 + 1e-9), slack=1e-12)
    with pytest.raises(ValueError, match=r"`init` must have shape \(steps \+ 1, \*shape\) = \(201, 4, 16\)"):
        diffusion.sample(den, shape, **kw, init=seq.solution.ys[1:])
    with pytest.raises(TypeError, match="`init` must be a floating tensor"):
        diffusion.sample(den, shape, **kw, init=seq.solution.ys.long())


@pytest.mark.parametrize("sampler,eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.7), ("dpmsolver++", 0.0)])
def test_linear_part_is_the_step_derivative_with_x0_held_fixed(sampler, eta):
    den = diffusion.exact_denoiser(torch.zeros(1, 3, dtype=torch.float64))  # its schedule; the model is unused
    ts, step = samplers.build(den, sampler, 20, eta, torch.float64)
    n = len(ts)
    noise = torch.randn(n, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    step.prepare(torch.float64, torch.device("cpu"), noise)
    x = torch.randn(n, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dx = 1e-3 * torch.randn(n, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    idx = torch.arange(n)
    x0 = torch.full((n, 2, 3), 0.3, dtype=torch.float64)  # the model's clean-sample prediction, fixed
    a, s = (step._dev[k][idx].reshape(-1, 1, 1) for k in "as")

    def eps(states):  # what an epsilon model predicting x0 outputs
        return (states - a * x0) / s

    prev = x0[0] if step.multistep else None
    before, _ = step.advance(idx, x, eps(x), prev)
    after, _ = step.advance(idx, x + dx, eps(x + dx), prev)
    slope = step.linear_part().reshape(-1, 1, 1)
    assert torch.allclose((after - before) - dx, slope * dx, rtol=1e-9, atol=1e-15)


def test_newton_with_the_step_prior_solves_an_affine_sampler_in_two_sweeps():
    # One data point: the exact x0 prediction is that point whatever x is, so every DDPM step is
    # affine with slope 1 + linear_part: Newton's first update is exact and the second sweep accepts all.
    den = diffusion.exact_denoiser(torch.tensor([[0.4, -0.2, 0.1]], dtype=torch.float64))
    gen = torch.Generator().manual_seed(0)
    seq = diffusion.sample(den, (2, 3), sampler="ddpm", steps=200, method="sequential", generator=gen)
    common = dict(sampler="ddpm", steps=200, window=200, tol=1e-10, x_T=seq.x_T, noise=seq.noise)
    prior = diffusion.sample(den, (2, 3), method="newton", options={"prior": "step"}, **common)
    plain = diffusion.sample(den, (2, 3), method="newton", options={"prior": "zero"}, **common)
    assert prior.stats.iterations <= 2 < plain.stats.iterations
    pt.assert_near_sequential(prior, seq, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("sampler,steps", [("ddpm", 1000), ("ddim", 50)])
def test_16_bit_samples_are_solved_with_float32_states_and_a_16_bit_model(dtype, sampler, steps):
    """16-bit x_T: the model runs in 16 bits (a denoiser without its own dtype), the solve's states are
    float32 for every method, and the parallel sample is the sequential one to within 2 ulps of the
    16-bit result, without a floor warning. (With 16-bit states the floor admitted a float16 DDPM-1000
    sample 1.3 from its sequential chain.) The timesteps up to 999 are exact in float32, so bfloat16
    samples run 1000 steps."""
    weights = torch.randn(6, 6, generator=torch.Generator().manual_seed(2)) / 3
    seen = set()

    def net(x, t, cond):  # a small real model computing in its inputs' dtype
        seen.add(x.dtype)
        return torch.tanh(x @ weights.to(x.dtype)) + 0.5 * x

    den = diffusion.Denoiser(net, diffusion.alphas_cumprod(), name="net")
    shape = (3, 2, 6)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    seq = diffusion.sample(den, shape, sampler=sampler, steps=steps, method="sequential", x_T=x_T,
                           generator=torch.Generator().manual_seed(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        par = diffusion.sample(den, shape, sampler=sampler, steps=steps, window=64, x_T=x_T, noise=seq.noise)
    assert seen == {dtype}
    assert par.x.dtype == seq.x.dtype == dtype and par.x_T is x_T
    assert par.solution.ys.dtype == seq.solution.ys.dtype == torch.float32
    assert seq.noise is None or seq.noise.dtype == dtype
    assert par.converged and par.stats.weighted_defect_sum <= 1e-3 * 1.1  # float32's default tol
    ulp = torch.finfo(dtype).eps * seq.x.float().abs().max()
    assert (par.x.float() - seq.x.float()).abs().max() <= 2 * ulp


def _sleepy(den, per_call_s: float, per_sample_s: float):
    """``den`` whose model call sleeps ``per_call_s + per_sample_s * batch`` (no CPU taken, so the
    timing holds on a loaded machine)."""
    def model(x, t, cond):
        time.sleep(per_call_s + per_sample_s * x.shape[0])
        return den.model(x, t, cond)
    return diffusion.Denoiser(model, den.alphas_cumprod, prediction_type=den.prediction_type, config=den.config,
                              device=den.device, dtype=den.dtype)


def test_auto_samples_sequentially_where_a_batch_costs_as_much_as_its_samples():
    den = _sleepy(diffusion.exact_denoiser(points()), 0.0, 2e-4)
    shape, steps = (2, 6), 200
    ref = diffusion.sample(den, shape, sampler="ddim", steps=steps, x_T=start(shape), method="sequential")
    out = diffusion.sample(den, shape, sampler="ddim", steps=steps, x_T=start(shape), method="auto")
    assert out.solution.method == "sequential"
    assert out.solution.stats.nfe == steps  # the measuring calls are no part of the solve
    assert torch.equal(out.x, ref.x)


def test_auto_samples_in_parallel_where_a_batch_costs_about_one_call():
    den = _sleepy(diffusion.exact_denoiser(points()), 2e-4, 0.0)
    shape, steps = (2, 6), 1000  # long enough that measuring fits in MEASURE_SHARE of the sequential time
    ref = diffusion.sample(den, shape, sampler="ddim", steps=steps, x_T=start(shape), method="sequential")
    out = diffusion.sample(den, shape, sampler="ddim", steps=steps, x_T=start(shape), method="auto", window=steps,
                           tol=1e-8)
    assert out.solution.method == "newton" and out.solution.stats.iterations < steps
    pt.assert_near_sequential(out, ref, atol=1e-8)
    with pytest.raises(TypeError, match="window"):
        diffusion.sample(den, shape, sampler="ddim", steps=steps, method="auto", window=2.5)
