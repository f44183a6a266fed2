"""The solve behind :func:`parasolve.solve` and :func:`parasolve.solve_sde` for a given window,
one straight line::

    validate once -> assemble an immutable Problem and its Scheme -> scheme.run(problem)
                  -> (gradients: the autograd node wraps that run) -> report

:func:`solve_checked` takes ``y0`` and ``t`` already validated (the public layer and the window
tuner validate them once); :func:`solve` validates them first. :func:`solve_discrete` starts
from a built drift and step map (``sdeint``), :func:`execute` from an assembled problem.
(``window="auto"`` is the public layer's: the tuner probes with :func:`solve_checked`.)
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext

import torch

from . import _checks as checks
from .adjoint import GradientRequest
from .costs import memory_window, pays_on_grid
from .drift import BatchedDrift
from .errors import NonFiniteError
from .observers import ProgressBar, check_callback, combine
from .discrete_problem import Problem
from .schemes import Scheme, resolve_scheme
from .schemes.choice import FULL_NEWTON_SIZE, auto_scheme
from .schemes.jacobians import independent_rows
from .sde import EulerMaruyama, check_noise, draw_noise
from .solution import Solution, report
from .steps import resolve_step


def solve(f, y0, t, **settings) -> Solution:
    """:func:`solve_checked` of a raw ``y0`` and ``t`` (validated here, once)."""
    y0 = checks.check_y0(y0)
    return solve_checked(f, y0, checks.check_grid(t, y0), **settings)


def solve_checked(f, y0: torch.Tensor, grid: torch.Tensor, *, g=None, noise=None, generator=None, method="auto",
                  step="euler", window=None, tol=None, max_iters=None, vectorized=False, save="all", progress=False,
                  throw=True, options=None, init=None, evaluator=None, adjoint_params=None, adjoint_options=None,
                  callback=None, cost_model=True) -> Solution:
    """``dy/dt = f(t, y)`` with the one-step map ``step``, or with ``g`` the SDE
    ``dy = f dt + g dW`` by Euler–Maruyama with the standard normals ``noise`` (drawn from
    ``generator`` if not given), for ``y0`` and ``grid`` that passed :func:`parasolve._checks.check_y0`
    and :func:`~parasolve._checks.check_grid`; arguments as in :func:`parasolve.solve`, ``window``
    an integer or ``None``. ``cost_model=False``: ``method="auto"`` picks among the parallel
    schemes only (the window tuner's probes, which time the parallel scheme itself)."""
    gradients = GradientRequest(adjoint_params, adjoint_options, (f,) if g is None else (f, g))
    checks.check_positive_int("window", window, none_ok=True)
    callback = check_callback(callback)
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
    with ProgressBar() if progress else nullcontext() as bar:
        return solve_discrete(drift, step_map, y0, grid, method=method, window=window, tol=tol, max_iters=max_iters,
                              save=save, throw=throw, options=options, init=init, gradients=gradients,
                              cost_model=cost_model and evaluator is None, observer=combine(bar, callback))


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


def solve_discrete(drift, step_map, y0, grid, *, method, window, tol, max_iters, save="all", throw=True,
                   options=None, init=None, gradients: GradientRequest, cost_model=True, observer=None) -> Solution:
    """The discrete problem of a built ``drift`` and ``step_map`` on the checked ``grid``: the
    settings checked, the scheme resolved (``"auto"``: by the cost model where ``cost_model``),
    the :class:`Problem` assembled, then :func:`execute`."""
    n = grid.shape[0] - 1
    options = checks.check_options(options)
    default_window = window is None
    window = n if default_window else checks.check_positive_int("window", window)
    if isinstance(method, str) and method == "auto":
        blocks = _blocks(drift, grid, y0, step_map, options)
        method, options = auto_scheme(y0, step_map.multistep, options, min(window, n), blocks)
        if cost_model and not pays_on_grid(drift, step_map, grid, y0, method, options, min(window, n)):
            resolve_scheme(method, options)  # the options are checked all the same
            method, options = "sequential", None
    scheme = resolve_scheme(method, options)
    if default_window:  # all steps, within the memory budget
        window = memory_window(n, y0, step_map.stages, scheme.points_per_step(y0))
    problem = Problem(
        drift=drift, step=step_map, t=grid, y0=y0,
        tol=checks.check_tol(tol, y0.dtype),
        window=window,
        max_iters=n if max_iters is None else checks.check_positive_int("max_iters", max_iters),
        save=checks.check_choice("save", save, {"all", "last"}),
        init=None if init is None else checks.check_init(init, y0, n),
        observer=observer)
    return execute(scheme, problem, gradients, throw)


def sweeps_probe(drift, step_map, y0, grid, method, options, tol):
    """A probe for the cost model (``parasolve.costs.pays_on_grid(probe=...)``): ``sweeps``
    sweeps of ``method`` with ``window`` on this problem, as ``(sweeps run, steps accepted,
    converged)``, nothing recorded for gradients. (``sdeint``'s ``"auto"`` uses it;
    ``solve(method="auto")`` prices the expected sweeps only.)"""
    @torch.no_grad()
    def probe(window, sweeps):
        sol = solve_discrete(drift, step_map, y0.detach(), grid, method=method, window=window, tol=tol,
                             max_iters=sweeps, save="last", throw=False, options=options,
                             gradients=GradientRequest((), None, ()), cost_model=False)
        return sol.stats.iterations, sum(rec.accepted for rec in sol.stats.history), sol.converged
    return probe


def execute(scheme: Scheme, problem: Problem, gradients: GradientRequest, throw: bool) -> Solution:
    """Run ``scheme`` on ``problem`` and report: where gradients are wanted, the run is of the
    node's problem (every state kept, no graph) and the node wraps its solution; with ``throw``
    a failure raises (:func:`parasolve.solution.report`), else a NaN/Inf failure returns the
    partial solution (status ``NON_FINITE``)."""
    n = problem.n_steps
    try:
        if gradients.wanted(problem):  # an autograd node whose backward solves the discrete adjoint
            node = gradients.node(problem)
            with torch.no_grad():
                sol = scheme.run(node.problem)
            return node.wrap(report(sol, throw, n))
        if not gradients.records():
            with torch.no_grad():
                return report(scheme.run(problem), throw, n)
        sol = scheme.run(problem)  # recording: the drift may close over tensors that require grad
        if not sol.ys.requires_grad:
            return report(sol, throw, n)
        node = gradients.node(problem, recorded=sol.ys)  # differentiate w.r.t. those instead
        if problem.save == "all":
            sol = dataclasses.replace(sol, ys=sol.ys.detach())
        else:  # the node needs every state
            with torch.no_grad():
                sol = scheme.run(node.problem)
        return node.wrap(report(sol, throw, n))
    except NonFiniteError as error:  # throw=False: the partial result, status NON_FINITE
        if throw or error.solution is None:
            raise
        return error.solution


def _blocks(drift, grid, y0, step_map, options) -> int:
    """Independent trajectories in the state's leading dimension, where knowing them changes
    ``"auto"``'s choice (a state too large for full Jacobians whose rows are small enough):
    :func:`~parasolve.schemes.jacobians.independent_rows`, one drift call of two points (not counted)."""
    if options or step_map.multistep or y0.dim() < 2 or y0.numel() <= FULL_NEWTON_SIZE \
            or y0[0].numel() > FULL_NEWTON_SIZE:
        return 1
    nfe, calls = drift.nfe, drift.calls
    independent = independent_rows(drift, grid, y0.detach())
    drift.nfe, drift.calls = nfe, calls
    return y0.shape[0] if independent else 1
