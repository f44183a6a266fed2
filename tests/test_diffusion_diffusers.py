"""parasolve.diffusion against diffusers' own scheduler loops, on tiny randomly initialised UNets.

With the same x_T and noise, the sequential sampler must reproduce ``scheduler.step``'s loop to
float32 round-off, and the parallel (Picard) sample must match the sequential one within the
tolerance bound. No trained weights are needed for parity.
"""

import subprocess
import sys

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, PNDMScheduler,  # noqa: E402
                       UNet2DConditionModel, UNet2DModel)

import tiny_pipelines as tiny  # noqa: E402

from parasolve import diffusion  # noqa: E402
from parasolve import testing as pt  # noqa: E402

SHAPE = (3, 2, 8, 8)
ROUNDOFF = 2e-5  # relative to max(1, max|x|), after up to 50 float32 steps


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def unet():
    return tiny.pixel_unet(seed=0)


@pytest.fixture(scope="module")
def cond_unet():
    torch.manual_seed(1)
    return UNet2DConditionModel(sample_size=8, in_channels=2, out_channels=2, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
                                attention_head_dim=2, norm_num_groups=4).eval()


def reference(model, scheduler, steps, x, *, generator=None, noise=None, eta=None):
    """diffusers' own loop: model call, then scheduler.step, every timestep."""
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for j, t in enumerate(scheduler.timesteps):
            kwargs = {}
            if eta is not None:
                kwargs["eta"] = eta
            if noise is not None:
                kwargs["variance_noise"] = noise[j]
            elif generator is not None:
                kwargs["generator"] = generator
            x = scheduler.step(model(x, t), t, x, **kwargs).prev_sample
    return x


def rel_err(a, b):
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


def check_parallel(den, seq, sampler, steps, **kw):
    """Picard (window smaller than the run) against the sequential sample of the same problem.

    max|x - x_seq| <= S * defect_sum <= S * tol; on these random UNets S < 2 (measured), and the
    sweep count is not asserted (untrained models make Picard slow; the exact-denoiser and digits
    tests check the gain).
    """
    par = diffusion.sample(den, SHAPE, sampler=sampler, steps=steps, window=8, x_T=seq.x_T, noise=seq.noise, **kw)
    assert par.stats.iterations <= steps
    assert par.stats.defect_sum <= 1e-3
    pt.assert_near_sequential(par, seq, stability=2, slack=ROUNDOFF * max(1.0, float(seq.x.abs().max())))
    return par


DDPM_CASES = [
    dict(num_train_timesteps=40),  # the full chain: every training step, linear, epsilon, clipped
    dict(num_train_timesteps=100, prediction_type="v_prediction", timestep_spacing="trailing",
         variance_type="fixed_large"),
    dict(num_train_timesteps=100, prediction_type="sample", timestep_spacing="linspace",
         beta_schedule="squaredcos_cap_v2", clip_sample=False),
    dict(num_train_timesteps=100, beta_schedule="scaled_linear", steps_offset=1, thresholding=True),
]


@pytest.mark.parametrize("config", DDPM_CASES)
def test_ddpm_matches_diffusers_loop_with_same_generator(unet, config):
    steps = 40 if config["num_train_timesteps"] == 40 else 20
    scheduler = DDPMScheduler(**config)
    den = diffusion.from_diffusers(unet, scheduler)
    gen = torch.Generator().manual_seed(7)
    ref = reference(lambda x, t: unet(x, t).sample, scheduler, steps, torch.randn(SHAPE, generator=gen),
                    generator=gen)
    seq = diffusion.sample(den, SHAPE, sampler="ddpm", steps=steps, method="sequential",
                           generator=torch.Generator().manual_seed(7))
    assert rel_err(seq.x, ref) <= ROUNDOFF
    assert seq.noise.shape == (steps, *SHAPE)
    check_parallel(den, seq, "ddpm", steps)


@pytest.mark.parametrize("eta", [0.0, 0.6])
@pytest.mark.parametrize("config", [dict(), dict(prediction_type="v_prediction", timestep_spacing="trailing"),
                                    dict(prediction_type="sample", timestep_spacing="linspace",
                                         beta_schedule="squaredcos_cap_v2", set_alpha_to_one=False),
                                    dict(prediction_type="v_prediction", timestep_spacing="trailing",
                                         rescale_betas_zero_snr=True)])
