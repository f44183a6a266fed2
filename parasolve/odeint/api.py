"""``odeint``: torchdiffeq's call, the ODE's solution to ``rtol``/``atol``, solved parallel in time."""

from __future__ import annotations

import numbers
import warnings

import torch

from .. import _checks as checks
from ..drift import BatchedDrift
from ..schemes import SCHEMES
from ..evaluators.counting import CountingEvaluator
from .adaptive import Settings
from .compat import adjoint_settings
from .dispatch import FIXED, FIXED_OPTIONS, choose_and_solve, default_scheme, starts_stepwise
from .events import find_event
from .jumps import check_jumps, solve_segments
from .result import OdeintResult
from .stiff import STIFF, STIFF_OPTIONS, StiffSettings, is_stiff, solve_stiff
from .tableaus import EMBEDDED
from .tuples import Packing, unpack

METHODS = sorted(EMBEDDED) + sorted(FIXED) + sorted(STIFF) + ["auto"]

_PARALLEL = {"scheme", "scheme_options", "window", "tol", "vectorized", "evaluator", "defect_fraction", "ratio_guess"}
_ADAPTIVE = {"first_step", "safety", "ifactor", "dfactor", "max_passes", "max_num_steps", "coarsen", "initial_steps",
             "jump_t", "pilot"}
_FIXED = FIXED_OPTIONS
_COMMON = {"norm"}  # accepted by every method; the fixed-step ones have no error test (as torchdiffeq)
_HINTS = {"heun": "heun2", "ab2": None, "rk38": "rk4", "dopri8": None, "fehlberg2": None,
          "explicit_adams": None, "implicit_adams": None, "fixed_adams": None, "scipy_solver": None}


