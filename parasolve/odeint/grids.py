"""Grid arithmetic of the adaptive driver: the first step, refinement and coarsening, warm starts.

Times are handled in the coordinate ``s = direction * (t - t[0])``, increasing in both directions
of time, so one code path serves forward and backward solves.
"""

from __future__ import annotations

import torch

from .tableaus import apply_norm


@torch.no_grad()
def initial_step(drift, t0, y0, direction: float, order: int, rtol, atol, norm=None) -> float:
    """Hairer, Nørsett & Wanner's starting step (Solving ODEs I, II.4), as torchdiffeq picks it.

    Two batched drift rounds (``f(t0, y0)`` and one Euler-probed slope change); returns ``|h0|``.
    """
    f0 = drift(t0.reshape(1), y0[None])[0]
    d0 = float(_scaled_rms(y0, y0, rtol, atol, norm))
    d1 = float(_scaled_rms(f0, y0, rtol, atol, norm))
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    y1 = y0 + direction * h0 * f0
    f1 = drift((t0 + direction * h0).reshape(1), y1[None])[0]
    d2 = float(_scaled_rms(f1 - f0, y0, rtol, atol, norm)) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1)


def _scaled_rms(x, y0, rtol, atol, norm=None) -> torch.Tensor:
    scaled = x / (atol + rtol * y0.abs())
    return scaled.abs().pow(2).mean().sqrt() if norm is None else apply_norm(norm, scaled[None])[0]


def uniform_grid(t: torch.Tensor, spacing: float, max_steps: int) -> torch.Tensor:
    """``t`` with every interval cut into equal steps of length at most ``spacing`` (at most
    ``max_steps`` steps in all, spread in proportion to the intervals)."""
    gaps = (t[1:] - t[:-1]).abs().double().cpu()
    pieces = torch.clamp(torch.ceil(gaps / spacing), min=1).long()
    if int(pieces.sum()) > max_steps:
        pieces = torch.clamp(torch.ceil(gaps / float(gaps.sum()) * max_steps), min=1).long()
    return split(t, pieces)


def split(grid: torch.Tensor, pieces: torch.Tensor) -> torch.Tensor:
    """Cut step ``i`` of ``grid`` into ``pieces[i]`` equal steps; old points are kept bit for bit."""
    pieces = pieces.to(grid.device)
    starts = torch.repeat_interleave(grid[:-1], pieces)
    h = torch.repeat_interleave(grid[1:] - grid[:-1], pieces)
    n = torch.repeat_interleave(pieces, pieces).to(grid.dtype)
    offsets = torch.arange(int(pieces.sum()), device=grid.device) - torch.repeat_interleave(
        torch.cumsum(pieces, 0) - pieces, pieces)
    new = torch.cat([starts + h * (offsets.to(grid.dtype) / n), grid[-1:]])
    old_at = torch.cat([torch.zeros(1, dtype=torch.long, device=grid.device), torch.cumsum(pieces, 0)])
    new[old_at] = grid  # old points exactly, not recomputed
    return new


def targets(grid: torch.Tensor, ratio: torch.Tensor, order: int, safety: float, ifactor: float,
            dfactor: float) -> torch.Tensor:
    """The controller's step length for each step: ``|h| * clamp(safety * ratio^(-1/order), dfactor, ifactor)``
    (torchdiffeq's rule); a step without an estimate (``inf``/NaN) gets ``dfactor * |h|``."""
    h = (grid[1:] - grid[:-1]).abs().double().cpu()
    r = ratio.double().cpu()
    factor = torch.where(r > 0, safety * r.clamp(min=1e-300) ** (-1.0 / order), torch.full_like(r, ifactor))
    factor = factor.clamp(dfactor, ifactor)
    factor = torch.where(torch.isfinite(r), factor, torch.full_like(r, dfactor))
    return h * factor


