"""The Euler, Euler-ancestral, Heun, flow-matching, UniPC and Karras/Lu DPM-Solver samplers against
diffusers' own ``scheduler.step`` loops, on tiny random-weight models built from configs.

Oracle: with the same generator, ``sample(..., method="sequential")`` reproduces the scheduler's
loop (``set_timesteps``, ``init_noise_sigma``, ``scale_model_input``, ``step``) to float32
round-off, with the very same timesteps; the parallel (Picard) sample is within the tolerance
bound of the sequential one. Unsupported schedulers and settings are refused with the list of
what is supported.
"""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import (DDIMParallelScheduler, DDIMScheduler, DDPMParallelScheduler, DDPMScheduler,  # noqa: E402
                       DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,
                       FlowMatchEulerDiscreteScheduler, HeunDiscreteScheduler, LMSDiscreteScheduler,
                       PNDMScheduler, UniPCMultistepScheduler)
import tiny_pipelines as tiny  # noqa: E402

from parasolve import diffusion  # noqa: E402
from parasolve import testing as pt  # noqa: E402

SHAPE = (2, 2, 8, 8)
ROUNDOFF = 2e-5  # relative to max(1, max|x|)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def unet():
    return tiny.pixel_unet(seed=0)


def diffusers_loop(call, scheduler, steps, seed, shape=SHAPE, **set_kw):
    """The pipelines' loop: draw x_T (times init_noise_sigma), then scale, call, step; noise from one generator."""
    scheduler.set_timesteps(steps, **set_kw)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen) * getattr(scheduler, "init_noise_sigma", 1.0)
    takes_generator = "generator" in scheduler.step.__code__.co_varnames
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = call(scheduler.scale_model_input(x, t), t)
            x = scheduler.step(out, t, x, **({"generator": gen} if takes_generator else {})).prev_sample
    return x


def rel_err(a, b):
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


def check_against_diffusers(model, den, scheduler, steps, seed=3, shape=SHAPE, call=None, cond=None, **set_kw):
    call = call or (lambda x, t: model(x, t).sample)
    ref = diffusers_loop(call, scheduler, steps, seed, shape, **set_kw)
    seq = diffusion.sample(den, shape, steps=steps, method="sequential", generator=torch.Generator().manual_seed(seed),
                           cond=cond, **set_kw)
    assert seq.sampler == den.sampler
    assert rel_err(seq.x, ref) <= ROUNDOFF
    par = diffusion.sample(den, shape, steps=steps, window=4, x_T=seq.x_T, noise=seq.noise, cond=cond, **set_kw)
    assert par.stats.defect_sum <= 1e-3
    # max|x - x_seq| <= S * defect_sum; S < 3 on these random models (measured)
    pt.assert_near_sequential(par, seq, stability=3, slack=ROUNDOFF * max(1.0, float(seq.x.abs().max())))
    return seq, par


SIGMA_CASES = [
    (EulerDiscreteScheduler, dict()),
    (EulerDiscreteScheduler, dict(use_karras_sigmas=True)),
    (EulerDiscreteScheduler, dict(use_karras_sigmas=True, prediction_type="v_prediction", final_sigmas_type="sigma_min")),
    (EulerDiscreteScheduler, dict(prediction_type="v_prediction", timestep_spacing="trailing",
                                  timestep_type="continuous")),
    (EulerDiscreteScheduler, dict(prediction_type="sample", timestep_spacing="leading", steps_offset=1,
                                  beta_schedule="scaled_linear")),
    (EulerAncestralDiscreteScheduler, dict()),
    (EulerAncestralDiscreteScheduler, dict(prediction_type="v_prediction", timestep_spacing="leading", steps_offset=1)),
    (HeunDiscreteScheduler, dict()),
    (HeunDiscreteScheduler, dict(use_karras_sigmas=True, prediction_type="v_prediction")),
    (HeunDiscreteScheduler, dict(timestep_spacing="trailing", clip_sample=True, prediction_type="sample")),
    (UniPCMultistepScheduler, dict()),
    (UniPCMultistepScheduler, dict(solver_order=3, prediction_type="v_prediction", timestep_spacing="trailing")),
    (UniPCMultistepScheduler, dict(solver_order=1)),
    (UniPCMultistepScheduler, dict(solver_type="bh1", final_sigmas_type="sigma_min", lower_order_final=False)),
    (UniPCMultistepScheduler, dict(use_karras_sigmas=True, disable_corrector=[0, 3], thresholding=True,
                                   prediction_type="sample")),
    (DPMSolverMultistepScheduler, dict(use_karras_sigmas=True)),
    (DPMSolverMultistepScheduler, dict(use_karras_sigmas=True, final_sigmas_type="sigma_min", steps_offset=1)),
    (DPMSolverMultistepScheduler, dict(use_lu_lambdas=True, prediction_type="v_prediction")),
    (DPMSolverMultistepScheduler, dict(use_lu_lambdas=True, algorithm_type="sde-dpmsolver++")),
]


