"""``parallelize(pipe)``: a diffusers pipeline whose denoising loop is the parallel solve.

The wrapper calls the pipeline itself, so its prompt encoding, latent preparation, guidance
settings, decoding and output type are the pipeline's own. Only the loop changes: during the
call, the scheduler hands the pipeline a one-timestep schedule; the pipeline's first denoiser
call is recorded (its conditioning keywords, as the pipeline built them) instead of run; and its
``scheduler.step`` returns the final latents of :func:`~parasolve.diffusion.sample` run from the
pipeline's latents with the scheduler's full schedule, the recorded conditioning and the
pipeline's guidance. The model, scheduler and pipeline are restored afterwards.

Supported: ``StableDiffusionPipeline``, ``StableDiffusionXLPipeline`` (classifier-free guidance
with ``guidance_rescale``), ``StableDiffusion3Pipeline`` (with skip-layer guidance) and
``FluxPipeline`` (distilled guidance, and true CFG with a negative prompt), with any scheduler
:func:`~parasolve.diffusion.from_diffusers` supports.
"""

from __future__ import annotations

import functools
import inspect

import torch

from ..sde import draw_noise
from . import samplers
from .denoiser import Denoiser
from .from_diffusers import sampler_for
from .api import sample

#: pipeline class -> its denoiser attribute
PIPELINES = {"StableDiffusionPipeline": "unet", "StableDiffusionXLPipeline": "unet",
             "StableDiffusion3Pipeline": "transformer", "FluxPipeline": "transformer"}
_UNBATCHED = ("txt_ids", "img_ids")  # Flux's position ids have no batch dimension


def parallelize(pipe, method="picard", window=64, tol=None, *, max_iters=None, throw=True, evaluator=None,
                per_sample=False, **options) -> "ParallelPipeline":
    """``pipe`` with its denoising loop solved by ``method`` (see :func:`~parasolve.diffusion.sample`).

    Returns a callable with ``pipe``'s own call signature and output; ``wrapper.stats`` holds the
    last call's solver stats (sweeps, evaluations, defect sum), ``wrapper.last`` its
    :class:`~parasolve.diffusion.SampleOutput`. ``method="sequential"`` reproduces ``pipe(...)``
    with the same generator; a parallel method is within the ``tol`` bound of it (for the
    latents; the decoder is the pipeline's). ``per_sample``: as in ``sample`` -- with several
    prompts or ``num_images_per_prompt > 1``, each image's latents are solved on their own, one
    merged denoiser call per round. ``method="auto"``: Newton where the cost model predicts it
    faster than the sequential loop on this machine, else the sequential loop (as in ``sample``).
    ``options``: the scheme's settings.
    """
    kind = type(pipe).__name__
    if kind not in PIPELINES:
        raise TypeError(f"parallelize supports {sorted(PIPELINES)}; got {kind}.")
    sampler_for(pipe.scheduler)  # an unsupported scheduler fails now, not inside the pipeline
    return ParallelPipeline(pipe, dict(method=method, window=window, tol=tol, max_iters=max_iters, throw=throw,
                                       evaluator=evaluator, per_sample=per_sample, options=options or None))


class ParallelPipeline:
    """The wrapper :func:`parallelize` returns: call it as the pipeline."""

    def __init__(self, pipe, solve_kw: dict):
        self.pipe = pipe
        self.solve_kw = solve_kw
        self.model = getattr(pipe, PIPELINES[type(pipe).__name__])
        self.stats = None
        self.last = None
        self.__signature__ = inspect.signature(pipe.__call__)
        functools.update_wrapper(self, pipe.__call__, assigned=("__doc__",), updated=())

    def __call__(self, *args, **kwargs):
        bound = self.__signature__.bind(*args, **kwargs)
        bound.apply_defaults()
        run = _Run(self, bound.arguments)
        with run.installed():
            out = self.pipe(*args, **kwargs)
        if run.result is None:
            raise RuntimeError(f"{type(self.pipe).__name__} returned without running its denoising loop.")
        self.last = run.result
        self.stats = run.result.stats
        return out

    def __repr__(self) -> str:
        return f"parallelize({type(self.pipe).__name__}, {self.solve_kw})"


