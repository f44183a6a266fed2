"""``adaptive=True``: error control by step doubling on the same Brownian path, grid-wide.

torchsde compares, step by step, one step of ``h`` with two of ``h/2`` and grows or shrinks ``h``.
Here every pass does that for the whole grid at once: the grid halved (every step cut in two)
is solved by the chosen scheme -- that solution is the answer, as torchsde keeps the two half
steps -- then one full step from each even point of it is taken in one batched call of the step
map, and each step's error estimate is torchsde's RMS of ``(full - halves) / (atol + rtol *
max(|full|, |halves|))``. Steps whose estimate exceeds 1 are cut in two and the next pass runs;
a step is not cut below ``dt_min`` (a warning says so, and it is accepted, as torchsde does).
Every pass queries the same Brownian motion (a ``BrownianInterval`` answers any partition of
its path consistently), so refining never changes the path.

Unlike torchsde's controller the grid is only refined, never coarsened below the starting
``dt``: start from a coarse ``dt`` when the tolerance allows long steps.
"""

from __future__ import annotations

import warnings

import torch

from . import brownian

MAX_PASSES = 20


def _halved(grid: torch.Tensor) -> torch.Tensor:
    """``grid`` with every step cut in two."""
    mid = 0.5 * (grid[:-1] + grid[1:])
    return torch.cat([torch.stack([grid[:-1], mid], 1).reshape(-1), grid[-1:]])


def error_ratios(full, halves, rtol, atol) -> torch.Tensor:
    """Per-step RMS of ``(full - halves) / (atol + rtol max(|full|, |halves|))`` (torchsde's norm,
    floored at 1e-7 like it), shape ``(N,)``."""
    scale = (rtol * torch.maximum(full.abs(), halves.abs()) + atol).clamp_min(1e-7)
    err = ((full - halves) / scale).reshape(full.shape[0], -1)
    return (err ** 2).mean(1).sqrt().clamp_min(1e-7)


def solve_adaptive(solve_on, full_steps, y_part, ts, dt, rtol, atol, dt_min):
    """Refine torchsde's ``dt`` grid on ``ts`` until every step passes; returns ``(grid, the
    solve_on result on it, passes)``. ``solve_on(grid)`` solves one grid (its ``[1]`` is the
    Solution); ``full_steps(coarse, xs)`` takes one step of ``coarse`` from each state ``xs[k]``;
    ``y_part(x)`` is the part of a state the error is measured on."""
    coarse = brownian.step_grid(ts, dt)
    for passes in range(1, MAX_PASSES + 1):
        fine = _halved(coarse)
        result = solve_on(fine)
        with torch.no_grad():
            xs = result[1].ys.detach()
            full = full_steps(coarse, xs[0:-1:2])
            ratio = error_ratios(y_part(full), y_part(xs[2::2]), rtol, atol).cpu()
        h = (coarse[1:] - coarse[:-1]).cpu()
        failed = ratio > 1
        floor = failed & (0.5 * h < dt_min)
        if bool(floor.any()):
            warnings.warn("parasolve.sdeint: adaptive stepping hit dt_min; those steps are accepted as they are.",
                          RuntimeWarning, stacklevel=3)
        cut = failed & ~floor
        if not bool(cut.any()):
            return fine, result, passes
        coarse = _split(coarse, cut)
    raise RuntimeError(f"parasolve.sdeint: adaptive stepping did not settle in {MAX_PASSES} passes; loosen "
                       f"rtol/atol or raise dt_min.")


def _split(grid, cut):
    mid = 0.5 * (grid[:-1] + grid[1:])
    keep = torch.stack([grid[:-1], torch.where(cut.to(grid.device), mid, grid[:-1])], 1).reshape(-1)
    mask = torch.stack([torch.ones_like(cut), cut], 1).reshape(-1).to(grid.device)
    return torch.cat([keep[mask], grid[-1:]])
