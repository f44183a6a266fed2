"""``from_diffusers`` for every supported diffusers denoiser, each built tiny from a config.

Oracle: the model called as its diffusers pipeline calls it (keywords, timestep convention,
learned-variance split, guidance), stepped by the scheduler's own ``step``, equals
``sample(..., method="sequential")`` to float32 round-off; the parallel sample is within the
tolerance bound of the sequential one. The conditioning keywords are passed through as a dict.
"""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import (DDIMScheduler, DDPMScheduler, DiTTransformer2DModel, EulerDiscreteScheduler,  # noqa: E402
                       FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel,
                       UNet1DModel, UNet2DConditionModel, UniPCMultistepScheduler)

from parasolve import diffusion  # noqa: E402
from parasolve import testing as pt  # noqa: E402

ROUNDOFF = 2e-5

pytestmark = pytest.mark.usefixtures("one_thread")


def loop(call, scheduler, steps, x, gen=None, **set_kw):
    scheduler.set_timesteps(None if "sigmas" in set_kw else steps, **set_kw)
    with torch.no_grad():
        for t in scheduler.timesteps:
            scaled = scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x
            out = call(scaled, t)
            x = scheduler.step(out, t, x, **({"generator": gen} if gen is not None else {})).prev_sample
    return x


def compare(den, call, scheduler, steps, shape, seed=0, cond=None, window=3, **kw):
    gen = torch.Generator().manual_seed(seed)
    set_kw = {k: v for k, v in kw.items() if k in ("mu", "sigmas")}
    scheduler.set_timesteps(None if "sigmas" in set_kw else steps, **set_kw)
    x_T = torch.randn(shape, generator=gen) * getattr(scheduler, "init_noise_sigma", 1.0)
    ref = loop(call, scheduler, steps, x_T.clone(), gen if den.sampler == "ddpm" else None,
               **set_kw)
    seq = diffusion.sample(den, shape, steps=steps, method="sequential", generator=torch.Generator().manual_seed(seed),
                           cond=cond, **kw)
    assert torch.equal(seq.x_T, x_T)
    err = float((seq.x - ref).abs().max()) / max(1.0, float(ref.abs().max()))
    assert err <= ROUNDOFF
    par = diffusion.sample(den, shape, steps=steps, window=window, x_T=seq.x_T, noise=seq.noise, cond=cond, **kw)
    assert par.stats.nfe > steps  # more evaluations than the sequential loop: it iterated
    pt.assert_near_sequential(par, seq, stability=3, slack=ROUNDOFF * max(1.0, float(seq.x.abs().max())))


def test_unet1d_diffusion_policy_model():
    torch.manual_seed(0)
    model = UNet1DModel(block_out_channels=(8, 16), in_channels=3, out_channels=3, layers_per_block=1,
                        down_block_types=("DownResnetBlock1D", "DownResnetBlock1D"), up_block_types=("UpResnetBlock1D",),
                        mid_block_type="MidResTemporalBlock1D", out_block_type="OutConv1DBlock",
                        time_embedding_type="positional", use_timestep_embedding=True, flip_sin_to_cos=False,
                        freq_shift=1.0, act_fn="mish", norm_num_groups=8, extra_in_channels=0).eval()
    scheduler = DDPMScheduler(num_train_timesteps=50, clip_sample=False)
    den = diffusion.from_diffusers(model, scheduler)
    assert not den.conditional
    compare(den, lambda x, t: model(x, t).sample, scheduler, 10, (2, 3, 16))


def test_unet2d_condition_with_sdxl_added_conditions():
    torch.manual_seed(1)
    model = UNet2DConditionModel(sample_size=8, in_channels=2, out_channels=2, layers_per_block=1,
                                 block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
                                 attention_head_dim=2, norm_num_groups=4, addition_embed_type="text_time",
                                 addition_time_embed_dim=4, projection_class_embeddings_input_dim=6 * 4 + 8).eval()
    B = 2
    cond = dict(encoder_hidden_states=torch.randn(B, 3, 8),
                added_cond_kwargs=dict(text_embeds=torch.randn(B, 8), time_ids=torch.randn(B, 6)))
    scheduler = EulerDiscreteScheduler(num_train_timesteps=100, use_karras_sigmas=True)
    den = diffusion.from_diffusers(model, scheduler)

    def call(x, t):
        return model(x, t, **cond).sample

    compare(den, call, scheduler, 6, (B, 2, 8, 8), cond=cond)


