"""Triangular Anderson acceleration of the windowed Picard sweep (ParaTAA-style), safeguarded.

Inside the window the non-accepted states ``x = (x_{a+1} .. x_{b+w})`` solve the fixed point
``x = G(x)`` with ``G(x)_j = x_a + sum_{i=a}^{j-1} Phi_i(x_i)`` (Picard). Plain Picard iterates
``x <- G(x)``. Anderson mixing keeps the last ``memory`` differences of iterates ``dX`` and of
their images ``dG`` (residuals ``F = G - x``, ``dF = dG - dX``) and takes

    x_j <- G(x)_j - dG_j gamma_j,   gamma_j = argmin || F_{<=j} - dF_{<=j} gamma ||_2^2 (+ ridge),

with one coefficient vector ``gamma_j`` per state: its least-squares problem only sees the states
up to ``j``, so the mixed update keeps the lower-triangular (causal) structure of the system, as
Triangular Anderson Acceleration does. The per-state Gram matrices are cumulative sums of
per-state ones, so all states are mixed at the cost of one batched ``memory x memory`` solve.

Safeguard: when the residual on the states shared with the previous sweep grew by more than
``growth`` after a mixed step, this sweep takes the plain Picard update and the memory restarts.
The acceptance and the stop rule are the core's (frozen states keep their *measured* defects),
so the tolerance guarantee and the at-most-N-sweeps bound hold whatever the mixing does.
"""

from __future__ import annotations

import torch

from .base import per_step, register_scheme
from .picard import SafeguardedScheme


def _check_options(memory, regularization, growth):
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 1:
        raise ValueError(f"`memory` must be an integer >= 1 (differences kept for mixing); got {memory!r}.")
    if isinstance(regularization, bool) or not isinstance(regularization, (int, float)) or not regularization >= 0:
        raise ValueError(f"`regularization` must be a real number >= 0; got {regularization!r}.")
    if isinstance(growth, bool) or not isinstance(growth, (int, float)) or not 0 < growth < float("inf"):
        raise ValueError(f"`growth` must be a finite real number > 0; got {growth!r}.")