def adapt(grid: torch.Tensor, ratio: torch.Tensor, keep: torch.Tensor, order: int, *, safety: float,
          ifactor: float, dfactor: float) -> torch.Tensor:
    """The next grid: failed steps (``ratio > 1``) cut into ``ceil(|h| / target)`` (at least 2) equal
    steps; runs of passed steps merged while the merged step is no longer than every member's
    target. Grid points flagged in ``keep`` (the output times, both ends) are never removed.

    Output times stay exact grid points: split keeps old points bit for bit.
    """
    h = (grid[1:] - grid[:-1]).abs().double().cpu()
    r = ratio.double().cpu()
    target = targets(grid, r, order, safety, ifactor, dfactor)
    failed = ~(r <= 1)
    pieces = torch.where(failed, torch.clamp(torch.ceil(h / target), min=2), torch.ones_like(h)).long()
    drop = torch.zeros(grid.shape[0], dtype=torch.bool)  # interior points removed by merging
    # plain lists: the scan below touches every step, and indexing tensors costs microseconds each
    hs, targets_, fails, keeps, dropped = h.tolist(), target.tolist(), failed.tolist(), keep.cpu().tolist(), []
    i, n = 0, h.shape[0]
    while i < n:
        if fails[i]:
            i += 1
            continue
        length, limit, j = hs[i], targets_[i], i + 1
        while j < n and not fails[j] and not keeps[j] and length + hs[j] <= min(limit, targets_[j]):
            length += hs[j]
            limit = min(limit, targets_[j])
            dropped.append(j)
            j += 1
        i = j
    drop[dropped] = True
    return split(grid[~drop], pieces[~drop[:-1]])


def merge(grid: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """``grid`` with ``times`` (inside its span) added as grid points, in the grid's direction; where
    both hold a point, the one from ``times`` is kept (its autograd history with it)."""
    direction = 1.0 if float(grid[-1] - grid[0]) > 0 else -1.0
    both = torch.cat([times.to(grid.dtype), grid])
    order = torch.argsort(direction * (both - grid[0]).double().cpu(), stable=True)
    both = both[order.to(both.device)]
    keep = torch.ones(both.shape[0], dtype=torch.bool, device=both.device)
    keep[1:] = both[1:] != both[:-1]
    return both[keep]


def positions(grid: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Grid indices of ``times``, which must be grid points (the output times always are)."""
    direction = 1.0 if float(grid[-1] - grid[0]) > 0 else -1.0
    s = direction * (grid - grid[0]).double().cpu()
    q = direction * (times - grid[0]).double().cpu()
    idx = torch.searchsorted(s, q)
    if not bool((s[idx.clamp(max=s.shape[0] - 1)] == q).all()):
        raise RuntimeError("parasolve.odeint: an output time is not a grid point (a bug; please report it).")
    return idx


def hermite(grid: torch.Tensor, ys: torch.Tensor, f0: torch.Tensor, f1: torch.Tensor,
            times: torch.Tensor) -> torch.Tensor:
    """Cubic Hermite interpolant of the trajectory ``ys`` on ``grid`` (slopes ``f0``/``f1`` at each
    step's start and end) at ``times``; grid points are returned exactly, with the interpolant's
    derivative w.r.t. the time (the slope there) and the grid (minus it), as torchdiffeq's."""
    direction = 1.0 if float(grid[-1] - grid[0]) > 0 else -1.0
    s = direction * (grid - grid[0]).double().cpu()
    q = direction * (times - grid[0]).double().cpu()
    i = (torch.searchsorted(s, q, right=True) - 1).clamp(0, grid.shape[0] - 2)
    h = (grid[i + 1] - grid[i]).to(ys.device)
    theta = ((q - s[i]) / (s[i + 1] - s[i])).to(device=ys.device, dtype=h.dtype)
    shape = (-1, *([1] * (ys.dim() - 1)))
    th, hb = theta.reshape(shape), h.reshape(shape)
    out = ((2 * th ** 3 - 3 * th ** 2 + 1) * ys[i] + (th ** 3 - 2 * th ** 2 + th) * hb * f0[i]
           + (-2 * th ** 3 + 3 * th ** 2) * ys[i + 1] + (th ** 3 - th ** 2) * hb * f1[i])
    exact = torch.searchsorted(s, q)
    hit = (exact < s.shape[0]) & (s[exact.clamp(max=s.shape[0] - 1)] == q)
    k = exact[hit].to(ys.device)
    slope = torch.cat([f0, f1[-1:]])[k]
    lag = (times[hit.to(times.device)] - grid[k]).to(ys.dtype).reshape(shape)  # zero, differentiable
    out[hit.to(ys.device)] = ys[k] + (lag * slope - (lag * slope).detach())
    return out
