"""``odeint_event``: solve until an event function crosses zero; the event time is differentiable.

torchdiffeq steps until ``event_fn(t, y)`` changes sign, then bisects on the last step's
interpolant. Without a known end time, parasolve solves windows ``[a, a + H]`` parallel in time
(``H`` doubling from ``horizon``, each from the last one's end), finds the first step of the
final grid where the event changes sign, bisects on that step's cubic Hermite interpolant, and
solves once more from the window's start to that time for the state there.

Gradients follow the implicit function theorem, ``c(t_e, y(t_e)) = 0``: with ``D = dc/dt +
dc/dy . f`` at the event, ``dt_e = -(dc/dy . dy + dc/dtheta) / D`` (``dy``: the solve's own
gradient at fixed ``t_e``; ``theta``: tensors ``event_fn`` uses) and the returned state moves
along ``f`` with the event time. Several event outputs are combined as torchdiffeq does: the
solve stops at the first sign change of any of them.
"""

from __future__ import annotations

import torch

from .._checks import check_real
from ..errors import ConvergenceError
from . import grids
from .tuples import Packing


def find_event(interface, func, y0, t0, event_fn, reverse_time=False, horizon=1.0, max_windows=40, **kwargs):
    """:func:`~parasolve.odeint.api.odeint_event` with its ``odeint_interface`` resolved: the search
    (module docstring); ``interface(func, y0, t, full_output=..., **kwargs)`` is one of parasolve's
    ``odeint``/``odeint_adjoint``."""
    if not callable(event_fn):
        raise TypeError(f"`event_fn` must be callable as event_fn(t, y); got {event_fn!r}.")
    for name, value, low in (("horizon", horizon, 0), ("max_windows", max_windows, 1)):
        check_real(name, value, low=low, open_low=True)
    packing = Packing(tuple(y0)) if isinstance(y0, (tuple, list)) else None
    y_flat, f, g = y0, func, event_fn
    if packing is not None:
        y_flat, f = packing.flat(y0), packing.func(func)
        g = lambda t, y: event_fn(t, packing.split(y))  # noqa: E731
        kwargs = _flat_kwargs(kwargs, packing)
    if not isinstance(y_flat, torch.Tensor):
        raise TypeError(f"`y0` must be a torch.Tensor or a tuple of them; got {type(y0).__name__}.")
    if not isinstance(t0, torch.Tensor):
        t0 = torch.as_tensor(t0, dtype=y_flat.real.dtype if y_flat.is_complex() else y_flat.dtype)
    if t0.numel() != 1:
        raise ValueError(f"`t0` must be a single time; got shape {tuple(t0.shape)}.")
    t0 = t0.reshape(()).to(y_flat.device)
    direction = -1.0 if reverse_time else 1.0
    with torch.no_grad():
        signs = torch.sign(torch.as_tensor(g(t0, y_flat)))
    comb = lambda t, y: (torch.as_tensor(g(t, y)) * signs).min()  # noqa: E731  (> 0 before the event)
    with torch.no_grad():
        at_start = float(comb(t0, y_flat)) == 0
    if at_start:
        return t0, _unpack(torch.stack([y_flat, y_flat]), packing)
    if (kwargs.get("options") or {}).get("vectorized"):  # func takes batches: one point as a batch of one
        f_point = lambda t, y: f(t.reshape(1), y[None])[0]  # noqa: E731
    else:
        f_point = f
    a, y_a, length = t0, y_flat, float(horizon)
    for _ in range(int(max_windows)):
        b = a.detach() + direction * length
        res = interface(f, y_a, torch.stack([a, b.to(a.dtype)]), full_output=True, **kwargs)
        grid, ys = res.grid, res.states.detach()
        if ys.shape[0] != grid.shape[0]:
            raise ValueError("odeint_event does not support options['jump_t']; solve up to the jump first.")
        with torch.no_grad():
            c = _event_values(comb, grid, ys)
        hit = torch.nonzero(~(c > 0)).reshape(-1)
        if len(hit):
            j = int(hit[0])
            te = _bisect(comb, f_point, grid[j - 1:j + 1], ys[j - 1:j + 1])
            state = interface(f, y_a, torch.stack([a, te]), **kwargs)[-1]
            event_t, state = _reroute(comb, f_point, te, state)
            return event_t, _unpack(torch.stack([y_flat, state]), packing)
        a, y_a, length = b.to(a.dtype), res.ys[-1], 2 * length
    raise ConvergenceError(f"odeint_event: no sign change of event_fn within {max_windows} windows (up to "
                           f"t = {float(a):g}); raise `horizon` or `max_windows`, or check event_fn.")


def _flat_kwargs(kwargs: dict, packing: Packing) -> dict:
    kwargs = dict(kwargs)
    for name in ("rtol", "atol"):
        if name in kwargs:
            kwargs[name] = packing.tolerance(name, kwargs[name])
    options = dict(kwargs.get("options") or {})
    options["norm"] = packing.norm(options.get("norm"))
    kwargs["options"] = options
    return kwargs


def _unpack(solution: torch.Tensor, packing):
    return solution if packing is None else packing.split(solution)


def _event_values(comb, grid, ys) -> torch.Tensor:
    """The combined event function at every grid point (vmap where it allows)."""
    try:
        return torch.vmap(comb)(grid, ys)
    except Exception:  # an event_fn vmap cannot batch: one call per point
        return torch.stack([comb(ti, yi) for ti, yi in zip(grid, ys)])


@torch.no_grad()
def _bisect(comb, f, ends: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """The sign change of ``comb`` on the cubic Hermite interpolant of one step, to round-off."""
    slopes = torch.stack([f(ends[0], ys[0]), f(ends[1], ys[1])])
    lo, hi = ends[0].clone(), ends[1].clone()
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid == lo or mid == hi:
            break
        y_mid = grids.hermite(ends, ys, slopes[:1], slopes[1:], mid.reshape(1))[0]
        if float(comb(mid, y_mid)) > 0:
            lo = mid
        else:
            hi = mid
    return hi


def _reroute(comb, f, te: torch.Tensor, state: torch.Tensor):
    """``(event_t, state)`` whose gradients are the implicit function theorem's (module docstring);
    the values are ``te`` and ``state`` unchanged."""
    if not torch.is_grad_enabled():
        return te, state
    with torch.enable_grad():
        tt = te.detach().clone().requires_grad_(True)
        yy = state.detach().clone().requires_grad_(True)
        value = comb(tt, yy)
        dc_dt, dc_dy = torch.autograd.grad(value, (tt, yy), allow_unused=True)
    with torch.no_grad():
        slope = f(te.detach(), state.detach())
        total = (torch.zeros(()) if dc_dt is None else dc_dt) + (0 if dc_dy is None else (dc_dy * slope).sum())
    if float(total) == 0:
        raise ValueError("odeint_event: the event function's total derivative is 0 at the event (it touches zero "
                         "without crossing), so the event time has no gradient; change event_fn or detach.")
    delta = comb(te.detach(), state) - value.detach()  # value 0; its gradient is dc along the solve and event_fn
    event_t = te.detach() - delta / total
    return event_t, state + slope * (event_t - te.detach()).to(state.dtype)
