"""Picard iteration in a sliding window (the ParaDiGMS scheme): the engine's default update.

Each sweep sets ``x_{j+1} = x_a + sum_{i=a}^{j} Phi_i(x_i)`` for the open slots, anchored at the
window's new start ``a``; the loop, the stop rule and the bookkeeping are the engine's
(:mod:`parasolve.schemes.engine`). With ``blocks`` independent trajectories each keeps its own
window front (``parasolve.schemes.trajectories``).
"""

from __future__ import annotations

from .._checks import check_positive_int
from . import jacobians, trajectories
from .base import register_scheme
from .engine import WindowedScheme


@register_scheme
class Picard(WindowedScheme):
    """Sliding-window Picard iteration (ParaDiGMS): ``x_{j+1} = x_b + sum_{i<=j} Phi_i(x_i)``.

    Options: ``blocks``: the state's leading dimension holds this many independent trajectories
    (checked on the drift; a ``ValueError`` if its rows are coupled): each is accepted on its own
    front and leaves the batch once converged, where the drift may be evaluated row by row
    (``parasolve.schemes.trajectories.applies``; else one shared front).
    """

    name = "picard"
    blocks = 1  # (a subclass that skips __init__ keeps the plain iteration)

    def __init__(self, blocks: int = 1):
        self.blocks = check_positive_int("blocks", blocks,
                                         fix="It counts the independent trajectories in the state's leading dimension.")

    def _run(self, problem):
        if self.blocks > 1:
            jacobians.check_blocks(problem, self.blocks)
            one = trajectories.applies(problem)
            if one is not None:
                return trajectories.solve(problem, one, self.name, False, divergence_ratio=self.divergence_ratio)
        return super()._run(problem)

    def __repr__(self) -> str:
        return f"Picard(blocks={self.blocks})" if self.blocks > 1 else "Picard()"
