"""The autograd node around a solve: its forward is the finished forward run (no graph), its
backward the discrete adjoint (``picard`` or ``scan``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch.autograd.function import once_differentiable

from ..errors import ConvergenceError
from ..schemes.base import per_step
from ..solution import Solution, SweepRecord
from ..steps import callable_names
from . import checkpoint
from .linearize import Linearization, carry_placeholder
from .options import AdjointError, deep_carry, scan_supported
from .picard import picard
from .scan import scan


@dataclass
class BackwardStats:
    """Cost of the last backward pass through a solve (``sol.backward``; ``calls == 0`` until then).

    ``sweeps``: Picard sweeps of the adjoint (scan rounds for ``"scan"``); ``vjp_rounds``:
    batched vector-Jacobian products through the step map, in sequence (the backward's
    sequential depth, with ``drift_calls``); ``drift_calls``/``nfe``: batched drift rounds and
    per-point evaluations made to linearise (and to recompute from checkpoints);
    ``defect_sum``: the accepted adjoint defects (at most ``tol * cotangent_sum``).
    """

    method: str = ""
    calls: int = 0
    sweeps: int = 0
    vjp_rounds: int = 0
    drift_calls: int = 0
    nfe: int = 0
    window: int = 0
    tol: float = 0.0
    cotangent_sum: float = 0.0
    defect_sum: float = 0.0
    history: list[SweepRecord] = field(default_factory=list)


def leaves(out) -> list:
    """The leaf tensors requiring grad that ``out`` was computed from."""
    if not isinstance(out, torch.Tensor) or out.grad_fn is None:
        return []
    found, seen, stack = [], set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            found.append(fn.variable)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return found


def hidden_error(what, hidden) -> AdjointError:
    shapes = ", ".join(str(tuple(v.shape)) for v in hidden[:4])
    return AdjointError(f"{what} uses {len(hidden)} tensor(s) that require grad (shapes {shapes}) and are not "
                        f"parameters of an nn.Module drift, so parasolve does not know to differentiate them; "
                        f"pass them as `adjoint_params=` (adjoint_params=() differentiates w.r.t. y0 and t only).")


def probe_hidden(problem, params) -> list:
    """The leaf tensors requiring grad, other than ``params``, ``y0`` and ``t``, that the first step's
    increment at ``y0`` depends on (one evaluation of the step map, left out of the drift's counts)."""
    drift = problem.drift
    nfe, calls = drift.nfe, drift.calls
    try:
        lin = Linearization(problem, problem.y0.detach()[None], 0, 1, params, problem.t.requires_grad)
    except AdjointError:  # an evaluator that drops the graph: the backward says so, if it is run
        return []
    finally:
        drift.nfe, drift.calls = nfe, calls
    known = {id(v) for v in lin.inputs} | {id(problem.y0), id(problem.t)}
    return [v for v in leaves(lin.inc) if id(v) not in known]


class AdjointNode:
    """A differentiable solve between its forward run and its backward pass.

    ``problem``: the problem the forward must run (every state kept, no graph); :meth:`wrap`
    turns that run's solution into the differentiable one, w.r.t. ``y0``, ``t`` and ``params``.
    """

    def __init__(self, problem, params, options, check_hidden):
        self.params, self.options, self.check_hidden = params, options, check_hidden
        self.save = problem.save
        self.problem = dataclasses.replace(problem, save="all", y0=problem.y0.detach(), t=problem.t.detach(),
                                           init=None if problem.init is None else problem.init.detach())
        self.t_grad = problem.t.requires_grad
        self.stats = BackwardStats()
        self.converged = False
        self.placeholder = None  # a `prev` of the carry's shape, for multistep windows not starting at 0
        self._inputs = (problem.y0, problem.t)
        self._ys = None

    def wrap(self, sol: Solution) -> Solution:
        """``sol`` (the forward run of :attr:`problem`) with ``ys`` the node's differentiable
        output (the last state only where the solve asked ``save="last"``) and ``backward`` the
        :class:`BackwardStats` its backward pass fills."""
        self.converged, self._ys = sol.converged, sol.ys
        (y0, t), self._inputs = self._inputs, None
        out = _SolveFunction.apply(self, y0, t, *self.params)
        return dataclasses.replace(sol, ys=out, backward=self.stats)

    def linearize(self, problem, xs, k0, k1):
        """The step map linearised over steps ``k0 .. k1-1``; the first one is checked for tensors the
        drift uses that require grad but are not parameters (their gradients would be lost)."""
        if problem.step.multistep and k0 > 0 and self.placeholder is None:
            self.placeholder = carry_placeholder(problem, xs)
        lin = Linearization(problem, xs, k0, k1, self.params, self.t_grad, self.placeholder)
        if self.check_hidden:
            known = {id(v) for v in lin.inputs}
            hidden = [v for v in leaves(lin.inc) if id(v) not in known]
            if hidden:
                raise hidden_error(callable_names(problem.step), hidden)
            self.check_hidden = False
        return lin

    def backward(self, saved, grad):
        if not self.converged:
            raise ConvergenceError("The forward solve did not converge (throw=False), so its result is not the "
                                   "discrete solution and has no gradient; increase `max_iters` or loosen `tol`.")
        problem, opts, stats = self.problem, self.options, self.stats
        n = problem.n_steps
        tol = problem.tol if opts["tol"] is None else float(opts["tol"])
        window = min(n, problem.window if opts["window"] is None else opts["window"])
        method = opts["method"]
        if deep_carry(problem):  # exact only over the whole grid (see options.deep_carry)
            method, window = "picard", n
        if method == "auto":
            method = "scan" if scan_supported(problem, opts["max_dense"], explicit=False) else "picard"
        stats.__dict__.update(BackwardStats(method=method, calls=stats.calls + 1, window=window, tol=tol).__dict__)
        nfe, calls = problem.drift.nfe, problem.drift.calls
        xs = saved if opts["checkpoint"] is None else checkpoint.recompute(problem, saved, opts["checkpoint"])
        g = grad if self.save == "all" else torch.cat([torch.zeros_like(xs[:-1]), grad])
        stats.cotangent_sum = float(per_step(g).abs().amax(1).sum())
        solver = picard if method == "picard" else scan
        lam, grads = solver(problem, xs, g, self.params, self.t_grad, window, tol, opts, stats, self.linearize)
        stats.nfe += problem.drift.nfe - nfe
        stats.drift_calls += problem.drift.calls - calls
        return lam[0], grads[-1] if self.t_grad else None, grads[:len(self.params)]


class _SolveFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, node, y0, t, *params):
        ys, node._ys = node._ys, None  # the forward run's states (no graph); the node keeps no reference
        ctx.node = node
        ctx.save_for_backward(checkpoint.kept(ys, node.options["checkpoint"]))
        return ys if node.save == "all" else ys[-1:].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (saved,) = ctx.saved_tensors
        grad_y0, grad_t, grad_params = ctx.node.backward(saved, grad)
        need = ctx.needs_input_grad
        return (None, grad_y0 if need[1] else None, grad_t if need[2] else None,
                *(gp if nd else None for gp, nd in zip(grad_params, need[3:])))
