"""The conformance kit: run the numbered contracts of :class:`~parasolve.steps.StepMap` and
:class:`~parasolve.schemes.Scheme` on an extension, like scikit-learn's ``check_estimator``.

:func:`check_step_map` and :func:`check_scheme` return ``None`` when every rule holds and raise
``AssertionError("rule N (name) ...")`` naming the first one broken, with the measured values.
Both are exported by :mod:`parasolve.testing`; docs/extending.md shows them at work.
"""

from __future__ import annotations

import math

import torch

from ._solve import solve
from .drift import in_contract_check
from .errors import ConvergenceError, UnsupportedStepError
from .evaluators.counting import CountingEvaluator
from .schemes.base import Scheme, per_step, resolve_scheme
from .solution import Status
from .steps import STEPS, StepMap

__all__ = ["CountingDrift", "CountingEvaluator", "check_step_map", "check_scheme"]

_EPS64 = 2.0 ** -52


class CountingDrift:
    """A batched drift ``f(t, y)`` (``t`` of shape ``(n,)``) that counts its own ``calls`` and
    time ``points`` -- an oracle for a solve's stats independent of parasolve's counters. The one
    call of a vectorized drift's first-call row check (``parasolve.drift.in_contract_check()``) is
    not part of the solve and is not counted."""

    def __init__(self, f):
        self.f, self.calls, self.points = f, 0, 0

    def __call__(self, t, y):
        if not in_contract_check():
            self.calls += 1
            self.points += t.shape[0]
        return self.f(t, y)

    def reset(self):
        self.calls = self.points = 0


def _fail(contract: str, rule: int, title: str, who: str, detail: str):
    raise AssertionError(f"rule {rule} ({title}) of the {contract} contract: {who}: {detail}")


def _default_grid(n: int = 12) -> torch.Tensor:
    """A non-uniform increasing grid on [0, 1] (step lengths within a factor of 3)."""
    h = 1.0 + 0.5 * torch.sin(torch.arange(n, dtype=torch.float64) * 1.7)
    return torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(h, 0) / h.sum()])


def _tanh_drift(dim: int, dtype):
    """``f(t, y) = tanh(W y + c t) - 0.3 y``, batched; ``W`` fixed, Lipschitz at most 1.3."""
    gen = torch.Generator().manual_seed(7)
    W = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    W = (W / torch.linalg.matrix_norm(W, ord=float("inf"))).to(dtype)
    c = torch.linspace(-1, 1, dim, dtype=dtype)

    def f(t, y):
        flat = y.reshape(y.shape[0], -1)
        lin = flat[:, :dim] @ W.T + t.to(y.dtype)[:, None] * c
        out = flat.clone()
        out[:, :dim] = torch.tanh(lin)
        return (out - 0.3 * flat).reshape(y.shape)

    return f


def _one_at_a_time(step, drift, t, idx, y):
    """Increments of ``idx`` computed one step per call, each with the carry of the call before."""
    incs, carries, prev = [], [], None
    for k in range(len(idx)):
        out = step.increments(drift, t, idx[k:k + 1], y[k:k + 1], prev)
        incs.append(out[0])
        carries.append(out[1])
        prev = out[1][0] if step.multistep else None
    return torch.cat(incs), carries


def _sequential(step, drift, t, y0):
    """The discrete trajectory ``x_{i+1} = x_i + Phi_i(x_i)`` by one step per call."""
    ys, prev = [y0], None
    for i in range(t.shape[0] - 1):
        inc, carry = step.increments(drift, t, torch.tensor([i]), ys[-1][None], prev)
        ys.append(ys[-1] + inc[0])
        prev = carry[0] if step.multistep else None
    return torch.stack(ys)


# --------------------------------------------------------------------------- step maps

