"""``sample``: run a diffusion sampler through the core solver, sequentially or in parallel."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from .. import _checks as checks
from .._api import solve
from .._checks import check_positive_int, check_real
from ..errors import ParasolveTypeError, ParasolveValueError
from ..costs import pays_on_grid
from ..drift import BatchedDrift
from ..schemes import Scheme
from ..sde import draw_noise
from ..solution import Solution, Stats
from . import samplers
from .denoiser import Denoiser
from .per_sample import solve_per_sample


@dataclass
class SampleOutput:
    """What :func:`sample` returns.

    ``x``: the samples, shape ``shape``; ``solution``: the core's :class:`~parasolve.Solution`
    (``ts`` are the model timesteps, then one point past the last for the clean sample);
    ``timesteps``: the model timesteps visited, largest first; ``x_T`` and ``noise``: the
    starting sample and the standard normals the sampler used (``noise`` is ``None`` for
    deterministic samplers), to reproduce the run.
    """

    x: torch.Tensor
    solution: Solution
    timesteps: torch.Tensor
    sampler: str
    x_T: torch.Tensor
    noise: torch.Tensor | None = None

    @property
    def converged(self) -> bool:
        return self.solution.converged

    @property
    def stats(self) -> Stats:
        return self.solution.stats


def sample(den: Denoiser, shape, *, sampler: str | None = None, steps: int = 1000, method="newton", window=64,
           tol=None, x_T=None, noise=None, generator=None, guidance_scale=None, cond=None, progress=False,
           eta: float = 0.0, uncond=None, max_iters=None, throw=True, options=None, evaluator=None,
           save="last", init=None, sigmas=None, mu=None, adjoint_params=None, adjoint_options=None,
           per_sample: bool = False, callback=None) -> SampleOutput:
    """Draw samples of shape ``shape`` (batch first) from ``den`` with ``sampler``.

    Args:
        den: a :class:`Denoiser` (``from_diffusers``, ``pretrained`` or ``exact_denoiser``).
        shape: ``(B, *sample_shape)``, e.g. ``(4, 1, 16, 16)``.
        sampler: ``"ddpm"``, ``"ddim"`` (with ``eta``), ``"dpmsolver++"`` (DPM-Solver++ 2M),
            ``"sde-dpmsolver++"``, ``"euler"``, ``"euler-ancestral"``, ``"heun"``, ``"unipc"`` or
            ``"flow-euler"``; each follows its diffusers scheduler step for step. Default:
            ``den.sampler``, the one matching the denoiser's own scheduler (``"ddpm"`` for the
            shipped models; ``"ddim"`` for ``from_diffusers(unet, DDIMScheduler(...))``).
        steps: sampling steps (at most the model's training steps), spread by ``timestep_spacing``.
        method: ``"auto"``: ``"newton"`` where the cost model predicts it faster than the
            sequential loop on this machine (one timed step against the window's timed batched
            call and the expected sweeps, docs/pays.md), else ``"sequential"``;
            ``"newton"`` (default: quasi-Newton sweeps over a window of steps, with the
            step's own linear part as its first Jacobian estimate; the fewest sweeps on every
            sampler measured, docs/benchmarks/paradigms-ddpm.md), ``"picard"`` (ParaDiGMS's
            iteration), ``"sequential"``, or any scheme of :func:`parasolve.solve`; all solve
            the same discrete problem.
        window: steps evaluated together per sweep (one batched model call of ``window * B``).
        tol: bound on ``max|x - x_sequential|`` of the returned samples: each step's defect
            ``max|x_{i+1} - x_i - Phi_i(x_i)|`` is weighted by how much the later steps amplify
            it (a Gaussian-data model of the sampler, when the denoiser's config declares
            ``data_std``; else weight 1 and the bound carries the chain's stability constant),
            and the weighted sum is kept within ``tol`` (docs/tolerance.md). Default by dtype:
            1e-3 for float32. The weights are a model's, so the bound holds up to its error: on
            the digits model gaps reached 1.4 x the weighted sum (DPM-Solver++-25, up to 1.4e-3
            at the default tol; DDIM-100 at most 4.4e-4; docs/tolerance.md).
        x_T: the starting sample, shape ``shape``, on the model's device (drawn if ``None``: standard
            normals times the scheduler's ``init_noise_sigma``, as the diffusers pipelines do). Its
            dtype is the samples'; 16-bit samples are solved with float32 states (every method),
            the model still running in 16 bits unless the denoiser has its own ``dtype``, and
            returned in 16 bits.
        sigmas, mu: a flow schedule's custom sigmas (one per step) and resolution shift (for
            ``use_dynamic_shifting``), as ``scheduler.set_timesteps(sigmas=, mu=)`` takes them.
        noise: the standard normals of a stochastic sampler, shape ``(steps, *shape)``: step ``j``
            adds ``sigma_j * noise[j]`` as the scheduler's ``step`` does with its own draw.
        generator: a ``torch.Generator`` for ``x_T`` and ``noise``, consumed in the order of
            diffusers' loop (``x_T`` first, then one draw per noisy step), so the same seed gives
            the same samples as the diffusers pipeline.
        guidance_scale: classifier-free guidance ``uncond + scale * (cond - uncond)``, one model
            call on the doubled batch; needs a conditional model and ``cond``.
        cond: the condition batch (labels, prompt embeddings, ...), leading dimension ``B`` or 1.
        uncond: the unconditional input for guidance (default: the denoiser's ``uncond``).
        eta: DDIM's noise weight (0: deterministic DDIM, 1: DDPM-like).
        progress: show a progress bar.
        max_iters, throw, options, evaluator, callback: as in :func:`parasolve.solve` (the
            observer; with ``per_sample``, of the first sample's solve, as ``progress``).
        save: ``"last"`` (default) keeps only the final sample; ``"all"`` the whole trajectory
            in ``solution.ys``.
        init: a warm start for the parallel methods: a guess of the whole trajectory on the
            solver's grid, shape ``(steps + 1, *shape)`` (row ``k`` the state before step ``k``,
            the last row the sample), e.g. ``solution.ys`` of an earlier run with ``save="all"``
            for a neighbouring seed or prompt. Row 0 is ignored (the start is ``x_T``). It only
            changes how fast the sweeps converge, not what they converge to.
        adjoint_params, adjoint_options: sampling runs without gradients unless ``x_T`` requires
            grad or ``adjoint_params`` is given (e.g. ``tuple(model.parameters())``); then, with
            grad mode on, ``x`` is differentiable w.r.t. ``x_T`` and those tensors by the discrete
            adjoint of the sampler (as in :func:`parasolve.solve`; docs/gradients.md).
        per_sample: solve each sample as its own problem, so no sample's window waits for the
            slowest sample's defects, while each round stays one batched model call over the
            samples still running (:mod:`parasolve.diffusion.per_sample`); ``stats.per_sample``
            then holds each sample's stats, and ``stats.nfe`` counts one-sample evaluations summed
            over the samples. It applies to the parallel methods with an integer ``window``, no
            ``evaluator`` and no gradients (a typed error otherwise); with ``method="sequential"``
            or one sample it changes nothing (``progress`` then shows the first sample's bar).
            Off by default: at the same ``tol`` it saved 10-16% of the model evaluations on the
            digits models, but each sample's gap to its sequential chain comes as close to
            ``tol`` as the joint solve lets only the worst sample come, and the sweeps may
            differ either way (docs/benchmarks/per-sample.md).
    """
    if not isinstance(den, Denoiser):
        raise TypeError(f"`den` must be a parasolve.diffusion.Denoiser (from from_diffusers(), pretrained() or "
                        f"exact_denoiser()); got {type(den).__name__}.")
    shape = _check_shape(shape)
    name = samplers.resolve_sampler(den.sampler if sampler is None else sampler)
    steps = _check_steps(steps, den)
    eta = _check_eta(eta, name)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator or None; got {type(generator).__name__}.")
    cond, uncond = den.conditions(cond, uncond, guidance_scale, shape[0])

    given = x_T.dtype if isinstance(x_T, torch.Tensor) else (den.dtype or torch.float32)
    dtype, den = _state_dtype(given, den)
    ts, step = samplers.build(den, name, steps, eta, dtype, sigmas=sigmas, mu=mu)
    x_T = _initial(x_T, shape, given, den.device, generator, step.init_noise_sigma)
    noise = _noise(noise, samplers.draws(name, ts, eta, step), step.stochastic, shape, given, den.device, generator,
                   name)
    x_T_given, noise_given = x_T, noise
    x_T, noise = x_T.to(dtype), None if noise is None else noise.to(dtype)
    step.prepare(dtype, den.device, noise)
    grid = _grid(ts, dtype)
    if init is not None:
        _check_tensor("init", init, (steps + 1, *shape), den.device, "(steps + 1, *shape)")
        if not init.is_floating_point():
            raise TypeError(f"`init` must be a floating tensor; got {init.dtype}.")
        init = init.to(dtype)
    scale = None if guidance_scale is None else float(guidance_scale)
    differentiable = x_T.requires_grad or adjoint_params is not None  # else inference, as in diffusers
    with torch.set_grad_enabled(torch.is_grad_enabled() and differentiable):
        if isinstance(method, str) and method == "auto":
            method = _auto_method(den.drift(shape, cond, uncond, scale, integer_timesteps=step.integer_timesteps),
                                  step, x_T, grid, window, options, evaluator)
        lanes = _per_sample(per_sample, shape[0], method, window, evaluator,
                            differentiable and torch.is_grad_enabled())
        if lanes:
            sol = solve_per_sample(den, step, x_T, grid, noise=noise, cond=cond, uncond=uncond, guidance_scale=scale,
                                   init=init, throw=throw, progress=progress, method=method, window=window, tol=tol,
                                   max_iters=max_iters, save=save, options=options, adjoint_params=(),
                                   callback=callback)
        else:
            drift = den.drift(shape, cond, uncond, scale, integer_timesteps=step.integer_timesteps)
            sol = solve(drift, x_T, grid, method=method, step=step, window=window, tol=tol, max_iters=max_iters,
                        vectorized=True, save=save, progress=progress, throw=throw, options=options,
                        evaluator=evaluator, init=init,
                        adjoint_params=() if adjoint_params is None else adjoint_params,
                        adjoint_options=adjoint_options, callback=callback)
    return SampleOutput(x=sol.y.to(given), solution=sol, timesteps=torch.from_numpy(ts), sampler=name,
                        x_T=x_T_given, noise=noise_given)


def _state_dtype(dtype: torch.dtype, den: Denoiser) -> tuple[torch.dtype, Denoiser]:
    """The solve's state dtype for samples of ``dtype``, and the denoiser to call.

    16-bit samples are solved with float32 states, the model still running in 16 bits (``den``
    with ``dtype`` set; as :func:`parallelize` does for 16-bit pipelines): a parallel solve needs
    defects that the state's dtype resolves, and 16 bits do not -- their floor, 8 ulps of the
    state per step, summed over the steps admits answers far from the sequential sample (a
    float16 DDPM-1000 with 16-bit states ended 1.3 from its sequential chain; docs/tolerance.md).
    The sequential method takes the same float32 recursion, so both solve one problem.
    """
    if dtype not in (torch.float16, torch.bfloat16):
        return dtype, den
    if den.dtype is None:
        den = copy.copy(den)
        den.dtype = dtype
    return torch.float32, den


def _auto_method(drift, step, x_T: torch.Tensor, grid: torch.Tensor, window, options, evaluator) -> str:
    """What ``method="auto"`` stands for: ``"newton"`` where the cost model
    (``parasolve.costs.pays_on_grid``) predicts its sweeps over ``window`` steps beat the
    sequential loop on this machine by its margin, else ``"sequential"``. With an ``evaluator``
    (devices, process groups) the parallel method without measuring, so every rank decides the same;
    with ``window="auto"`` Newton, its window chosen by the tuner (which times the parallel method)."""
    if evaluator is not None or isinstance(window, str):
        return "newton"
    n = grid.shape[0] - 1
    window = n if window is None else checks.check_positive_int("window", window)
    batched = BatchedDrift(drift, x_T.shape, x_T.dtype, x_T.device, vectorized=True, name="model")
    with torch.no_grad():
        pays = pays_on_grid(batched, step, grid, x_T.detach(), "newton", dict(options or {}), min(window, n))
    return "newton" if pays else "sequential"


def _per_sample(per_sample, batch: int, method, window, evaluator, differentiable: bool) -> bool:
    """Whether to solve sample by sample: ``per_sample`` checked against what it needs."""
    if not isinstance(per_sample, bool):
        raise TypeError(f"`per_sample` must be True or False; got {per_sample!r}.")
    scheme = isinstance(method, Scheme) or (isinstance(method, type) and issubclass(method, Scheme))
    sequential = method == "sequential" or (scheme and method.name == "sequential")
    if not per_sample or batch == 1 or sequential:  # one sample / a sequential solve: nothing to gain
        return False
    for hit, what, fix in ((evaluator is not None, "`evaluator` (it runs the joint solve's drift calls; "
                            "per-sample merges the model calls itself)", "evaluator=None"),
                           (isinstance(window, str), f"`window`={window!r} (its probes time the joint solve)",
                            "an integer window"),
                           (differentiable, "gradients (x_T requiring grad or `adjoint_params`)",
                            "x_T.detach() and adjoint_params=None")):
        if hit:
            raise ValueError(f"`per_sample`=True cannot be combined with {what}; pass per_sample=False, or {fix}.")
    return True


def _check_shape(shape) -> tuple:
    fix = "Give the batch shape as positive integers, batch first, e.g. (4, 1, 16, 16)."
    if not isinstance(shape, (tuple, list, torch.Size)):
        raise ParasolveTypeError(f"`shape` must be a tuple of positive integers; got {type(shape).__name__}. {fix}")
    if len(shape) == 0:
        raise ParasolveValueError(f"`shape` must hold at least the batch size; got (). {fix}")
    return tuple(check_positive_int(f"shape[{i}]", d, fix=fix) for i, d in enumerate(shape))


def _check_steps(steps, den) -> int:
    steps = check_positive_int("steps", steps, fix="Pass the number of sampling steps, e.g. steps=50.")
    if steps > den.num_train_timesteps:
        raise ValueError(f"`steps`={steps} is larger than the {den.num_train_timesteps} training steps of "
                         f"{den.name}; use steps <= {den.num_train_timesteps}.")
    return int(steps)


def _check_eta(eta, name) -> float:
    eta = check_real("eta", eta, low=0.0, fix="Use eta=0 (deterministic DDIM) up to eta=1 (DDPM's noise).")
    if eta and name != "ddim":
        raise ValueError(f"`eta`={eta} only applies to the 'ddim' sampler; got sampler {name!r}.")
    return float(eta)


def _initial(x_T, shape, dtype, device, generator, init_noise_sigma=1.0):
    if x_T is None:
        x_T = draw_noise(shape, dtype, device, generator)
        return x_T if init_noise_sigma == 1.0 else x_T * init_noise_sigma
    _check_tensor("x_T", x_T, shape, device, "shape")
    if not x_T.is_floating_point():
        raise TypeError(f"`x_T` must be a floating tensor; got {x_T.dtype}.")
    if not torch.isfinite(x_T).all():
        raise ValueError("`x_T` contains NaN or Inf; pass finite starting noise (or leave x_T=None to draw it).")
    return x_T


def _noise(noise, draws, stochastic, shape, dtype, device, generator, name):
    steps = len(draws)
    if not stochastic:
        if noise is not None:
            raise ValueError(f"`noise` was given but the {name} sampler is deterministic and would ignore it; "
                             f"drop `noise` (or use eta > 0 with 'ddim').")
        return None
    full = (steps, *shape)
    if noise is None:
        zero = torch.zeros(shape, dtype=dtype, device=device)
        return torch.stack([draw_noise(shape, dtype, device, generator) if d else zero for d in draws])
    _check_tensor("noise", noise, full, device, "(steps, *shape)")
    if not torch.isfinite(noise).all():
        raise ValueError("`noise` contains NaN or Inf.")
    return noise.to(dtype)


def _check_tensor(label, value, shape, device, what):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{label}` must be a torch.Tensor of shape {tuple(shape)}; got {type(value).__name__}.")
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"`{label}` must have shape {what} = {tuple(shape)}; got {tuple(value.shape)}.")
    if value.device != device:
        raise ValueError(f"`{label}` is on {value.device} but the model is on {device}; "
                         f"move it with {label}.to({str(device)!r}).")


def _grid(ts: np.ndarray, dtype) -> torch.Tensor:
    """Model timesteps plus an end point one gap past the last: the solver's (decreasing) grid."""
    gap = ts[-2] - ts[-1] if len(ts) > 1 else 1
    grid = np.append(ts, ts[-1] - gap).astype(np.float64)
    as_dtype = torch.from_numpy(grid).to(dtype)
    if not torch.equal(as_dtype.double(), torch.from_numpy(grid)):
        raise ValueError(f"The timesteps up to {int(ts.max())} are not exact in {dtype}; sample in float32 "
                         f"(pass x_T as float32) -- the model still runs in its own dtype.")
    return as_dtype
