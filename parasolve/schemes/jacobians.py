"""Full per-step Jacobians for Newton on the bidiagonal system (``options={"jacobian": "full"}``).

For a small state (``D`` components) the whole ``D x D`` Jacobian ``J_i = dPhi_i/dx_i`` of every
step map is measured in the sweep's own batched drift rounds, by forward differences: the
window's ``w`` states and their ``D * w`` probes ``x_i + h_{i,d} e_d`` go into one call of the
step map (``(D + 1) w`` points per stage), so the Jacobians add evaluations but no sequential
depth. ``h_{i,d} = sqrt(eps) * max(1, |x_{i,d}|)`` (with ``x``'s sign, as scipy's
``approx_derivative`` picks it) gives ``J`` to about ``sqrt(eps)`` relative accuracy -- plenty for
an inexact Newton, whose iterate the engine's stop rule checks against the exact defects anyway.
Finite differences need nothing from the drift beyond what every scheme uses (no autograd, no
``torch.func`` support), which is why they are the default. ``derivative="jvp"`` measures the same
columns exactly, by forward-mode AD: ``torch.func.jvp`` of the step map along the ``D`` unit
tangents, vectorised over them by ``torch.func.vmap`` -- one batched call per stage on the ``w``
states, their tangents riding along (counted as ``D`` evaluations per state: the cost model's
``D + 1`` points per step, as for the probes). :func:`forward_mode_works` checks on ``y0`` that
the drift allows it (docs/benchmarks/larger-states.md: the same sweeps as the differences, more CPU).

The Newton step ``delta_{i+1} = (I + J_i) delta_i - F_i`` is then an affine recursion with
matrices, solved for the whole window by a parallel scan of the pairs ``(A, B)`` composed as
``(A2 A1, A2 B1 + B2)`` (:func:`parasolve.schemes.scan.affine_scan`, which the adjoint's ``method="scan"`` uses too:
``ceil(log2 w)`` rounds of batched matmuls, no drift calls). On a linear drift the step is exact
up to the differences' ``sqrt(eps)`` error, so the solve takes two or three sweeps (the last one
measures the defects); near the solution it converges quadratically. Only one-step maps are
probed (a multistep map's increment also depends on the carry it was handed); the batch repeats
each step index ``D + 1`` times, the states' own entries first.
"""

from __future__ import annotations

import torch

from ..errors import warn
from ..evaluators.protocol import CHECKING, TANGENTS
from .base import per_step
from .engine import Window, work_dtype
from .scan import affine_scan


def probe_sizes(x: torch.Tensor) -> torch.Tensor:
    """Forward-difference steps ``sqrt(eps) * max(1, |x|)`` with ``x``'s sign (``(n, D)``, flattened states)."""
    eps = torch.finfo(x.dtype).eps
    sign = torch.where(x < 0, -1.0, 1.0).to(x.dtype)
    h = eps ** 0.5 * sign * x.abs().clamp_min(1.0)
    return (x + h) - x  # the step actually taken in floating point


def increments_and_jacobians(problem, start: int, ys: torch.Tensor, prev, blocks: int = 1,
                             derivative: str = "fd"):
    """``(inc, carry, jac)`` of steps ``start .. start+n-1`` at ``ys`` (``(n, *state)``): the step
    map's increments and their Jacobians ``jac[i] = dPhi_i/dx_i``, in at least single precision,
    from one call of the step map on the ``(D + 1) n`` states and probes.

    ``blocks = B > 1``: the state's leading dimension holds ``B`` independent trajectories of
    ``D = size / B`` components each (:func:`independent_rows`), so the Jacobian is block diagonal:
    probe ``d`` moves component ``d`` of every trajectory at once, and ``jac`` holds the blocks,
    ``(n, B, D, D)`` -- ``D`` probes for the whole batch, not ``B * D``. Else ``jac`` is ``(n, D, D)``.
    ``derivative``: ``"fd"`` (the probes) or ``"jvp"`` (forward-mode AD, :func:`by_jvp`)."""
    idx = torch.arange(start, start + ys.shape[0], device=problem.t.device)
    return measure(problem.step, problem.drift, problem.t, idx, ys, prev, blocks, derivative=derivative)