def check_step_map(step: StepMap, *, t: torch.Tensor | None = None, y0: torch.Tensor | None = None,
                   drift=None) -> None:
    """Check ``step`` against the :class:`~parasolve.steps.StepMap` contract (rules 1-8).

    ``t`` (default: a non-uniform 12-step grid on ``[0, 1]``), ``y0`` (default: 3 random
    float64 entries) and ``drift`` (batched ``f(t, y)``; default: a smooth time-dependent tanh
    layer) are the problem the rules are run on; a map built for one grid and state shape (an
    SDE's pre-drawn noise, a sampler's tables) must get its own. Rule 3 (declared order) runs on
    ``y' = cos(t) y`` for maps that declare ``ode_rhs``.
    """
    if not isinstance(step, StepMap):
        raise TypeError(f"check_step_map() needs a parasolve.steps.StepMap instance; got {type(step).__name__}.")
    who = f"step map {step.name!r}"

    def fail(rule, title, detail):
        _fail("StepMap", rule, title, who, detail)

    _check_declarations(step, fail)
    t = _default_grid() if t is None else t
    y0 = torch.randn(3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) if y0 is None else y0
    drift = _tanh_drift(max(1, min(y0.numel(), 4)), y0.dtype) if drift is None else drift
    n = t.shape[0] - 1
    idx = torch.arange(n, device=t.device)
    gen = torch.Generator().manual_seed(5)
    y = y0 + 0.3 * torch.randn((n, *y0.shape), generator=gen, dtype=torch.float64).to(y0.dtype)

    counted = CountingDrift(drift)
    try:
        out = step.increments(counted, t, idx, y, None)
    except Exception as exc:  # noqa: BLE001 -- reported as the broken rule
        fail(1, "increments", f"increments(drift, t, arange({n}), y) raised {type(exc).__name__}: {exc}")
    if not (isinstance(out, tuple) and len(out) == 2):
        fail(1, "increments", f"returned {type(out).__name__}, not Increments(inc, carry)")
    inc, carry = out
    if not isinstance(inc, torch.Tensor) or inc.shape != y.shape or inc.dtype != y.dtype:
        fail(1, "increments", f"inc must have y's shape {tuple(y.shape)} and dtype {y.dtype}; got "
                              f"{getattr(inc, 'shape', type(inc))} {getattr(inc, 'dtype', '')}")

    tol = 1e3 * torch.finfo(y.dtype).eps * max(1.0, float(inc.abs().max()))
    single, _ = _one_at_a_time(step, drift, t, idx, y)
    gap = float((single - inc).abs().max())
    if not gap <= tol:
        fail(2, "batched = one at a time", f"batched increments differ from one-at-a-time ones by {gap:.3e} "
                                           f"(allowed {tol:.1e})")
    half = n // 2
    if half >= 1:
        first = step.increments(drift, t, idx[:half], y[:half], None)
        rest = step.increments(drift, t, idx[half:], y[half:], first[1][-1] if step.multistep else None)
        gap = float((torch.cat([first[0], rest[0]]) - inc).abs().max())
        if not gap <= tol:
            fail(2, "batched = one at a time", f"a batch split at step {half} (carry handed over) differs "
                                               f"from the whole batch by {gap:.3e}")

    if step.ode_rhs:
        _check_order(step, fail)

    if getattr(step, "implicit", False):  # one round per Newton iteration: at least one call
        if counted.calls < 1:
            fail(4, "declared stages", f"an implicit map must call the drift; it made {counted.calls} calls")
    elif counted.calls != step.stages or counted.points != step.stages * n:
        fail(4, "declared stages", f"declares stages={step.stages}: one call of {n} steps must make "
                                   f"{step.stages} drift calls of {n} points; it made {counted.calls} calls "
                                   f"of {counted.points} points")

    if step.multistep:
        if not isinstance(carry, torch.Tensor) or carry.shape[0] != n:
            fail(5, "carry", f"a multistep map must return a carry with a leading dimension of {n}; got "
                             f"{getattr(carry, 'shape', carry)!r}")
        if n >= 2:
            try:
                step.increments(drift, t, idx[1:], y[1:], None)
            except ValueError:
                pass
            else:
                fail(5, "carry", "increments() from step 1 without `prev` must raise ValueError, not guess")
    elif carry is not None:
        fail(5, "carry", f"a one-step map returns carry=None; got {type(carry).__name__}")

    again = step.increments(drift, t, idx, y, None)[0]
    if not torch.equal(again, inc):
        fail(6, "deterministic", f"two identical calls differ by {float((again - inc).abs().max()):.3e}")

    part = step.linear_part()
    if step.linear:
        if not isinstance(part, torch.Tensor) or part.dim() != 1 or part.device.type != "cpu" \
                or not torch.isfinite(part).all():
            fail(7, "linear part", f"declares linear=True, so linear_part() must return finite per-step scalars "
                                   f"of shape (N,) on the CPU; got {getattr(part, 'shape', part)!r}")
        if part.shape[0] != n:
            fail(7, "linear part", f"linear_part() has {part.shape[0]} entries for a {n}-step grid")
    elif part is not None:
        fail(7, "linear part", "declares linear=False but linear_part() returned a value")


