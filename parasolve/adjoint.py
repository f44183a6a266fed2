"""Gradients of a solve: the discrete adjoint of the step map, solved parallel in time.

A solve's answer is the discrete trajectory ``x_{i+1} = x_i + Phi_i(x_i)`` (multistep maps: also
of ``x_{i-1}``, through ``prev``). For a loss ``L(x_0 .. x_N)`` with cotangents ``g_i = dL/dx_i``,
the exact gradient of that discrete solution is given by the time-reversed linear recurrence

    lambda_N = g_N,    lambda_i = g_i + lambda_{i+1} + mu_i,
    mu_i = sum_k lambda_{k+1}^T dPhi_k/dx_i      (k = i, and k = i + 1 for multistep maps),

with ``dL/dy0 = lambda_0``, ``dL/dtheta = sum_k lambda_{k+1}^T dPhi_k/dtheta`` and likewise for the
grid ``t``. The forward solve runs without an autograd graph and keeps the trajectory (or every
``checkpoint``-th state, the rest recomputed); the backward linearises the step map at the saved
states -- one batched evaluation of ``Phi`` per window with an autograd graph of that one
evaluation -- and solves the recurrence with vector-Jacobian products batched over the window:

- ``method="picard"``: sliding-window sweeps from the end, ``lambda_i <- lambda_b + sum_{k=i}^{b-1}
  (g_k + mu_k)``; a slot is accepted when its defect ``|lambda_i - lambda_{i+1} - g_i - mu_i|``
  is within ``tol * G * |h_i| / |T|`` (``G = sum_i max|g_i|``), so the accepted defects sum to at
  most ``tol * G`` and ``max|lambda - lambda_exact| <= S * tol * G`` with ``S`` the stability
  constant of the transposed recurrence (docs/gradients.md). Each sweep is one batched VJP.
- ``method="scan"``: the Jacobians ``dPhi_i/dx_i`` as dense matrices (one VJP round batched over
  the state's ``d`` basis vectors), then a parallel scan of the affine recurrence in
  ``ceil(log2 N)`` rounds of matrix products: a direct solve, exact up to round-off, for small
  real states (``d <= max_dense``); multistep maps scan the pair ``(lambda_i, lambda_{i+1})``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch.autograd.function import once_differentiable

from . import _checks as checks
from .drift import local_evaluator
from .errors import ConvergenceError, ParasolveError
from .schemes.base import per_step
from .schemes.jacobians import affine_scan  # noqa: F401  (re-exported: the scan both directions use)
from .solution import SweepRecord
from .steps import callable_names

__all__ = ["BackwardStats", "AdjointError", "GradientRequest", "ADJOINT_OPTIONS", "affine_scan"]

#: ``adjoint_options`` keys and their defaults (``None``: taken from the forward solve).
ADJOINT_OPTIONS = {"method": "auto", "tol": None, "window": None, "max_iters": None,
                   "checkpoint": None, "max_dense": 32}


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


class AdjointError(ParasolveError, ValueError):
    """A gradient was asked of a solve in a way the adjoint cannot provide (the message says why)."""


# --------------------------------------------------------------------------- request and set-up

class GradientRequest:
    """What ``solve(..., adjoint_params=, adjoint_options=)`` asked for, before the solve runs.

    ``callables``: the user's functions whose ``nn.Module`` parameters are the default
    ``adjoint_params`` (``f``; ``f`` and ``g`` for SDEs).
    """

    def __init__(self, adjoint_params, adjoint_options, callables):
        self.explicit = adjoint_params is not None
        self.params = _check_params(adjoint_params, callables)
        self.options = _check_options(adjoint_options)
        self.callables = callables

    def wanted(self, problem) -> bool:
        """Whether this solve must be differentiable (grad mode on and some input requires grad)."""
        return torch.is_grad_enabled() and (problem.y0.requires_grad or problem.t.requires_grad
                                            or any(p.requires_grad for p in self.params))

    def run_plain(self, scheme, problem, finish):
        """A solve of which nothing visible asks for gradients. Grad mode on and no explicit
        ``adjoint_params``: the sweeps run recording, and if the result requires grad (the drift
        closes over tensors that require grad) it becomes the differentiable solve w.r.t. those
        tensors, as torchdiffeq's ``odeint`` differentiates them by autograd."""
        if self.explicit or not torch.is_grad_enabled():
            with torch.no_grad():
                return finish(scheme.run(problem))
        sol = scheme.run(problem)
        if not sol.ys.requires_grad:
            return finish(sol)
        hidden = _leaves(sol.ys)  # the sweeps were recorded: differentiate w.r.t. these instead
        sol.ys = sol.ys.detach()
        return self.run(scheme, problem, finish, hidden=hidden, done=sol if problem.save == "all" else None)

    def run(self, scheme, problem, finish, hidden=None, done=None):
        """The solve as an autograd node: forward without a graph, backward by the discrete adjoint.

        Without explicit ``adjoint_params``, the tensors requiring grad that the drift closes over
        are differentiated too: ``hidden`` if the caller found them, else those that one
        evaluation of the first step (at ``y0``, not counted in the stats) depends on. ``done``:
        the forward solve's result if it ran already (``save="all"``)."""
        if self.options["method"] == "scan":
            _scan_supported(problem, self.options["max_dense"], explicit=True)
        _check_deep_carry(problem, self.options)
        if problem.step.multistep and self.options["checkpoint"] is not None:
            raise AdjointError(f"adjoint_options['checkpoint'] is not supported for the multistep step map "
                               f"{problem.step.name!r}: a multistep map reads `prev` along consecutive steps "
                               f"only, so the segments cannot be recomputed side by side; drop 'checkpoint' "
                               f"to keep the whole trajectory.")
        params = [p for p in self.params if p.requires_grad]
        if not self.explicit:
            known = {id(p) for p in params}
            found = _probe_hidden(problem, params) if hidden is None else hidden
            params += [v for v in found if id(v) not in known and not known.add(id(v))]
        job = _Job(scheme, problem, params, self.options, finish, check_hidden=not self.explicit, done=done)
        out = _SolveFunction.apply(job, problem.y0, problem.t, *params)
        sol, job.solution = job.solution, None  # no cycle: a dropped solution is freed at once
        sol.ys = out
        sol.backward = job.stats
        return sol


