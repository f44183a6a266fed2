"""``sdeint`` and ``sdeint_adjoint``: torchsde's calls, solved parallel in time (docs/sde.md)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from .. import _checks as checks
from .._solve import solve_discrete, sweeps_probe
from ..costs import memory_window, pays_on_grid
from ..adjoint import GradientRequest
from ..drift import BatchedDrift
from ..solution import Solution
from . import brownian
from .adaptive import solve_adaptive
from .functions import NOISE_TYPES, SDE_TYPES, SDEFunctions, TimeBatched
from .methods import ReversibleHeun, default_method, select

#: The parallel scheme ``options["scheme"] = "auto"`` takes where the cost model says it pays.
PARALLEL = "picard"
#: ``options`` keys: parasolve's parallel settings, then torchsde's method options.
PARALLEL_OPTIONS = {"scheme", "scheme_options", "window", "tol", "max_iters", "evaluator"}
METHOD_OPTIONS = {"grad_free"}


@dataclass
class SDEStats:
    """What the final solve cost (not the probes of ``"auto"``, not earlier adaptive passes):
    ``sweeps`` (sequential depth: steps for the sequential scheme), ``drift_calls``/``nfe``
    (batched rounds and time points of ``f``), ``g_calls``/``g_nfe`` (of ``g`` and ``g_prod``),
    ``steps`` on the final grid, ``passes`` of the adaptive driver, and ``scheme``, the one used.
    ``auto``: for ``"auto"``, the cost model's record (:mod:`parasolve.costs`: ``pays``,
    ``reason``, ``verdict``, ``window``, ``step_s``, ``sequential_s``, ``sweeps``, ``probe``,
    ``rungs``, ``measure_s``, ...) of the final grid's choice; empty for a named scheme."""

    scheme: str = ""
    sweeps: int = 0
    drift_calls: int = 0
    nfe: int = 0
    g_calls: int = 0
    g_nfe: int = 0
    steps: int = 0
    passes: int = 1
    auto: dict = field(default_factory=dict)


@dataclass
class SDEResult:
    """``sdeint(..., full_output=True)``: the answer ``ys`` at ``ts`` (and ``log_ratio``/``extra``
    as requested), the step ``grid``, the parasolve ``solution`` on it and ``stats``."""

    ys: torch.Tensor
    grid: torch.Tensor
    solution: Solution
    stats: SDEStats
    method: str
    log_ratio: torch.Tensor | None = None
    extra: tuple = ()


def sdeint(sde, y0, ts, bm=None, method=None, dt=1e-3, adaptive=False, rtol=1e-5, atol=1e-4, dt_min=1e-5,
           options=None, names=None, logqp=False, extra=False, extra_solver_state=None, *, generator=None,
           full_output=False, **unknown):
    """Solve the SDE ``sde`` from ``y0`` and return the states at the times ``ts``.

    torchsde's signature and conventions: ``sde`` has ``f(t, y)`` and ``g(t, y)`` (or ``f_and_g``,
    ``g_prod``), ``noise_type`` (``"diagonal"``, ``"additive"``, ``"scalar"``, ``"general"``) and
    ``sde_type`` (``"ito"``, ``"stratonovich"``); ``y0`` has shape ``(batch, d)``; the answer has
    shape ``(len(ts), batch, d)``. ``method`` defaults as in torchsde (``"srk"`` for Itô, ``"euler"``
    for general Itô noise, ``"midpoint"`` for Stratonovich); ``bm`` is a torchsde Brownian motion
    (default: a ``BrownianInterval`` drawn as torchsde draws it, or from ``generator``). Steps of
    ``dt`` from ``ts[0]``, outputs interpolated linearly, as torchsde does; ``adaptive=True``
    refines the grid until step doubling on the same Brownian path passes ``rtol``/``atol``
    (docs/sde.md). ``logqp``/``extra``/``extra_solver_state``/``names`` as in torchsde.

    The Brownian increments of the whole grid are queried once, so each step is a deterministic
    map and the grid is solved by a parallel scheme: ``options`` holds ``scheme`` (``"auto"``,
    the default, picks ``"sequential"`` unless measurements say a parallel sweep pays, see
    docs/sde.md; or ``"picard"``, ``"newton"``, ...), ``scheme_options``, ``window``, ``tol``,
    ``max_iters``, ``evaluator``, and torchsde's method option ``grad_free`` (Milstein). With grad
    mode on the answer is differentiable w.r.t. ``y0`` and the SDE's parameters (an ``nn.Module``)
    by the discrete adjoint of this very solve. ``full_output=True`` returns an :class:`SDEResult`.
    """
    checks.check_unknown("sdeint", unknown, set())
    return _sdeint(sde, y0, ts, bm, method, dt, adaptive, rtol, atol, dt_min, options, names, logqp, extra,
                   extra_solver_state, generator, full_output, None, None)


