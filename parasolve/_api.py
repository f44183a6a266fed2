"""``solve`` and ``solve_sde``: validate, assemble the discrete problem, hand it to a scheme."""

from __future__ import annotations

import torch

from . import _checks as checks
from .drift import BatchedDrift
from .errors import ConvergenceError
from .problem import Problem
from .schemes import resolve_scheme
from .sde import EulerMaruyama, check_noise, draw_noise
from .solution import Solution
from .steps import resolve_step


def solve(f, y0, t, *, method="picard", step="euler", window=None, tol=None, max_iters=None,
          vectorized=False, save="all", progress=False, throw=True, options=None, init=None,
          evaluator=None, **unknown) -> Solution:
    """Solve ``dy/dt = f(t, y)`` on the grid ``t`` as the discrete problem of ``step``.

    Args:
        f: drift ``f(t, y)`` (torchdiffeq convention); with ``vectorized=True`` it takes ``t`` of
            shape ``(n,)`` and ``y`` of shape ``(n, *y0.shape)``.
        y0: initial state, a floating tensor of any shape.
        t: 1-D grid, strictly increasing or strictly decreasing; the answer is given at every point.
        method: ``"picard"``, ``"sequential"``, another registered name, or a ``Scheme``.
        step: one-step map (``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"``, ``"ab2"``) or a ``StepMap``.
        window: steps updated per sweep (default: all of them); ``"auto"`` measures the drift's
            cost per batch size and short probe solves, and picks the fastest
            (:func:`parasolve.evaluators.choose_window`). Live memory is O(window * y0.numel()).
        tol: accepted defects sum to at most ``tol``, so max|y - y_sequential| <= S * tol with S
            the discrete problem's stability constant (docs/tolerance.md). Default by dtype:
            1e-7 (float64), 1e-3 (float32), 1e-2 (16-bit).
        max_iters: sweep limit (default ``len(t) - 1``, which always suffices).
        save: ``"all"`` (every grid point) or ``"last"`` (only the end point).
        progress: show a tqdm bar.
        throw: raise :class:`ConvergenceError` when ``max_iters`` stops the solve; with
            ``False`` return the partial solution with ``converged=False``.
        options: scheme-specific settings, passed to the scheme's constructor.
        init: initial guess of the whole trajectory, shape ``(len(t), *y0.shape)`` (a warm start,
            e.g. a coarse solve or a neighbouring trajectory); default: every point at ``y0``.
        evaluator: how a batch of drift calls is run: ``evaluator(fn, t, y) -> fn(t, y)``
            (default: one call on y0's device).
    """
    checks.check_unknown("solve", unknown, _SOLVE_KEYWORDS)
    y0 = checks.check_y0(y0)
    grid = checks.check_grid(t, y0)
    window = _auto_window(window, f, y0, grid, step=step, tol=tol, vectorized=vectorized, method=method,
                          options=options, init=init, evaluator=evaluator)
    drift = BatchedDrift(f, y0.shape, y0.dtype, y0.device, vectorized=vectorized, name="f",
                         evaluator=evaluator)
    return _run(drift, resolve_step(step), y0, grid, method, window, tol, max_iters, save,
                progress, throw, options, init)


def solve_sde(f, g, y0, t, *, noise=None, generator=None, method="picard", step="euler", window=None,
              tol=None, max_iters=None, vectorized=False, save="all", progress=False, throw=True,
              options=None, init=None, evaluator=None, **unknown) -> Solution:
    """Solve ``dy = f(t, y) dt + g(t, y) dW`` (diagonal noise) by Euler–Maruyama, noise drawn up front.

    ``noise``: standard normals of shape ``(len(t) - 1, *y0.shape)``; step ``i`` adds
    ``g(t_i, y_i) * sqrt|h_i| * noise[i]``. Without it, they are drawn from ``generator``
    (or torch's global generator). ``g`` returns the state's shape (or a shape that broadcasts
    to it). Other arguments as in :func:`solve`; the result equals the sequential
    Euler–Maruyama path with the same noise, up to the ``tol`` guarantee.
    """
    checks.check_unknown("solve_sde", unknown, _SOLVE_KEYWORDS | {"noise", "generator"})
    y0 = checks.check_y0(y0)
    grid = checks.check_grid(t, y0)
    checks.check_choice("step", step, {"euler"})
    if noise is not None and generator is not None:
        raise ValueError("Pass either `noise` (the standard normals to use) or `generator` (to draw them), "
                         "not both: with `noise` given, `generator` would be ignored.")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator; got {type(generator).__name__}.")
    shape = (grid.shape[0] - 1, *y0.shape)
    if noise is None:
        noise = draw_noise(shape, y0.dtype, y0.device, generator)
    else:
        noise = check_noise(noise, shape, y0.dtype, y0.device)
    window = _auto_window(window, f, y0, grid, g=g, noise=noise, tol=tol, vectorized=vectorized,
                          method=method, options=options, init=init, evaluator=evaluator)
    drift = BatchedDrift(f, y0.shape, y0.dtype, y0.device, vectorized=vectorized, name="f",
                         evaluator=evaluator)
    diffusion = BatchedDrift(g, y0.shape, y0.dtype, y0.device, vectorized=vectorized, name="g",
                             broadcast=True, evaluator=evaluator)
    return _run(drift, EulerMaruyama(diffusion, noise), y0, grid, method, window, tol, max_iters,
                save, progress, throw, options, init)


_SOLVE_KEYWORDS = {"method", "step", "window", "tol", "max_iters", "vectorized", "save", "progress",
                   "throw", "options", "init", "evaluator"}


def _auto_window(window, f, y0, grid, **kwargs):
    """``window="auto"``: measure the drift's cost curve and pick the fastest window."""
    if not isinstance(window, str):
        return window
    if window != "auto":
        raise ValueError(f"`window` must be a positive integer, None or 'auto'; got {window!r}.")
    from .evaluators.window import choose_window
    return choose_window(f, y0, grid, **kwargs).window


def _run(drift, step_map, y0, grid, method, window, tol, max_iters, save, progress, throw, options,
         init):
    n = grid.shape[0] - 1
    scheme = resolve_scheme(method, checks.check_options(options))
    problem = Problem(
        drift=drift, step=step_map, t=grid, y0=y0,
        tol=checks.check_tol(tol, y0.dtype),
        window=n if window is None else checks.check_positive_int("window", window),
        max_iters=n if max_iters is None else checks.check_positive_int("max_iters", max_iters),
        save=checks.check_choice("save", save, {"all", "last"}),
        progress=bool(progress),
        init=None if init is None else checks.check_init(init, y0, n))
    sol = scheme.run(problem)
    if throw and not sol.converged:
        raise ConvergenceError(f"{scheme.name}: {sol.message} (stopped after {sol.stats.iterations} "
                               f"sweeps with {n} steps)", solution=sol)
    return sol
