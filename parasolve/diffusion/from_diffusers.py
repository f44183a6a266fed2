"""``from_diffusers``: a diffusers UNet and scheduler as a :class:`Denoiser` (diffusers imported lazily)."""

from __future__ import annotations

from .denoiser import Denoiser
from .samplers import settings_for

#: diffusers scheduler class -> the parasolve sampler that reproduces its ``step``.
SCHEDULERS = {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddim", "DPMSolverMultistepScheduler": "dpmsolver++"}


def from_diffusers(unet, scheduler, *, uncond=None) -> Denoiser:
    """Wrap ``unet`` (``UNet2DModel`` or ``UNet2DConditionModel``) with ``scheduler``'s schedule and settings.

    The schedule (``alphas_cumprod``), ``prediction_type`` and the step settings
    (``timestep_spacing``, ``clip_sample``, ``solver_order``, ...) are read from ``scheduler``;
    ``den.sampler`` names the matching sampler (``sample(den, shape, sampler=den.sampler)``
    reproduces ``scheduler.step``'s loop). For ``UNet2DConditionModel`` the condition is
    ``encoder_hidden_states``; for a class-conditional ``UNet2DModel`` it is ``class_labels``.
    ``uncond``: the unconditional input for classifier-free guidance (e.g. the empty-prompt
    embedding), batch 1 or B.
    """
    try:
        import diffusers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("from_diffusers needs diffusers: pip install 'parasolve[diffusers]'.") from exc
    kind = type(scheduler).__name__
    if kind not in SCHEDULERS:
        raise ValueError(f"Unsupported scheduler {kind}; supported: {sorted(SCHEDULERS)} "
                         f"(convert with e.g. DDIMScheduler.from_config(scheduler.config)).")
    cfg = dict(scheduler.config)
    sampler = SCHEDULERS[kind]
    if kind == "DPMSolverMultistepScheduler":
        algorithm = cfg.get("algorithm_type", "dpmsolver++")
        if algorithm not in ("dpmsolver++", "sde-dpmsolver++"):
            raise ValueError(f"DPMSolverMultistepScheduler(algorithm_type={algorithm!r}) is not supported; "
                             f"supported: ['dpmsolver++', 'sde-dpmsolver++'].")
        sampler = algorithm
    prediction = cfg.get("prediction_type", "epsilon")
    if isinstance(unet, diffusers.UNet2DConditionModel):
        conditional = True

        def model(x, t, cond):
            if cond is None:
                raise ValueError("UNet2DConditionModel needs `cond` (its encoder_hidden_states).")
            return unet(x, t, encoder_hidden_states=cond).sample
    elif isinstance(unet, diffusers.UNet2DModel):
        conditional = unet.config.num_class_embeds is not None or unet.config.class_embed_type is not None

        def model(x, t, cond):
            return unet(x, t, class_labels=cond).sample if conditional else unet(x, t).sample
    else:
        raise TypeError(f"`unet` must be a diffusers UNet2DModel or UNet2DConditionModel; got {type(unet).__name__}.")
    param = next(unet.parameters())
    den = Denoiser(model, scheduler.alphas_cumprod, prediction_type=prediction, config=cfg,
                   conditional=conditional, uncond=uncond, device=param.device, dtype=param.dtype,
                   name=f"{type(unet).__name__} + {kind}", sampler=sampler)
    settings_for(den, sampler)  # unsupported settings fail here, not at the first sample
    return den