def odeint(func, y0, t, rtol=1e-7, atol=1e-9, method="dopri5", options=None, *, event_fn=None,
           full_output=False, **unknown):
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
    else ``"dopri5"``, whose stepper hands over to ``"radau"`` where the problem turns stiff later
    (Hairer's stiffness test; result ``method`` ``"dopri5+radau"``). Unlike torchdiffeq, the grid is solved parallel in time by
    parasolve's fixed-point schemes (docs/odeint.md), the adaptive grid refined between solves.

    Args:
        func: drift ``func(t, y)``; batched with vmap unless ``options["vectorized"]``.
        y0: initial state, a floating tensor of any shape, or a tuple of them (then ``func``
            takes and returns tuples and so does the answer, as in torchdiffeq).
        t: output times, a 1-D strictly monotone tensor (or sequence).
        rtol, atol: relative and absolute tolerances (numbers or tensors broadcasting to y0;
            for a tuple ``y0`` numbers or one number per part).
        method: see above.
        options: torchdiffeq's options (``first_step``, ``safety``, ``ifactor``, ``dfactor``,
            ``norm``, ``jump_t``; ``step_size``, ``grid_points``, ``grid_constructor``, ``interp``)
            and parasolve's (``scheme``, ``scheme_options``, ``window``, ``tol``,
            ``defect_fraction``, ``max_passes``, ``max_num_steps``, ``vectorized``, ``evaluator``,
            ``pilot``: start the parallel driver from a coarse sequential solve, docs/odeint.md).
        event_fn: as torchdiffeq's ``odeint(..., event_fn=)``: solve from ``t[0]`` (``len(t) ==
            2``, ``t[1]`` gives only the direction) until ``event_fn(t, y)`` crosses zero and
            return ``(event_t, solution)``; see :func:`odeint_event`.
        full_output: return an :class:`OdeintResult` (answer, final grid, stats) instead of the tensor.

    By default (``options["scheme"] = "auto"``) the steps are taken one after another, as
    torchdiffeq takes them, until a cost model measured on ``func`` predicts that parallel sweeps
    pay (docs/odeint.md, "Sequential or parallel").

    With grad mode on, the answer is differentiable w.r.t. ``y0``, ``t`` and the parameters of an
    ``nn.Module`` ``func``: through the sequential steps by autograd (as torchdiffeq's
    ``odeint``), through a parallel solve by the discrete adjoint of the final grid's solve
    (docs/gradients.md), as with :func:`odeint_adjoint`; no graph of the sweeps is kept.
    """
    if event_fn is not None:
        return _event_call(func, y0, t, event_fn, dict(rtol=rtol, atol=atol, method=method, options=options,
                                                       **unknown), odeint)
    return _odeint(func, y0, t, rtol, atol, method, options, full_output, unknown, "odeint", _module_params(func))


def odeint_adjoint(func, y0, t, rtol=1e-7, atol=1e-9, method="dopri5", options=None, *, event_fn=None,
                   adjoint_rtol=None, adjoint_atol=None, adjoint_method=None, adjoint_options=None,
                   adjoint_params=None, full_output=False, **unknown):
    """:func:`odeint` with torchdiffeq's ``odeint_adjoint`` signature. The gradient is the same:
    the discrete adjoint of the forward solve on its own final grid, solved parallel in time, so
    the backward has no grid or error test of its own. What torchdiffeq's keywords mean here
    (:func:`parasolve.odeint.compat.adjoint_settings`, docs/odeint.md#gradients):

    - ``adjoint_params``: the tensors to differentiate (default ``func.parameters()`` for a module);
    - ``adjoint_rtol``: the backward fixed-point solve's tolerance, relative to the cotangents
      (``adjoint_options["tol"]``: accepted adjoint defects sum to at most it times ``sum max|dL/dy_i|``);
    - ``adjoint_atol``: accepted; the backward has no absolute tolerance (its defects are measured
      against the cotangents), so it changes nothing;
    - ``adjoint_method``: ``None`` or ``method`` itself (the backward transposes the forward's own
      steps); any other refuses;
    - ``adjoint_options``: ``parasolve.adjoint.ADJOINT_OPTIONS`` keys (``method``, ``tol``, ...) and
      torchdiffeq's ``norm`` (e.g. ``"seminorm"``), accepted without effect: no error test runs backward.
    """
    params = None if adjoint_params is None else _params_tuple(adjoint_params)
    extra = _module_params(func) if params is None else {"adjoint_params": params}
    extra.update(adjoint_settings(method, adjoint_rtol, adjoint_atol, adjoint_method, adjoint_options))
    if event_fn is not None:
        return _event_call(func, y0, t, event_fn, dict(
            rtol=rtol, atol=atol, method=method, options=options, adjoint_params=params, adjoint_rtol=adjoint_rtol,
            adjoint_atol=adjoint_atol, adjoint_method=adjoint_method, adjoint_options=adjoint_options, **unknown),
            odeint_adjoint)
    return _odeint(func, y0, t, rtol, atol, method, options, full_output, unknown, "odeint_adjoint", extra)


def odeint_event(func, y0, t0, *, event_fn, reverse_time=False, odeint_interface=None, horizon=1.0,
                 max_windows=40, **kwargs):
    """Solve ``dy/dt = func(t, y)`` from ``y(t0) = y0`` until ``event_fn(t, y)`` crosses zero.

    torchdiffeq's ``odeint_event``: returns ``(event_t, solution)``, ``solution`` of shape
    ``(2, *y0.shape)`` holding ``y0`` and the state at ``event_t`` (tuples of them for a tuple
    ``y0``); ``reverse_time`` solves towards decreasing time; ``kwargs`` (``rtol``, ``atol``,
    ``method``, ``options``, ``adjoint_*``) go to ``odeint_interface`` (:func:`odeint`, the
    default, or :func:`odeint_adjoint`). Both outputs are differentiable w.r.t. ``y0``, ``t0``,
    the parameters the solve differentiates and tensors ``event_fn`` uses
    (:mod:`parasolve.odeint.events` says how the event is found).

    parasolve's own: ``horizon``, the first search window's length (doubled for each next one);
    ``max_windows``: how many windows to search before raising ``ConvergenceError``.
    """
    interface = odeint if odeint_interface is None else odeint_interface
    if interface not in (odeint, odeint_adjoint):
        raise TypeError(f"`odeint_interface` must be parasolve.odeint or parasolve.odeint_adjoint; got "
                        f"{interface!r} (parasolve finds events on its own solves).")
    options = kwargs.get("options")
    if kwargs.get("method") in FIXED and (not isinstance(options, dict) or options.get("step_size") is None):
        raise ValueError(f"odeint_event with the fixed-step method {kwargs['method']!r} needs options['step_size'] "
                         f"(as torchdiffeq does): without it each search window would be a single step.")
    return find_event(interface, func, y0, t0, event_fn, reverse_time, horizon, max_windows, **kwargs)


def _params_tuple(adjoint_params) -> tuple:
    try:
        return tuple(adjoint_params)
    except TypeError:
        raise TypeError(f"`adjoint_params` must be an iterable of tensors (e.g. model.parameters()); got "
                        f"{type(adjoint_params).__name__}.") from None


def _event_call(func, y0, t, event_fn, kwargs, interface):
    """torchdiffeq's ``odeint(..., event_fn=)``: ``t`` gives the start and the direction."""
    if isinstance(t, (list, tuple)):
        t = torch.as_tensor(t, dtype=torch.float64)
    if not isinstance(t, torch.Tensor) or t.shape != (2,):
        raise ValueError(f"With `event_fn`, `t` must hold 2 times (the start, and a second one giving the "
                         f"direction); got {t!r}. Or call parasolve.odeint_event(func, y0, t0, event_fn=...).")
    return odeint_event(func, y0, t[0], event_fn=event_fn, reverse_time=bool(t[1] < t[0]),
                        odeint_interface=interface, **kwargs)


def _module_params(func) -> dict:
    """``solve``'s ``adjoint_params`` for ``func``: its parameters if it is an ``nn.Module`` (the
    solve only sees the batched wrapper around it)."""
    return {"adjoint_params": tuple(func.parameters())} if isinstance(func, torch.nn.Module) else {}


def _odeint(func, y0, t, rtol, atol, method, options, full_output, unknown, name, extra):
    checks.check_unknown(name, unknown, {"rtol", "atol", "method", "options", "full_output", "event_fn"}
                         | ({"adjoint_params", "adjoint_rtol", "adjoint_atol", "adjoint_method", "adjoint_options"}
                            if name == "odeint_adjoint" else set()))
    packing = None
    if isinstance(y0, (tuple, list)):  # torchdiffeq's tuple states: one flat vector for the solve
        packing = Packing(tuple(y0))
        func, y0 = packing.func(func), packing.flat(y0)
        rtol, atol = packing.tolerance("rtol", rtol), packing.tolerance("atol", atol)
    y0 = checks.check_y0(y0)
    t = checks.check_grid(t, y0)
    method = _check_method(method)
    options = _check_options(options, method)
    if packing is not None:
        options["norm"] = packing.norm(options.get("norm"))
    rtol, atol = _check_tolerances(rtol, atol, y0)
    adjoint = name == "odeint_adjoint"
    jumps = options.pop("jump_t", None)
    if jumps is not None:
        result = solve_segments(lambda f, y, ts: _run(f, y, ts, rtol, atol, method, dict(options), extra, adjoint,
                                                      full_output),
                                func, y0, t, jumps)
    else:
        result = _run(func, y0, t, rtol, atol, method, options, extra, adjoint, full_output)
    if packing is not None:
        result.ys = unpack(result.ys, packing)
    return result if full_output else result.ys


def _run(func, y0, t, rtol, atol, method, options, extra, adjoint: bool, keep_states: bool) -> OdeintResult:
    """One solve of validated arguments on ``[t[0], t[-1]]`` (``keep_states``: the sequential stepper
    keeps every step's state for :attr:`OdeintResult.states`, as ``full_output`` callers may read it)."""
    evaluator = options.pop("evaluator", None)
    counter = CountingEvaluator(evaluator)
    drift = BatchedDrift(func, y0.shape, y0.dtype, y0.device, vectorized=bool(options.pop("vectorized", False)),
                         name="func", evaluator=counter)
    auto = method == "auto"
    if auto:  # stiff at the start: Radau, else dopri5 (which hands over to Radau where it turns stiff)
        method = "radau" if is_stiff(drift, t, y0) else "dopri5"
    if method in STIFF:
        settings = StiffSettings(**{k: v for k, v in options.items() if k in STIFF_OPTIONS - {"vectorized"}},
                                 extra=extra)
        return solve_stiff(drift, counter, y0, t, method, rtol, atol, settings)
    stepwise = method in EMBEDDED and starts_stepwise(options, evaluator)
    forced = options.get("scheme") == "sequential"
    default_scheme(options, y0, keep_auto=method not in EMBEDDED and evaluator is None)
    settings = Settings(**{k: v for k, v in options.items() if k in _PARALLEL | _ADAPTIVE | _COMMON}, extra=extra,
                        keep_states=keep_states)
    with warnings.catch_warnings():  # times that require grad are read as host numbers for the grid
        # arithmetic on purpose (the grid is not differentiated, as in torchdiffeq): no warning for that
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
        return choose_and_solve(func, drift, counter, y0, t, rtol, atol, method, options, settings, stepwise,
                                forced, adjoint, stiff_exit=auto)


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
    elif isinstance(method, str) and method in SCHEMES:
        hint = f" {method!r} is a parallel scheme: pass options={{'scheme': {method!r}}}."
    raise ValueError(f"Unknown `method` {method!r}; valid: {METHODS}.{hint}")


def _check_options(options, method: str) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"`options` must be a dict or None; got {type(options).__name__}.")
    options = dict(options)
    if method == "auto":
        allowed = STIFF_OPTIONS | _PARALLEL | _COMMON | _ADAPTIVE
    else:
        allowed = STIFF_OPTIONS if method in STIFF else _PARALLEL | _COMMON | (_ADAPTIVE if method in EMBEDDED else _FIXED)
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
    scheme = options.get("scheme", "auto")
    if isinstance(scheme, str) and scheme not in SCHEMES and scheme != "auto":
        raise ValueError(f"options['scheme'] must be 'auto' or one of {sorted(SCHEMES)} (or a parasolve Scheme); "
                         f"got {scheme!r}.")
    if "scheme_options" in options and not isinstance(options["scheme_options"], (dict, type(None))):
        raise TypeError(f"options['scheme_options'] must be a dict; got {type(options['scheme_options']).__name__}.")
    if "interp" in options:
        checks.check_choice("options['interp']", options["interp"], ("linear", "cubic"))
    if not isinstance(options.get("pilot"), (bool, type(None))):
        raise TypeError(f"options['pilot'] must be True, False or None (decided by the cost model); got "
                        f"{options['pilot']!r}.")
    given = [k for k in ("step_size", "grid_points", "grid_constructor") if options.get(k) is not None]
    if len(given) > 1:
        raise ValueError(f"options {given} are mutually exclusive: give one way to build the step grid.")
    for k in ("step_size", "grid_points", "grid_constructor"):
        if options.get(k, 0) is None:
            del options[k]
    if options.get("norm") is not None and not callable(options["norm"]):
        raise TypeError(f"options['norm'] must be callable as norm(scaled_error) -> 0-d tensor; got {options['norm']!r}.")
    if "jump_t" in options and options["jump_t"] is not None:
        options["jump_t"] = check_jumps(options["jump_t"])
    if "grid_constructor" in options and not callable(options["grid_constructor"]):
        raise TypeError("options['grid_constructor'] must be callable as grid_constructor(func, y0, t).")
    return options


def _positive(key, value, allow_zero=False) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = float(value)
    return checks.check_real(f"options[{key!r}]", value, low=0.0, open_low=not allow_zero)


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
