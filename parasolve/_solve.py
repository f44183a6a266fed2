"""The solve behind :func:`parasolve.solve` and :func:`parasolve.solve_sde` for a given window:
validate, assemble the discrete problem, hand it to a scheme. (``window="auto"`` is the public
layer's: the tuner probes with this function.)"""

from __future__ import annotations

import torch

from . import _checks as checks
from .adjoint import GradientRequest
from .drift import BatchedDrift
from .errors import ConvergenceError, NonFiniteError
from .problem import Problem
from .schemes import resolve_scheme
from .schemes.jacobians import auto_scheme
from .sde import EulerMaruyama, check_noise, draw_noise
from .solution import Solution
from .steps import resolve_step


def solve(f, y0, t, *, g=None, noise=None, generator=None, method="auto", step="euler", window=None,
          tol=None, max_iters=None, vectorized=False, save="all", progress=False, throw=True, options=None,
          init=None, evaluator=None, adjoint_params=None, adjoint_options=None) -> Solution:
    """``dy/dt = f(t, y)`` with the one-step map ``step``, or with ``g`` the SDE
    ``dy = f dt + g dW`` by Euler–Maruyama with the standard normals ``noise`` (drawn from
    ``generator`` if not given); arguments as in :func:`parasolve.solve`, ``window`` an integer
    or ``None``."""
    gradients = GradientRequest(adjoint_params, adjoint_options, (f,) if g is None else (f, g))
    y0 = checks.check_y0(y0)
    grid = checks.check_grid(t, y0)
    if isinstance(window, str):
        raise ValueError(f"`window` must be a positive integer or None here; got {window!r}.")
    drift = BatchedDrift(f, y0.shape, y0.dtype, y0.device, vectorized=vectorized, name="f",
                         evaluator=evaluator)
    if g is None:
        step_map = resolve_step(step)
    else:
        checks.check_choice("step", step, {"euler"})
        diffusion = BatchedDrift(g, y0.shape, y0.dtype, y0.device, vectorized=vectorized, name="g",
                                 broadcast=True, evaluator=evaluator)
        step_map = EulerMaruyama(diffusion, sde_noise(y0, grid, noise, generator))
        if step_map.noise.requires_grad and torch.is_grad_enabled():
            raise ValueError("Gradients w.r.t. `noise` are not supported (the noise is fixed data of the "
                             "path); pass noise.detach().")
    return _run(drift, step_map, y0, grid, method, window, tol, max_iters, save, progress, throw, options, init,
                gradients)


def sde_noise(y0: torch.Tensor, grid: torch.Tensor, noise, generator) -> torch.Tensor:
    """The standard normals of an SDE solve, ``(len(t) - 1, *y0.shape)``: ``noise`` checked, or
    drawn from ``generator`` (torch's global one if ``None``)."""
    if noise is not None and generator is not None:
        raise ValueError("Pass either `noise` (the standard normals to use) or `generator` (to draw them), "
                         "not both: with `noise` given, `generator` would be ignored.")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator; got {type(generator).__name__}.")
    shape = (grid.shape[0] - 1, *y0.shape)
    if noise is None:
        return draw_noise(shape, y0.dtype, y0.device, generator)
    return check_noise(noise, shape, y0.dtype, y0.device)


def _run(drift, step_map, y0, grid, method, window, tol, max_iters, save, progress, throw, options,
         init, gradients):
    n = grid.shape[0] - 1
    options = checks.check_options(options)
    window = n if window is None else checks.check_positive_int("window", window)
    if isinstance(method, str) and method == "auto":
        method, options = auto_scheme(y0, step_map.multistep, options, min(window, n))
    scheme = resolve_scheme(method, options)
    problem = Problem(
        drift=drift, step=step_map, t=grid, y0=y0,
        tol=checks.check_tol(tol, y0.dtype),
        window=window,
        max_iters=n if max_iters is None else checks.check_positive_int("max_iters", max_iters),
        save=checks.check_choice("save", save, {"all", "last"}),
        progress=bool(progress),
        init=None if init is None else checks.check_init(init, y0, n))

    def finish(sol):
        return checked(sol, throw, n)

    try:
        if gradients.wanted(problem):  # an autograd node whose backward solves the discrete adjoint
            return gradients.run(scheme, problem, finish)
        return gradients.run_plain(scheme, problem, finish)
    except NonFiniteError as error:  # throw=False: the partial result, status NON_FINITE
        if throw or error.solution is None:
            raise
        return error.solution


def checked(sol: Solution, throw: bool, n: int) -> Solution:
    """``sol``, or with ``throw`` a :class:`ConvergenceError` if it did not converge (``n`` steps)
    (its :class:`NonFiniteError` if the drift produced NaN or Inf)."""
    if throw and sol.failure is not None:
        raise sol.failure
    if throw and not sol.converged:
        raise ConvergenceError(f"{sol.method}: {sol.message} (stopped after {sol.stats.iterations} "
                               f"sweeps with {n} steps)", solution=sol)
    return sol
