"""Sliding-window Picard sweeps on the adjoint recurrence, from the end of the grid.

A slot is accepted by the core's stop rule (:func:`parasolve.stop_rule.within_budget`) in the
form it takes without declared gains and without a floor: each defect within its own share of
``tol * G`` (``G`` the cotangents' size), the shares ``|h_i| / |T|`` computed here in the order
the adjoint always has (``tol * G * h / sum h``, which rounds differently from the forward's
``tol * (h / sum h)``). The slots are judged from the end of the window, as the recurrence runs.
"""

from __future__ import annotations

import torch

from .. import stop_rule
from ..errors import ConvergenceError
from ..schemes.base import per_step
from ..solution import SweepRecord


def zeros_like_all(params, t, t_grad):
    """Zeroed accumulators for the gradients of ``params`` (and of ``t`` where wanted)."""
    return [torch.zeros_like(p) for p in params] + ([torch.zeros_like(t)] if t_grad else [])


def _add(acc, grads):
    for a, gx in zip(acc, grads):
        a.add_(gx)


def _revcumsum(x):
    return x.flip(0).cumsum(0).flip(0)


def picard(problem, xs, g, params, t_grad, window, tol, opts, stats, linearize):
    """``(lambda, parameter and t gradients)`` by sliding-window Picard sweeps (one batched VJP each)."""
    n, multistep = problem.n_steps, problem.step.multistep
    max_iters = n if opts["max_iters"] is None else opts["max_iters"]
    h = (problem.t[1:] - problem.t[:-1]).abs().double().cpu()
    thr = tol * stats.cotangent_sum * h / h.sum()
    full = window >= n
    lam = torch.empty_like(g)
    lam[n] = g[n]
    lam[:n] = lam[n] + _revcumsum(g[:n])  # first guess: mu = 0
    acc = zeros_like_all(params, problem.t, t_grad)
    need_params = bool(acc)
    b, lin = n, None  # lam[b:] is final
    while b > 0:
        if stats.sweeps >= max_iters:
            raise ConvergenceError(f"adjoint picard: {max_iters} sweeps (adjoint_options['max_iters']) did not "
                                   f"solve the adjoint of {n} steps; raise it (at most {n} are ever needed).")
        if lin is None or (b - lin.k0 < (window + 1) // 2 and lin.k0 > 0):
            # (re)linearise a window ending at b; kept while at least half of it is unaccepted
            a_new = max(0, b - window)
            if lin is not None:  # slots entering the window start from the mu = 0 guess at its old edge
                lam[a_new:lin.k0] = lam[lin.k0] + _revcumsum(g[a_new:lin.k0])
            lin = None  # free the old graph first: one window's graph is live at a time
            lin = linearize(problem, xs, a_new, b + 1 if multistep and b < n else b)
        a = lin.k0
        mu, pgrads = lin.vjp(lam[lin.k0 + 1:lin.k1 + 1], "all" if full else "states")
        stats.vjp_rounds += 1
        stats.sweeps += 1
        mu = mu[a - lin.k0:b - lin.k0]
        defect = per_step(lam[a:b] - lam[a + 1:b + 1] - g[a:b] - mu).abs().amax(1).detach().cpu()
        back = defect.flip(0)  # trailing slots first; -inf: no floor (no defect passes at it)
        m = stop_rule.within_budget(back, torch.ones_like(back, dtype=torch.float64), thr[a:b].flip(0), None,
                                    torch.full_like(back, -float("inf"), dtype=torch.float64))
        stats.defect_sum += float(defect[b - a - m:].sum())
        b1 = b - m
        if b1 > a:  # one more slot is exact: its mu uses only final lambdas
            lam[b1 - 1] = g[b1 - 1] + lam[b1] + mu[b1 - 1 - a]
            if not torch.isfinite(lam[b1 - 1]).all():
                raise problem.non_finite(b1 - 1)
        b2 = b1 - 1 if b1 > a else b1
        stats.history.append(SweepRecord(stats.sweeps, a, b, float(defect.max()), b - b2))
        if need_params and full and b2 == 0:  # the last sweep's cotangents are all final
            _add(acc, pgrads)
        if b2 > a:  # Picard update of the rest of the window from the new boundary
            rest = lam[b2] + _revcumsum(g[a:b2] + mu[:b2 - a])
            guess = lam[b2] + _revcumsum(g[a:b2])
            lam[a:b2] = torch.where(torch.isfinite(rest), rest, guess)
        b = b2
    if need_params and not full:
        del lin  # the pass below holds one window's graph at a time
        parameter_pass(problem, xs, lam, window, acc, stats, linearize)
    return lam, acc


def parameter_pass(problem, xs, lam, window, acc, stats, linearize, lins=None):
    """``acc += sum_k lambda_{k+1}^T dPhi_k/d(params, t)`` over windows of steps (independent VJPs)."""
    n = problem.n_steps
    for j, k0 in enumerate(range(0, n, window)):
        k1 = min(n, k0 + window)
        lin = lins[j] if lins else linearize(problem, xs, k0, k1)
        _add(acc, lin.vjp(lam[k0 + 1:k1 + 1], "params")[1])
        stats.vjp_rounds += 1