def measure(step, drift, t: torch.Tensor, idx: torch.Tensor, ys: torch.Tensor, prev, blocks: int = 1,
            probed: torch.Tensor | None = None, derivative: str = "fd"):
    """:func:`increments_and_jacobians` for the steps ``idx`` (one index per state of ``ys``, in any
    order: the per-trajectory engine's points), with the drift ``drift``; ``probed``: the states
    (indices into ``ys``) whose Jacobians are wanted (``None``: all), ``jac`` then theirs only
    (finite differences only: a JVP carries its tangents through the whole batch)."""
    if derivative == "jvp":
        if probed is not None:
            raise ValueError("jacobians.measure: `probed` needs derivative='fd' (a JVP's tangents ride on every state).")
        counts = drift.nfe, drift.calls
        try:
            return by_jvp(step, drift, t, idx, ys, prev, blocks)
        except RuntimeError as exc:  # a step map torch.func cannot transform (an in-place write, ...)
            drift.nfe, drift.calls = counts
            warn(f"parasolve: options['derivative'] = 'jvp': torch.func.jvp could not differentiate step map "
                 f"{step.name!r} ({type(exc).__name__}: {str(exc)[:200]}); this sweep measures by finite "
                 f"differences. Pass options={{'derivative': 'fd'}} for this map.", RuntimeWarning)
    n, shape = ys.shape[0], ys.shape[1:]
    sel = ys if probed is None else ys[probed]
    k = sel.shape[0]
    d = per_step(ys).shape[1] // blocks
    x = per_step(sel).reshape(k, blocks, d)                              # (k, B, D)
    h = probe_sizes(x)
    # probe j moves component j of every trajectory of every state: (D, k, B, D)
    probes = x[None] + torch.eye(d, dtype=x.dtype, device=x.device)[:, None, None, :] * h.permute(2, 0, 1)[..., None]
    batch = torch.cat([ys, probes.reshape(d * k, *shape)])               # states first, then probe j = 0 ..
    probe_idx = idx if probed is None else idx[probed]
    inc_all, carry = step.increments(drift, t, torch.cat([idx, probe_idx.repeat(d)]), batch, prev)
    inc = inc_all[:n]
    work = work_dtype(inc.dtype)
    base = per_step(inc if probed is None else inc[probed]).to(work).reshape(k, blocks, d)
    moved = per_step(inc_all[n:]).to(work).reshape(d, k, blocks, d)     # [probe j, state, block, component]
    jac = ((moved - base[None]) / h.permute(2, 0, 1).to(work)[..., None]).permute(1, 2, 3, 0)  # (k, B, out, in)
    if isinstance(carry, torch.Tensor) and carry.shape[:1] == inc_all.shape[:1]:
        carry = carry[:n]
    return inc, carry, jac if blocks > 1 else jac[:, 0]


def by_jvp(step, drift, t: torch.Tensor, idx: torch.Tensor, ys: torch.Tensor, prev, blocks: int = 1):
    """:func:`measure` by forward-mode AD: ``torch.func.jvp`` of the step map at ``ys`` along each unit
    tangent ``e_d`` (with ``blocks``, component ``d`` of every trajectory), vectorised over the ``D``
    tangents by ``torch.func.vmap`` -- ``stages`` calls of the drift on the ``n`` states, each with
    ``D`` tangents. The drift counts its ``n`` points per call; the tangents are added to its
    ``nfe`` (``D n`` per stage), so the count is the probes' ``(D + 1) n``."""
    n, shape = ys.shape[0], ys.shape[1:]
    d = per_step(ys).shape[1] // blocks
    work = work_dtype(ys.dtype)
    eye = torch.eye(d, dtype=ys.dtype, device=ys.device)
    tangents = eye[:, None, None, :].expand(d, n, blocks, d).reshape(d, n, *shape)  # [tangent j, state]

    def increments(y):
        return step.increments(drift, t, idx, y, prev).inc

    token = TANGENTS.set(d)  # counters inside the drift count the tangents too
    try:
        inc, cols = torch.func.vmap(lambda v: torch.func.jvp(increments, (ys,), (v,)), out_dims=(None, 0))(tangents)
    finally:
        TANGENTS.reset(token)
    drift.nfe += d * n * step.stages
    jac = per_step(cols, 2).to(work).reshape(d, n, blocks, d).permute(1, 2, 3, 0)      # (n, B, out, in)
    return inc, None, jac if blocks > 1 else jac[:, 0]


