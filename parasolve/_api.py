"""``solve`` and ``solve_sde``: the public entry points, with ``window="auto"`` served by the tuner.

The solve itself (validation, assembly of the discrete problem, the scheme) is
:mod:`parasolve._solve`; the tuner (:mod:`parasolve.tuning`) probes with that one, so neither
imports this module.
"""

from __future__ import annotations


import torch

from . import _checks as checks
from . import _solve
from ._widen import narrow as _narrow, widen as _widen
from .errors import warn
from .solution import Solution
from .tuning import choose_window


def solve(f, y0, t, *, method="auto", step="euler", window=None, tol=None, max_iters=None,
          vectorized=False, save="all", progress=False, throw=True, options=None, init=None,
          evaluator=None, adjoint_params=None, adjoint_options=None, callback=None, **unknown) -> Solution:
    """Solve ``dy/dt = f(t, y)`` on the grid ``t`` as the discrete problem of ``step``.

    Args:
        f: drift ``f(t, y)`` (torchdiffeq convention); with ``vectorized=True`` it takes ``t`` of
            shape ``(n,)`` and ``y`` of shape ``(n, *y0.shape)``.
        y0: initial state, a floating tensor of any shape. A 16-bit ``y0`` (float16, bfloat16) is
            solved with float32 states, ``f`` still called in 16 bits (as ``diffusion.sample``
            does; 16 bits cannot resolve a step's defect); ``ys`` is returned in y0's dtype.
        t: 1-D grid, strictly increasing or strictly decreasing; the answer is given at every point.
        method: ``"auto"`` (default): ``"newton"`` with ``options={"jacobian": "full"}`` (every
            step's whole Jacobian, measured in the sweeps' own batched calls) for a real state of
            at most 16 components (per trajectory, for independent rows in the leading dimension),
            a one-step map and a window whose Jacobians take at most 2**24 numbers, else
            ``"picard"`` (docs/schemes.md) -- or ``"sequential"`` where the cost model predicts the
            parallel scheme would not pay (timed on the drift; without an ``evaluator``; docs/pays.md);
            ``"picard"``, ``"sequential"``, another registered name, or a ``Scheme``.
        step: one-step map (``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"``, ``"ab2"``) or a ``StepMap``.
        window: steps updated per sweep (default: all of them, fewer where their live memory would
            pass ``parasolve.costs.MEMORY_BUDGET``, 256 MiB); ``"auto"`` measures the drift's
            cost per batch size and short probe solves, and picks the fastest
            (:func:`parasolve.tuning.choose_window`). Live memory is O(window * y0.numel()).
        tol: accepted defects sum to at most ``tol``, so max|y - y_sequential| <= S * tol with S
            the discrete problem's stability constant (docs/tolerance.md). Default by dtype:
            1e-7 (float64), 1e-3 (float32), 1e-2 (16-bit).
        max_iters: sweep limit (default ``len(t) - 1``, which always suffices).
        save: ``"all"`` (every grid point) or ``"last"`` (only the end point).
        progress: show a tqdm bar (:class:`parasolve.observers.ProgressBar`, one observer).
        throw: raise :class:`ConvergenceError` when ``max_iters`` stops the solve and
            :class:`NonFiniteError` when the drift produces NaN or Inf; with ``False`` return the
            partial solution instead (``converged=False``, ``status`` ``MAX_ITERS`` or ``NON_FINITE``).
        options: scheme-specific settings, passed to the scheme's constructor.
        init: initial guess of the whole trajectory, shape ``(len(t), *y0.shape)`` (a warm start,
            e.g. a coarse solve or a neighbouring trajectory); default: every point at ``y0``.
        evaluator: how a batch of drift calls is run: ``evaluator(fn, t, y) -> fn(t, y)``
            (default: one call on y0's device).
        adjoint_params: with grad mode on, the result is differentiable w.r.t. ``y0``, ``t`` and
            these tensors (default: the parameters of ``f`` if it is an ``nn.Module``) by the
            discrete adjoint, solved parallel in time (docs/gradients.md); ``sol.backward``
            holds its cost after ``backward()``.
        adjoint_options: settings of that backward solve (``parasolve.adjoint.ADJOINT_OPTIONS``):
            ``method`` (``"auto"``, ``"picard"``, ``"scan"``), ``tol``, ``window``, ``max_iters``,
            ``checkpoint`` (keep every k-th state, recompute the rest), ``max_dense``.
        callback: an observer, ``callback(info)`` after every sweep (every step of the sequential
            loop, every parareal iteration) with a :class:`parasolve.observers.SweepInfo`: the
            sweep's window, residual and advance, and the defects and allowances the stop rule
            compared. It only watches; what it returns is ignored.
    """
    checks.check_unknown("solve", unknown, _SOLVE_KEYWORDS)
    _check_not_a_step(method)
    y0 = checks.check_y0(y0)
    given = y0.dtype
    if isinstance(step, str):  # (a StepMap object may be built for y0's dtype: it is left to it)
        (f,), y0, init, tol = _widen(given, (f,), y0, t, init, tol)
    grid = checks.check_grid(t, y0)
    tuned = window == "auto"
    window, method = _auto_window(window, method, f, y0, grid, step=step, tol=tol, vectorized=vectorized,
                                  options=options, init=init, evaluator=evaluator)
    sol = _solve.solve_checked(f, y0, grid, method=method, step=step, window=window, tol=tol, max_iters=max_iters,
                               vectorized=vectorized, save=save, progress=progress, throw=throw, options=options,
                               init=init, evaluator=evaluator, adjoint_params=adjoint_params,
                               adjoint_options=adjoint_options, callback=callback, cost_model=not tuned)
    if isinstance(step, str) and save == "all" and sol.converged:  # (an unfinished iterate is no answer)
        _warn_if_coarse(sol)
    return _narrow(sol, given)