def sdeint_adjoint(sde, y0, ts, bm=None, method=None, adjoint_method=None, dt=1e-3, adaptive=False,
                   adjoint_adaptive=False, rtol=1e-5, adjoint_rtol=1e-5, atol=1e-4, adjoint_atol=1e-4, dt_min=1e-5,
                   options=None, adjoint_options=None, adjoint_params=None, names=None, logqp=False, extra=False,
                   extra_solver_state=None, *, generator=None, full_output=False, **unknown):
    """:func:`sdeint` with torchsde's ``sdeint_adjoint`` signature. The gradient is the discrete
    adjoint of the forward solve's own grid and Brownian path -- exactly autograd's gradient
    through that discrete solution, solved parallel in time -- not torchsde's continuous adjoint
    (a second SDE solved backwards, which differs from it by the discretisation error, often a
    few per cent). So ``adjoint_method``, ``adjoint_adaptive``, ``adjoint_rtol`` and
    ``adjoint_atol`` have nothing to set and are ignored (a warning says so when given);
    ``adjoint_options`` are parasolve's (``parasolve.adjoint.ADJOINT_OPTIONS``); ``adjoint_params``
    default to ``sde.parameters()``."""
    checks.check_unknown("sdeint_adjoint", unknown, set())
    ignored = [k for k, v, d in (("adjoint_method", adjoint_method, None), ("adjoint_adaptive", adjoint_adaptive, False),
                                 ("adjoint_rtol", adjoint_rtol, 1e-5), ("adjoint_atol", adjoint_atol, 1e-4)) if v != d]
    if ignored:
        warnings.warn(f"sdeint_adjoint: {ignored} are ignored: parasolve's gradient is the discrete adjoint of the "
                      f"forward solve (no second SDE is solved).", UserWarning, stacklevel=2)
    if adjoint_params is None and not isinstance(sde, torch.nn.Module):
        raise TypeError("sdeint_adjoint: `sde` is not an nn.Module, so its parameters are unknown; pass "
                        "`adjoint_params=(...)` (adjoint_params=() for gradients w.r.t. y0 only).")
    params = tuple(sde.parameters()) if adjoint_params is None else adjoint_params
    return _sdeint(sde, y0, ts, bm, method, dt, adaptive, rtol, atol, dt_min, options, names, logqp, extra,
                   extra_solver_state, generator, full_output, params, adjoint_options)


