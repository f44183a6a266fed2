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

from dataclasses import dataclass

import torch

from .._checks import check_positive_int, check_real
from .base import per_step, register_scheme
from .engine import SafeguardedScheme, Update, Window, aligned, picard_from, residual_grew, work_dtype


@dataclass(frozen=True)
class AndersonState:
    """Per-solve memory, in the slots of the *next* window (slot 0 = its anchor): ``history``,
    ``(first slot, x, G(x))`` of recent sweeps; ``last_inc``, the last sweep's ``(first step,
    increments)``; ``mixed``: whether the last update was a mixed one."""

    history: tuple = ()
    last_inc: tuple | None = None
    mixed: bool = False


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
        check_positive_int("memory", memory, fix="It counts the differences kept for mixing.")
        self.memory = memory
        self.regularization = check_real("regularization", regularization, low=0.0)
        super().__init__(safeguard, growth)

    def init(self, problem) -> AndersonState:
        return AndersonState()

    def reset(self, state: AndersonState) -> AndersonState:
        return AndersonState()

    def update(self, state: AndersonState, window: Window) -> Update:
        shift, w = window.shift, window.width
        x = window.ys[shift + 1:]                            # slots shift+1 .. w
        g = window.picard                                    # their Picard images
        past = [(aligned(first, px, shift + 1, w + 1), aligned(first, pg, shift + 1, w + 1))
                for first, px, pg in state.history]
        if self.safeguard and state.mixed and residual_grew(g - x, past[-1][1] - past[-1][0], self.growth):
            # The last mixed step made things worse: take the Picard step from the iterate before it.
            first, inc_prev = state.last_inc
            new = picard_from(window.anchor, aligned(first, inc_prev, shift, w), window.inc[shift:])
            history = tuple((f - shift, px, pg) for f, px, pg in state.history[-1:])
            return Update(new, AndersonState(history, (first - shift, inc_prev), False), fallback=True)
        new = g if not past else self._mix(x, g, past)
        history = (*state.history, (shift + 1, x, g))[-(self.memory + 1):]
        history = tuple((f - shift, px, pg) for f, px, pg in history)
        return Update(new, AndersonState(history, (0, window.inc[shift:]), bool(past)))

    def _mix(self, x, g, past):
        """``G(x) - dG gamma`` with per-state coefficients from the states up to each one.

        The Gram systems are built and solved in at least single precision (``work_dtype``):
        LAPACK has no 16-bit solve, and 16-bit Gram entries would lose the differences anyway.
        """
        work = work_dtype(g.dtype)
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


