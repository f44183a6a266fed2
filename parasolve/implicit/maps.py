"""Implicit Runge–Kutta step maps: ``Phi_i(x_i) = Z_s``, the last stage increment of step ``i``.

Every scheme can use them: each call solves the stage equations of its steps by Newton's method,
batched over the steps (:func:`.stages.newton_stages`). ``method="newton"`` with full Jacobians
(``solve``'s default for small states) instead solves all steps' stage equations in one Newton
iteration over the whole trajectory (:mod:`.newton_stage`), and never calls ``increments``
but to check.

Gradients: with grad mode on, the converged stages take one more Newton step with the graph
attached, ``Z <- Z - M^-1 G(Z)`` (``M`` detached), whose derivative is the implicit function
theorem's ``-M^-1 dG`` -- so the discrete adjoint (:mod:`parasolve.adjoint`) differentiates the
map through a transposed linear solve, not through the Newton iterations.
"""

from __future__ import annotations

import dataclasses

import torch

from ..schemes.base import per_step
from ..steps import Increments, StepMap
from .newton_stage import solve_stages
from .stages import linearize, newton_stages, stage_points
from .tableaus import Tableau


#: Steps past an unconverged solve's front that :meth:`ImplicitRK.newton_solve` solves one by one
#: to find a step whose stage equations have no solution Newton can reach (then it raises).
PROBED = 4


class ImplicitRK(StepMap):
    """An implicit, stiffly accurate Runge–Kutta method given by its :class:`~.tableaus.Tableau`.

    Declares ``implicit = True``: a call makes one batched drift round per Newton iteration (of
    ``stages * (D + 1)`` points per step still iterating: the stage values and the probes of their
    Jacobians), so rule 4's count of calls is not fixed. ``tableau`` is read by the
    whole-trajectory Newton and by ``odeint``'s stiff methods.
    """

    implicit = True

    def __init__(self, tableau: Tableau, max_newton: int = 50):
        self.tableau, self.max_newton = tableau, max_newton
        self.name, self.order, self.stages = tableau.name, tableau.order, tableau.stages

    def increments(self, drift, t, idx, y, prev=None) -> Increments:
        t0 = t[idx]
        h = t[idx + 1] - t0
        x = per_step(y)
        with torch.no_grad():
            Z, M, _ = newton_stages(drift, self.tableau, t0.detach(), h.detach(), x.detach(), y.shape[1:], idx,
                                    self.max_newton)
        if torch.is_grad_enabled():  # one Newton step with the graph: the implicit function theorem
            Z = graph_step(drift, self.tableau, t0, h, x, Z, M, y.shape[1:])
        return Increments(Z[:, -1].reshape(y.shape))

    def newton_solve(self, problem, name: str, damping: float = 1.0):
        """The whole discrete problem by one Newton iteration over every step's stage equations
        (:func:`.newton_stage.solve_stages`): what ``method="newton"`` with full Jacobians runs."""
        sol = solve_stages(problem, name, damping)[0]
        if not sol.converged and sol.ys.shape[0] == problem.n_steps + 1:
            # can the steps at the front be solved at all? If not, say where (as the sequential loop would)
            front = sum(r.accepted for r in sol.stats.history)
            x = sol.ys[front:front + 1]
            with torch.no_grad():
                for j in range(front, min(front + PROBED, problem.n_steps)):
                    x = x + self.increments(problem.drift, problem.t, torch.tensor([j], device=problem.t.device), x)[0]
            stats = dataclasses.replace(sol.stats, nfe=problem.drift.nfe, drift_calls=problem.drift.calls)
            sol = dataclasses.replace(sol, stats=stats)  # (a built solution is not changed)
        return sol


def graph_step(drift, tab, t0, h, x, Z, M, shape):
    """``Z - M^-1 G(Z)`` with the autograd graph of ``G`` (through ``x``, ``t`` and the drift's
    parameters) and ``M`` held fixed -- re-measured by autograd at the converged stages (the
    probes' ``sqrt(eps)`` error would reach the gradient). ``Z`` itself if nothing needs a graph."""
    n, s, d = Z.shape
    times, points = stage_points(tab, t0, h, x, Z.detach())
    F = drift(times, points.reshape(n * s, *shape)).reshape(n, s, d)
    if not F.requires_grad:
        return Z
    J = _autograd_jacobians(drift, times.detach(), points.detach(), shape)
    _, M, _, _ = linearize(tab, h.detach(), F.detach(), J.reshape(n, s, d, d), Z.detach())
    Ah = h.to(Z.dtype)[:, None, None] * tab.matrix(Z.dtype, Z.device)
    G = Z.detach() - Ah @ F
    return Z.detach() - torch.linalg.solve(M, G.reshape(n, s * d, 1)).reshape(n, s, d)


def _autograd_jacobians(drift, times, points, shape):
    """The drift's Jacobians ``(k, D, D)`` at ``k`` flattened points, by ``D`` batched VJPs."""
    k, d = points.shape
    with torch.enable_grad():
        p = points.clone().requires_grad_(True)
        out = drift(times, p.reshape(k, *shape)).reshape(k, d)
        basis = torch.eye(d, dtype=out.dtype, device=out.device)[:, None, :].expand(d, k, d)
        rows = [torch.autograd.grad(out, p, basis[j], retain_graph=True)[0] for j in range(d)]
    return torch.stack(rows, 1)  # [k, out, in]


__all__ = ["ImplicitRK", "graph_step", "linearize"]
