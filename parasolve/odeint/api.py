"""``odeint``: torchdiffeq's call, the ODE's solution to ``rtol``/``atol``, solved parallel in time."""

from __future__ import annotations

import numbers

import torch

from .. import _checks as checks
from .._api import solve
from ..drift import BatchedDrift, local_evaluator
from ..schemes import SCHEMES
from ..schemes.jacobians import auto_scheme
from . import grids
from .adaptive import CountingEvaluator, Settings, first_tol, min_scale, solve_adaptive
from .result import OdeintResult, OdeintStats, PassRecord
from .tableaus import EMBEDDED
from .stiff import STIFF, STIFF_OPTIONS, StiffSettings, is_stiff, solve_stiff

#: torchdiffeq's fixed-step names -> parasolve step maps (torchdiffeq's ``rk4`` is the 3/8 rule).
FIXED = {"euler": "euler", "midpoint": "midpoint", "heun2": "heun", "heun3": "heun3", "rk4": "rk38"}
METHODS = sorted(EMBEDDED) + sorted(FIXED) + sorted(STIFF) + ["auto"]

_PARALLEL = {"scheme", "scheme_options", "window", "tol", "vectorized", "evaluator", "defect_fraction", "ratio_guess"}
_ADAPTIVE = {"first_step", "safety", "ifactor", "dfactor", "max_passes", "max_num_steps", "coarsen", "initial_steps"}
_FIXED = {"step_size", "grid_points", "grid_constructor", "interp"}
_HINTS = {"heun": "heun2", "ab2": None, "rk38": "rk4", "dopri8": None, "fehlberg2": None,
          "explicit_adams": None, "implicit_adams": None, "fixed_adams": None, "scipy_solver": None}