def forward_mode_works(drift, t: torch.Tensor, y0: torch.Tensor) -> str:
    """``""`` if ``torch.func.jvp`` differentiates ``drift`` at ``(t0, y0)``: it runs and its
    directional derivative agrees with a forward difference along the same direction (a drift or
    evaluator that drops the tangents -- a ``.detach()``, numpy, another process -- fails that);
    else why not. Three points in three calls, not counted in the stats (nor by counters that
    leave out :func:`~parasolve.evaluators.in_contract_check`'s calls)."""
    counts, token = (drift.nfe, drift.calls), CHECKING.set(True)
    x = y0.detach()[None]
    v = torch.linspace(0.5, 1.0, x.numel(), dtype=x.dtype, device=x.device).reshape(x.shape)
    h = probe_sizes(x.abs().amax().reshape(1, 1))[0, 0]
    try:
        with torch.no_grad():
            base, moved = drift(t[:1], x), drift(t[:1], x + h * v)
        _, tangent = torch.func.jvp(lambda y: drift(t[:1], y), (x,), (v,))
    except Exception as exc:  # noqa: BLE001 -- a drift forward-mode AD cannot run: finite differences
        return f"torch.func.jvp raised {type(exc).__name__}: {exc}"
    finally:
        drift.nfe, drift.calls = counts
        CHECKING.reset(token)
    fd = (moved - base) / h
    gap, scale = float((tangent - fd).abs().max()), float(fd.abs().max() + tangent.abs().max())
    if not gap <= 1e-2 * scale + 1e2 * float(h) * float(base.abs().max()):
        return f"its JVP differs from a forward difference by {gap:.3g} (scale {scale:.3g}): it drops tangents"
    return ""


@torch.no_grad()
def independent_rows(drift, t: torch.Tensor, y0: torch.Tensor) -> bool:
    """Whether the rows of the state's leading dimension are independent trajectories for ``drift``:
    one batched call on ``y0`` and on ``y0`` with row 0 moved (one forward-difference probe
    size in every component) leaves every other row's drift unchanged, bit for bit. Two points in
    one call. A coupling the probe does not excite (a dead unit) goes unseen: declare the structure
    instead where that matters (``options={"blocks": ...}``, checked the same way)."""
    if y0.dim() < 2 or y0.shape[0] < 2 or y0.is_complex():
        return False
    moved = y0.clone()
    moved[0] = moved[0] + probe_sizes(per_step(moved[:1]))[0].reshape(moved[0].shape) * 1e3
    out = drift(t[:1].expand(2), torch.stack([y0, moved]))
    return bool(torch.equal(out[0, 1:], out[1, 1:])) and not torch.equal(out[0, :1], out[1, :1])


def check_blocks(problem, blocks: int) -> None:
    """A declared ``blocks`` (``options["blocks"]``) must be the state's leading size, and its rows
    independent (:func:`independent_rows`); a ``ValueError`` naming the option otherwise."""
    if blocks == 1:
        return
    y0 = problem.y0
    if y0.dim() < 2 or y0.shape[0] != blocks:
        raise ValueError(f"options['blocks'] = {blocks} must be the size of the state's leading dimension "
                         f"(the independent trajectories); the state has shape {tuple(y0.shape)}.")
    counts = problem.drift.nfe, problem.drift.calls
    independent = independent_rows(problem.drift, problem.t, y0.detach())
    problem.drift.nfe, problem.drift.calls = counts
    if not independent:
        raise ValueError(f"options['blocks'] = {blocks} declares the rows of the state independent "
                         f"trajectories, but moving row 0 changed the drift of another row (or of none): "
                         f"the drift couples them. Remove options['blocks'].")


def newton_step(window: Window, damping: float) -> torch.Tensor:
    """The (damped) Newton update of slots ``shift+1 .. w`` with the full Jacobians in ``window.extra``."""
    shift, ys, anchor = window.shift, window.ys, window.anchor
    jac = window.extra[shift:]
    jac = torch.where(torch.isfinite(jac), jac, torch.zeros_like(jac))  # no derivative there: Picard's row
    x, phi = ys[shift:-1], window.inc[shift:]
    work, blocks = jac.dtype, jac.shape[1] if jac.dim() == 4 else None
    lead = (blocks, -1) if blocks else (-1,)
    defect = per_step(ys[shift + 1:] - x - phi).to(work).reshape(jac.shape[0], *lead)
    eye = torch.eye(jac.shape[-1], dtype=work, device=jac.device)
    delta = affine_scan(eye + jac, -defect, per_step(anchor[None] - ys[shift:shift + 1]).to(work)[0].reshape(*lead))
    return ys[shift + 1:] + (damping * delta).to(ys.dtype).reshape(ys[shift + 1:].shape)
