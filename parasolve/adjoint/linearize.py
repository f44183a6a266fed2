"""The step map linearised at the saved states: vector-Jacobian products and dense Jacobians of
one batched evaluation of ``Phi`` over a window of steps."""

from __future__ import annotations

import torch

from ..drift import local_evaluator
from ..schemes.base import per_step
from .options import AdjointError


class Linearization:
    """The increments of steps ``k0 .. k1-1`` at the saved states, with the autograd graph of that one
    batched evaluation. Multistep maps get step ``k0 - 1`` in front (zero cotangent), so step
    ``k0``'s ``prev`` is a differentiable function of ``x_{k0-1}`` exactly as in the forward batch."""

    def __init__(self, problem, xs, k0, k1, params, t_grad, placeholder=None):
        self.k0, self.k1, self.multistep = k0, k1, problem.step.multistep
        s0 = k0 - 1 if self.multistep and k0 > 0 else k0
        self.lead = k0 - s0
        self.y = xs[s0:k1].detach().requires_grad_(True)
        self.t = problem.t.detach().requires_grad_(True) if t_grad else problem.t
        self.params = params
        idx = torch.arange(s0, k1, device=problem.t.device)
        prev = placeholder if self.lead else None  # step s0's own increment is not used
        with torch.enable_grad():
            self.inc, _ = problem.step.increments(problem.drift, self.t, idx, self.y, prev)
        self.inputs = [self.y, *params] + ([self.t] if t_grad else [])
        if not self.inc.requires_grad and problem.drift.evaluator is not local_evaluator:
            raise AdjointError("The `evaluator` returned drift values without autograd history, so the solve "
                               "cannot be differentiated; use an evaluator that keeps the graph (e.g. the "
                               "default, or parasolve.evaluators' device evaluators) for gradients.")

    def vjp(self, ct, which="all"):
        """``(mu, param and t grads)`` for cotangents ``ct`` of steps ``k0 .. k1-1``.

        ``mu[j]`` is the state cotangent at ``x_{k0+j}``; ``which="states"``/``"params"`` skips the other part.
        """
        full = torch.cat([ct.new_zeros(self.lead, *ct.shape[1:]), ct])
        inputs = {"all": self.inputs, "states": self.inputs[:1], "params": self.inputs[1:]}[which]
        if not self.inc.requires_grad or not inputs:
            grads = [None] * len(inputs)
        else:
            grads = torch.autograd.grad(self.inc, inputs, full, retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(x) if gx is None else gx for gx, x in zip(grads, inputs)]
        if which == "params":
            return None, grads
        return grads[0][self.lead:], grads[1:]

    def jacobians(self):
        """``D[k] = dPhi_k/dx_k`` and, for multistep maps, ``K[k] = dPhi_k/dx_{k-1}`` (through ``prev``;
        else ``None``) as ``(k1 - k0, d, d)`` matrices, with the number of sequential VJP rounds taken.

        One VJP batched over the ``d`` basis vectors -- ``2 d`` for multistep maps: the basis on the
        even steps, then on the odd ones, so that each state receives either a row of ``D_i`` (from
        step ``i``) or a row of ``K_{i+1}`` (from step ``i + 1``), never their sum.
        """
        n, d, state = self.k1 - self.k0, self.y[0].numel(), self.y.shape[1:]
        colors = 2 if self.multistep else 1
        if not self.inc.requires_grad:
            zero = self.y.new_zeros(n, d, d)
            return zero, (zero if self.multistep else None), 0
        steps = torch.arange(self.k0, self.k1, device=self.y.device)
        parity = steps % colors
        on = (parity[None, :] == torch.arange(colors, device=self.y.device)[:, None]).to(self.y.dtype)
        basis = torch.eye(d, dtype=self.y.dtype, device=self.y.device)
        cts = (on[:, None, :, None] * basis[None, :, None, :]).reshape(colors * d, n, *state)
        cts = torch.cat([cts.new_zeros(colors * d, self.lead, *state), cts], 1)
        try:
            (rows,) = torch.autograd.grad(self.inc, self.y, cts, retain_graph=True, is_grads_batched=True)
            rounds = 1
        except RuntimeError:  # an op without a batching rule: one VJP per basis vector
            rows = torch.stack([torch.autograd.grad(self.inc, self.y, c, retain_graph=True, allow_unused=True)[0]
                                for c in cts])
            rounds = colors * d
        rows = per_step(rows, 2).reshape(colors, d, self.lead + n, d)  # [color, row c, state in y, column j]
        k = torch.arange(n, device=self.y.device)
        D = rows[parity, :, k + self.lead]  # (n, d, d): D[i][c, j] = dPhi_i[c]/dx_i[j]
        if not self.multistep:
            return D, None, rounds
        K = rows[parity, :, (k + self.lead - 1).clamp(min=0)]
        if self.lead == 0:
            K[0] = 0  # step 0 has no previous state
        return D, K, rounds


def carry_placeholder(problem, xs):
    """Zeros shaped like one step's carry (step 0 needs no ``prev``): the ``prev`` of a window's lead
    step, whose own increment gets a zero cotangent. One evaluation of the step map at one point."""
    with torch.no_grad():
        carry = problem.step.increments(problem.drift, problem.t, torch.zeros(1, dtype=torch.long,
                                                                             device=problem.t.device), xs[:1]).carry
    return torch.zeros_like(carry[0])
