"""The result of a solve: the trajectory, an honest status and the cost statistics."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from .errors import ConvergenceError


class Status(enum.Enum):
    """Why a solve stopped. ``message`` says how to fix a failure."""

    SUCCESS = "success"
    MAX_ITERS = "max_iters"
    NON_FINITE = "non_finite"

    @property
    def message(self) -> str:
        if self is Status.SUCCESS:
            return "Every step met the tolerance."
        if self is Status.NON_FINITE:
            return ("The drift produced NaN or Inf (Solution.failure says at which step); the states from "
                    "there on are not a solution. Check the drift near that time or use a finer grid `t`.")
        return ("The sweep limit was reached before every step met the tolerance. "
                "Increase `max_iters` (at most len(t) - 1 sweeps are ever needed), "
                "loosen `tol`, or enlarge `window`.")


@dataclass
class SweepRecord:
    """One sweep of an iterative scheme.

    ``start``/``end``: the window of steps ``[start, end)`` updated by the sweep;
    ``residual``: the largest fixed-point defect max|x_{i+1} - x_i - Phi_i(x_i)| in the window
    *before* the update; ``accepted``: how many steps the window advanced.
    """

    sweep: int
    start: int
    end: int
    residual: float
    accepted: int


@dataclass
class Stats:
    """Cost of a solve.

    ``iterations``: sweeps of a windowed scheme (a sequential solve counts one per step;
    parareal counts its iterations, each of several rounds).
    ``drift_calls``: rounds of batched drift calls, the sequential depth (sweeps x stages of the
    step map for the windowed schemes).
    ``nfe``: drift evaluations counted per time point. Neither counts the one-time check of the
    drift's contract on a solve's first call (two extra points for a vectorized drift; see
    :func:`parasolve.evaluators.in_contract_check`), which a counter inside the drift does see.
    ``defect_sum``: sum over steps of the final trajectory's max-abs defect: by the
    discrete stability argument, max|x - x_sequential| <= S * defect_sum (see docs/tolerance.md).
    ``weighted_defect_sum``: the same sum with each defect weighted by ``G_i``, how much later
    steps amplify it in the returned states (the step map's gain estimates, 1 where it declares
    none): the estimated bound on max|x - x_sequential| that the stop rule keeps below ``tol``
    (docs/tolerance.md; above ``tol`` only where the floating-point floor was reached).
    ``fallbacks``: sweeps in which an accelerated scheme's safeguard took the plain Picard update.
    ``noise_floor``: the relative noise of the drift's evaluations that the windowed schemes
    measured (0.0: none): a step whose defect stopped decreasing near its floor was accepted
    at it, and later steps at that level too (:data:`parasolve.stop_rule.STALL_RANGE`).
    ``per_sample``: for a batch solved sample by sample (``diffusion.sample(..., per_sample=True)``),
    each sample's own stats; the fields above then combine them: ``iterations`` the slowest
    sample's sweeps (the rounds run), ``drift_calls`` the merged model calls, ``nfe`` the
    one-sample evaluations summed over the samples (a joint solve's ``nfe`` times the batch is
    the same count), ``defect_sum``/``weighted_defect_sum`` the largest sample's (each sample's
    bound holds for it), ``fallbacks`` the sum, ``history`` the slowest sample's. ``None`` otherwise.
    """

    iterations: int = 0
    drift_calls: int = 0
    nfe: int = 0
    window: int = 0
    defect_sum: float = 0.0
    weighted_defect_sum: float = 0.0
    fallbacks: int = 0
    noise_floor: float = 0.0
    history: list[SweepRecord] = field(default_factory=list)
    per_sample: list["Stats"] | None = None


@dataclass(frozen=True, eq=False)
class Solution:
    """What :func:`parasolve.solve` returns: built once, whole, and never changed afterwards
    (a changed copy is ``dataclasses.replace(sol, ...)``).

    ``ts``: the grid (``save="all"``) or its last point (``save="last"``); ``ys``: the states at
    ``ts`` with shape ``(len(ts), *y0.shape)``. ``backward``: for a differentiable solve, the
    :class:`~parasolve.adjoint.BackwardStats` of its last backward pass (else ``None``).
    ``failure``: with ``status`` ``NON_FINITE`` (``throw=False``), the
    :class:`~parasolve.NonFiniteError` that ``throw=True`` raises (its ``index`` and ``time``).
    """

    ts: torch.Tensor
    ys: torch.Tensor
    status: Status
    stats: Stats
    method: str
    step: str
    backward: object = None
    failure: Exception | None = None

    @property
    def converged(self) -> bool:
        return self.status is Status.SUCCESS

    @property
    def message(self) -> str:
        return self.status.message

    @property
    def y(self) -> torch.Tensor:
        """The final state."""
        return self.ys[-1]

    def __repr__(self) -> str:
        s = self.stats
        return (f"Solution(method={self.method!r}, step={self.step!r}, status={self.status.value}, "
                f"iterations={s.iterations}, nfe={s.nfe}, window={s.window}, ys.shape={tuple(self.ys.shape)})")


def report(sol: Solution, throw: bool, n_steps: int) -> Solution:
    """The last stage of a solve: ``sol``, or with ``throw`` its failure raised -- its
    :class:`~parasolve.NonFiniteError` if the drift produced NaN or Inf, a
    :class:`~parasolve.ConvergenceError` if it did not converge (``n_steps``: the grid's steps,
    for the message)."""
    if throw and sol.failure is not None:
        raise sol.failure
    if throw and not sol.converged:
        raise ConvergenceError(f"{sol.method}: {sol.message} (stopped after {sol.stats.iterations} "
                               f"sweeps with {n_steps} steps)", solution=sol)
    return sol