class _Run:
    """One call of the pipeline with the scheduler and denoiser intercepted."""

    def __init__(self, wrapper: ParallelPipeline, arguments: dict):
        self.w = wrapper
        self.pipe = wrapper.pipe
        self.arguments = arguments
        self.calls = []  # the denoiser calls of the first (only) loop iteration, as keyword dicts
        self.schedule = None  # set_timesteps' arguments
        self.full_timesteps = None
        self.result = None

    def installed(self):
        run = self
        scheduler, model = self.pipe.scheduler, self.w.model

        class _Installed:
            def __enter__(self):
                self.saved = {(obj, name): obj.__dict__.get(name, _MISSING)
                              for obj, name in ((scheduler, "set_timesteps"), (scheduler, "step"), (model, "forward"))}
                scheduler.set_timesteps = _wrap(scheduler, "set_timesteps", run.set_timesteps)
                scheduler.step = _wrap(scheduler, "step", run.step)
                model.forward = _wrap(model, "forward", run.forward)
                return self

            def __exit__(self, *exc):
                for (obj, name), value in self.saved.items():
                    if value is _MISSING:
                        obj.__dict__.pop(name, None)
                    else:
                        obj.__dict__[name] = value
                return False

        return _Installed()

    # -- the intercepted methods -------------------------------------------------------------
    def set_timesteps(self, original, *args, **kwargs):
        params = inspect.signature(original).bind(*args, **kwargs)
        params.apply_defaults()
        self.schedule = dict(params.arguments)
        original(*args, **kwargs)
        self.full_timesteps = self.pipe.scheduler.timesteps.clone()
        self.pipe.scheduler.timesteps = self.full_timesteps[:1]  # the pipeline's loop runs once

    def forward(self, original, *args, **kwargs):
        if self.result is not None or getattr(self, "solving", False):
            return original(*args, **kwargs)
        params = inspect.signature(original).bind(*args, **kwargs)
        params.apply_defaults()
        call = dict(params.arguments)
        first = next(iter(call))
        x = call[first]
        self.calls.append((first, call))
        out = torch.zeros_like(x)
        return (out,) if not call.get("return_dict", True) else _Output(out)

    def step(self, original, model_output, timestep, sample_, *args, **kwargs):
        if self.result is not None:
            raise RuntimeError("The pipeline stepped its scheduler more than once; parallelize cannot run it.")
        generator = kwargs.get("generator")
        self.result = self.solve(sample_, generator)
        out = self.result.x.to(sample_.dtype)
        if kwargs.get("return_dict", True):
            return _StepOutput(out)
        return (out,)

    # -- the solve ---------------------------------------------------------------------------
    def solve(self, latents, generator):
        pipe, scheduler = self.pipe, self.pipe.scheduler
        if self.schedule is None or not self.calls:
            raise RuntimeError(f"{type(pipe).__name__} did not set timesteps and call its denoiser before stepping.")
        _refuse_unsupported(pipe, self.schedule)
        sampler, cfg, prediction = sampler_for(scheduler)
        B = latents.shape[0]
        calls = [_Call(first, kw, B) for first, kw in self.calls]
        combine = self.combine_rule(calls, B)
        ac = None if sampler == "flow-euler" else scheduler.alphas_cumprod
        model = self.w.model
        flux = type(pipe).__name__ == "FluxPipeline"  # its transformer takes timestep / 1000
        steps = int(self.schedule.get("num_inference_steps") or len(self.schedule["sigmas"]))
        guide = self.skip_layer_guidance(calls, steps)

        def denoise(x, t, cond):
            outs = [c.run(model, x, t, cond[str(j)], flux) for j, c in enumerate(calls)]
            out = combine(outs)
            return out if guide is None else guide(x, t, cond["0"], outs[0], out)

        param = next(model.parameters())
        den = Denoiser(denoise, ac, prediction_type=prediction, config=cfg, conditional=True, device=latents.device,
                       dtype=param.dtype, name=f"{type(pipe).__name__} + {type(scheduler).__name__}", sampler=sampler)
        schedule = {k: self.schedule.get(k) for k in ("sigmas", "mu") if self.schedule.get(k) is not None}
        if not cfg.get("use_dynamic_shifting"):
            schedule.pop("mu", None)  # FluxPipeline passes mu to any scheduler; diffusers ignores it there
        self._check_timesteps(den, sampler, steps, schedule)
        state_dtype = torch.float32 if latents.dtype in (torch.float16, torch.bfloat16) else latents.dtype
        x_T = latents.to(state_dtype)
        noise, gen = self._noise(den, sampler, steps, schedule, x_T, generator)
        self.solving = True
        try:
            return sample(den, tuple(latents.shape), sampler=sampler, steps=steps, x_T=x_T, noise=noise,
                          generator=gen, cond={str(j): c.grouped for j, c in enumerate(calls)}, **schedule,
                          **self.w.solve_kw)
        finally:
            self.solving = False

    def combine_rule(self, calls, B):
        """The pipeline's guidance as a function of the denoiser outputs of its calls."""
        pipe = self.pipe
        if len(calls) == 2:  # Flux true CFG: positive call, then negative call
            scale = float(self.arguments.get("true_cfg_scale", 1.0))
            return lambda outs: outs[1][0] + scale * (outs[0][0] - outs[1][0])
        if len(calls) != 1:
            raise NotImplementedError(f"{type(pipe).__name__} made {len(calls)} denoiser calls per step; "
                                      f"parallelize supports one (or Flux's two with true CFG).")
        k = calls[0].k
        if k == 1:
            return lambda outs: outs[0][0]
        if k != 2:
            raise NotImplementedError(f"A denoiser batch of {k} x the latents is not supported (CFG doubles it).")
        scale = float(pipe.guidance_scale)
        rescale = float(getattr(pipe, "guidance_rescale", 0.0) or 0.0)

        def cfg(outs):
            u, c = outs[0]
            out = u + scale * (c - u)
            if rescale > 0:
                from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg
                out = rescale_noise_cfg(out, c, guidance_rescale=rescale)
            return out
        return cfg

    def skip_layer_guidance(self, calls, steps):
        """SD3's skip-layer guidance as ``guide(x, t, grouped, pair, out)`` (``pair``: the CFG call's
        ``(uncond, cond)`` outputs, ``out`` their guided combination; ``None`` when not asked
        for, or without classifier-free guidance, where diffusers skips it too): for rows whose
        step index ``i`` has ``steps * start < i < steps * stop``, one more denoiser call on the
        latents with the conditional embeddings and ``skip_layers``, and
        ``out + (cond - skipped) * skip_layer_guidance_scale`` (the pipeline's loop, row by row)."""
        args = self.arguments
        layers = args.get("skip_guidance_layers")
        if layers is None or len(calls) != 1 or calls[0].k != 2:
            return None
        scale = float(args["skip_layer_guidance_scale"])
        lo, hi = steps * float(args["skip_layer_guidance_start"]), steps * float(args["skip_layer_guidance_stop"])
        call, model, full = calls[0], self.w.model, self.full_timesteps.double()

        def guide(x, t, grouped, pair, out):
            index = (full.to(t.device)[None] - t.double()[:, None]).abs().argmin(1)  # the loop's i per row
            rows = torch.nonzero((index > lo) & (index < hi)).reshape(-1)
            if rows.numel() == 0:
                return out
            kw = _merge(_pick(grouped, rows, 1), call.static)  # the conditional half of the CFG batch
            skipped = model(**{call.first: x[rows], "timestep": t[rows], **kw, "return_dict": False,
                               "skip_layers": list(layers)})[0]
            return out.index_add(0, rows, (pair[1][rows] - skipped) * scale)
        return guide

    def _check_timesteps(self, den, sampler, steps, schedule):
        ts, _ = samplers.build(den, sampler, steps, **schedule)
        ours = torch.as_tensor(ts)
        if sampler == "heun":
            ours = torch.cat([ours[:1], ours[1:].repeat_interleave(2)])
        theirs = self.full_timesteps.cpu()
        if ours.shape != theirs.shape or not torch.equal(ours.to(theirs.dtype), theirs):
            raise NotImplementedError(f"{type(self.pipe.scheduler).__name__} set timesteps {theirs.tolist()[:6]}... "
                                      f"that the {sampler} sampler does not reproduce ({ours.tolist()[:6]}...); "
                                      f"this scheduler setting is not supported by parallelize.")

    def _noise(self, den, sampler, steps, schedule, x_T, generator):
        """The sampler's normals in diffusers' order; a list of generators (one per sample) as randn_tensor draws."""
        if not isinstance(generator, (list, tuple)):
            return None, generator
        ts, step = samplers.build(den, sampler, steps, **schedule)
        if not step.stochastic:
            return None, None
        zero = torch.zeros(x_T.shape[1:], dtype=x_T.dtype, device=x_T.device)
        rows = []
        for d in samplers.draws(sampler, ts, 0.0, step):
            rows.append(torch.stack([draw_noise(x_T.shape[1:], x_T.dtype, x_T.device, g) if d else zero
                                     for g in generator]))
        return torch.stack(rows), None


