"""A trained noise predictor together with the schedule it was trained on.

A :class:`Denoiser` wraps any callable ``model(x, t, cond) -> output`` (``x``: ``(B, *sample)``,
``t``: integer timesteps ``(B,)``, ``cond``: a batch of conditions or ``None``) whose output is
an ``"epsilon"``, ``"sample"`` (x0) or ``"v_prediction"`` of the clean sample, plus the training
schedule ``alphas_cumprod``. ``config`` holds scheduler settings by their diffusers names
(``timestep_spacing``, ``clip_sample``, ``solver_order``, ...); each sampler starts from the
defaults of its diffusers scheduler and takes the keys it knows from ``config``, as
``Scheduler.from_config`` does.
"""

from __future__ import annotations

import torch

from .._checks import check_choice, check_real

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction", "flow_prediction")


class Denoiser:
    """A diffusion model ready to sample: ``model``, ``alphas_cumprod`` and its settings.

    Args:
        model: ``model(x, t, cond)`` returning a tensor shaped like ``x``.
        alphas_cumprod: the training schedule ``alpha_bar_t``, ``t = 0 .. T-1``; ``None`` for a
            flow-matching model (its ``num_train_timesteps`` is ``config["num_train_timesteps"]``,
            default 1000).
        prediction_type: what ``model`` predicts: ``"epsilon"``, ``"sample"``, ``"v_prediction"`` or,
            for a flow-matching model, ``"flow_prediction"`` (the velocity ``eps - x0``).
        config: scheduler settings by diffusers name (see :data:`parasolve.diffusion.samplers.DEFAULTS`).
        conditional: whether ``model`` takes a condition (required for classifier-free guidance).
        uncond: the "no condition" input used by guidance (e.g. the empty-prompt embedding),
            broadcastable over the batch; ``None`` if the model has none.
        device, dtype: where and in what precision ``model`` runs (inputs are cast to ``dtype``
            and outputs back to the sample's dtype); ``dtype=None`` runs in the sample's dtype.
        name: shown in messages.
        sampler: the sampler matching the model's own scheduler, what ``sample`` runs when it
            is given no ``sampler=``.
        unbatched: names of ``cond`` entries (a dict of the model's keywords) that have no batch
            dimension and are passed as they are (e.g. Flux's ``txt_ids``/``img_ids``).
    """

    def __init__(self, model, alphas_cumprod, *, prediction_type: str = "epsilon", config: dict | None = None,
                 conditional: bool = False, uncond=None, device=None, dtype=None, name: str = "model",
                 sampler: str = "ddpm", unbatched=()):
        if not callable(model):
            raise TypeError(f"`model` must be callable as model(x, t, cond); got {type(model).__name__}.")
        check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        if alphas_cumprod is None:
            if prediction_type != "flow_prediction":
                raise ValueError("`alphas_cumprod` is required (it is optional only for prediction_type='flow_prediction').")
            ac = None
        else:
            ac = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float32)
        if ac is not None and (ac.dim() != 1 or ac.numel() < 1 or not bool(((ac >= 0) & (ac < 1)).all())
                               or not ac[0] > 0):
            raise ValueError("`alphas_cumprod` must be a 1-D schedule with values in [0, 1) (0 only for a "
                             "zero-terminal-SNR last step).")
        self.model = model
        self.alphas_cumprod = ac
        self.prediction_type = prediction_type
        self.config = dict(config or {})
        self.conditional = bool(conditional)
        self.uncond = uncond
        self.device = torch.device(device) if device is not None else _module_device(model)
        self.dtype = dtype
        self.name = name
        self.sampler = sampler
        self.unbatched = frozenset(unbatched)

    @property
    def num_train_timesteps(self) -> int:
        if self.alphas_cumprod is None:
            return int(self.config.get("num_train_timesteps", 1000))
        return self.alphas_cumprod.shape[0]

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """The model's output at samples ``x`` and integer timesteps ``t`` (checked against ``x``)."""
        xin = x if self.dtype is None else x.to(self.dtype)
        out = self.model(xin, t, cond)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{self.name} must return a torch.Tensor; got {type(out).__name__}.")
        if out.shape != x.shape:
            per = out.dim() == x.dim() and out.shape[0] == x.shape[0]
            got, want = (tuple(out.shape[1:]), tuple(x.shape[1:])) if per else (tuple(out.shape), tuple(x.shape))
            raise ValueError(f"{self.name} returned outputs of shape {got} for samples of shape {want}; the "
                             f"output must match the sample shape (a model with learned variance or a "
                             f"different out_channels is not supported).")
        return out.to(x.dtype)

    def drift(self, shape, cond=None, uncond=None, guidance_scale=None, integer_timesteps=True, model=None):
        """The batched model call the samplers use: ``drift(t (n,), x (n, *shape)) -> (n, *shape)``.

        ``integer_timesteps``: round ``t`` to integers (the DDPM family); the sigma-space samplers
        pass the schedulers' float timesteps as they are. ``model``: what runs the flattened
        batch, ``model(x, t, cond)`` (default: this denoiser; per-sample sampling passes a call
        that merges the batches of several samples' solves, :mod:`parasolve.diffusion.per_sample`).

        The ``n`` time points are flattened into one model batch of ``n * B`` samples (``2 n B``
        with classifier-free guidance, conditional and unconditional halves in one call, combined
        as ``uncond + scale * (cond - uncond)``).
        """
        batch, inner = shape[0], tuple(shape[1:])
        model = self if model is None else model

        def tiled(c, n):
            return _map_batched(c, lambda v: v.repeat(n, *([1] * (v.dim() - 1))), self.unbatched)

        def drift(t, x):
            n = t.shape[0]
            xf = x.reshape(n * batch, *inner)
            tf = (t.round().long() if integer_timesteps else t).repeat_interleave(batch)
            if guidance_scale is None:
                out = model(xf, tf, tiled(cond, n))
            else:
                both = model(torch.cat([xf, xf]), torch.cat([tf, tf]),
                             concat([tiled(cond, n), tiled(uncond, n)], self.unbatched))
                c, u = both.chunk(2)
                out = u + guidance_scale * (c - u)
            return out.reshape(n, *shape)

        drift.compute_dtype = self.dtype  # the row check's round-off (None: the sample's dtype)
        return drift

    def conditions(self, cond, uncond, guidance_scale, batch: int):
        """Validated ``(cond, uncond)`` batches of ``batch`` rows for :meth:`drift`."""
        if guidance_scale is not None:
            check_real("guidance_scale", guidance_scale, none_ok=True)
            if not self.conditional:
                raise ValueError(f"`guidance_scale`={guidance_scale} needs a conditional model, but {self.name} is "
                                 f"unconditional; drop guidance_scale or use a conditional model.")
            if cond is None:
                raise ValueError("`guidance_scale` needs `cond`, the condition to guide towards.")
            uncond = self.uncond if uncond is None else uncond
            if uncond is None:
                raise ValueError(f"Classifier-free guidance needs the unconditional input, and {self.name} has none: "
                                 f"pass `uncond=` (e.g. the empty-prompt embedding) to sample() or from_diffusers().")
        elif cond is not None and not self.conditional:
            raise ValueError(f"`cond` was given but {self.name} is unconditional; drop `cond`.")
        elif uncond is not None:
            raise ValueError("`uncond` is only used with `guidance_scale`; pass guidance_scale or drop uncond.")
        return (_batch_of("cond", cond, batch, self.device, self.unbatched),
                _batch_of("uncond", uncond, batch, self.device, self.unbatched) if guidance_scale is not None else None)

    def __repr__(self) -> str:
        return (f"Denoiser({self.name}, prediction_type={self.prediction_type!r}, "
                f"num_train_timesteps={self.num_train_timesteps}, conditional={self.conditional})")


