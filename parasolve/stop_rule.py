"""The stop rule: per-step defect allowances that make ``tol`` bound the returned answer.

With ``e_i = x_i - x*_i`` (distance to the sequential trajectory) and ``r_{i+1}`` the defect a
scheme accepts at step ``i``, ``e_n = sum_{i<n} (J_{n-1} ... J_{i+1}) r_{i+1}``. If ``G_i`` bounds
how much the later steps amplify a defect of step ``i`` *in the states that are returned*
(``save="last"``: the final state; ``save="all"``: every state after it), then

    max |x - x*| <= sum_i G_i |r_{i+1}| <= tol    when    |r_{i+1}| <= tol * w_i / G_i,

with shares ``w_i = |h_i| / |T|`` summing to 1. ``G_i`` comes from the step map's per-step gain
estimates ``g_j >= ||J_j||`` (:meth:`parasolve.steps.StepMap.gains`): a product of gains for the
final state, the largest partial product (at least 1) for a whole trajectory. A map that
declares no gains gets ``G_i = 1``, the length-proportional rule ``tol * |h_i| / |T|`` (whose
guarantee carries the problem's stability constant S, docs/tolerance.md).

The **floating-point floor**: no allowance is below what the state's dtype resolves for that
step, ``FLOOR_ULPS * eps * (max|x_{i+1}| + max|Phi_i|)`` -- a defect is the difference of
numbers of that size, computed in a different batch than the sequential step. Below the floor a
step could only be accepted once it is computed exactly (one step per sweep, a silent
sequential solve); at the floor the answer is within the weighted sum of the accepted defects,
``Stats.weighted_defect_sum``, and :func:`floor_warning` says so when that exceeds ``tol``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

#: Allowances are never below this many machine epsilons of the step's magnitude.
FLOOR_ULPS = 8.0
#: The warning of :func:`floor_warning` is given when the floor took the weighted defect sum
#: more than this fraction above ``tol`` (float32 diffusion at ``tol=1e-3`` reaches ~1%).
FLOOR_SLACK = 0.1
#: A front step (the first one rejected) whose defect is within ``STALL_RANGE`` times the
#: floor and fell by less than the factor ``STALL_RATIO`` in each of the last ``STALL_SWEEPS`` sweeps has
#: stopped converging at the round-off of its evaluations: they differ between batches by about
#: that much (TF32 or other batch-dependent kernels). Its defect is taken as a measured noise
#: floor (``STALL_MARGIN`` times its size relative to the step's): it and the later steps at it
#: are accepted, so no such noise turns a solve into a sequential one, and the warning says so.
#: (A scheme that stalls far above round-off -- at a large ``tol`` or in float64 -- is left to
#: its exact step per sweep: that is not noise.)
STALL_RANGE = 100.0
STALL_RATIO = 0.7
STALL_SWEEPS = 3
STALL_MARGIN = 2.0
#: ``G_i`` is never taken below this: no step's allowance exceeds ``1 / MIN_AMPLIFICATION``
#: times its plain share, however strongly the gain model says later steps damp it.
MIN_AMPLIFICATION = 1e-2


def within_budget(defects: torch.Tensor, weights: torch.Tensor, budget: torch.Tensor, spent: float | None,
                  floor_: torch.Tensor) -> int:
    """How many leading steps fit the budget; a step at the floor always does, NaN never.

    With ``spent`` (the weighted defects accepted before): step ``j`` fits while ``spent`` plus
    ``sum_{k<=j} G_k |r_k|`` is within ``budget[j]`` (``tol`` times the shares of every step up
    to ``j``), so shares a step leaves unused (a defect below its share, the exact step of
    every sweep) carry over to the steps after it. With ``spent=None``: each step on its own,
    ``G_j |r_j| <= budget[j]`` (``budget`` then holds each step's own share). Either way the
    weighted sum stays within ``tol``.
    """
    d = defects.double()
    weighted = torch.nan_to_num(d * weights, nan=math.inf)
    fits = (weighted if spent is None else spent + torch.cumsum(weighted, 0)) <= budget
    return int((fits | (d <= floor_)).long().cumprod(0).sum())


def shares(t: torch.Tensor) -> torch.Tensor:
    """``w_i = |h_i| / |T|`` in float64 on the host, shape ``(N,)``: each step's share of ``tol``."""
    h = (t[1:] - t[:-1]).abs().double().cpu()
    return h / h.sum()


def amplification(gains, save: str, n: int) -> torch.Tensor:
    """``G_i`` (float64, host, shape ``(n,)``): how much steps ``i+1 ..`` amplify a defect of step ``i``.

    ``gains``: the step map's scalar error recursion ``e_{j+1} = p_j e_j + q_j e_{j-1}`` as
    ``p`` (one-step maps) or ``(p, q)`` (two-step maps), each of shape ``(n,)`` or ``(K, n)``
    (one row per model of the drift; the worst row counts); ``None``: ``G_i = 1``. With
    ``E_{i,m} = de_m / dr_{i+1}`` (1 at ``m = i+1``), ``save="last"`` gives ``G_i = |E_{i,n}|``
    (the final state) and ``"all"`` gives ``max_{m > i} |E_{i,m}|`` (every later state; >= 1).
    """
    if gains is None:
        return torch.ones(n, dtype=torch.float64)
    p, q = gains if isinstance(gains, tuple) else (gains, np.zeros_like(gains))
    p, q = np.atleast_2d(np.asarray(p, dtype=np.float64)), np.atleast_2d(np.asarray(q, dtype=np.float64))
    if p.shape[1] != n or q.shape != p.shape or not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        raise ValueError(f"step gains must be finite with {n} entries per row; got shapes {p.shape}, {q.shape}.")
    return _propagated(save, p.shape, p.tobytes(), q.tobytes()).clone()


@functools.lru_cache(maxsize=16)
def _propagated(save: str, shape: tuple, p_bytes: bytes, q_bytes: bytes) -> torch.Tensor:
    """:func:`_propagate`, a pure function cached on its inputs (the float64 rows' bytes): the same
    sampler's gains again -- a new batch, each sample's lane of a per-sample solve -- are
    propagated once. ``lru_cache`` is thread-safe; callers get a clone."""
    p = np.frombuffer(p_bytes, dtype=np.float64).reshape(shape)
    q = np.frombuffer(q_bytes, dtype=np.float64).reshape(shape)
    return _propagate(p, q, save, shape[1])


def _propagate(p: np.ndarray, q: np.ndarray, save: str, n: int) -> torch.Tensor:
    """:func:`amplification` of validated ``(K, n)`` recursions: its O(K n^2) part (0.1 s for
    DDPM-1000's rows, hence the cache of :func:`_propagated`)."""
    before, cur = np.zeros((p.shape[0], n)), np.zeros((p.shape[0], n))  # E_{., m-1}, E_{., m}
    worst = np.zeros((p.shape[0], n))
    for m in range(1, n + 1):
        nxt = p[:, m - 1:m] * cur + q[:, m - 1:m] * before if m > 1 else cur.copy()
        nxt[:, m - 1] = 1.0  # r_m enters e_m directly
        before, cur = cur, nxt
        worst = np.maximum(worst, np.abs(cur))
    G = np.abs(cur) if save == "last" else worst
    return torch.from_numpy(G.max(axis=0)).clamp_min(MIN_AMPLIFICATION)


def floor(scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The smallest defect ``dtype`` resolves at steps whose states and increments have size ``scale``
    (none where they overflowed: a non-finite step is never accepted at the floor)."""
    real = torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype
    scale = scale.double()
    return torch.where(torch.isfinite(scale), FLOOR_ULPS * torch.finfo(real).eps * scale, 0.0)


def stalled(history, allowance: float, floor_: float) -> bool:
    """Whether a front step's last ``STALL_SWEEPS + 1`` defects (oldest first), the newest above its
    ``allowance``, have stopped converging near its floating-point ``floor_`` (see
    :data:`STALL_RANGE`); NaN (not measured) never stalls."""
    history = [float(d) for d in history]
    if len(history) < STALL_SWEEPS + 1:
        return False
    now = history[-1]
    steady = all(b > STALL_RATIO * a for a, b in zip(history, history[1:]))
    return allowance < now <= STALL_RANGE * floor_ and steady


def floor_warning(tol: float, reached: float, dtype: torch.dtype, noise: float = 0.0, declared: bool = False) -> str:
    """The warning of a solve whose accepted defects, weighted, sum to ``reached > tol``: why, and
    the distance to the sequential solve it proves. ``declared``: the step map declares gains, so
    ``reached`` is the gain-weighted sum, a bound up to the gain model's error; else it is the
    plain sum, and the bound is ``S * reached`` with ``S`` the discrete stability constant."""
    if noise > 0:
        why = (f"`tol`={tol:.3g} was not reached: the defects stopped decreasing at about {noise:.2g} of the "
               f"states' size (the drift's evaluations differing by that much between batches, e.g. TF32 or "
               f"nondeterministic kernels, or the scheme stalling there), so steps were accepted at that level")
        fix = f"Use tol >= {reached:.2g}, or make the drift's evaluations reproducible."
    else:
        why = (f"`tol`={tol:.3g} is below what {dtype} resolves on this problem: steps were accepted at the "
               f"floating-point floor")
        fix = f"Use tol >= {reached:.2g} or a wider dtype."
    if declared:
        bound = (f"the answer is within about {reached:.3g} of the sequential solve (Stats.weighted_defect_sum, "
                 f"{reached / tol:.1f} x tol: the defects weighted by the step map's gain estimates, a bound "
                 f"up to their error; docs/tolerance.md)")
    else:
        bound = (f"the answer is within S x {reached:.3g} of the sequential solve (Stats.defect_sum, "
                 f"{reached / tol:.1f} x tol), where S, the discrete problem's stability constant (the largest "
                 f"norm of a product of consecutive step Jacobians), is about 1 for a contracting drift and "
                 f"up to exp(L |T|) for one with Lipschitz constant L (docs/tolerance.md)")
    return f"{why}, and {bound}. {fix}"