def _check_params(adjoint_params, callables):
    if adjoint_params is None:
        found = [p for c in callables if isinstance(c, torch.nn.Module) for p in c.parameters()]
    elif isinstance(adjoint_params, torch.Tensor):
        raise TypeError("`adjoint_params` must be a sequence of tensors (e.g. tuple(model.parameters())); "
                        "got a single tensor: wrap it as (tensor,).")
    else:
        try:
            found = list(adjoint_params)
        except TypeError:
            raise TypeError(f"`adjoint_params` must be an iterable of tensors; got "
                            f"{type(adjoint_params).__name__}.") from None
        bad = [type(p).__name__ for p in found if not isinstance(p, torch.Tensor)]
        if bad:
            raise TypeError(f"`adjoint_params` must hold only tensors; got {bad[:3]}.")
    unique, seen = [], set()
    for p in found:
        if id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    return unique


def _check_options(options):
    opts = dict(ADJOINT_OPTIONS)
    if options is None:
        return opts
    if not isinstance(options, dict):
        raise TypeError(f"`adjoint_options` must be a dict; got {type(options).__name__}.")
    unknown = sorted(set(options) - set(ADJOINT_OPTIONS))
    if unknown:
        raise TypeError(f"Unknown `adjoint_options` {unknown}; valid: {sorted(ADJOINT_OPTIONS)}.")
    opts.update(options)
    checks.check_choice("adjoint_options['method']", opts["method"], ("auto", "picard", "scan"))
    for key in ("window", "max_iters", "checkpoint", "max_dense"):
        value = opts[key]
        checks.check_positive_int(f"adjoint_options[{key!r}]", value, none_ok=True)
    tol = opts["tol"]
    checks.check_real("adjoint_options['tol']", tol, low=0.0, none_ok=True)
    return opts