def _map_batched(c, fn, unbatched=frozenset()):
    """``fn`` applied to every batched tensor of ``c`` (a tensor or a dict of the model's keywords, nested)."""
    if c is None or not isinstance(c, (dict, torch.Tensor)):
        return c
    if isinstance(c, dict):
        return {k: (v if k in unbatched else _map_batched(v, fn, unbatched)) for k, v in c.items()}
    return fn(c)


def concat(parts, unbatched=frozenset()):
    """Condition batches (tensors or dicts of the same keys) stacked along the batch dimension;
    unbatched entries and non-tensors are taken from the first."""
    first = parts[0]
    if isinstance(first, dict):
        return {k: (first[k] if k in unbatched else concat([p[k] for p in parts], unbatched)) for k in first}
    return torch.cat(list(parts)) if isinstance(first, torch.Tensor) else first


def rows(c, index: slice, unbatched=frozenset()):
    """The rows ``index`` of a condition batch (a tensor or a dict of the model's keywords)."""
    return _map_batched(c, lambda v: v[index], unbatched)


def _batch_of(name, c, batch, device, unbatched=frozenset()):
    if c is None:
        return None
    if isinstance(c, dict):
        return {k: (v if k in unbatched or not isinstance(v, (dict, torch.Tensor))
                    else _batch_of(f"{name}[{k!r}]", v, batch, device, unbatched)) for k, v in c.items()}
    if not isinstance(c, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor with a leading batch dimension (or a dict of the model's "
                        f"keyword tensors); got {type(c).__name__}.")
    if c.device != device:
        raise ValueError(f"`{name}` is on {c.device} but the model is on {device}; move it with .to({str(device)!r}).")
    if c.dim() == 0:
        c = c.reshape(1)
    if c.shape[0] not in (1, batch):
        raise ValueError(f"`{name}` must have a leading batch dimension of {batch} (the sample batch) or 1; "
                         f"got shape {tuple(c.shape)}.")
    return c.expand(batch, *c.shape[1:]) if c.shape[0] == 1 else c


def _module_device(model) -> torch.device:
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")
