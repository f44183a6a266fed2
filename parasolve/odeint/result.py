"""What ``odeint(..., full_output=True)`` returns: the answer, the final grid and the cost."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..solution import Solution


@dataclass
class PassRecord:
    """One solve of the adaptive driver: its grid size, cost and how many steps failed their test."""

    steps: int
    sweeps: int
    drift_rounds: int
    nfe: int
    failed: int
    max_ratio: float


@dataclass
class OdeintStats:
    """Cost of an ``odeint`` call, summed over every solve it made.

    ``sweeps``: fixed-point sweeps; ``drift_rounds``: batched drift calls made one after another
    -- the sequential depth, comparable with a sequential solver's evaluation count (torchdiffeq
    makes one drift call per stage per step); ``nfe``: drift evaluations counted per time point;
    ``accepted_steps``: steps of the final grid; ``rejected_steps``: steps whose error test failed,
    summed over the passes (each was cut and solved again); ``passes``: solves on successive grids
    (1 for the fixed-step methods); ``pilot``: the coarse sequential solve that started the
    parallel driver (``parasolve/odeint/pilot.py``; its steps, rounds, evaluations and rejected
    steps at its loose tolerances, ``sweeps`` 0), ``None`` without one -- its rounds and
    evaluations are in the totals.
    """

    sweeps: int = 0
    drift_rounds: int = 0
    nfe: int = 0
    accepted_steps: int = 0
    rejected_steps: int = 0
    passes: int = 0
    coarsened: int = 0
    history: list[PassRecord] = field(default_factory=list)
    pilot: PassRecord | None = None


@dataclass
class OdeintResult:
    """``ys``: the solution at the output times ``t``, shape ``(len(t), *y0.shape)`` (what plain
    ``odeint`` returns; a tuple of them for a tuple state, while ``solution`` and ``states`` hold
    the flat one); ``grid``: the final step grid (it contains ``t``, except from the sequential
    stepper, which interpolates); ``solution``: the :class:`~parasolve.Solution` of the final solve
    on ``grid`` (``None`` from the sequential stepper, which solves no fixed-point problem);
    ``max_ratio``: the largest error ratio of the final grid's steps (<= 1; ``nan`` for the
    fixed-step methods); ``states``: the solution on ``grid`` (from the sequential stepper only
    with ``full_output=True``: plain ``odeint`` keeps no trajectory)."""

    ys: torch.Tensor
    t: torch.Tensor
    grid: torch.Tensor
    solution: Solution | None
    stats: OdeintStats
    method: str
    max_ratio: float = float("nan")
    states: torch.Tensor | None = None

    def __post_init__(self):
        if self.states is None and self.solution is not None:
            self.states = self.solution.ys

    def __repr__(self) -> str:
        s = self.stats
        return (f"OdeintResult(method={self.method!r}, steps={s.accepted_steps}, passes={s.passes}, "
                f"sweeps={s.sweeps}, drift_rounds={s.drift_rounds}, nfe={s.nfe}, ys.shape={_shapes(self.ys)})")


def _shapes(ys):
    """``ys``'s shape, or the shapes of its parts for a tuple state."""
    return tuple(_shapes(y) for y in ys) if isinstance(ys, tuple) else tuple(ys.shape)
