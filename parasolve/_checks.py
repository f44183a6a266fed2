"""Input validation: every bad argument gets a typed error naming it, the value and the fix.

One rule throughout: a value of the wrong type raises :class:`~parasolve.errors.ParasolveTypeError`
(a ``TypeError``), a value of the right type that is out of range raises
:class:`~parasolve.errors.ParasolveValueError` (a ``ValueError``)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np
import torch

from .errors import ParasolveTypeError, ParasolveValueError


def check_y0(y0) -> torch.Tensor:
    check_tensor("y0", y0, fix="Wrap it with torch.as_tensor(y0, dtype=torch.float64).")
    if not (y0.is_floating_point() or y0.is_complex()):
        raise ParasolveTypeError(f"`y0` must have a floating or complex dtype; got {y0.dtype}. Use y0.double() or y0.float().")
    if y0.numel() == 0:
        raise ParasolveValueError(f"`y0` has no elements (shape {tuple(y0.shape)}); there is nothing to solve. "
                                  f"Pass a state with at least one entry.")
    if not torch.isfinite(y0).all():
        raise ParasolveValueError("`y0` contains NaN or Inf; pass a finite initial state.")
    return y0


def check_grid(t, y0: torch.Tensor) -> torch.Tensor:
    """``t`` as a 1-D, strictly monotone tensor of y0's real dtype on y0's device."""
    if isinstance(t, torch.Tensor):
        grid = t
    elif isinstance(t, (np.ndarray, list, tuple)):
        grid = torch.as_tensor(np.asarray(t, dtype=np.float64))
    else:
        raise ParasolveTypeError(f"`t` must be a 1-D tensor, array or sequence of times; got {type(t).__name__}.")
    if grid.dim() != 1:
        raise ParasolveValueError(f"`t` must be 1-dimensional; got shape {tuple(grid.shape)}.")
    if grid.shape[0] < 2:
        raise ParasolveValueError(f"`t` needs at least 2 time points; got {grid.shape[0]}.")
    if grid.is_complex() or not torch.isfinite(grid).all():
        raise ParasolveValueError("`t` must hold finite real times; got NaN, Inf or complex values.")
    real = y0.real.dtype if y0.is_complex() else y0.dtype
    cast = grid.to(dtype=real, device=y0.device)
    dt = cast[1:] - cast[:-1]
    if not (torch.isfinite(cast).all() and torch.isfinite(dt).all()):
        big = float(grid.abs().max())
        raise ParasolveValueError(f"`t` does not fit y0's dtype {real}: its times (up to |t| = {big:g}) or steps "
                                  f"overflow to Inf after the cast (largest finite {real} value: "
                                  f"{torch.finfo(real).max:g}). Rescale time, or solve in a wider dtype "
                                  f"(e.g. y0.float()).")
    grid = cast
    if not ((dt > 0).all() or (dt < 0).all()):
        where = int(torch.nonzero(dt == 0)[0]) if (dt == 0).any() else None
        detail = (f"t[{where}] == t[{where + 1}] == {float(grid[where]):g} (repeated value)"
                  if where is not None else "it changes direction")
        raise ParasolveValueError(f"`t` must be strictly increasing or strictly decreasing; {detail}. "
                                  f"Sort it and drop duplicates (in {real} precision).")
    return grid


def _got(value) -> str:
    return f"got {value!r} ({type(value).__name__})"


def _fix(fix: str) -> str:
    return f" {fix}" if fix else ""


def check_positive_int(name: str, value, *, minimum: int = 1, none_ok: bool = False, fix: str = "") -> int | None:
    """``value`` as an int ``>= minimum`` (``None`` passes with ``none_ok``): ``TypeError`` for a
    non-integer (``bool`` included), ``ValueError`` below ``minimum``; ``fix`` ends the message."""
    if value is None and none_ok:
        return None
    what = f"an integer >= {minimum}" + (" or None" if none_ok else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParasolveTypeError(f"`{name}` must be {what}; {_got(value)}.{_fix(fix)}")
    if value < minimum:
        raise ParasolveValueError(f"`{name}` must be {what}; got {value}.{_fix(fix)}")
    return int(value)


def check_tol(tol, dtype: torch.dtype) -> float:
    if tol is None:
        return default_tol(dtype)
    return check_real("tol", tol, low=0.0)


def default_tol(dtype: torch.dtype) -> float:
    """Default ``tol``: 1e-7 in float64, 1e-3 in float32, 1e-2 in 16-bit floats."""
    bits = torch.finfo(dtype).bits if dtype.is_floating_point else torch.finfo(torch.empty((), dtype=dtype).real.dtype).bits
    return {64: 1e-7, 32: 1e-3}.get(bits, 1e-2)


def check_choice(name: str, value, choices, *, fix: str = "") -> str:
    """``value`` if it is one of the strings ``choices``: ``TypeError`` for a non-string,
    ``ValueError`` for another string."""
    if not isinstance(value, str):
        raise ParasolveTypeError(f"`{name}` must be one of {sorted(choices)}; {_got(value)}.{_fix(fix)}")
    if value not in choices:
        raise ParasolveValueError(f"`{name}` must be one of {sorted(choices)}; got {value!r}.{_fix(fix)}")
    return value


def check_tensor(name: str, value, *, fix: str = "") -> torch.Tensor:
    """``value`` if it is a ``torch.Tensor``, else a ``TypeError`` naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise ParasolveTypeError(f"`{name}` must be a torch.Tensor; got {type(value).__name__}.{_fix(fix)}")
    return value


