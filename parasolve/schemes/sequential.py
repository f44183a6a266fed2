"""The reference: one step after another, ``x_{i+1} = x_i + Phi_i(x_i)``."""

from __future__ import annotations

import torch

from ..discrete_problem import Problem
from .base import Scheme, register_scheme
from .ledger import Ledger


@register_scheme
class Sequential(Scheme):
    """The plain loop: ``N`` dependent steps. ``max_iters`` below ``N`` stops it early."""

    name = "sequential"
    iterative = False

    def _run(self, problem: Problem):
        n, y = problem.n_steps, problem.y0
        steps = min(n, problem.max_iters)
        first_bad = torch.full((), -1, dtype=torch.long, device=y.device)  # no host sync per step
        prev = None
        with Ledger(problem, 1, self.name) as ledger:
            # With every state saved, the first non-finite one is found in the buffer at the end (a
            # non-finite state stays non-finite under x + Phi(x)); else each step is checked.
            watch = ledger.out is None
            for i in range(steps):
                inc, carry = problem.increments(i, y[None], prev)
                y = y + inc[0]
                if problem.step.multistep:
                    prev = carry[0]
                if watch:
                    bad = ~torch.isfinite(y).all()
                    first_bad = torch.where(bad & (first_bad < 0), i, first_bad)
                ledger.save(i + 1, y[None])
                ledger.advance(1)
            if not watch and not bool(torch.isfinite(y).all()):
                finite = torch.isfinite(ledger.out[1:steps + 1].reshape(steps, -1)).all(1)
                first_bad = torch.nonzero(~finite)[0, 0]
            ledger.fail_at(int(first_bad))
            ledger.stats.iterations = steps
            ledger.save_from(steps + 1, y)
            return ledger.solution(steps == n, y[None], self.name)