def _hidden_error(what, hidden):
    shapes = ", ".join(str(tuple(v.shape)) for v in hidden[:4])
    return AdjointError(f"{what} uses {len(hidden)} tensor(s) that require grad (shapes {shapes}) and are not "
                        f"parameters of an nn.Module drift, so parasolve does not know to differentiate them; "
                        f"pass them as `adjoint_params=` (adjoint_params=() differentiates w.r.t. y0 and t only).")


def _probe_hidden(problem, params):
    """The leaf tensors requiring grad, other than ``params``, ``y0`` and ``t``, that the first step's
    increment at ``y0`` depends on (one evaluation of the step map, left out of the drift's counts)."""
    drift = problem.drift
    nfe, calls = drift.nfe, drift.calls
    try:
        lin = _Linearization(problem, problem.y0.detach()[None], 0, 1, params, problem.t.requires_grad)
    except AdjointError:  # an evaluator that drops the graph: the backward says so, if it is run
        return []
    finally:
        drift.nfe, drift.calls = nfe, calls
    known = {id(v) for v in lin.inputs} | {id(problem.y0), id(problem.t)}
    return [v for v in _leaves(lin.inc) if id(v) not in known]


def _leaves(out):
    """The leaf tensors requiring grad that ``out`` was computed from."""
    if not isinstance(out, torch.Tensor) or out.grad_fn is None:
        return []
    leaves, seen, stack = [], set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            leaves.append(fn.variable)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return leaves


def _deep_carry(problem) -> bool:
    """Whether a multistep map's carry reaches back more than one state (UniPC of order >= 2): the
    linearisation is then exact only over the whole grid at once (a window's lead step would
    need the states before it), so the adjoint is Picard with one window of every step."""
    return problem.step.multistep and problem.step.carry_depth > 1


def _check_deep_carry(problem, options) -> None:
    if not _deep_carry(problem):
        return
    n, depth, name = problem.n_steps, problem.step.carry_depth, problem.step.name
    if options["method"] == "scan":
        raise AdjointError(f"adjoint_options['method']='scan' is not available for {name!r}: its steps use the "
                           f"{depth} states before them (a multistep carry deeper than one step, which the scan's "
                           f"two-step recurrence does not hold); use 'auto' or 'picard'.")
    if options["window"] is not None and options["window"] < n:
        raise AdjointError(f"adjoint_options['window']={options['window']} is not available for {name!r}: its steps "
                           f"use the {depth} states before them, so the adjoint is linearised over all {n} steps "
                           f"at once; drop 'window' (or pass {n}).")


def _scan_supported(problem, max_dense, explicit) -> bool:
    size = problem.y0.numel()
    reason = None
    if problem.y0.is_complex():
        reason = "the state is complex; use method 'picard'"
    elif size > max_dense:
        reason = (f"the state has {size} entries > max_dense={max_dense} (the scan stores dense "
                  f"{size}x{size} Jacobians per step); raise 'max_dense' or use method 'picard'")
    if reason and explicit:
        raise AdjointError(f"adjoint_options['method']='scan' is not available: {reason}.")
    return reason is None


# --------------------------------------------------------------------------- the autograd node

