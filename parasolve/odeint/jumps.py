"""``options["jump_t"]``: times where the drift may jump, at which the solve stops and restarts.

As torchdiffeq's adaptive solvers do, no step crosses a jump time, a step ending there evaluates
the drift just before it and the next step starts just after it (one ulp away, so ``func`` sees
the side of the discontinuity the step lies on). Here that is literal: the interval is cut at the
jump times inside it and the pieces are solved one after another, each from the last one's end
state (which carries the gradient), each on its own grid solved parallel in time.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from .result import OdeintResult, OdeintStats


def check_jumps(jump_t) -> torch.Tensor:
    """``jump_t`` as a 1-D float64 tensor of finite times (any order)."""
    if isinstance(jump_t, numbers.Real) and not isinstance(jump_t, bool):
        jump_t = [jump_t]
    if isinstance(jump_t, (list, tuple, np.ndarray)):
        jump_t = torch.as_tensor(np.asarray(jump_t, dtype=np.float64))
    if not isinstance(jump_t, torch.Tensor) or jump_t.is_complex() or jump_t.dim() > 1:
        raise TypeError(f"options['jump_t'] must be a 1-D tensor or sequence of times; got {jump_t!r}.")
    jump_t = jump_t.detach().reshape(-1).double().cpu()
    if not torch.isfinite(jump_t).all():
        raise ValueError(f"options['jump_t'] must hold finite times; got {jump_t.tolist()}.")
    return jump_t


def solve_segments(run, func, y0: torch.Tensor, t: torch.Tensor, jumps: torch.Tensor) -> OdeintResult:
    """``run(func, y0, times)`` on each piece of ``t``'s interval between the jump times inside it.

    Each piece's times are its ends and the output times inside it; the answer at an output time
    that is a jump time is the end of the piece before it (the state is continuous there).
    """
    direction = 1.0 if float(t[-1] - t[0]) > 0 else -1.0
    s_t = direction * (t.detach().double().cpu() - float(t[0]))
    s_j = direction * (jumps.to(torch.float64) - float(t[0]))
    cuts = torch.unique(s_j[(s_j > 0) & (s_j < float(s_t[-1]))])  # sorted, in the direction of time
    if len(cuts) == 0:
        return run(func, y0, t)
    edges = [t[0]] + [torch.as_tensor(float(t[0]) + direction * float(c), dtype=t.dtype, device=t.device)
                      for c in cuts] + [t[-1]]
    s_edges = [0.0] + [float(c) for c in cuts] + [float(s_t[-1])]
    y, pieces, outputs = y0, [], [None] * t.shape[0]
    outputs[0] = y0
    for k in range(len(edges) - 1):
        lo, hi = s_edges[k], s_edges[k + 1]
        inside = [i for i in range(t.shape[0]) if lo < float(s_t[i]) < hi]
        times = torch.stack([edges[k]] + [t[i] for i in inside] + [edges[k + 1]])
        res = run(_one_sided(func, times, k > 0, k < len(edges) - 2), y, times)
        pieces.append(res)
        for j, i in enumerate(inside, 1):
            outputs[i] = res.ys[j]
        for i in range(t.shape[0]):
            if float(s_t[i]) == hi:
                outputs[i] = res.ys[-1]
        y = res.ys[-1]
    return _combine(pieces, torch.stack(outputs), t)


def _one_sided(func, times: torch.Tensor, after_jump: bool, before_jump: bool):
    """``func`` with times at a jump end of the piece moved one ulp into it."""
    start, end = times[0].detach(), times[-1].detach()
    if after_jump:
        start = torch.nextafter(start, end)
    if before_jump:
        end = torch.nextafter(end, start)
    lo, hi = (float(start), float(end)) if float(end) > float(start) else (float(end), float(start))

    def piece_func(t, y):
        return func(torch.clamp(t, lo, hi), y)
    return piece_func


def _combine(pieces: list, ys: torch.Tensor, t: torch.Tensor) -> OdeintResult:
    """One :class:`OdeintResult` of the pieces: the grids joined, the costs summed, the last
    piece's ``solution`` and the largest ``max_ratio``."""
    stats = OdeintStats()
    for p in pieces:
        for key in ("sweeps", "drift_rounds", "nfe", "accepted_steps", "rejected_steps", "passes", "coarsened"):
            setattr(stats, key, getattr(stats, key) + getattr(p.stats, key))
        stats.history.extend(p.stats.history)
    grid = torch.cat([pieces[0].grid] + [p.grid[1:] for p in pieces[1:]])
    return OdeintResult(ys=ys, t=t, grid=grid, solution=pieces[-1].solution, stats=stats,
                        method=pieces[-1].method, max_ratio=max(p.max_ratio for p in pieces))
