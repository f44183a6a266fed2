"""16-bit states: ``solve`` and ``solve_sde`` keep them in float32 (complex64) and return the
answer in the caller's dtype, as ``diffusion.sample`` does.

A parallel solve accepts a step when its defect ``x_{i+1} - x_i - Phi_i(x_i)`` is small, and 16
bits cannot resolve a defect below about 8 ulps of the state per step: bfloat16's floor exceeded
a whole step of y' = -y on 20 steps, so the initial guess passed as converged. The drift is
called on float32 states and times -- unless it is an ``nn.Module`` with 16-bit parameters,
which gets its own dtype (a 16-bit model computes in 16 bits; its rounding, a step function of
the state at 16-bit resolution, then limits how closely any two solves can agree).
"""

from __future__ import annotations

import dataclasses

import torch

from . import _checks as checks

#: 16-bit state dtypes and the dtype their states are solved in.
WIDER = {torch.float16: torch.float32, torch.bfloat16: torch.float32, torch.complex32: torch.complex64}


class Wide(torch.nn.Module):
    """``f`` on widened states (an ``nn.Module``, so that ``f``'s parameters stay the default
    ``adjoint_params``): called in ``compute`` (``None``: the wide dtype itself), its 16-bit
    outputs widened. ``compute_dtype`` tells the drift's row check the precision of the rows."""

    def __init__(self, f, compute: torch.dtype | None, wide: torch.dtype):
        super().__init__()
        self.f, self.compute_dtype, self.wide = f, compute, wide
        self.__name__ = getattr(f, "__name__", type(f).__name__)

    def forward(self, t, y):
        if self.compute_dtype is not None:
            t, y = t.to(self.compute_dtype.to_real()), y.to(self.compute_dtype)
        out = self.f(t, y)
        narrow = isinstance(out, torch.Tensor) and out.dtype in WIDER
        return out.to(self.wide) if narrow else out


def _own_dtype(f) -> torch.dtype | None:
    """The 16-bit dtype of an ``nn.Module``'s floating parameters (or buffers), else ``None``."""
    if isinstance(f, torch.nn.Module):
        for p in (*f.parameters(), *f.buffers()):
            if p.is_floating_point() or p.is_complex():
                return p.dtype if p.dtype in WIDER else None
    return None


def widen(given: torch.dtype, fs, y0, t, init, tol):
    """``(fs, y0, init, tol)`` for a solve of 16-bit ``y0`` in the wider dtype (unchanged for
    other dtypes); ``tol`` keeps the 16-bit default (1e-2), and the times must fit 16 bits (the
    answer's ``ts`` are returned in them; a 16-bit model also sees them in 16 bits)."""
    wide = WIDER.get(given)
    if wide is None:
        return fs, y0, init, tol
    computes = [_own_dtype(f) for f in fs]
    if any(c is not None for c in computes):
        checks.check_grid(t, y0)  # the drift sees the times in 16 bits
    else:
        grid = checks.check_grid(t, y0.to(wide))
        if not torch.isfinite(grid.to(given.to_real())).all():
            raise ValueError(f"`t` does not fit y0's dtype {given}: its times (up to |t| = {float(grid.abs().max()):g}) "
                             f"overflow to Inf in it, and the answer's times are returned in y0's dtype. Rescale "
                             f"time, or solve in a wider dtype (e.g. y0.float()).")
    if isinstance(init, torch.Tensor) and init.dtype == given:
        init = init.to(wide)
    fs = tuple(Wide(f, c, wide) if callable(f) else f for f, c in zip(fs, computes))
    return fs, y0.to(wide), init, checks.default_tol(given) if tol is None else tol


def narrow(sol, given: torch.dtype):
    """The solution of a widened solve in the caller's dtype (differentiably)."""
    if sol.ys.dtype != given:
        return dataclasses.replace(sol, ys=sol.ys.to(given), ts=sol.ts.to(given.to_real()))
    return sol