class _Job:
    """A solve's forward run and its backward: what the autograd node holds between them."""

    def __init__(self, scheme, problem, params, options, finish, check_hidden, done=None):
        self.scheme, self.params, self.options, self.finish = scheme, params, options, finish
        self.done = done
        self.check_hidden = check_hidden
        self.save = problem.save
        self.problem = dataclasses.replace(problem, save="all", y0=problem.y0.detach(), t=problem.t.detach(),
                                           init=None if problem.init is None else problem.init.detach())
        self.t_grad = problem.t.requires_grad
        self.stats = BackwardStats()
        self.solution = None
        self.placeholder = None  # a `prev` of the carry's shape, for multistep windows not starting at 0

    def forward(self):
        sol, self.done = self.finish(self.done or self.scheme.run(self.problem)), None
        self.converged = sol.converged
        self.solution = sol
        return sol.ys

    def linearize(self, problem, xs, k0, k1):
        """The step map linearised over steps ``k0 .. k1-1``; the first one is checked for tensors the
        drift uses that require grad but are not parameters (their gradients would be lost)."""
        if problem.step.multistep and k0 > 0 and self.placeholder is None:
            self.placeholder = _carry_placeholder(problem, xs)
        lin = _Linearization(problem, xs, k0, k1, self.params, self.t_grad, self.placeholder)
        if self.check_hidden:
            known = {id(v) for v in lin.inputs}
            hidden = [v for v in _leaves(lin.inc) if id(v) not in known]
            if hidden:
                raise _hidden_error(callable_names(problem.step), hidden)
            self.check_hidden = False
        return lin

    def saved(self, ys):
        k = self.options["checkpoint"]
        return ys if k is None else torch.cat([ys[:-1:k], ys[-1:]])

    def backward(self, saved, grad):
        if not self.converged:
            raise ConvergenceError("The forward solve did not converge (throw=False), so its result is not the "
                                   "discrete solution and has no gradient; increase `max_iters` or loosen `tol`.")
        problem, opts, stats = self.problem, self.options, self.stats
        n = problem.n_steps
        tol = problem.tol if opts["tol"] is None else float(opts["tol"])
        window = min(n, problem.window if opts["window"] is None else opts["window"])
        method = opts["method"]
        if _deep_carry(problem):  # exact only over the whole grid (see _deep_carry)
            method, window = "picard", n
        if method == "auto":
            method = "scan" if _scan_supported(problem, opts["max_dense"], explicit=False) else "picard"
        stats.__dict__.update(BackwardStats(method=method, calls=stats.calls + 1, window=window, tol=tol).__dict__)
        nfe, calls = problem.drift.nfe, problem.drift.calls
        xs = saved if opts["checkpoint"] is None else _recompute(problem, saved, opts["checkpoint"])
        g = grad if self.save == "all" else torch.cat([torch.zeros_like(xs[:-1]), grad])
        stats.cotangent_sum = float(per_step(g).abs().amax(1).sum())
        solver = _picard if method == "picard" else _scan
        lam, grads = solver(problem, xs, g, self.params, self.t_grad, window, tol, opts, stats, self.linearize)
        stats.nfe += problem.drift.nfe - nfe
        stats.drift_calls += problem.drift.calls - calls
        return lam[0], grads[-1] if self.t_grad else None, grads[:len(self.params)]


class _SolveFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, job, y0, t, *params):
        ys = job.forward()
        ctx.job = job
        ctx.save_for_backward(job.saved(ys))
        return ys if job.save == "all" else ys[-1:].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (saved,) = ctx.saved_tensors
        grad_y0, grad_t, grad_params = ctx.job.backward(saved, grad)
        need = ctx.needs_input_grad
        return (None, grad_y0 if need[1] else None, grad_t if need[2] else None,
                *(gp if nd else None for gp, nd in zip(grad_params, need[3:])))


# --------------------------------------------------------------------------- linearisation

class _Linearization:
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


def _carry_placeholder(problem, xs):
    """Zeros shaped like one step's carry (step 0 needs no ``prev``): the ``prev`` of a window's lead
    step, whose own increment gets a zero cotangent. One evaluation of the step map at one point."""
    with torch.no_grad():
        carry = problem.step.increments(problem.drift, problem.t, torch.zeros(1, dtype=torch.long,
                                                                             device=problem.t.device), xs[:1]).carry
    return torch.zeros_like(carry[0])


def _zeros_like_all(params, t, t_grad):
    return [torch.zeros_like(p) for p in params] + ([torch.zeros_like(t)] if t_grad else [])


def _add(acc, grads):
    for a, gx in zip(acc, grads):
        a.add_(gx)