def check_options(options) -> dict:
    """``options`` as a dict of scheme keywords (``None``: none)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise ParasolveTypeError(f"`options` must be a dict of the scheme's keyword settings, e.g. "
                                 f"options={{'segments': 8}} for method='parareal', or None; got {options!r}.")
    return dict(options)


def check_unknown(func: str, unknown: dict, valid) -> None:
    if unknown:
        raise ParasolveTypeError(f"{func}() got unknown keyword argument(s) {sorted(unknown)}; "
                                 f"valid keywords: {sorted(valid)}. Scheme-specific settings go in `options`.")


def check_init(init, y0: torch.Tensor, n_steps: int) -> torch.Tensor:
    check_tensor("init", init, fix="Pass a trajectory guess of shape (len(t), *y0.shape), or None.")
    shape = (n_steps + 1, *y0.shape)
    if tuple(init.shape) != shape:
        raise ParasolveValueError(f"`init` must have shape (len(t), *y0.shape) = {shape}; got {tuple(init.shape)}.")
    if init.device != y0.device or init.dtype != y0.dtype:
        raise ParasolveValueError(f"`init` must be {y0.dtype} on {y0.device} like y0; got {init.dtype} on {init.device}.")
    if not torch.isfinite(init).all():
        raise ParasolveValueError("`init` contains NaN or Inf.")
    return init


def check_real(name: str, value, *, low: float = -math.inf, high: float = math.inf,
               open_low: bool = False, open_high: bool = True, none_ok: bool = False, fix: str = "") -> float | None:
    """``value`` as a float in the interval from ``low`` to ``high`` (ends open or closed as told;
    infinite ends are always open; ``None`` passes with ``none_ok``): ``TypeError`` for a
    non-real (``bool`` included), ``ValueError`` for NaN or a value outside the interval."""
    if value is None and none_ok:
        return None
    left, right = "(" if open_low or math.isinf(low) else "[", ")" if open_high or math.isinf(high) else "]"
    what = f"a real number in {left}{low:g}, {high:g}{right}" + (" or None" if none_ok else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParasolveTypeError(f"`{name}` must be {what}; {_got(value)}.{_fix(fix)}")
    ok = not math.isnan(value) and (value > low if left == "(" else value >= low) and \
        (value < high if right == ")" else value <= high)
    if not ok:
        raise ParasolveValueError(f"`{name}` must be {what}; got {value!r}.{_fix(fix)}")
    return float(value)