def test_ddim_matches_diffusers_loop_with_same_noise(unet, config, eta):
    steps = 20
    scheduler = DDIMScheduler(num_train_timesteps=200, **config)
    den = diffusion.from_diffusers(unet, scheduler)
    torch.manual_seed(3)
    x_T = torch.randn(SHAPE)
    noise = torch.randn(steps, *SHAPE) if eta > 0 else None
    ref = reference(lambda x, t: unet(x, t).sample, scheduler, steps, x_T, noise=noise, eta=eta)
    seq = diffusion.sample(den, SHAPE, sampler="ddim", steps=steps, eta=eta, method="sequential", x_T=x_T,
                           noise=noise)
    assert rel_err(seq.x, ref) <= ROUNDOFF
    check_parallel(den, seq, "ddim", steps, eta=eta)


DPM_CASES = [
    (dict(), 10),  # 2M midpoint, linspace, zero final sigma, fewer than 15 steps
    (dict(), 20),
    (dict(prediction_type="v_prediction", timestep_spacing="trailing", solver_type="heun"), 16),
    (dict(final_sigmas_type="sigma_min", prediction_type="sample"), 20),  # second order at the last step
    (dict(final_sigmas_type="sigma_min", lower_order_final=True), 10),  # ... unless fewer than 15 steps
    (dict(timestep_spacing="leading", beta_schedule="scaled_linear", thresholding=True), 12),
    (dict(solver_order=1), 12),
    (dict(beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-3.0), 12),
]


@pytest.mark.parametrize("config,steps", DPM_CASES)
def test_dpm_solver_matches_diffusers_loop(unet, config, steps):
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=200, **config)
    den = diffusion.from_diffusers(unet, scheduler)
    torch.manual_seed(4)
    x_T = torch.randn(SHAPE)
    ref = reference(lambda x, t: unet(x, t).sample, scheduler, steps, x_T)
    seq = diffusion.sample(den, SHAPE, steps=steps, method="sequential", x_T=x_T)  # the scheduler's sampler
    assert seq.sampler == den.sampler == "dpmsolver++"
    assert torch.equal(seq.timesteps, scheduler.timesteps)
    assert rel_err(seq.x, ref) <= ROUNDOFF
    check_parallel(den, seq, den.sampler, steps)


def test_sde_dpm_solver_matches_diffusers_loop(unet):
    steps = 12
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=200, algorithm_type="sde-dpmsolver++")
    den = diffusion.from_diffusers(unet, scheduler)
    assert den.sampler == "sde-dpmsolver++"
    torch.manual_seed(5)
    x_T, noise = torch.randn(SHAPE), torch.randn(steps, *SHAPE)
    ref = reference(lambda x, t: unet(x, t).sample, scheduler, steps, x_T, noise=noise)
    seq = diffusion.sample(den, SHAPE, sampler="sde-dpmsolver++", steps=steps, method="sequential", x_T=x_T,
                           noise=noise)
    assert rel_err(seq.x, ref) <= ROUNDOFF
    check_parallel(den, seq, "sde-dpmsolver++", steps)


def test_classifier_free_guidance_matches_diffusers_loop(cond_unet):
    steps, scale = 10, 3.0
    scheduler = DDIMScheduler(num_train_timesteps=100)
    torch.manual_seed(6)
    cond, uncond = torch.randn(SHAPE[0], 3, 8), torch.randn(1, 3, 8)
    den = diffusion.from_diffusers(cond_unet, scheduler, uncond=uncond)
    x_T = torch.randn(SHAPE)

    def guided(x, t):
        both = cond_unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([cond, uncond.expand_as(cond)])).sample
        c, u = both.chunk(2)
        return u + scale * (c - u)

    ref = reference(guided, scheduler, steps, x_T, eta=0.0)
    seq = diffusion.sample(den, SHAPE, sampler="ddim", steps=steps, method="sequential", x_T=x_T, cond=cond,
                           guidance_scale=scale)
    assert rel_err(seq.x, ref) <= ROUNDOFF
    plain = reference(lambda x, t: cond_unet(x, t, encoder_hidden_states=cond).sample, scheduler, steps, x_T, eta=0.0)
    unguided = diffusion.sample(den, SHAPE, sampler="ddim", steps=steps, method="sequential", x_T=x_T, cond=cond)
    assert rel_err(unguided.x, plain) <= ROUNDOFF
    check_parallel(den, seq, "ddim", steps, cond=cond, guidance_scale=scale)


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_schedules_equal_diffusers(kind):
    ours = diffusion.alphas_cumprod(kind, 1000, 1e-4, 0.02)
    assert torch.equal(ours, DDPMScheduler(beta_schedule=kind, beta_start=1e-4, beta_end=0.02).alphas_cumprod)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 7, 50, 333])