def test_dit_class_conditional_with_learned_variance():
    torch.manual_seed(2)
    model = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=4, in_channels=2, out_channels=4,
                                  num_layers=1, sample_size=8, patch_size=2, num_embeds_ada_norm=10).eval()
    scheduler = DDIMScheduler(num_train_timesteps=100)
    den = diffusion.from_diffusers(model, scheduler)
    labels = torch.tensor([1, 7])

    def call(x, t):  # DiTPipeline: the mean half of a learned-variance output
        out = model(x, timestep=t.expand(x.shape[0]), class_labels=labels).sample
        return out.split(2, dim=1)[0]

    compare(den, call, scheduler, 6, (2, 2, 8, 8), cond=labels)


def test_sd3_transformer_with_guidance():
    torch.manual_seed(3)
    model = SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=2, num_layers=1, attention_head_dim=4,
                                  num_attention_heads=2, caption_projection_dim=8, joint_attention_dim=8,
                                  pooled_projection_dim=6, out_channels=2).eval()
    B, scale = 2, 4.0
    cond = dict(encoder_hidden_states=torch.randn(B, 5, 8), pooled_projections=torch.randn(B, 6))
    uncond = dict(encoder_hidden_states=torch.randn(1, 5, 8), pooled_projections=torch.randn(1, 6))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    den = diffusion.from_diffusers(model, scheduler, uncond=uncond)

    def call(x, t):  # StableDiffusion3Pipeline: [negative, positive] in one batch
        both = {k: torch.cat([uncond[k].expand_as(v), v]) for k, v in cond.items()}
        out = model(hidden_states=torch.cat([x, x]), timestep=t.expand(2 * B), **both).sample
        u, c = out.chunk(2)
        return u + scale * (c - u)

    compare(den, call, scheduler, 6, (B, 2, 8, 8), cond=cond, guidance_scale=scale)


def test_flux_transformer_with_unbatched_ids_and_dynamic_shift():
    torch.manual_seed(4)
    model = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=8,
                                   num_attention_heads=2, joint_attention_dim=8, pooled_projection_dim=6,
                                   axes_dims_rope=[2, 2, 4], guidance_embeds=True).eval()
    B, tokens = 2, 16
    cond = dict(encoder_hidden_states=torch.randn(B, 5, 8), pooled_projections=torch.randn(B, 6),
                guidance=torch.full((B,), 3.5), txt_ids=torch.zeros(5, 3), img_ids=torch.randn(tokens, 3))
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    den = diffusion.from_diffusers(model, scheduler)
    sigmas = torch.linspace(1.0, 1 / 6, 6).tolist()  # FluxPipeline's default sigmas

    def call(x, t):  # FluxPipeline: timestep / 1000, ids without a batch dimension
        return model(hidden_states=x, timestep=t.expand(B).to(x.dtype) / 1000, **cond).sample

    compare(den, call, scheduler, 6, (B, tokens, 4), cond=cond, mu=0.7, sigmas=sigmas)


def test_unipc_on_a_callable_model():
    """Any callable model(x, t, cond): here a small torch function with a class condition."""
    torch.manual_seed(5)
    w = torch.randn(3, 4, 4) * 0.3

    def model(x, t, cond):
        return torch.tanh(torch.einsum("bij,bjk->bik", x, w[cond]) + t[:, None, None] / 1000)

    scheduler = UniPCMultistepScheduler(num_train_timesteps=100)
    den = diffusion.from_diffusers(model, scheduler)
    labels = torch.tensor([0, 2])
    compare(den, lambda x, t: model(x, t.expand(2), labels), scheduler, 8, (2, 4, 4), cond=labels)
