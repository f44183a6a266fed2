"""One-step maps: the discrete problem ``x_{i+1} = x_i + Phi_i(x_i)`` that every scheme solves.

Subclass :class:`StepMap` (its docstring holds the contract) and register an instance with
:func:`register_step` to make it selectable as ``solve(..., step=name)``;
:func:`parasolve.testing.check_step_map` checks the contract.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch

from .errors import ParasolveTypeError
from .registry import Registry

STEPS: Registry = Registry("step map")


def register_step(step: "StepMap", *, replace: bool = False) -> "StepMap":
    """Make ``step`` selectable by ``step=step.name``; a name taken by another map raises
    :class:`~parasolve.registry.DuplicateNameError` unless ``replace=True``."""
    if not isinstance(step, StepMap):
        raise ParasolveTypeError(f"register_step() takes a StepMap instance; got {type(step).__name__}. "
                                 f"Subclass parasolve.StepMap and register an instance.")
    return STEPS.add(step.name, step, replace=replace)


def unregister_step(name: str) -> "StepMap":
    """Undo :func:`register_step`: ``step=name`` is no longer selectable; returns the map."""
    return STEPS.remove(name)


def resolve_step(step) -> "StepMap":
    if isinstance(step, StepMap):
        return step
    if isinstance(step, str) and step in STEPS:
        return STEPS[step]
    raise ValueError(f"Unknown `step` {step!r}; valid: {sorted(STEPS)} or a parasolve.steps.StepMap instance.")


def callable_names(step: "StepMap") -> str:
    """The user's callables a map evaluates, as an error message names them: "`f` and `g`"."""
    return " and ".join(f"`{name}`" for name in step.callables)