def odeint(func, y0, t, rtol=1e-7, atol=1e-9, method="dopri5", options=None, *, full_output=False,
           **unknown):
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0``, and return ``y`` at the times ``t``.

    torchdiffeq's signature and meaning: ``t`` holds the output times (increasing or decreasing,
    ``t[0]`` the initial time); the result has shape ``(len(t), *y0.shape)``; an adaptive
    ``method`` (``"dopri5"``, ``"bosh3"``, ``"adaptive_heun"``) keeps every step's embedded error
    estimate within ``rtol``/``atol`` in torchdiffeq's norm, ``RMS(err / (atol + rtol *
    max(|y0|, |y1|)))``; the fixed-step methods (``"euler"``, ``"midpoint"``, ``"heun2"``,
    ``"heun3"``, ``"rk4"`` = the 3/8 rule) step on ``t``, ``options["step_size"]`` or
    ``options["grid_points"]``. The stiff methods ``"radau"`` (Radau IIA, order 5, as scipy's)
    and ``"sdirk4"`` (L-stable SDIRK, order 4) keep scipy's error test, each pass solved by one
    Newton iteration over every step's stage equations (docs/stiff.md; options ``newton_tol``,
    ``max_newton``, ``first_step``, ``initial_steps``, ``max_passes``, ...); ``"auto"`` takes
    ``"radau"`` where the drift is stiff at ``t[0]`` (:func:`parasolve.odeint.stiff.is_stiff`),
    else ``"dopri5"``. Unlike torchdiffeq, the grid is solved parallel in time by
    parasolve's fixed-point schemes (docs/odeint.md), the adaptive grid refined between solves.

    Args:
        func: drift ``func(t, y)``; batched with vmap unless ``options["vectorized"]``.
        y0: initial state, a floating tensor of any shape.
        t: output times, a 1-D strictly monotone tensor (or sequence).
        rtol, atol: relative and absolute tolerances (numbers or tensors broadcasting to y0).
        method: see above.
        options: torchdiffeq's options (``first_step``, ``safety``, ``ifactor``, ``dfactor``;
            ``step_size``, ``grid_points``, ``grid_constructor``, ``interp``) and parasolve's
            (``scheme``, ``scheme_options``, ``window``, ``tol``, ``defect_fraction``,
            ``max_passes``, ``max_num_steps``, ``vectorized``, ``evaluator``).
        full_output: return an :class:`OdeintResult` (answer, final grid, stats) instead of the tensor.

    With grad mode on, the answer is differentiable w.r.t. ``y0``, ``t`` and the parameters of an
    ``nn.Module`` ``func`` by the discrete adjoint of the final grid's solve (docs/gradients.md), as
    with :func:`odeint_adjoint`; no graph of the sweeps is kept.
    """
    return _odeint(func, y0, t, rtol, atol, method, options, full_output, unknown, "odeint", _module_params(func))


def odeint_adjoint(func, y0, t, rtol=1e-7, atol=1e-9, method="dopri5", options=None, *,
                   adjoint_params=None, full_output=False, **unknown):
    """:func:`odeint` with torchdiffeq's ``odeint_adjoint`` signature: ``adjoint_params`` (the
    tensors to differentiate, default ``func.parameters()`` for a module) are forwarded to
    ``parasolve.solve(..., adjoint_params=...)`` on every solve, whose gradients the answer carries."""
    extra = _module_params(func) if adjoint_params is None else {"adjoint_params": tuple(adjoint_params)}
    return _odeint(func, y0, t, rtol, atol, method, options, full_output, unknown, "odeint_adjoint", extra)


def _module_params(func) -> dict:
    """``solve``'s ``adjoint_params`` for ``func``: its parameters if it is an ``nn.Module`` (the
    solve only sees the batched wrapper around it)."""
    return {"adjoint_params": tuple(func.parameters())} if isinstance(func, torch.nn.Module) else {}


def _odeint(func, y0, t, rtol, atol, method, options, full_output, unknown, name, extra):
    checks.check_unknown(name, unknown, {"rtol", "atol", "method", "options", "full_output"}
                         | ({"adjoint_params"} if name == "odeint_adjoint" else set()))
    if isinstance(y0, tuple):
        raise TypeError(f"{name}: tuple states are not supported; pass one tensor (torch.cat the "
                        f"flattened parts and split them inside func).")
    y0 = checks.check_y0(y0)
    t = checks.check_grid(t, y0)
    method = _check_method(method)
    options = _check_options(options, method)
    rtol, atol = _check_tolerances(rtol, atol, y0)
    evaluator = options.pop("evaluator", None)
    counter = CountingEvaluator(evaluator if evaluator is not None else local_evaluator)
    drift = BatchedDrift(func, y0.shape, y0.dtype, y0.device, vectorized=bool(options.pop("vectorized", False)),
                         name="func", evaluator=counter)
    if method == "auto":  # stiff at the start: Radau, else dopri5
        method = "radau" if is_stiff(drift, t, y0) else "dopri5"
    if method in STIFF:
        settings = StiffSettings(**{k: v for k, v in options.items() if k in STIFF_OPTIONS - {"vectorized"}},
                                 extra=extra)
        result = solve_stiff(drift, counter, y0, t, method, rtol, atol, settings)
        return result if full_output else result.ys
    _default_scheme(options, y0)
    settings = Settings(**{k: v for k, v in options.items() if k in _PARALLEL | _ADAPTIVE}, extra=extra)
    if method in EMBEDDED:
        result = solve_adaptive(drift, counter, y0, t, EMBEDDED[method], rtol, atol, settings)
    else:
        result = _solve_fixed(drift, counter, y0, t, method, rtol, atol, settings,
                              {k: v for k, v in options.items() if k in _FIXED})
    return result if full_output else result.ys


def _default_scheme(options: dict, y0: torch.Tensor) -> None:
    """Fill in ``options["scheme"]`` when not given, as ``solve``'s ``method="auto"`` chooses
    (:func:`parasolve.schemes.jacobians.auto_scheme`; every odeint method is a one-step map);
    ``scheme_options`` given alone refine it."""
    if "scheme" not in options or options["scheme"] == "auto":
        options["scheme"], options["scheme_options"] = auto_scheme(y0, False, options.get("scheme_options"))


def _solve_fixed(drift, counter, y0, t, method, rtol, atol, settings, fixed) -> OdeintResult:
    """A fixed-step method: one solve on the step grid, outputs interpolated as torchdiffeq does."""
    grid = _step_grid(drift, y0, t, fixed)
    n = grid.shape[0] - 1
    sol = solve(drift, y0, grid, method=settings.scheme, step=FIXED[method], window=settings.window,
                tol=first_tol(settings, min_scale(rtol, atol, y0.detach().abs()), y0.detach().abs(), n),
                options=settings.scheme_options,
                vectorized=True, **(settings.extra or {}))
    ys = _interpolate(drift, grid, sol.ys, t, fixed.get("interp", "linear"))
    stats = OdeintStats(sweeps=sol.stats.iterations, drift_rounds=counter.rounds, nfe=counter.nfe,
                        accepted_steps=n, passes=1)
    stats.history.append(PassRecord(n, sol.stats.iterations, counter.rounds, counter.nfe, 0, float("nan")))
    return OdeintResult(ys=ys, t=t, grid=grid, solution=sol, stats=stats, method=method)


def _step_grid(drift, y0, t, fixed) -> torch.Tensor:
    if "step_size" in fixed:  # torchdiffeq's construction, mirrored for decreasing t
        h = fixed["step_size"]
        direction = 1.0 if float(t[-1] - t[0]) > 0 else -1.0
        start, end = direction * t[0], direction * t[-1]
        count = int(torch.ceil((end - start) / h + 1).item())
        grid = torch.arange(0, count, dtype=t.dtype, device=t.device) * h + start
        grid[-1] = end
        return checks.check_grid(direction * grid, y0)
    if "grid_constructor" in fixed:
        grid = checks.check_grid(fixed["grid_constructor"](drift.f, y0, t), y0)
    elif "grid_points" in fixed:
        grid = checks.check_grid(fixed["grid_points"], y0)
    else:
        return t
    if grid[0] != t[0] or grid[-1] != t[-1]:
        raise ValueError(f"The step grid must start at t[0] = {float(t[0]):g} and end at t[-1] = "
                         f"{float(t[-1]):g}; got [{float(grid[0]):g}, {float(grid[-1]):g}].")
    if (grid[-1] - grid[0]) * (t[-1] - t[0]) < 0:
        raise ValueError("The step grid must run in the direction of `t`.")
    return grid


def _interpolate(drift, grid, ys, t, interp) -> torch.Tensor:
    """``ys`` on ``grid`` at the output times: exact at grid points, else linear (torchdiffeq's
    default) or cubic Hermite with the drift at the step ends (one more batched drift round)."""
    if grid is t:
        return ys
    if interp == "linear":
        direction = 1.0 if float(grid[-1] - grid[0]) > 0 else -1.0
        s = direction * (grid - grid[0]).double().cpu()
        q = direction * (t - grid[0]).double().cpu()
        i = (torch.searchsorted(s, q) - 1).clamp(0, grid.shape[0] - 2)  # the step (s_i, s_{i+1}] holding q
        theta = ((q - s[i]) / (s[i + 1] - s[i])).to(ys.device, ys.dtype).reshape(-1, *([1] * (ys.dim() - 1)))
        out = ys[i] + theta * (ys[i + 1] - ys[i])
        at_end = (q == s[i + 1]).to(ys.device)
        out[at_end] = ys[i + 1][at_end]
        out[0] = ys[0]
        return out
    f = drift(grid, ys)
    return grids.hermite(grid, ys, f[:-1], f[1:], t)


def _check_method(method) -> str:
    if isinstance(method, str) and method in METHODS:
        return method
    if method is None:
        return "dopri5"
    hint = ""
    if isinstance(method, str) and method in _HINTS:
        alt = _HINTS[method]
        hint = (f" parasolve's step {method!r} is torchdiffeq's {alt!r}." if alt else
                f" {method!r} is not offered by parasolve.odeint.")
    elif isinstance(method, str) and method in {"picard", "sequential", "anderson", "newton", "parareal"}:
        hint = f" {method!r} is a parallel scheme: pass options={{'scheme': {method!r}}}."
    raise ValueError(f"Unknown `method` {method!r}; valid: {METHODS}.{hint}")


def _check_options(options, method: str) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"`options` must be a dict or None; got {type(options).__name__}.")
    options = dict(options)
    if method == "auto":
        allowed = STIFF_OPTIONS | _PARALLEL | _ADAPTIVE
    else:
        allowed = STIFF_OPTIONS if method in STIFF else _PARALLEL | (_ADAPTIVE if method in EMBEDDED else _FIXED)
    bad = sorted(set(options) - allowed)
    if bad:
        other = _FIXED if method in EMBEDDED else _ADAPTIVE
        why = [k for k in bad if k in other]
        detail = (f" {why} apply to the {'fixed-step' if method in EMBEDDED else 'adaptive'} methods only."
                  if why else "")
        raise TypeError(f"Unknown `options` {bad} for method {method!r}; valid: {sorted(allowed)}.{detail}")
    for key in ("first_step", "step_size", "tol"):
        if key in options and options[key] is not None:
            options[key] = _positive(key, options[key], allow_zero=key == "tol")
    for key in ("safety", "dfactor"):
        if key in options:
            options[key] = _positive(key, options[key])
            if options[key] > 1:
                raise ValueError(f"options[{key!r}] must be in (0, 1]; got {options[key]}.")
    if "ifactor" in options:
        options["ifactor"] = _positive("ifactor", options["ifactor"])
        if options["ifactor"] < 1:
            raise ValueError(f"options['ifactor'] must be >= 1; got {options['ifactor']}.")
    for key in ("defect_fraction", "ratio_guess", "coarsen"):
        if key in options:
            options[key] = _positive(key, options[key], allow_zero=key == "coarsen")
    if "newton_tol" in options:
        options["newton_tol"] = _positive("newton_tol", options["newton_tol"])
    for key in ("max_passes", "max_num_steps", "initial_steps", "max_newton", "stall"):
        if key in options:
            options[key] = checks.check_positive_int(f"options[{key!r}]", options[key])
    if "window" in options and options["window"] is not None:
        options["window"] = checks.check_positive_int("options['window']", options["window"])
    scheme = options.get("scheme", "picard")
    if isinstance(scheme, str) and scheme not in SCHEMES and scheme != "auto":
        raise ValueError(f"options['scheme'] must be 'auto' or one of {sorted(SCHEMES)} (or a parasolve Scheme); "
                         f"got {scheme!r}.")
    if "scheme_options" in options and not isinstance(options["scheme_options"], (dict, type(None))):
        raise TypeError(f"options['scheme_options'] must be a dict; got {type(options['scheme_options']).__name__}.")
    if "interp" in options and options["interp"] not in ("linear", "cubic"):
        raise ValueError(f"options['interp'] must be 'linear' or 'cubic'; got {options['interp']!r}.")
    given = [k for k in ("step_size", "grid_points", "grid_constructor") if options.get(k) is not None]
    if len(given) > 1:
        raise ValueError(f"options {given} are mutually exclusive: give one way to build the step grid.")
    for k in ("step_size", "grid_points", "grid_constructor"):
        if options.get(k, 0) is None:
            del options[k]
    if "grid_constructor" in options and not callable(options["grid_constructor"]):
        raise TypeError("options['grid_constructor'] must be callable as grid_constructor(func, y0, t).")
    return options


def _positive(key, value, allow_zero=False) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"options[{key!r}] must be a real number; got {value!r}.")
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value or value == float("inf"):
        raise ValueError(f"options[{key!r}] must be finite and {'>=' if allow_zero else '>'} 0; got {value}.")
    return float(value)


def _check_tolerances(rtol, atol, y0):
    real = y0.real.dtype if y0.is_complex() else y0.dtype
    out = []
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
            raise TypeError(f"`{name}` must be a real number or a tensor broadcasting to y0's shape; got {value!r}.")
        tensor = torch.as_tensor(value, dtype=torch.float64)
        if tensor.requires_grad:
            raise ValueError(f"`{name}` must not require grad.")
        try:
            tensor = torch.broadcast_to(tensor, y0.shape)
        except RuntimeError:
            raise ValueError(f"`{name}` of shape {tuple(tensor.shape)} does not broadcast to y0's shape "
                             f"{tuple(y0.shape)}.") from None
        if not torch.isfinite(tensor).all() or (tensor < 0).any():
            raise ValueError(f"`{name}` must be finite and >= 0; got {value!r}.")
        out.append(tensor.to(dtype=real, device=y0.device))
    if not (out[0] + out[1] > 0).all():
        raise ValueError(f"`rtol` and `atol` are both 0 (in some component); the error test needs "
                         f"atol > 0 or rtol > 0. Got rtol={rtol!r}, atol={atol!r}.")
    return out[0], out[1]
