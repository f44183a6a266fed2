"""Input validation: every bad argument gets a typed error naming it, the value and the fix."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np
import torch


def check_y0(y0) -> torch.Tensor:
    if not isinstance(y0, torch.Tensor):
        raise TypeError(f"`y0` must be a torch.Tensor; got {type(y0).__name__}. "
                        f"Wrap it with torch.as_tensor(y0, dtype=torch.float64).")
    if not (y0.is_floating_point() or y0.is_complex()):
        raise TypeError(f"`y0` must have a floating or complex dtype; got {y0.dtype}. Use y0.double() or y0.float().")
    if y0.numel() == 0:
        raise ValueError(f"`y0` has no elements (shape {tuple(y0.shape)}); there is nothing to solve. "
                         f"Pass a state with at least one entry.")
    if not torch.isfinite(y0).all():
        raise ValueError("`y0` contains NaN or Inf; pass a finite initial state.")
    return y0


def check_grid(t, y0: torch.Tensor) -> torch.Tensor:
    """``t`` as a 1-D, strictly monotone tensor of y0's real dtype on y0's device."""
    if isinstance(t, torch.Tensor):
        grid = t
    elif isinstance(t, (np.ndarray, list, tuple)):
        grid = torch.as_tensor(np.asarray(t, dtype=np.float64))
    else:
        raise TypeError(f"`t` must be a 1-D tensor, array or sequence of times; got {type(t).__name__}.")
    if grid.dim() != 1:
        raise ValueError(f"`t` must be 1-dimensional; got shape {tuple(grid.shape)}.")
    if grid.shape[0] < 2:
        raise ValueError(f"`t` needs at least 2 time points; got {grid.shape[0]}.")
    if grid.is_complex() or not torch.isfinite(grid).all():
        raise ValueError("`t` must hold finite real times; got NaN, Inf or complex values.")
    real = y0.real.dtype if y0.is_complex() else y0.dtype
    cast = grid.to(dtype=real, device=y0.device)
    dt = cast[1:] - cast[:-1]
    if not (torch.isfinite(cast).all() and torch.isfinite(dt).all()):
        big = float(grid.abs().max())
        raise ValueError(f"`t` does not fit y0's dtype {real}: its times (up to |t| = {big:g}) or steps "
                         f"overflow to Inf after the cast (largest finite {real} value: "
                         f"{torch.finfo(real).max:g}). Rescale time, or solve in a wider dtype "
                         f"(e.g. y0.float()).")
    grid = cast
    if not ((dt > 0).all() or (dt < 0).all()):
        where = int(torch.nonzero(dt == 0)[0]) if (dt == 0).any() else None
        detail = (f"t[{where}] == t[{where + 1}] == {float(grid[where]):g} (repeated value)"
                  if where is not None else "it changes direction")
        raise ValueError(f"`t` must be strictly increasing or strictly decreasing; {detail}. "
                         f"Sort it and drop duplicates (in {real} precision).")
    return grid


def check_positive_int(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}.")
    return int(value)


def check_tol(tol, dtype: torch.dtype) -> float:
    if tol is None:
        return default_tol(dtype)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError(f"`tol` must be a real number >= 0; got {tol!r}.")
    if not (tol >= 0) or math.isinf(tol):
        raise ValueError(f"`tol` must be finite and >= 0; got {tol}.")
    return float(tol)


def default_tol(dtype: torch.dtype) -> float:
    """Default ``tol``: 1e-7 in float64, 1e-3 in float32, 1e-2 in 16-bit floats."""
    bits = torch.finfo(dtype).bits if dtype.is_floating_point else torch.finfo(torch.empty((), dtype=dtype).real.dtype).bits
    return {64: 1e-7, 32: 1e-3}.get(bits, 1e-2)


def check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}; got {value!r}.")
    return value


def check_options(options) -> dict:
    """``options`` as a dict of scheme keywords (``None``: none)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise TypeError(f"`options` must be a dict of the scheme's keyword settings, e.g. "
                        f"options={{'segments': 8}} for method='parareal', or None; got {options!r}.")
    return dict(options)


def check_unknown(func: str, unknown: dict, valid) -> None:
    if unknown:
        raise TypeError(f"{func}() got unknown keyword argument(s) {sorted(unknown)}; "
                        f"valid keywords: {sorted(valid)}. Scheme-specific settings go in `options`.")


def check_init(init, y0: torch.Tensor, n_steps: int) -> torch.Tensor:
    if not isinstance(init, torch.Tensor):
        raise TypeError(f"`init` must be a torch.Tensor trajectory guess; got {type(init).__name__}.")
    shape = (n_steps + 1, *y0.shape)
    if tuple(init.shape) != shape:
        raise ValueError(f"`init` must have shape (len(t), *y0.shape) = {shape}; got {tuple(init.shape)}.")
    if init.device != y0.device or init.dtype != y0.dtype:
        raise ValueError(f"`init` must be {y0.dtype} on {y0.device} like y0; got {init.dtype} on {init.device}.")
    if not torch.isfinite(init).all():
        raise ValueError("`init` contains NaN or Inf.")
    return init


def check_real(name: str, value, *, low: float = -math.inf, high: float = math.inf,
               open_low: bool = False, open_high: bool = True) -> float:
    """``value`` as a float in the interval from ``low`` to ``high`` (ends open or closed as
    told; infinite ends are always open), else a ValueError naming ``name`` and the interval."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value > low if open_low or math.isinf(low) else value >= low) and \
             (value < high if open_high or math.isinf(high) else value <= high)
    if not ok:
        left, right = "(" if open_low or math.isinf(low) else "[", ")" if open_high or math.isinf(high) else "]"
        raise ValueError(f"`{name}` must be a real number in {left}{low:g}, {high:g}{right}; got {value!r}.")
    return float(value)