def _bshape(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reshape per-step scalars ``(n,)`` to broadcast against states ``(n, *state)``."""
    return h.reshape(h.shape[0], *([1] * (y.dim() - 1)))


class Increments(NamedTuple):
    """What :meth:`StepMap.increments` returns: ``inc``, the increments ``Phi_i(x_i)`` (shape
    ``(n, *state)``), and ``carry``, what each step hands to the next one (the next call's
    ``prev``): ``None`` for one-step maps."""

    inc: torch.Tensor
    carry: Any = None


class StepMap:
    """A one-step (or multistep) map ``Phi``: the discrete problem ``x_{i+1} = x_i + Phi_i(x_i)``.

    The contract, numbered as :func:`parasolve.testing.check_step_map` reports it:

    1. **Increments.** ``increments(drift, t, idx, y, prev=None) -> Increments(inc, carry)``
       with ``t`` the whole grid ``(N+1,)``, ``idx`` step indices ``(n,)`` (consecutive for
       multistep maps), ``y`` the states ``x_idx`` of shape ``(n, *state)``; ``inc`` has ``y``'s
       shape and dtype. ``drift(t_batch, y_batch)`` is the batched, counted drift.
    2. **Batched = one at a time.** The increments of a batch equal those computed one step at
       a time (each with the previous step's carry as ``prev``), up to round-off: a scheme may
       batch any window.
    3. **Declared order.** With ``ode_rhs``, the map is a consistent discretisation of
       ``dy/dt = drift(t, y)`` whose global error on a smooth problem is ``O(h^order)``.
    4. **Declared stages.** One call makes exactly ``stages`` batched drift calls, each over
       the ``n`` points of the batch, and nothing else calls the drift. An ``implicit`` map
       (its increments solve equations by Newton's method, :mod:`parasolve.implicit`) makes one
       batched call per iteration instead, at least one.
    5. **Carry.** A ``multistep`` map returns ``carry``, a tensor of shape ``(n, ...)``: entry
       ``k`` is what step ``idx[k] + 1`` needs from step ``idx[k]``; ``prev`` is the previous
       step's carry (``carry[-1]`` of the batch before); without ``prev`` a call that does not
       start at step 0 raises ``ValueError`` (it never guesses). A one-step map ignores ``prev``
       and returns ``carry=None``: schemes hand a carry only from a multistep map to the next
       call (and to :meth:`predict`'s hint).
    6. **Deterministic.** The same arguments give the same increments (stochastic maps draw
       their noise up front).
    7. **Linear part.** ``linear_part()`` returns per-step scalars ``c_i`` (a tensor of shape
       ``(N,)`` on the CPU) with ``dPhi_i/dx_i ~= c_i I`` when the map declares ``linear``, and
       ``None`` otherwise. It is a function of the map as built: it returns the same values
       whether or not ``increments`` was called before it, and calling it changes no increment
       (``Newton(prior="step")`` reads it before the first sweep).
    8. **Declarations.** The capabilities below have the stated types (``order``, ``stages``,
       ``carry_depth``: integers >= 1; the flags: bools; ``callables``: a non-empty tuple of names).

    Rules 9-13 are the optional capabilities, declared as the protocols of
    :mod:`parasolve.capabilities` (the defaults below declare none of them):

    9. **Gains** (:class:`~parasolve.capabilities.DeclaresGains`). ``gains()`` returns ``None``
       or finite per-step gains of shape ``(N,)`` or ``(K, N)`` (or a pair ``(p, q)`` of those for
       a two-step error recursion), which the stop rule turns into defect weights.
    10. **Predict** (:class:`~parasolve.capabilities.Predicts`). ``predict_new`` is a bool; where
        it is on, ``predict(start, count, last, hint)`` returns ``count`` states of ``last``'s
        shape and dtype without calling the drift, and a one-step map's guess of ``x_{j+1}`` from
        ``x_j`` and the hint of step ``j`` is ``x_j + Phi_j(x_j)``.
    11. **Implicit** (:class:`~parasolve.capabilities.SolvesImplicitly`). ``implicit`` is a bool;
        where it is on, the map implements ``newton_solve`` (and rule 4 counts Newton rounds).
    12. **Sampler step** (:class:`~parasolve.capabilities.SamplerStep`, the diffusion samplers):
        a map with any of ``integer_timesteps``, ``init_noise_sigma``, ``prepare`` has all three,
        a bool, a positive finite float, and a ``prepare(dtype, device, noise)`` returning the map.
    13. **Compute dtype** (:class:`~parasolve.capabilities.ComputesIn`, of the drift, not the
        map). A drift's ``compute_dtype``, where it has one, is ``None`` or a floating dtype.

    Declared capabilities (class or instance attributes; schemes read these, never the type):

    ``name``; ``order``: global order of accuracy (rule 3); ``stages``: batched drift calls per
    call (rule 4); ``multistep``: uses ``prev`` (rule 5); ``stochastic``: ``Phi`` holds pre-drawn
    noise; ``ode_rhs``: the drift is the right-hand side of the ODE that ``Phi`` discretises (so a
    scheme may integrate it as an ODE instead: parareal's ``fine="odeint"``, a step-map coarse
    propagator); ``linear``: declares a :meth:`linear_part` (rule 7); ``implicit``: rule 4's iteration
    count, and a :meth:`newton_solve` that ``method="newton"`` with full Jacobians hands the whole
    problem to (rule 11, :mod:`parasolve.implicit`); ``predict_new``: :meth:`predict` fills a
    window's new slots (rule 10); ``callables``: the user's
    callables the drift evaluates, named when they produce NaN/Inf; ``carry_depth``: how many
    states a multistep map's carry depends on (``x_i .. x_{i-carry_depth+1}``: 1 for AB2, the
    number of past predictions for UniPC), which the adjoint must linearise together.
    """

    name: str = ""
    order: int = 1
    stages: int = 1
    multistep: bool = False
    stochastic: bool = False
    ode_rhs: bool = True
    linear: bool = False
    implicit: bool = False
    predict_new: bool = False
    callables: tuple[str, ...] = ("f",)
    carry_depth: int = 1

    def increments(self, drift, t, idx, y, prev=None) -> Increments:
        raise NotImplementedError

    def linear_part(self) -> torch.Tensor | None:
        """Per-step scalars ``c_i`` with ``dPhi_i/dx_i ~= c_i I`` (rule 7), or ``None`` (the
        default: no such structure). Newton's ``prior="step"`` uses them where it has no secant."""
        return None

    def gains(self):
        """Per-step estimates ``g_i`` of ``||d(x + Phi_i(x))/dx||`` (host array ``(N,)``, or
        ``(K, N)``: one row per model of the drift, the worst counting), or ``None`` (the
        default: unknown). The stop rule (:mod:`parasolve.stop_rule`) divides each step's share
        of ``tol`` by the product of the later steps' gains (rule 9)."""
        return None

    def predict(self, start: int, count: int, last: torch.Tensor, hint) -> torch.Tensor:
        """Guesses of states ``start .. start+count-1`` from ``last`` and a sweep's latest step
        ``hint = (j, x_j, Phi_j, carry_j)``, no drift calls (rule 10); read only where
        ``predict_new`` is on, so the default has none."""
        raise NotImplementedError(f"{type(self).__name__} declares no predict (predict_new=False).")

    def newton_solve(self, problem, name: str, damping: float = 1.0):
        """The whole discrete ``problem`` by one Newton iteration over every step's equations
        (rule 11); read only where ``implicit`` is on, so the default has none."""
        raise NotImplementedError(f"{type(self).__name__} is not implicit; it has no newton_solve.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def rk_stages(call, a, c, t0, h, hb, y, count: int, known=()):
    """The stages of an explicit Runge–Kutta tableau ``(a, c)``: ``k_s = call(t0 + c_s h, y + hb
    sum_j a_sj k_j)`` for ``s`` from ``len(known)`` (stages given already, e.g. the last step's end
    slope) to ``count - 1``. ``h`` scales the times, ``hb`` the states (the same number, or ``h``
    reshaped to broadcast against ``y``). Returns the stages and the last stage's input state."""
    ks, ys = list(known), y
    for s in range(len(ks), count):
        ys = y
        for aj, k in zip(a[s], ks):
            if aj:
                ys = ys + (aj * hb) * k
        ks.append(call(t0 + c[s] * h, ys))
    return ks, ys


class ExplicitRK(StepMap):
    """An explicit Runge–Kutta method given by its Butcher tableau ``(a, b, c)``."""

    def __init__(self, name: str, a: Sequence[Sequence[float]], b: Sequence[float],
                 c: Sequence[float], order: int):
        self.name, self.a, self.b, self.c, self.order = name, a, b, c, order
        self.stages = len(b)

    def increments(self, drift, t, idx, y, prev=None):
        if idx.shape[0] == 1 and y.device.type == "cpu" and not t.requires_grad:
            return self._one_step(drift, t, int(idx[0]), y)
        t0 = t[idx]
        h = t[idx + 1] - t0
        hb = _bshape(h, y)
        ks, _ = rk_stages(drift, self.a, self.c, t0, h, hb, y, self.stages)
        return Increments(hb * sum(bj * k for bj, k in zip(self.b, ks) if bj))

    def _one_step(self, drift, t, i, y):
        """One step on the CPU (the sequential loop's case) of a grid not differentiated: the step
        length as a host number, which costs no device sync there and saves the per-step tensor
        arithmetic."""
        h = float(t[i + 1] - t[i])
        ks, _ = rk_stages(drift, self.a, self.c, t[i:i + 1], h, h, y, self.stages)
        return Increments(h * sum(bj * k for bj, k in zip(self.b, ks) if bj))


class AdamsBashforth2(StepMap):
    """Variable-step two-step Adams–Bashforth; its first step is forward Euler.

    ``Phi_i = h_i * (f_i + h_i / (2 h_{i-1}) * (f_i - f_{i-1}))``: one drift call per step, the
    previous step's drift reused (the carry is ``f_i``), so a Picard sweep still makes one batched call.
    """

    name, order, stages, multistep = "ab2", 2, 1, True

    def increments(self, drift, t, idx, y, prev=None):
        if prev is None and int(idx[0]) > 0:
            raise ValueError(f"ab2: step {int(idx[0])} needs `prev`, the drift of step {int(idx[0]) - 1} "
                             f"(the carry of the call before).")
        t0 = t[idx]
        h = t[idx + 1] - t0
        f = drift(t0, y)
        fprev = torch.cat([f[:1] if prev is None else prev[None], f[:-1]])
        h_prev = torch.where(idx > 0, t0 - t[(idx - 1).clamp(min=0)], h)
        ratio = _bshape(torch.where(idx > 0, h / (2 * h_prev), torch.zeros_like(h)), y)
        return Increments(_bshape(h, y) * (f + ratio * (f - fprev)), f)


register_step(ExplicitRK("euler", [[]], [1.0], [0.0], order=1))
register_step(ExplicitRK("midpoint", [[], [0.5]], [0.0, 1.0], [0.0, 0.5], order=2))
register_step(ExplicitRK("heun", [[], [1.0]], [0.5, 0.5], [0.0, 1.0], order=2))
register_step(ExplicitRK("rk4", [[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]],
                         [1 / 6, 1 / 3, 1 / 3, 1 / 6], [0.0, 0.5, 0.5, 1.0], order=4))
register_step(AdamsBashforth2())

