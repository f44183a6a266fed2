"""``from_diffusers``: a diffusers denoiser and scheduler as a :class:`Denoiser` (diffusers imported lazily)."""

from __future__ import annotations

import inspect

from .denoiser import Denoiser
from .samplers import settings_for

#: diffusers scheduler class -> the parasolve sampler that reproduces its ``step``. The parallel
#: schedulers stand for their sequential ones (parasolve parallelises any sampler itself).
SCHEDULERS = {"DDPMScheduler": "ddpm", "DDPMParallelScheduler": "ddpm", "DDIMScheduler": "ddim",
              "DDIMParallelScheduler": "ddim", "DPMSolverMultistepScheduler": "dpmsolver++",
              "EulerDiscreteScheduler": "euler", "EulerAncestralDiscreteScheduler": "euler-ancestral",
              "HeunDiscreteScheduler": "heun", "FlowMatchEulerDiscreteScheduler": "flow-euler",
              "UniPCMultistepScheduler": "unipc"}
#: diffusers model classes with a known calling convention (anything else must be a callable model(x, t, cond)).
MODELS = ("UNet1DModel", "UNet2DModel", "UNet2DConditionModel", "DiTTransformer2DModel", "Transformer2DModel",
          "SD3Transformer2DModel", "FluxTransformer2DModel")


def sampler_for(scheduler) -> tuple[str, dict, str]:
    """``(sampler, config, prediction_type)`` for a diffusers scheduler, or a ValueError listing what is supported."""
    kind = type(scheduler).__name__
    if kind not in SCHEDULERS:
        raise ValueError(f"Unsupported scheduler {kind}; supported: {sorted(SCHEDULERS)} "
                         f"(convert with e.g. EulerDiscreteScheduler.from_config(scheduler.config)).")
    cfg = dict(scheduler.config)
    sampler = SCHEDULERS[kind]
    if kind == "DPMSolverMultistepScheduler":
        algorithm = cfg.get("algorithm_type", "dpmsolver++")
        if algorithm not in ("dpmsolver++", "sde-dpmsolver++"):
            raise ValueError(f"DPMSolverMultistepScheduler(algorithm_type={algorithm!r}) is not supported; "
                             f"supported: ['dpmsolver++', 'sde-dpmsolver++'].")
        sampler = algorithm
    prediction = "flow_prediction" if sampler == "flow-euler" else cfg.get("prediction_type", "epsilon")
    return sampler, cfg, prediction


def from_diffusers(model, scheduler, *, uncond=None) -> Denoiser:
    """Wrap a diffusers denoiser ``model`` with ``scheduler``'s schedule and settings.

    ``model``: ``UNet1DModel``, ``UNet2DModel``, ``UNet2DConditionModel``, ``DiTTransformer2DModel``
    / ``Transformer2DModel``, ``SD3Transformer2DModel``, ``FluxTransformer2DModel``, or any callable
    ``model(x, t, cond) -> output``. The condition ``cond`` given to :func:`sample` is either
    a tensor (``encoder_hidden_states`` of a UNet2DConditionModel, ``class_labels`` of a
    class-conditional UNet2DModel or DiT) or a dict of the model's own keyword arguments, passed
    through (``encoder_hidden_states``, ``added_cond_kwargs``, ``pooled_projections``, Flux's
    ``guidance``/``txt_ids``/``img_ids``, ...); batched entries are repeated for every time
    point of a parallel sweep (Flux's ``txt_ids``/``img_ids`` have no batch dimension and are not).

    The schedule, ``prediction_type`` and step settings are read from ``scheduler``;
    ``den.sampler`` names the matching sampler, so ``sample(den, shape)`` reproduces
    ``scheduler.step``'s loop. ``uncond``: the unconditional input for classifier-free guidance
    (e.g. the empty-prompt embedding), batch 1 or B. Unsupported schedulers and settings raise
    ValueError listing the supported ones.
    """
    try:
        import diffusers  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("from_diffusers needs diffusers: pip install 'parasolve[diffusers]'.") from exc
    sampler, cfg, prediction = sampler_for(scheduler)
    call, conditional, unbatched = model_call(model)
    params = getattr(model, "parameters", None)
    param = next(params(), None) if callable(params) else None
    ac = None if sampler == "flow-euler" else scheduler.alphas_cumprod
    den = Denoiser(call, ac, prediction_type=prediction, config=cfg, conditional=conditional, uncond=uncond,
                   device=None if param is None else param.device, dtype=None if param is None else param.dtype,
                   name=f"{type(model).__name__} + {type(scheduler).__name__}", sampler=sampler, unbatched=unbatched)
    settings_for(den, sampler)  # unsupported settings fail here, not at the first sample
    return den


def model_call(model):
    """``(call(x, t, cond), conditional, unbatched keys)`` for a diffusers model or a callable."""
    kind = type(model).__name__
    known = kind in MODELS and type(model).__module__.startswith("diffusers")
    if not known:
        if not callable(model) or _is_torch_module_of_diffusers(model) or not _takes_three(model):
            raise TypeError(f"`model` must be one of diffusers' {list(MODELS)} or a callable model(x, t, cond); "
                            f"got {kind}.")
        return model, True, ()
    cfg = model.config

    def keywords(cond, name):
        if cond is None:
            return {}
        return dict(cond) if isinstance(cond, dict) else {name: cond}

    if kind == "UNet1DModel":
        return (lambda x, t, cond: model(x, t).sample), False, ()
    if kind == "UNet2DModel":
        conditional = cfg.num_class_embeds is not None or cfg.class_embed_type is not None
        return (lambda x, t, cond: model(x, t, **keywords(cond, "class_labels")).sample), conditional, ()
    if kind == "UNet2DConditionModel":
        def unet(x, t, cond):
            if cond is None:
                raise ValueError("UNet2DConditionModel needs `cond` (its encoder_hidden_states, or a dict of its "
                                 "keywords such as encoder_hidden_states and added_cond_kwargs).")
            return model(x, t, **keywords(cond, "encoder_hidden_states")).sample
        return unet, True, ()
    if kind in ("DiTTransformer2DModel", "Transformer2DModel"):
        def dit(x, t, cond):
            out = model(hidden_states=x, timestep=t, **keywords(cond, "class_labels")).sample
            return out[:, :x.shape[1]] if out.shape[1] == 2 * x.shape[1] else out  # learned variance: mean half
        conditional = getattr(cfg, "num_embeds_ada_norm", None) is not None or getattr(
            cfg, "cross_attention_dim", None) is not None
        return dit, conditional, ()
    if kind == "SD3Transformer2DModel":
        return (lambda x, t, cond: model(hidden_states=x, timestep=t, **keywords(cond, "encoder_hidden_states"),
                                         return_dict=False)[0]), True, ()
    # FluxTransformer2DModel: timesteps in [0, 1], packed latents (B, tokens, channels)
    return (lambda x, t, cond: model(hidden_states=x, timestep=t.to(x.dtype) / 1000,
                                     **keywords(cond, "encoder_hidden_states"), return_dict=False)[0]), True, \
        ("txt_ids", "img_ids")


def _takes_three(fn) -> bool:
    """Whether ``fn(x, t, cond)`` binds (a model of another convention fails here, not inside a solve)."""
    try:
        inspect.signature(getattr(fn, "forward", fn)).bind(None, None, None)
    except TypeError:
        return False
    except ValueError:  # no signature (some builtins): trust it
        return True
    return True


def _is_torch_module_of_diffusers(model) -> bool:
    return type(model).__module__.startswith("diffusers.models")