def _sdeint(sde, y0, ts, bm, method, dt, adaptive, rtol, atol, dt_min, options, names, logqp, extra,
            extra_solver_state, generator, full_output, adjoint_params, adjoint_options):
    _check_sde(sde)
    y0, ts = _check_state(y0, ts)
    dt, rtol, atol, dt_min = (_positive(name, v, zero=name == "rtol") for name, v in
                              (("dt", dt, ), ("rtol", rtol), ("atol", atol), ("dt_min", dt_min)))
    parallel, method_options = _split_options(options)
    fns = SDEFunctions(sde, names, bool(logqp))
    state = torch.cat([y0, y0.new_zeros(y0.shape[0], 1)], 1) if logqp else y0
    noise = _probe(fns, state, ts, bm)
    method = default_method(fns.sde_type, fns.noise_type) if method is None else method
    levy = bm.levy_area_approximation if bm is not None else brownian.default_levy_area(method)
    cls = select(method, fns.sde_type, fns.noise_type, levy)
    if bm is None:
        bm = brownian.make_bm(ts, (y0.shape[0], noise), y0.dtype, y0.device, method, generator)
    elif generator is not None:
        raise ValueError("Pass either `bm` (the Brownian motion to use) or `generator` (to draw one), not both.")
    brownian.check_bm(bm, y0.shape[0], noise)

    base = getattr(fns.sde, "base", sde)
    gradients = GradientRequest(adjoint_params, adjoint_options, (base,))
    f = TimeBatched(fns.one_f, "f")
    drift = BatchedDrift(f, state.shape, state.dtype, state.device, vectorized=True, name="f",
                         evaluator=parallel.get("evaluator"))

    def solve_on(grid):
        incs = brownian.query(bm, grid, cls.needs_U)
        step = cls(fns, incs, method_options)
        x0 = _initial(step, fns, state, grid, extra_solver_state)
        scheme, window, auto = _choose_scheme(parallel, drift, step, x0, grid)
        g_before = fns.g_counts  # (the cost model's measuring is no part of the solve's counts)
        sol = solve_discrete(drift, step, x0, grid, method=scheme, window=window, tol=parallel.get("tol"),
                             max_iters=parallel.get("max_iters"), options=parallel.get("scheme_options"),
                             gradients=gradients, cost_model=False)  # (the scheme is chosen: no second cost model)
        auto["g_counts"] = tuple(after - before for after, before in zip(fns.g_counts, g_before))
        return step, sol, scheme, auto

    if adaptive:
        def full_steps(coarse, xs):
            step = cls(fns, brownian.query(bm, coarse, cls.needs_U), method_options)
            if isinstance(step, ReversibleHeun):
                step.pack(state, *_fg(fns, grid0, state))
            idx = torch.arange(coarse.shape[0] - 1, device=coarse.device)
            return xs + step.increments(drift, coarse, idx, xs).inc

        def y_part(x):
            return x[..., :state.shape[-1]]

        grid0 = ts[0]
        grid, (step, sol, scheme, auto), passes = solve_adaptive(solve_on, full_steps, y_part, ts, dt, rtol, atol,
                                                                 dt_min)
    else:
        grid = brownian.step_grid(ts, dt)
        (step, sol, scheme, auto), passes = solve_on(grid), 1
    xs = sol.ys
    extra_state = ()
    if isinstance(step, ReversibleHeun):
        y_part, z, fz, gz = step.unpack(xs)
        extra_state = (fz[-1], gz[-1], z[-1])
        xs = y_part
    ys = brownian.interpolate(grid, xs, ts)
    g_calls, g_nfe = auto.pop("g_counts")
    stats = SDEStats(scheme=scheme if isinstance(scheme, str) else type(scheme).__name__,
                     sweeps=sol.stats.iterations, drift_calls=sol.stats.drift_calls, nfe=sol.stats.nfe,
                     g_calls=g_calls, g_nfe=g_nfe, steps=grid.shape[0] - 1, passes=passes, auto=auto)
    log_ratio = None
    if logqp:
        ys, acc = ys[..., :-1], ys[..., -1]
        log_ratio = acc[1:] - acc[:-1]
    if full_output:
        return SDEResult(ys, grid, sol, stats, method, log_ratio, extra_state)
    out = (ys,) + ((log_ratio,) if logqp else ()) + ((extra_state,) if extra else ())
    return out[0] if len(out) == 1 else out


def _choose_scheme(parallel, drift, step, x0, grid):
    """``(scheme, window, record)``: ``options["scheme"]``, or for ``"auto"`` :data:`PARALLEL`
    where :func:`parasolve.costs.pays_on_grid` predicts it beats the sequential loop on this grid
    (its sweeps measured by a short Picard probe where the expected ones price it out), else
    ``"sequential"``; the window is ``options["window"]``, else the memory budget's."""
    scheme, window = parallel.get("scheme", "auto"), parallel.get("window")
    if not (isinstance(scheme, str) and scheme == "auto"):
        return scheme, window, {}
    n = grid.shape[0] - 1
    window = min(n, window or memory_window(n, x0, step.stages, 1))
    record = {}
    with torch.no_grad():
        pays = pays_on_grid(drift, step, grid, x0, PARALLEL, {}, window, record=record,
                            probe=sweeps_probe(drift, step, x0, grid, PARALLEL, parallel.get("scheme_options"),
                                               parallel.get("tol")))
    return (PARALLEL, window, record) if pays else ("sequential", None, record)


def _initial(step, fns, state, grid, extra_solver_state):
    """The solve's ``x_0``: the state, or for reversible Heun ``(y, z, f(z), g(z))`` (from
    ``extra_solver_state = (f, g, z)`` when given, as torchsde resumes)."""
    if not isinstance(step, ReversibleHeun):
        return state
    if extra_solver_state is not None:
        f0, g0, z0 = extra_solver_state
    else:
        (f0, g0), z0 = _fg(fns, grid[0], state), state
    x0 = step.pack(state, f0, g0)
    d = state.shape[-1]
    return torch.cat([x0[..., :d], z0, x0[..., 2 * d:]], -1)