@pytest.mark.parametrize("cls,config", SIGMA_CASES, ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_sampler_matches_scheduler_step_loop(unet, cls, config):
    steps = 8
    den = diffusion.from_diffusers(unet, cls(num_train_timesteps=200, **config))
    scheduler = cls(num_train_timesteps=200, **config)
    seq, _ = check_against_diffusers(unet, den, scheduler, steps)
    if cls is HeunDiscreteScheduler:  # the interleaved first/second-order timesteps, one step map step each pair
        assert torch.equal(torch.cat([seq.timesteps[:1], seq.timesteps[1:].repeat_interleave(2)]), scheduler.timesteps)
        assert seq.stats.nfe == 2 * steps  # the last step's second evaluation is made and discarded
    else:
        assert torch.equal(seq.timesteps.to(scheduler.timesteps.dtype), scheduler.timesteps)
        assert seq.stats.nfe == steps


@pytest.fixture(scope="module")
def flow_unet():
    """A random UNet treated as a flow model: output = velocity, timestep = 1000 sigma."""
    return tiny.pixel_unet(seed=2)


FLOW_CASES = [
    (dict(), {}),
    (dict(shift=3.0), {}),
    (dict(use_dynamic_shifting=True), dict(mu=0.8)),
    (dict(use_dynamic_shifting=True, time_shift_type="linear", shift_terminal=0.1), dict(mu=1.3)),
    (dict(shift=2.0), dict(sigmas=[1.0, 0.9, 0.7, 0.5, 0.35, 0.2, 0.1, 0.02])),  # Flux-style custom sigmas
    (dict(shift=2.0, use_karras_sigmas=True), {}),
    (dict(stochastic_sampling=True), {}),
]


@pytest.mark.parametrize("config,set_kw", FLOW_CASES, ids=str)
def test_flow_euler_matches_flow_match_scheduler(flow_unet, config, set_kw):
    steps = 8
    den = diffusion.from_diffusers(flow_unet, FlowMatchEulerDiscreteScheduler(**config))
    assert den.sampler == "flow-euler" and den.prediction_type == "flow_prediction"
    scheduler = FlowMatchEulerDiscreteScheduler(**config)
    seq, _ = check_flow(flow_unet, den, scheduler, steps, set_kw)
    assert torch.equal(seq.timesteps, scheduler.timesteps)


def check_flow(model, den, scheduler, steps, set_kw):
    call = (lambda x, t: model(x, t).sample)
    gen = torch.Generator().manual_seed(5)
    scheduler.set_timesteps(steps if "sigmas" not in set_kw else None, **set_kw)
    x = torch.randn(SHAPE, generator=gen)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(call(x, t), t, x, generator=gen).prev_sample
    seq = diffusion.sample(den, SHAPE, steps=steps, method="sequential", generator=torch.Generator().manual_seed(5),
                           **set_kw)
    assert rel_err(seq.x, x) <= ROUNDOFF
    par = diffusion.sample(den, SHAPE, steps=steps, window=4, x_T=seq.x_T, noise=seq.noise, **set_kw)
    pt.assert_near_sequential(par, seq, stability=3, slack=ROUNDOFF * max(1.0, float(seq.x.abs().max())))
    return seq, par


def test_unipc_flow_sigmas_match_scheduler(flow_unet):
    """UniPC on a flow model (Wan's setting): flow sigmas, flow_shift, flow_prediction."""
    config = dict(use_flow_sigmas=True, flow_shift=3.0, prediction_type="flow_prediction")
    den = diffusion.from_diffusers(flow_unet, UniPCMultistepScheduler(**config))
    seq, _ = check_against_diffusers(flow_unet, den, UniPCMultistepScheduler(**config), 8)
    assert seq.sampler == "unipc"


def batched_step_errors(unet, parallel_cls, sequential_cls, config, steps, seed):
    """Sample with ``from_diffusers(unet, parallel_cls(...))`` and check it against the sequential
    scheduler's loop; then the per-step gaps between the parallel scheduler's ``batch_step_no_noise``
    and parasolve's step map, from the same states and model outputs. Returns ``(timesteps, gaps)``."""
    par_sched = parallel_cls(**config)
    den = diffusion.from_diffusers(unet, par_sched)
    assert den.sampler == sequential_cls.__name__[:4].lower()
    call = (lambda x, t: unet(x, t).sample)
    ref = diffusers_loop(call, sequential_cls(**config), steps, seed)
    seq = diffusion.sample(den, SHAPE, steps=steps, method="sequential", generator=torch.Generator().manual_seed(seed))
    assert rel_err(seq.x, ref) <= ROUNDOFF
    assert rel_err(diffusers_loop(call, parallel_cls(**config), steps, seed), ref) <= ROUNDOFF  # its own step
    par_sched.set_timesteps(steps)
    ts = par_sched.timesteps
    torch.manual_seed(seed)
    x = torch.randn(len(ts), *SHAPE[1:])  # row i: a state at step i
    with torch.no_grad():
        eps = unet(x, ts).sample
    batched = par_sched.batch_step_no_noise(eps, ts, x)
    from parasolve.diffusion import samplers
    _, step = samplers.build(den, den.sampler, steps)
    step.prepare(torch.float32, torch.device("cpu"), torch.zeros_like(x))
    ours, _ = step.advance(torch.arange(steps), x, eps, None)
    return ts, [float((ours[i] - batched[i]).abs().max()) for i in range(steps)]


@pytest.mark.parametrize("spacing", ["linspace", "trailing"])
def test_ddpm_parallel_scheduler_is_its_sequential_scheduler(unet, spacing):
    """DDPMParallelScheduler's batch_step_no_noise takes t - T//N as the previous timestep; under
    linspace/trailing spacing that is not the next timestep. parasolve follows the sequential step."""
    steps, config = 7, dict(num_train_timesteps=200, timestep_spacing=spacing, clip_sample=False)
    ts, gaps = batched_step_errors(unet, DDPMParallelScheduler, DDPMScheduler, config, steps, 11)
    true_prev = torch.cat([ts[1:], torch.tensor([-1])])
    wrong = (true_prev.clamp(min=-1) != (ts - 200 // steps).clamp(min=-1)).tolist()
    assert any(wrong)
    assert [g > 1e-6 for g in gaps] == wrong  # it differs from the sequential step exactly where its rule is wrong


def test_ddim_parallel_scheduler_is_its_sequential_scheduler(unet):
    """DDIMParallelScheduler's batch_step_no_noise forces alpha_prev = 1 at the last step even with
    set_alpha_to_one=False; parasolve follows the sequential step (alpha_prev = alphas_cumprod[0])."""
    config = dict(num_train_timesteps=200, set_alpha_to_one=False, clip_sample=False)
    _, gaps = batched_step_errors(unet, DDIMParallelScheduler, DDIMScheduler, config, 6, 12)
    assert max(gaps[:-1]) <= 1e-5  # the same rule at every step but the last ...
    assert gaps[-1] > 1e-3  # ... where the batched step uses alpha_prev = 1


@pytest.mark.parametrize("cls,config,match", [
    (PNDMScheduler, {}, "Unsupported scheduler PNDMScheduler; supported: .*EulerDiscreteScheduler"),
    (LMSDiscreteScheduler, {}, "Unsupported scheduler LMSDiscreteScheduler"),
    (EulerDiscreteScheduler, dict(use_exponential_sigmas=True), r"use_exponential_sigmas=True is not supported.*\[False\]"),
    (EulerDiscreteScheduler, dict(interpolation_type="log_linear"), "interpolation_type='log_linear'.*supported"),
    (UniPCMultistepScheduler, dict(predict_x0=False), "predict_x0=False is not supported"),
    (UniPCMultistepScheduler, dict(solver_order=4), "solver_order=4 is not supported"),
    (FlowMatchEulerDiscreteScheduler, dict(invert_sigmas=True), "invert_sigmas=True is not supported"),
    (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
     "algorithm_type='dpmsolver'.*supported"),
    (DPMSolverMultistepScheduler, dict(use_flow_sigmas=True), "use_flow_sigmas=True is not supported"),
], ids=str)
def test_unsupported_schedulers_and_settings_are_refused(unet, cls, config, match):
    with pytest.raises(ValueError, match=match):
        diffusion.from_diffusers(unet, cls(**config))


def test_unsupported_prediction_and_schedule_arguments_are_refused(unet, flow_unet):
    den = diffusion.from_diffusers(unet, EulerAncestralDiscreteScheduler(prediction_type="sample"))
    with pytest.raises(ValueError, match="does not support prediction_type='sample'"):
        diffusion.sample(den, SHAPE, steps=4)
    flow = diffusion.from_diffusers(flow_unet, FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True))
    with pytest.raises(ValueError, match="pass `mu=`"):
        diffusion.sample(flow, SHAPE, steps=4)
    with pytest.raises(ValueError, match="flow-matching model; sample it with 'flow-euler'"):
        diffusion.sample(flow, SHAPE, steps=4, sampler="ddim")
    with pytest.raises(ValueError, match="takes neither"):
        diffusion.sample(den, SHAPE, steps=4, sampler="euler", mu=0.5)
    with pytest.raises(ValueError, match="needs a flow-matching model"):
        diffusion.sample(diffusion.from_diffusers(unet, DDIMScheduler()), SHAPE, steps=4, sampler="flow-euler")
    with pytest.raises(ValueError, match=r"`sigmas` must be 4 finite"):
        diffusion.sample(diffusion.from_diffusers(flow_unet, FlowMatchEulerDiscreteScheduler()), SHAPE, steps=4,
                         sigmas=[1.0, 0.5])
    with pytest.raises(TypeError, match="must be one of diffusers'"):
        diffusion.from_diffusers(diffusers.AutoencoderKL(), DDIMScheduler())


def test_unipc_bh1_onto_zero_sigma_gives_the_limit_where_diffusers_gives_nan(unet):
    """diffusers' bh1 last step onto sigma 0 computes alpha * B(h) * 0 with B(h) = -inf: NaN.
    parasolve's last step is its limit, x_N = the clean prediction at x_{N-1}."""
    steps, config = 6, dict(num_train_timesteps=200, solver_type="bh1")
    scheduler = UniPCMultistepScheduler(**config)
    call = (lambda x, t: unet(x, t).sample)
    assert not torch.isfinite(diffusers_loop(call, scheduler, steps, 7)).all()
    seq = diffusion.sample(diffusion.from_diffusers(unet, UniPCMultistepScheduler(**config)), SHAPE, steps=steps,
                           method="sequential", generator=torch.Generator().manual_seed(7), save="all")
    x_last, t_last = seq.solution.ys[-2], seq.timesteps[-1]
    abar = scheduler.alphas_cumprod[t_last]
    with torch.no_grad():
        x0 = (x_last - (1 - abar) ** 0.5 * call(x_last, t_last)) / abar ** 0.5
    assert torch.isfinite(seq.x).all() and rel_err(seq.x, x0) <= ROUNDOFF


@pytest.mark.parametrize("cls,config", [(EulerDiscreteScheduler, dict(use_karras_sigmas=True)),
                                        (EulerAncestralDiscreteScheduler, {}), (FlowMatchEulerDiscreteScheduler, {}),
                                        (UniPCMultistepScheduler, dict(solver_order=3))],
                         ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_sigma_step_linear_part_is_the_derivative_with_x0_held_fixed(unet, cls, config):
    """Newton's prior="step" slope: with a model whose clean-sample prediction is fixed,
    Phi(x + dx) - Phi(x) = linear_part * dx exactly (float64)."""
    from parasolve.diffusion import samplers
    den = diffusion.from_diffusers(unet, cls(num_train_timesteps=200, **config))
    ts, step = samplers.build(den, den.sampler, 10, 0.0, torch.float64)
    n = len(ts)
    step.prepare(torch.float64, torch.device("cpu"), torch.randn(n, 2, 3, dtype=torch.float64))
    x0 = torch.full((n, 2, 3), 0.3, dtype=torch.float64)
    if cls is UniPCMultistepScheduler:  # x = a x0 + s eps, model input unscaled
        a, s = (step._dev[k].reshape(-1, 1, 1) for k in "as")

        def drift(t, x):
            return (x - a * x0) / s
    else:
        sigma, div = (step._dev[k][:n].reshape(-1, 1, 1) for k in ("sigma", "div"))

        def drift(t, xin):  # epsilon or velocity of a model predicting x0: both are (x - x0) / sigma
            x = xin if den.prediction_type == "flow_prediction" else xin * div
            return (x - x0) / sigma

    x = torch.randn(n, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dx = 1e-3 * torch.randn(n, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    idx = torch.arange(n)
    t = torch.as_tensor(ts, dtype=torch.float64)
    before, _ = step.increments(drift, t, idx, x)
    after, _ = step.increments(drift, t, idx, x + dx)
    assert torch.allclose(after - before, step.linear_part().reshape(-1, 1, 1) * dx, rtol=1e-9, atol=1e-15)
