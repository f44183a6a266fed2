"""Quasi-Newton on the bidiagonal system, with a diagonal Jacobian estimate and a parallel scan.

The discrete problem is the block-bidiagonal root-finding problem

    F_i(x) = x_{i+1} - x_i - Phi_i(x_i) = 0,   i = a .. N-1   (x_a fixed),

whose Newton step ``delta`` solves ``delta_{i+1} = (I + D_i) delta_i - F_i(x)`` with
``D_i = dPhi_i/dx_i``. That recursion is linear in ``delta``: it is solved for all steps at once by
an associative scan (log2(window) rounds of element-wise products, no drift calls;
:func:`parasolve.schemes.scan.affine_scan`).

``D_i`` is approximated by a secant from the last two sweeps at the same step:
``jacobian="scalar"`` (default) a multiple of the identity per step,
``c_i = <dPhi_i, dx_i> / <dx_i, dx_i>``, or ``jacobian="diagonal"`` one entry per state
component, ``dPhi_i / dx_i`` element-wise (where the component moved; else the scalar). With
``D_i = 0`` the step is exactly the Picard update, which is also what the first sweep and every
safeguarded sweep take. The estimate is clipped to ``[-clip, clip]``.
``jacobian="full"`` measures the whole ``D x D`` Jacobian instead, by finite differences in the
sweep's own batched calls, and solves the step by a matrix scan (:mod:`.jacobians`).

Where it pays: drifts whose Jacobian is close to a multiple of the identity per step (decay,
growth, the linear part of a diffusion step), where Picard's error grows like ``(h L N)^k / k!``
and the secant model captures the propagation. Where it does not: rotation-dominated or strongly
coupled Jacobians (oscillators, a neural network's full Jacobian), where a diagonal model carries
no information and the secant is noise -- the safeguard then keeps it near Picard (docs/schemes.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .._checks import check_choice, check_positive_int, check_real
from ..errors import warn
from . import jacobians, trajectories
from .scan import affine_scan
from .base import per_step, register_scheme
from .engine import SafeguardedScheme, Update, Window, aligned, picard_from, residual_grew


@dataclass(frozen=True)
class NewtonState:
    """Per-solve memory: ``prior``, the per-step slope where no secant exists (``(N,)`` or
    ``None``); ``last``, the last sweep's ``(first slot, states, increments, residual)`` in the next
    window's slots; ``newton``: whether the last update was a Newton (not a Picard) step;
    ``derivative``: how ``jacobian="full"`` measures, ``"fd"`` or ``"jvp"`` (resolved on ``y0``)."""

    prior: torch.Tensor | None = None
    last: tuple | None = None
    newton: bool = False
    derivative: str = "fd"


@register_scheme
class Newton(SafeguardedScheme):
    """Sliding-window quasi-Newton (secant diagonal Jacobian, damped, safeguarded).

    Options (``solve(..., method="newton", options={...})``):
        jacobian: ``"scalar"`` (default) or ``"diagonal"`` secant estimate of ``dPhi_i/dx_i``, or
            ``"full"``: the whole ``D x D`` Jacobian by finite differences in the sweep's own
            batched calls (``D + 1`` points per step; one-step maps, states of at most ``max_size``
            components; :mod:`parasolve.schemes.jacobians`). With an implicit step map it solves
            every step's stage equations in the same Newton iteration (:mod:`parasolve.implicit`).
        derivative: how ``jacobian="full"`` measures the Jacobians: ``"fd"`` (default), forward
            differences in the sweep's batched calls, or ``"jvp"``, exact columns by forward-mode AD
            (``torch.func.jvp`` under ``vmap``) where the drift allows it -- checked once on ``y0``;
            else finite differences, with a warning saying why. Both count ``D + 1`` evaluations per
            step and stage (a tangent counts as one); measured, they take the same sweeps and the
            JVP costs 1.0-5.9x the time (docs/benchmarks/larger-states.md). Implicit maps' stage
            Newton keeps its own finite differences.
        max_size: the largest state ``jacobian="full"`` accepts (default 64); with ``blocks``, the
            largest trajectory.
        blocks: ``jacobian="full"`` on a state whose leading dimension holds ``blocks``
            independent trajectories (torchdiffeq's ``(batch, features)``): every trajectory's own
            ``D x D`` Jacobian from ``D`` probes for the whole batch. Checked on the first sweep's
            drift (a ``ValueError`` if the rows are coupled); ``method="auto"`` finds the
            structure itself (:func:`parasolve.schemes.jacobians.independent_rows`).
        per_trajectory: with ``blocks``, each trajectory keeps its own window front and leaves
            the batch once it converged (``parasolve.schemes.trajectories``; default True,
            where the drift may be evaluated row by row and the safeguard is off; else the
            trajectories share one front).
        chord: in ``[0, 1)``; with ``jacobian="full"``, a step keeps the Jacobian measured at an
            earlier sweep while its defect shrank by at least this factor in the last sweep
            (simplified, "chord" Newton: only the steps that need one are probed); 0 (default):
            every sweep measures every step's (docs/benchmarks/larger-states.md). It runs in the
            per-trajectory engine: one-step explicit ODE maps, the safeguard off, and with
            ``blocks`` only where the trajectories have their own fronts (else it has no effect).
        damping: step length in (0, 1] applied to the Newton correction (default 1.0).
        clip: bound on the estimated entries of ``dPhi_i/dx_i`` (default 1.0).
        safeguard: take the Picard update and forget the estimate when the residual grew
            after a Newton step (default True for the secant estimates, False for
            ``jacobian="full"``: exact Newton's far slots may grow while its front converges,
            and the engine's acceptance keeps the front; docs/schemes.md).
        growth: the safeguard acts when the residual exceeds ``growth`` times the previous one.
        prior: the estimate where no secant exists yet (the first sweep, steps new to the window):
            ``"step"`` (default): the step map's :meth:`~parasolve.steps.StepMap.linear_part`
            (for the diffusion samplers the step's derivative with the clean-sample prediction
            held fixed), ``"zero"`` for maps that declare none; or ``"zero"``: Picard's, new
            steps borrowing the last secant.
    """

    name = "newton"
    options = ("jacobian", "damping", "clip", "safeguard", "growth", "prior", "max_size", "blocks",
               "per_trajectory", "chord", "derivative")

    def __init__(self, jacobian: str = "scalar", damping: float = 1.0, clip: float = 1.0,
                 safeguard: bool | None = None, growth: float = 1.0, prior: str = "step", max_size: int = 64,
                 blocks: int = 1, per_trajectory: bool = True, chord: float = 0.0, derivative: str = "fd"):
        check_choice("jacobian", jacobian, ("scalar", "diagonal", "full"))
        check_choice("derivative", derivative, ("fd", "jvp"),
                     fix="'fd': finite differences; 'jvp': forward-mode AD (jacobian='full' only).")
        if derivative != "fd" and jacobian != "full":
            raise ValueError(f"`derivative` = {derivative!r} measures Jacobians: jacobian='full' only; "
                             f"got jacobian={jacobian!r}. Use options={{'jacobian': 'full', 'derivative': {derivative!r}}}.")
        self.derivative = derivative
        check_positive_int("max_size", max_size, fix="It is the largest state jacobian='full' accepts.")
        self.max_size = max_size
        check_positive_int("blocks", blocks,
                           fix="It counts the independent trajectories in the state's leading dimension.")
        if blocks > 1 and jacobian != "full":
            raise ValueError(f"`blocks` = {blocks} applies to jacobian='full' only; got jacobian={jacobian!r}.")
        self.blocks = blocks
        if not isinstance(per_trajectory, bool):
            raise TypeError(f"`per_trajectory` must be True or False; got {per_trajectory!r}.")
        self.per_trajectory = per_trajectory
        self.chord = check_real("chord", chord, low=0.0, high=1.0, open_high=True)
        if self.chord and jacobian != "full":
            raise ValueError(f"`chord` = {chord} reuses measured Jacobians: jacobian='full' only; got {jacobian!r}.")
        if self.chord and derivative == "jvp":
            raise ValueError(f"`chord` = {chord} probes only some steps, which a JVP cannot (its tangents ride on "
                             f"every state); use derivative='fd' with chord, or chord=0.")
        check_choice("prior", prior, ("zero", "step"), fix="It is the prior for the step map's linear part.")
        self.jacobian, self.prior = jacobian, prior
        self.damping = check_real("damping", damping, low=0.0, high=1.0, open_low=True, open_high=False)
        self.clip = check_real("clip", clip, low=0.0)
        super().__init__(jacobian != "full" if safeguard is None else safeguard, growth)

    def points_per_step(self, y0) -> int:
        return 1 + y0.numel() // self.blocks if self.jacobian == "full" else 1

    def check_step(self, step) -> None:
        if self.jacobian == "full" and step.multistep:
            raise self.refuse(step, "jacobian='full' differentiates one-step maps (a multistep map's "
                                    "increment also depends on its carry)",
                              "Use options={'jacobian': 'scalar'} (or 'diagonal'), or a one-step map.")

    def _run(self, problem):
        if self.jacobian == "full" and problem.step.implicit:  # one Newton over every step's stages
            self.init(problem)  # the size check
            return problem.step.newton_solve(problem, self.name, self.damping)
        if self.jacobian == "full" and not self.safeguard and (self.blocks > 1 and self.per_trajectory or self.chord):
            state = self.init(problem)  # the size and blocks checks, the derivative
            one = trajectories.applies(problem) if self.blocks > 1 and self.per_trajectory else None
            if one is not None or (self.chord and self.blocks == 1 and trajectories.one_step_ode(problem)):
                return trajectories.solve(problem, one, self.name, True, self.damping, self.divergence_ratio,
                                          self.chord, state.derivative)
        return super()._run(problem)

    def evaluate(self, problem, start, ys, prev, state=None):
        if self.jacobian == "full":
            return jacobians.increments_and_jacobians(problem, start, ys, prev, self.blocks,
                                                      "fd" if state is None else state.derivative)
        return super().evaluate(problem, start, ys, prev, state)

    def init(self, problem) -> NewtonState:
        if self.jacobian == "full":
            jacobians.check_blocks(problem, self.blocks)
            size = problem.y0.numel() // self.blocks
            if size > self.max_size or problem.y0.is_complex():
                why = ("a complex state" if problem.y0.is_complex() else
                       f"a state of {size} components (> max_size = {self.max_size}; each step would cost "
                       f"{size + 1} evaluations per stage and a {size}x{size} matrix scan)")
                raise ValueError(f"method='newton' with options={{'jacobian': 'full'}} does not take {why}; "
                                 f"use options={{'jacobian': 'scalar'}} (or 'diagonal'), or raise "
                                 f"options['max_size'] for a real state.")
            return NewtonState(derivative=self._derivative(problem))
        if self.prior == "zero" or not problem.step.linear:
            return NewtonState()
        y0 = problem.y0
        return NewtonState(prior=problem.step.linear_part().to(dtype=y0.dtype, device=y0.device))

    def _derivative(self, problem) -> str:
        """``"jvp"`` where asked for and the drift allows it (:func:`jacobians.forward_mode_works`), else ``"fd"``."""
        if self.derivative == "fd":
            return "fd"
        why = jacobians.forward_mode_works(problem.drift, problem.t, problem.y0)
        if why:
            warn(f"parasolve: options['derivative'] = 'jvp' falls back to finite differences: {why}. "
                 f"Pass options={{'derivative': 'fd'}} to silence this.", RuntimeWarning)
            return "fd"
        return "jvp"

    def reset(self, state: NewtonState) -> NewtonState:
        return replace(state, last=None, newton=False)

    def update(self, state: NewtonState, window: Window) -> Update:
        if self.jacobian == "full":
            return self._full_update(state, window)
        shift, w, ys, anchor = window.shift, window.width, window.ys, window.anchor
        x, phi = ys[shift:w], window.inc[shift:]             # steps shift .. w-1
        residual = window.picard - ys[shift + 1:]
        prior = None if state.prior is None else \
            state.prior[window.start + shift:window.start + w].reshape(-1, *([1] * (x.dim() - 1)))
        slope = prior  # the first sweep: the prior, or Picard without one
        if state.last is not None:
            first, px, pphi, pres = state.last
            px, pphi = aligned(first, px, shift, w), aligned(first, pphi, shift, w)
            if self.safeguard and state.newton and residual_grew(
                    residual, aligned(first + 1, pres, shift + 1, w + 1), self.growth):
                # The last Newton step made things worse: Picard step from the iterate before it.
                moved = replace(state, last=(first - shift, *state.last[1:]), newton=False)
                return Update(picard_from(anchor, pphi, phi), moved, fallback=True)
            slope = self._secant(x - px, phi - pphi, prior)
        # step `shift` is slot 0 of the next window
        state = replace(state, last=(0, x, phi, residual), newton=slope is not None)
        defect = ys[shift + 1:] - x - phi
        if slope is None:  # Picard: delta_{i+1} = delta_i - F_i
            delta = (anchor - ys[shift]) - torch.cumsum(defect, 0)
        else:
            delta = affine_scan(1 + slope, -defect, anchor - ys[shift])
        return Update(ys[shift + 1:] + self.damping * delta, state)

    def _full_update(self, state: NewtonState, window: Window) -> Update:
        """Newton with the measured Jacobians; the safeguard as above (Picard from the iterate
        before a Newton step that grew the residual)."""
        shift, w, ys, anchor = window.shift, window.width, window.ys, window.anchor
        phi = window.inc[shift:]
        residual = window.picard - ys[shift + 1:]
        if self.safeguard and state.newton:
            first, _, pphi, pres = state.last
            if residual_grew(residual, aligned(first + 1, pres, shift + 1, w + 1), self.growth):
                moved = replace(state, last=(first - shift, *state.last[1:]), newton=False)
                return Update(picard_from(anchor, aligned(first, pphi, shift, w), phi), moved, fallback=True)
        state = replace(state, last=(0, ys[shift:w], phi, residual), newton=True)
        return Update(jacobians.newton_step(window, self.damping), state)

    def _secant(self, dx: torch.Tensor, dphi: torch.Tensor, prior=None) -> torch.Tensor:
        """Clipped secant estimate of ``dPhi_i/dx_i`` per step; where a step has no history, the
        ``prior`` if given, else the last estimate before it (0 if none)."""
        dx, dphi = torch.nan_to_num(dx, nan=0.0), torch.nan_to_num(dphi, nan=0.0)
        shape = (-1, *([1] * (dx.dim() - 1)))
        norm2 = per_step(dx.abs() ** 2).sum(1)
        scalar = self._clipped(per_step(dx.conj() * dphi).sum(1) / norm2.clamp_min(torch.finfo(norm2.dtype).tiny))
        if prior is None:
            scalar = _carry_forward(scalar, norm2 > 0).reshape(shape)
        else:
            scalar = torch.where((norm2 > 0).reshape(shape), scalar.reshape(shape), prior.to(scalar.dtype))
        if self.jacobian == "scalar":
            return scalar
        # Element-wise where the component moved noticeably (relative to the step's largest move).
        big = dx.abs() > 1e-3 * per_step(dx.abs()).amax(1).reshape(shape)
        ratio = dphi / torch.where(big, dx, torch.ones_like(dx))
        return torch.where(big, self._clipped(ratio), scalar)

    def _clipped(self, c: torch.Tensor) -> torch.Tensor:
        """``c`` with its magnitude limited to ``clip`` (real and complex alike)."""
        size = c.abs()
        return c * (self.clip / size.clamp_min(self.clip))


def _carry_forward(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``values`` with each unknown entry replaced by the nearest known one before it (0 if none):
    steps that just entered the window borrow the estimate of the last step that has one."""
    pos = torch.arange(len(values), device=values.device)
    last = torch.cummax(torch.where(known, pos, -1), 0).values
    return torch.where(last >= 0, values[last.clamp_min(0)], torch.zeros_like(values))