def test_timestep_spacings_equal_diffusers(spacing, steps):
    for cls, dropped in ((DDPMScheduler, False), (DDIMScheduler, False), (DPMSolverMultistepScheduler, True)):
        scheduler = cls(timestep_spacing=spacing, steps_offset=1 if spacing == "leading" else 0)
        scheduler.set_timesteps(steps)
        ours = diffusion.timesteps(spacing, 1000, steps, scheduler.config.steps_offset, endpoint_dropped=dropped)
        assert ours.tolist() == scheduler.timesteps.tolist(), cls.__name__


def test_unsupported_scheduler_names_the_supported_ones(unet):
    with pytest.raises(ValueError, match="PNDMScheduler; supported: .*DDIMScheduler.*DDPMScheduler.*DPMSolverMultistep"):
        diffusion.from_diffusers(unet, PNDMScheduler())


def test_unsupported_scheduler_settings_are_refused(unet):
    with pytest.raises(ValueError, match="solver_order=3.*supported: \\[1, 2\\]"):
        diffusion.from_diffusers(unet, DPMSolverMultistepScheduler(solver_order=3))
    with pytest.raises(ValueError, match="use_exponential_sigmas=True"):
        diffusion.from_diffusers(unet, DPMSolverMultistepScheduler(use_exponential_sigmas=True))
    with pytest.raises(ValueError, match="variance_type='learned'"):
        diffusion.from_diffusers(unet, DDPMScheduler(variance_type="learned"))


def test_model_output_shape_mismatch_is_reported(unet):
    torch.manual_seed(0)
    wide = UNet2DModel(sample_size=8, in_channels=2, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4)
    den = diffusion.from_diffusers(wide, DDIMScheduler(num_train_timesteps=100))
    with pytest.raises(ValueError, match=r"returned outputs of shape \(4, 8, 8\) for samples of shape \(2, 8, 8\)"):
        diffusion.sample(den, SHAPE, sampler="ddim", steps=5)


def test_guidance_errors(unet, cond_unet):
    den = diffusion.from_diffusers(unet, DDIMScheduler(num_train_timesteps=100))
    with pytest.raises(ValueError, match="needs a conditional model"):
        diffusion.sample(den, SHAPE, sampler="ddim", steps=5, guidance_scale=2.0, cond=torch.zeros(3, 3, 8))
    conditional = diffusion.from_diffusers(cond_unet, DDIMScheduler(num_train_timesteps=100))
    with pytest.raises(ValueError, match="pass `uncond=`"):
        diffusion.sample(conditional, SHAPE, sampler="ddim", steps=5, guidance_scale=2.0, cond=torch.zeros(3, 3, 8))
    with pytest.raises(ValueError, match="needs `cond`"):
        diffusion.sample(conditional, SHAPE, sampler="ddim", steps=5)
    with pytest.raises(TypeError, match="callable model\\(x, t, cond\\)"):
        diffusion.from_diffusers(torch.nn.Linear(2, 2), DDIMScheduler())


def test_steps_beyond_training_steps_is_an_error(unet):
    den = diffusion.from_diffusers(unet, DDPMScheduler(num_train_timesteps=100))
    with pytest.raises(ValueError, match="steps`=101 is larger than the 100 training steps"):
        diffusion.sample(den, SHAPE, steps=101)


def test_importing_parasolve_does_not_import_diffusers():
    code = "import sys, parasolve, parasolve.diffusion; print('diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