class _Call:
    """A recorded denoiser call: its batched keywords regrouped per latent row, and the rest as they were."""

    def __init__(self, first: str, kwargs: dict, B: int):
        x = kwargs[first]
        if x.shape[0] % B:
            raise NotImplementedError(f"The denoiser batch {x.shape[0]} is not a multiple of the {B} latents.")
        self.first, self.k = first, x.shape[0] // B
        rest = {k: v for k, v in kwargs.items() if k not in (first, "timestep", "return_dict")}
        self.grouped, self.static = _split(rest, x.shape[0], self.k, B)

    def run(self, model, x, t, grouped, flux):
        """The denoiser on rows ``x`` (m, ...): the call's batch layout (k copies), its keywords; outputs (k, m, ...)."""
        m = x.shape[0]
        xin = torch.cat([x] * self.k)
        tin = t.repeat(self.k)
        if flux:
            tin = tin.to(x.dtype) / 1000
        kw = _merge(_ungroup(grouped, self.k, m), self.static)
        out = model(**{self.first: xin, "timestep": tin, **kw, "return_dict": False})[0]
        return out.reshape(self.k, m, *out.shape[1:])


def _split(kw: dict, M: int, k: int, B: int):
    """``(grouped, static)``: tensors with the call's batch ``M = k B`` as ``(B, k, ...)``, the rest untouched."""
    grouped, static = {}, {}
    for key, v in kw.items():
        if isinstance(v, dict):
            g, s = _split(v, M, k, B)
            if g:
                grouped[key] = g
            static[key] = s
        elif isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == M and key not in _UNBATCHED:
            grouped[key] = v.reshape(k, B, *v.shape[1:]).transpose(0, 1)
        else:
            static[key] = v
    return grouped, static