def _check_declarations(step, fail):
    for attr, kind in (("order", int), ("stages", int), ("carry_depth", int)):
        value = getattr(step, attr, None)
        if isinstance(value, bool) or not isinstance(value, kind) or value < 1:
            fail(8, "declarations", f"`{attr}` must be an integer >= 1; got {value!r}")
    for attr in ("multistep", "stochastic", "ode_rhs", "linear"):
        if not isinstance(getattr(step, attr, None), bool):
            fail(8, "declarations", f"`{attr}` must be a bool; got {getattr(step, attr, None)!r}")
    names = getattr(step, "callables", None)
    if not (isinstance(names, tuple) and names and all(isinstance(c, str) for c in names)):
        fail(8, "declarations", f"`callables` must be a non-empty tuple of names; got {names!r}")
    if not isinstance(step.name, str) or not step.name:
        fail(8, "declarations", f"`name` must be a non-empty string; got {step.name!r}")


def _check_order(step, fail):
    """Rule 3: global error at ``T = 2`` of ``y' = cos(t) y`` (exact ``exp(sin t)``) on uniform
    grids of 16, 32 and 64 steps; the observed rate must be the declared order (-0.3, +0.7)."""
    def f(t, y):
        return torch.cos(t)[:, None] * y

    y0 = torch.tensor([1.0], dtype=torch.float64)
    errors = []
    for n in (16, 32, 64):
        t = torch.linspace(0.0, 2.0, n + 1, dtype=torch.float64)
        end = _sequential(step, f, t, y0)[-1]
        errors.append(abs(float(end[0]) - math.exp(math.sin(2.0))))
    if errors[-1] < 1e-13:  # exact to round-off: no rate to measure, and no order to contradict
        return
    rate = math.log2(errors[-2] / errors[-1]) if errors[-1] > 0 else math.inf
    if not step.order - 0.3 <= rate <= step.order + 0.7:
        fail(3, "declared order", f"declares order {step.order}; on y' = cos(t) y the global error fell from "
                                  f"{errors[-2]:.3e} to {errors[-1]:.3e} when h halved: observed order {rate:.2f}")


# --------------------------------------------------------------------------- schemes

def _kit_problems():
    """(name, batched drift, y0, T, Lipschitz constant in the max-norm) the scheme rules run on."""
    A = torch.tensor([[-0.5, 1.0, 0.0], [-1.0, -0.5, 0.3], [0.0, -0.3, -0.2]], dtype=torch.float64)
    y0 = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    tanh = _tanh_drift(3, torch.float64)
    return [("linear", lambda t, y: y @ A.T, y0, 1.5, float(torch.linalg.matrix_norm(A, ord=float("inf")))),
            ("tanh", tanh, y0, 1.5, 1.3)]