def _fg(fns, t0, y):
    return fns.one_f(t0, y), fns.one_g(t0, y)


def _check_sde(sde):
    for attr, valid in (("noise_type", NOISE_TYPES), ("sde_type", SDE_TYPES)):
        if not hasattr(sde, attr):
            raise TypeError(f"`sde` has no attribute `{attr}`; set it to one of {list(valid)} (torchsde's convention).")
        checks.check_choice(f"sde.{attr}", getattr(sde, attr), valid, fix="torchsde's names.")


def _check_state(y0, ts):
    y0 = checks.check_y0(y0)
    if y0.is_complex():
        raise TypeError("`y0` must be real; torchsde's SDEs have real states.")
    if y0.dim() != 2:
        raise ValueError(f"`y0` must have shape (batch, d), torchsde's convention; got {tuple(y0.shape)}. "
                         f"Use y0[None] for a single path.")
    if isinstance(ts, torch.Tensor) and ts.requires_grad:
        raise ValueError("`ts` must not require grad: the Brownian path is fixed data of the solve.")
    ts = checks.check_grid(ts, y0)
    if not bool((ts[1:] > ts[:-1]).all()):
        raise ValueError("`ts` must be strictly increasing (torchsde's convention); for a reverse-time SDE "
                         "substitute s = -t in f and g.")
    return y0, ts


def _positive(name, value, zero=False):
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.requires_grad:
        value = float(value)
    return checks.check_real(name, value, low=0.0, open_low=not zero)


def _split_options(options):
    if options is None:
        return {}, {}
    if not isinstance(options, dict):
        raise TypeError(f"`options` must be a dict or None; got {type(options).__name__}.")
    bad = sorted(set(options) - PARALLEL_OPTIONS - METHOD_OPTIONS)
    if bad:
        raise TypeError(f"Unknown `options` {bad}; valid: parallel settings {sorted(PARALLEL_OPTIONS)} and "
                        f"method options {sorted(METHOD_OPTIONS)}.")
    parallel = {k: v for k, v in options.items() if k in PARALLEL_OPTIONS}
    if parallel.get("window") is not None:
        parallel["window"] = checks.check_positive_int("options['window']", parallel["window"])
    if parallel.get("max_iters") is not None:
        parallel["max_iters"] = checks.check_positive_int("options['max_iters']", parallel["max_iters"])
    return parallel, {k: v for k, v in options.items() if k in METHOD_OPTIONS}


def _probe(fns, state, ts, bm) -> int:
    """One call of ``f`` and ``g`` at ``(ts[0], y0)``, shapes checked as torchsde's
    ``check_contract`` does; returns the number of noise channels ``m``."""
    batch, d = state.shape
    with torch.no_grad():
        f = fns.one_f(ts[0], state)
        g = fns.one_g(ts[0], state) if fns.has_g else None
    if not isinstance(f, torch.Tensor) or tuple(f.shape) != (batch, d):
        raise ValueError(f"sde.f returned shape {tuple(getattr(f, 'shape', ()))} for y0 of shape {(batch, d)}; "
                         f"the drift must have y's shape.")
    if g is None:
        if bm is None:
            raise ValueError("With only `g_prod` the number of noise channels is unknown: pass `bm` of shape "
                             "(batch, m), or define `g`.")
        return int(bm.shape[1])
    want = "(batch, d)" if fns.noise_type == "diagonal" else "(batch, d, m)"
    ok = tuple(g.shape) == (batch, d) if fns.noise_type == "diagonal" else (
        g.dim() == 3 and tuple(g.shape[:2]) == (batch, d))
    if not ok:
        raise ValueError(f"sde.g returned shape {tuple(g.shape)}; {fns.noise_type} noise needs {want} with "
                         f"(batch, d) = {(batch, d)}.")
    m = d if fns.noise_type == "diagonal" else g.shape[2]
    if fns.noise_type == "scalar" and m != 1:
        raise ValueError(f"scalar noise needs g of shape (batch, d, 1); got {tuple(g.shape)}.")
    return m