def _revcumsum(x):
    return x.flip(0).cumsum(0).flip(0)


# --------------------------------------------------------------------------- Picard sweeps

def _picard(problem, xs, g, params, t_grad, window, tol, opts, stats, linearize):
    """Sliding-window Picard sweeps on the adjoint recurrence, from the end of the grid."""
    n, multistep = problem.n_steps, problem.step.multistep
    max_iters = n if opts["max_iters"] is None else opts["max_iters"]
    h = (problem.t[1:] - problem.t[:-1]).abs().double().cpu()
    thr = tol * stats.cotangent_sum * h / h.sum()
    full = window >= n
    lam = torch.empty_like(g)
    lam[n] = g[n]
    lam[:n] = lam[n] + _revcumsum(g[:n])  # first guess: mu = 0
    acc = _zeros_like_all(params, problem.t, t_grad)
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
        ok = (defect <= thr[a:b]).flip(0).long().cumprod(0)
        m = int(ok.sum())  # trailing slots accepted as they are
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
        _parameter_pass(problem, xs, lam, window, acc, stats, linearize)
    return lam, acc


def _parameter_pass(problem, xs, lam, window, acc, stats, linearize, lins=None):
    """``acc += sum_k lambda_{k+1}^T dPhi_k/d(params, t)`` over windows of steps (independent VJPs)."""
    n = problem.n_steps
    for j, k0 in enumerate(range(0, n, window)):
        k1 = min(n, k0 + window)
        lin = lins[j] if lins else linearize(problem, xs, k0, k1)
        _add(acc, lin.vjp(lam[k0 + 1:k1 + 1], "params")[1])
        stats.vjp_rounds += 1


# --------------------------------------------------------------------------- dense Jacobians and a scan

def _scan(problem, xs, g, params, t_grad, window, tol, opts, stats, linearize):
    """Dense per-step Jacobians in windows of ``window`` steps, then one parallel scan.

    One-step maps: ``lambda_k = (I + D_k^T) lambda_{k+1} + g_k``. Multistep maps carry the pair
    ``u_k = (lambda_k, lambda_{k+1})``: ``u_k = [[I + D_k^T, K_{k+1}^T], [I, 0]] u_{k+1} + (g_k, 0)``.
    """
    n, d = problem.n_steps, problem.y0.numel()
    Ds, Ks, lin = [], [], None
    for k0 in range(0, n, window):
        lin = linearize(problem, xs, k0, min(n, k0 + window))
        D, K, rounds = lin.jacobians()
        Ds.append(D)
        Ks.append(K)
        stats.vjp_rounds += rounds
    D = torch.cat(Ds)  # (n, d, d)
    eye = torch.eye(d, dtype=D.dtype, device=D.device)
    gf = per_step(g)
    if problem.step.multistep:
        K = torch.cat(Ks)
        A = D.new_zeros(n, 2 * d, 2 * d)
        A[:, :d, :d] = eye + D.transpose(1, 2)
        A[:-1, :d, d:] = K[1:].transpose(1, 2)
        A[:, d:, :d] = eye
        B = torch.cat([gf[:n], torch.zeros_like(gf[:n])], 1)
        u0 = torch.cat([gf[n], torch.zeros_like(gf[n])])
    else:
        A, B, u0 = eye + D.transpose(1, 2), gf[:n], gf[n]
    U = affine_scan(A.flip(0), B.flip(0), u0)  # U[j] = u_{n-1-j}
    stats.sweeps = max(1, (n - 1).bit_length())  # scan rounds (matrix products, no drift calls)
    stats.defect_sum = float("nan")  # a direct solve: no defects are measured
    lam = torch.cat([U.flip(0)[:, :d], gf[n:]]).reshape(g.shape)
    acc = _zeros_like_all(params, problem.t, t_grad)
    if acc:
        _parameter_pass(problem, xs, lam, window, acc, stats, linearize, [lin] if window >= n else None)
    return lam, acc


# --------------------------------------------------------------------------- checkpoints

def _recompute(problem, saved, every):
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