def check_scheme(scheme: Scheme, *, steps=None, n_steps: int = 24, tol: float = 1e-8) -> None:
    """Check ``scheme`` (an instance) against the :class:`~parasolve.schemes.Scheme` contract.

    Runs it with every map in ``steps`` (default: every registered explicit one in ``STEPS``; the
    implicit maps are checked with the schemes that serve them in tests/test_implicit.py) on a linear
    and a nonlinear problem of ``n_steps`` non-uniform steps at ``tol``, whole-grid and with a
    window of 5, and checks rules 1-6: typed refusals, the answer (recomputed defects; equality
    with the sequential loop within ``S * defect_sum`` if ``scheme.discrete``), at most ``N``
    sweeps, honest stats (the drift's own counts), ``max_iters``/``save``/re-use, typed errors
    for bad options.
    """
    if not isinstance(scheme, Scheme):
        raise TypeError(f"check_scheme() needs a parasolve.schemes.Scheme instance; got {type(scheme).__name__}.")
    who = f"scheme {scheme.name!r} ({scheme!r})"

    def fail(rule, title, detail):
        _fail("Scheme", rule, title, who, detail)

    maps = [s for s in STEPS.values() if not getattr(s, "implicit", False)] if steps is None else [STEPS[s] if isinstance(s, str) else s for s in steps]
    t = _default_grid(n_steps) * 1.5
    accepted = []
    for step in maps:
        try:
            scheme.check_step(step)
        except UnsupportedStepError as exc:
            if scheme.name not in str(exc) or step.name not in str(exc):
                fail(1, "refusal", f"the refusal of {step.name!r} must name the scheme and the map: {exc}")
            name, f, y0, _, _ = _kit_problems()[0]
            try:
                solve(f, y0, t, method=scheme, step=step, vectorized=True)
            except UnsupportedStepError:
                continue
            fail(1, "refusal", f"check_step refuses {step.name!r} but run() solved with it")
        except Exception as exc:  # noqa: BLE001
            fail(1, "refusal", f"check_step({step.name!r}) raised {type(exc).__name__}, not UnsupportedStepError: {exc}")
        accepted.append(step)
    if not accepted:
        fail(1, "refusal", f"refuses every map given ({[s.name for s in maps]}): nothing to check")
    for step in accepted:
        for name, f, y0, _, lipschitz in _kit_problems():
            for window in (None, 5):
                _check_one(scheme, step, f, y0, t, window, tol, lipschitz, f"{name}/{step.name}/window={window}",
                           fail)
    _check_settings(scheme, accepted[0], t, fail)
    try:
        resolve_scheme(type(scheme), {"no_such_option": 1})
    except (TypeError, ValueError):
        pass
    else:
        fail(6, "bad input", "an unknown option was accepted silently")


