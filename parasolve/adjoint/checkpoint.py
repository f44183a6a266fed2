"""Checkpoints: the forward keeps every ``k``-th state (and the last); the backward recomputes the
states between them."""

from __future__ import annotations

import torch


def kept(ys: torch.Tensor, every: int | None) -> torch.Tensor:
    """The states a differentiable solve keeps for its backward: all (``every=None``), or every
    ``every``-th one and the last."""
    return ys if every is None else torch.cat([ys[:-1:every], ys[-1:]])


def recompute(problem, saved: torch.Tensor, every: int) -> torch.Tensor:
    """The trajectory from the states saved every ``every`` steps (and the last): the segments run
    side by side, ``every - 1`` batched rounds of the step map (one-step maps only)."""
    n = problem.n_steps
    xs = torch.empty((n + 1, *saved.shape[1:]), dtype=saved.dtype, device=saved.device)
    xs[0:n:every] = saved[:-1]
    xs[n] = saved[-1]
    starts = torch.arange(0, n, every, device=problem.t.device)
    y = saved[:-1]
    for j in range(1, every):
        live = starts + j < n  # the segments still inside the grid (only the last one ends early)
        k = int(live.sum())
        if k == 0:
            break
        inc, _ = problem.step.increments(problem.drift, problem.t, starts[:k] + j - 1, y[:k], None)
        y = y[:k] + inc
        xs[starts[:k] + j] = y
    return xs
