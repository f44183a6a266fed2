"""``parasolve.odeint``: torchdiffeq's ``odeint`` -- output times, ``rtol``/``atol``, adaptive
methods -- with the grid found and solved parallel in time (docs/odeint.md)."""

from .api import METHODS, odeint, odeint_adjoint, odeint_event
from .result import OdeintResult, OdeintStats, PassRecord
from .tableaus import EMBEDDED, EmbeddedRK, ErrorEstimate

__all__ = ["odeint", "odeint_adjoint", "odeint_event", "METHODS", "OdeintResult", "OdeintStats", "PassRecord",
           "EmbeddedRK", "ErrorEstimate", "EMBEDDED"]