def _check_one(scheme, step, f, y0, t, window, tol, lipschitz, case, fail):
    n = t.shape[0] - 1
    counted = CountingDrift(f)
    sol = solve(counted, y0, t, method=scheme, step=step, window=window, tol=tol, vectorized=True, throw=False)
    stats = sol.stats
    if sol.converged != (sol.status is Status.SUCCESS):
        fail(2, "answer", f"{case}: converged={sol.converged} but status={sol.status}")
    if scheme.discrete and sol.converged:
        ys = sol.ys
        inc = step.increments(f, t, torch.arange(n), ys[:-1], None)[0]
        defects = per_step(ys[1:] - ys[:-1] - inc).abs().amax(1)
        scale = max(1.0, float(ys.abs().max()))
        slack = 64 * _EPS64 * n * scale
        total = float(defects.sum())
        if not total <= tol + slack:
            fail(2, "answer", f"{case}: claims convergence, but the returned trajectory's defects sum to {total:.3e} "
                              f"> tol = {tol:.1e}")
        if not total <= stats.defect_sum + slack:
            fail(2, "answer", f"{case}: stats.defect_sum = {stats.defect_sum:.3e} under-reports the trajectory's "
                              f"defects ({total:.3e})")
        if not stats.defect_sum <= tol * (1 + 1e-12):
            fail(2, "answer", f"{case}: stats.defect_sum = {stats.defect_sum:.3e} > tol = {tol:.1e}")
        ref = _sequential(step, f, t, y0)
        stability = math.exp((2 if step.multistep else 1) * lipschitz * float((t[-1] - t[0]).abs()))
        gap = float(per_step(ys - ref).abs().max())
        allowed = stability * (stats.defect_sum + slack)
        if not gap <= allowed:
            fail(2, "answer", f"{case}: max|x - x_sequential| = {gap:.3e} > S * defect_sum = {allowed:.3e}")
    if not sol.converged:
        fail(3, "sweeps", f"{case}: did not converge within the default max_iters = N = {n}: {sol.message}")
    if not 1 <= stats.iterations <= n:
        fail(3, "sweeps", f"{case}: {stats.iterations} iterations for {n} steps")
    if scheme.iterative:
        if len(stats.history) != stats.iterations:
            fail(3, "sweeps", f"{case}: {len(stats.history)} sweep records for {stats.iterations} iterations")
        advanced = sum(r.accepted for r in stats.history)
        if advanced != n:
            fail(3, "sweeps", f"{case}: the sweep records accept {advanced} steps of {n}")
    if stats.nfe != counted.points or stats.drift_calls != counted.calls:
        fail(4, "honest stats", f"{case}: stats say nfe={stats.nfe}, drift_calls={stats.drift_calls}; the drift "
                                f"counted {counted.points} points in {counted.calls} calls")
    if scheme.windowed and not getattr(step, "implicit", False):  # implicit: Newton rounds vary
        probes = scheme.points_per_step(y0)
        points = step.stages * probes * sum(r.end - r.start for r in stats.history)
        if counted.calls != stats.iterations * step.stages or counted.points != points:
            fail(4, "honest stats", f"{case}: a windowed scheme makes {step.stages} calls per sweep over its "
                                    f"window ({probes} point(s) per step): expected "
                                    f"{stats.iterations * step.stages} calls of {points} points, "
                                    f"counted {counted.calls} of {counted.points}")
    elif not scheme.iterative and not getattr(step, "implicit", False) and (counted.calls != n * step.stages or counted.points != n * step.stages):
        fail(4, "honest stats", f"{case}: a non-iterative scheme makes {step.stages} one-point calls per step; "
                                f"counted {counted.calls} calls of {counted.points} points")


def _check_settings(scheme, step, t, fail):
    n = t.shape[0] - 1
    name, f, y0, _, _ = _kit_problems()[1]
    kw = dict(method=scheme, step=step, vectorized=True)
    first = solve(f, y0, t, tol=1e-8, **kw)
    again = solve(f, y0, t, tol=1e-8, **kw)
    if not torch.equal(first.ys, again.ys) or first.stats.iterations != again.stats.iterations:
        fail(5, "settings", "a second solve with the same instance gave a different answer (per-solve state "
                            "kept on the scheme?)")
    last = solve(f, y0, t, tol=1e-8, save="last", **kw)
    if last.ys.shape != (1, *y0.shape) or not torch.equal(last.ys[0], first.ys[-1]):
        fail(5, "settings", f"save='last' must return the end point of save='all' as ys of shape "
                            f"{(1, *y0.shape)}; got {tuple(last.ys.shape)}")
    warm = solve(f, y0, t, tol=1e-8, init=first.ys, **kw)
    if not warm.converged or float((warm.ys - first.ys).abs().max()) > 1e-6:
        fail(5, "settings", "a warm start (init = the answer) must converge to the same answer")
    stopped = solve(f, y0, t, tol=0.0, max_iters=1, throw=False, **kw)
    if stopped.stats.iterations != 1 or stopped.converged or stopped.status is not Status.MAX_ITERS:
        fail(5, "settings", f"max_iters=1 with tol=0 on {n} steps must stop after 1 iteration, unconverged; got "
                            f"{stopped.stats.iterations} iterations, status {stopped.status.value}")
    if stopped.ys.shape != first.ys.shape or not torch.isfinite(stopped.ys).all():
        fail(5, "settings", "a stopped solve must return the whole (finite) partial trajectory")
    try:
        solve(f, y0, t, tol=0.0, max_iters=1, **kw)
    except ConvergenceError:
        pass
    else:
        fail(5, "settings", "throw=True must raise ConvergenceError when max_iters stops the solve")
