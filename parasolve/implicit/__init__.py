"""Implicit step maps for stiff problems, and the Newton iteration that solves all their steps'
stage equations at once (docs/stiff.md).

Registered maps (``solve(..., step=name)``): ``"backward_euler"``, ``"trapezoid"``, ``"sdirk4"``
(Hairer & Wanner's L-stable SDIRK of order 4) and ``"radau5"`` (Radau IIA, order 5).
"""

from ..steps import register_step
from .maps import ImplicitRK
from .stages import StageConvergenceError
from .tableaus import TABLEAUS, Tableau

for _tab in TABLEAUS.values():
    register_step(ImplicitRK(_tab))

__all__ = ["ImplicitRK", "StageConvergenceError", "TABLEAUS", "Tableau"]
