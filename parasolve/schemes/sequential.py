"""The reference: one step after another, ``x_{i+1} = x_i + Phi_i(x_i)``."""

from __future__ import annotations

import torch

from ..problem import Problem
from ..solution import Stats, Status
from .base import Scheme, register_scheme


@register_scheme
class Sequential(Scheme):
    """The plain loop: ``N`` dependent steps. ``max_iters`` below ``N`` stops it early."""

    name = "sequential"
    iterative = False

    def run(self, problem: Problem):
        n, y = problem.n_steps, problem.y0
        steps = min(n, problem.max_iters)
        keep_all = problem.save == "all"
        ys = [y] if keep_all else None
        first_bad = torch.full((), -1, dtype=torch.long, device=y.device)  # no host sync per step
        prev = None
        with problem.progress_bar("sequential") as bar:
            for i in range(steps):
                inc, first = problem.increments(i, y[None], prev)
                y = y + inc[0]
                if problem.step.multistep:
                    prev = first[0]
                bad = ~torch.isfinite(y).all()
                first_bad = torch.where(bad & (first_bad < 0), i, first_bad)
                if keep_all:
                    ys.append(y)
                bar.update(1)
        if int(first_bad) >= 0:
            raise problem.non_finite(int(first_bad))
        status = Status.SUCCESS if steps == n else Status.MAX_ITERS
        if keep_all:
            ys.extend([y] * (n - steps))
            out = torch.stack(ys)
        else:
            out = y[None]
        return problem.solution(out, status, Stats(iterations=steps, window=1), self.name)