def _check_not_a_step(method) -> None:
    """``method="rk4"`` and friends name a discretisation, not a scheme: say where they go."""
    from .schemes import SCHEMES
    from .steps import STEPS
    if isinstance(method, str) and method not in SCHEMES and method in STEPS:
        raise ValueError(f"Unknown `method` {method!r}: solve's `method` is the parallel scheme "
                         f"({sorted(SCHEMES)}). Did you mean step={method!r} (the discrete problem on "
                         f"the grid t) or parasolve.odeint(f, y0, t, method={method!r}) (the ODE's "
                         f"solution to rtol/atol, torchdiffeq's names)?")



def _warn_if_coarse(sol) -> None:
    """Warn when the answer looks like a grid far coarser than the drift's time scale: a single
    step that moves the state by more than ten times its initial size, or consecutive increments that turn
    back on themselves (an explicit step beyond its stability limit, an aliased oscillation) while
    moving the state by more than a tenth of its size: by more than 1.5 times the larger of the two,
    or reversing while they grow (the sawtooth of an unstable explicit step, e.g. Euler with
    h * 50 = 5 on y' = -50 y, whose increments grow 4x per step and turn by only 1.25x)."""
    flat = sol.ys.detach().reshape(sol.ys.shape[0], -1)
    inc = flat[1:] - flat[:-1]
    size = float(flat.abs().max())
    step = inc.abs().amax(1)
    if inc.shape[0] == 1:
        bad = float(step[0]) > 10 * float(flat[0].abs().max()) > 0
        where = 0
    else:
        turn = (inc[1:] - inc[:-1]).abs().amax(1) / torch.maximum(step[1:], step[:-1]).clamp(min=1e-300)
        big = torch.maximum(step[1:], step[:-1]) > 0.1 * size
        reverses = (inc[1:] * inc[:-1].conj()).real.sum(1) < 0
        growing = reverses & (step[1:] > 1.5 * step[:-1])
        hits = torch.nonzero(((turn > 1.5) | growing) & big).reshape(-1)
        bad, where = len(hits) > 0, int(hits[0]) if len(hits) else 0
    if bad:
        warn(f"parasolve.solve: near step {where} (t={float(sol.ts[where]):.4g}) the grid t looks far "
                      f"coarser than the drift's time scale (a step moves the state by "
                      f"{float(step[where]):.3g} at state size {size:.3g}). solve() returns the discrete "
                      f"problem's answer on exactly this grid; for the ODE's solution to a tolerance use "
                      f"parasolve.odeint(f, y0, t, rtol=..., atol=...).")