def _ungroup(grouped: dict, k: int, m: int) -> dict:
    out = {}
    for key, v in grouped.items():
        out[key] = _ungroup(v, k, m) if isinstance(v, dict) else v.transpose(0, 1).reshape(k * m, *v.shape[2:])
    return out


def _pick(grouped: dict, rows: torch.Tensor, j: int) -> dict:
    """Rows ``rows`` of copy ``j`` of grouped keywords ``(m, k, ...)``."""
    return {key: _pick(v, rows, j) if isinstance(v, dict) else v[rows, j] for key, v in grouped.items()}


def _merge(batched: dict, static: dict) -> dict:
    out = dict(static)
    for key, v in batched.items():
        out[key] = _merge(v, static.get(key, {})) if isinstance(v, dict) else v
    return out


def _refuse_unsupported(pipe, schedule):
    if schedule.get("timesteps") is not None:
        raise NotImplementedError("Custom `timesteps` are not supported by parallelize; pass num_inference_steps "
                                  "(or sigmas for a flow scheduler).")
    if getattr(pipe, "_denoising_end", None) is not None:
        raise NotImplementedError("`denoising_end` (an ensemble of expert denoisers) is not supported by parallelize.")


_MISSING = object()


def _wrap(obj, name, handler):
    """``obj.name`` (an instance override such as an offload hook, else the class method) routed through
    ``handler(original, *args, **kwargs)``, keeping its signature (pipelines inspect it)."""
    original = obj.__dict__.get(name) or getattr(type(obj), name).__get__(obj)

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        return handler(original, *args, **kwargs)
    wrapped.__signature__ = inspect.signature(original)
    return wrapped


class _Output:
    """``model(..., return_dict=True)``-style output with ``.sample``."""

    def __init__(self, sample_):
        self.sample = sample_

    def __getitem__(self, i):
        return (self.sample,)[i]


class _StepOutput:
    def __init__(self, prev_sample):
        self.prev_sample = prev_sample

    def __getitem__(self, i):
        return (self.prev_sample,)[i]