@register_scheme
class Anderson(SafeguardedScheme):
    """Sliding-window Picard with triangular Anderson mixing.

    Options (``solve(..., method="anderson", options={...})``):
        memory: differences kept (default 3; ParaTAA uses 2-5).
        regularization: ridge weight relative to the Gram matrix's trace (default 1e-8).
        safeguard: fall back to the Picard update when a mixed step grew the residual (default True).
        growth: the safeguard acts when the residual exceeds ``growth`` times the previous one
            (default 1.0: any growth).
    """

    name = "anderson"
    options = ("memory", "regularization", "safeguard", "growth")

    def __init__(self, memory: int = 3, regularization: float = 1e-8, safeguard: bool = True,
                 growth: float = 1.0):
        _check_options(memory, regularization, growth)
        self.memory, self.regularization = memory, float(regularization)
        self.safeguard, self.growth = bool(safeguard), float(growth)

    def reset(self):
        # (first slot, x, G(x)) of recent sweeps and the last sweep's (first step, increments),
        # in the slots of the *next* window (slot 0 = its anchor).
        self._history: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self._last_inc = None
        self._mixed = False

    def update(self, anchor, ys, inc, shift):
        w = ys.shape[0] - 1
        x = ys[shift + 1:]                                   # slots shift+1 .. w
        g = anchor + torch.cumsum(inc[shift:], dim=0)        # their Picard images
        past = [(aligned(first, px, shift + 1, w + 1), aligned(first, pg, shift + 1, w + 1))
                for first, px, pg in self._history]
        if self.safeguard and self._mixed and residual_grew(g - x, past[-1][1] - past[-1][0], self.growth):
            # The last mixed step made things worse: take the Picard step from the iterate before it.
            self.fallbacks += 1
            first, inc_prev = self._last_inc
            new = picard_from(anchor, aligned(first, inc_prev, shift, w), inc[shift:])
            self._history, self._mixed = self._history[-1:], False
            self._last_inc = (first - shift, inc_prev)
            self._history = [(first - shift, px, pg) for first, px, pg in self._history]
            return new
        new = g if not past else self._mix(x, g, past)
        self._mixed = bool(past)
        self._history.append((shift + 1, x, g))
        self._history = [(first - shift, px, pg) for first, px, pg in self._history[-(self.memory + 1):]]
        self._last_inc = (0, inc[shift:])
        return new

    def _mix(self, x, g, past):
        """``G(x) - dG gamma`` with per-state coefficients from the states up to each one.

        The Gram systems are built and solved in at least single precision (``_work_dtype``):
        LAPACK has no 16-bit solve, and 16-bit Gram entries would lose the differences anyway.
        """
        work = _work_dtype(g.dtype)
        xs = torch.stack([px for px, _ in past] + [x])       # (k+1, n, *state), oldest first
        gs = torch.stack([pg for _, pg in past] + [g])
        dx = torch.nan_to_num(xs[1:] - xs[:-1], nan=0.0)     # 0 where a state has no history
        dg = torch.nan_to_num(gs[1:] - gs[:-1], nan=0.0)
        df = per_step(dg - dx, 2).to(work)                   # (k, n, D)
        f = per_step(g - x).to(work)                         # (n, D)
        gram = torch.einsum("and,bnd->nab", df.conj(), df).cumsum(0)  # (n, k, k) over states <= j
        rhs = torch.einsum("and,nd->na", df.conj(), f).cumsum(0)      # (n, k)
        k = gram.shape[-1]
        eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
        trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1).real
        ridge = (self.regularization * trace / k + torch.finfo(trace.dtype).tiny)[:, None, None]
        gamma, info = torch.linalg.solve_ex(gram + ridge * eye, rhs[..., None])
        usable = (info == 0)[:, None] & torch.isfinite(gamma[..., 0])  # singular: plain Picard there
        gamma = torch.where(usable, gamma[..., 0], torch.zeros_like(gamma[..., 0]))  # (n, k)
        return g - torch.einsum("na,an...->n...", gamma, dg.to(work)).to(g.dtype)


def aligned(first: int, values: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """``values`` stored for window slots ``first, first+1, ..`` laid out on slots ``lo .. hi-1``;
    NaN on slots the stored values do not cover (states that entered the window since)."""
    out = torch.full((hi - lo, *values.shape[1:]), float("nan"), dtype=values.dtype, device=values.device)
    a, b = max(first, lo), min(first + values.shape[0], hi)
    if b > a:
        out[a - lo:b - lo] = values[a - first:b - first]
    return out


def picard_from(anchor: torch.Tensor, inc_before: torch.Tensor, inc_now: torch.Tensor) -> torch.Tensor:
    """The Picard update from the previous iterate, re-anchored at ``anchor``: its increments
    ``inc_before`` (aligned, NaN on steps it did not cover, which take ``inc_now``)."""
    return anchor + torch.cumsum(torch.where(torch.isnan(inc_before), inc_now, inc_before), 0)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """``dtype`` raised to at least single precision (16-bit -> float32/complex64; others kept)."""
    return torch.promote_types(dtype, torch.float32)


def residual_grew(residual: torch.Tensor, previous: torch.Tensor, growth: float) -> bool:
    """Whether ``residual`` exceeds ``growth`` times ``previous`` (aligned, NaN where unknown),
    in the 2-norm over the states both carry. A non-finite current residual counts as growth.

    One host synchronisation: the states ``previous`` does not cover are zeroed, not dropped.
    """
    now, prev = (per_step(v).to(_work_dtype(v.dtype)) for v in (residual, previous))
    known = torch.isfinite(prev).all(1, keepdim=True)
    zero = torch.zeros((), dtype=now.dtype, device=now.device)
    now_norm = torch.where(known, now, zero).norm()
    prev_norm = torch.where(known, prev, zero).norm()
    return bool(known.any() & ~(now_norm <= growth * prev_norm))