def solve_sde(f, g, y0, t, *, noise=None, generator=None, method="auto", step="euler", window=None,
              tol=None, max_iters=None, vectorized=False, save="all", progress=False, throw=True,
              options=None, init=None, evaluator=None, adjoint_params=None, adjoint_options=None,
              callback=None, **unknown) -> Solution:
    """Solve ``dy = f(t, y) dt + g(t, y) dW`` (diagonal noise) by Euler–Maruyama, noise drawn up front.

    ``noise``: standard normals of shape ``(len(t) - 1, *y0.shape)``; step ``i`` adds
    ``g(t_i, y_i) * sqrt|h_i| * noise[i]``. Without it, they are drawn from ``generator``
    (or torch's global generator). ``g`` returns the state's shape (or a shape that broadcasts
    to it). Other arguments as in :func:`solve`; the result equals the sequential
    Euler–Maruyama path with the same noise, up to the ``tol`` guarantee; its gradient (default
    ``adjoint_params``: the parameters of ``f`` and ``g`` that are ``nn.Module`` s) is the pathwise
    gradient for that fixed noise.
    """
    checks.check_unknown("solve_sde", unknown, _SOLVE_KEYWORDS | {"noise", "generator"})
    y0 = checks.check_y0(y0)
    given = y0.dtype
    (f, g), y0, init, tol = _widen(given, (f, g), y0, t, init, tol)
    if isinstance(noise, torch.Tensor) and noise.dtype == given and y0.dtype != given:
        noise = noise.to(y0.dtype)
    grid = checks.check_grid(t, y0)
    checks.check_choice("step", step, {"euler"})
    noise = _solve.sde_noise(y0, grid, noise, generator)  # drawn once: the probes of "auto" share it
    tuned = window == "auto"
    window, method = _auto_window(window, method, f, y0, grid, g=g, noise=noise, tol=tol, vectorized=vectorized,
                                  options=options, init=init, evaluator=evaluator)
    return _narrow(_solve.solve_checked(f, y0, grid, g=g, noise=noise, method=method, step=step, window=window,
                                        tol=tol, max_iters=max_iters, vectorized=vectorized, save=save,
                                        progress=progress, throw=throw, options=options, init=init,
                                        evaluator=evaluator, adjoint_params=adjoint_params,
                                        adjoint_options=adjoint_options, callback=callback, cost_model=not tuned),
                   given)


_SOLVE_KEYWORDS = {"method", "step", "window", "tol", "max_iters", "vectorized", "save", "progress",
                   "throw", "options", "init", "evaluator", "adjoint_params", "adjoint_options", "callback"}


def _auto_window(window, method, f, y0, grid, **kwargs):
    """``window="auto"``: measure the drift's cost curve and pick the fastest window; with
    ``method="auto"``, the sequential loop where no window is estimated to beat it."""
    if not isinstance(window, str):
        return window, method
    if window != "auto":
        raise ValueError(f"`window` must be a positive integer, None or 'auto'; got {window!r}.")
    choice = choose_window(f, y0, grid, method=method, **kwargs)
    if isinstance(method, str) and method == "auto" and choice.speedup < 1:
        return 1, "sequential"
    return choice.window, method
