"""parasolve: ODEs and SDEs solved parallel in time by fixed-point sweeps over the whole grid."""

from ._api import solve, solve_sde
from .adjoint import AdjointError, BackwardStats
from .errors import ConvergenceError, NonFiniteError, ParasolveError, UnsupportedStepError
from .schemes import SCHEMES, Scheme, register_scheme, unregister_scheme
from .solution import Solution, Stats, Status, SweepRecord
from .steps import STEPS, StepMap, register_step, unregister_step
from .odeint import odeint, odeint_adjoint, odeint_event  # noqa: E402  (after steps: it registers heun3, rk38, dopri5, ...)
from .sdeint import sdeint, sdeint_adjoint  # noqa: E402  (torchsde's calls, parallel in time)
from . import implicit  # noqa: E402,F401  (registers the implicit maps: radau5, sdirk4, ...)
from . import problems  # noqa: E402  (analytic test problems: parasolve.problems.linear(), ...)

__version__ = "0.1.0"

__all__ = ["solve", "solve_sde", "odeint", "odeint_adjoint", "odeint_event", "sdeint", "sdeint_adjoint",
           "Solution", "Stats", "Status", "SweepRecord", "ParasolveError", "ConvergenceError", "NonFiniteError",
           "UnsupportedStepError", "AdjointError", "BackwardStats", "SCHEMES",
           "Scheme", "register_scheme", "unregister_scheme", "STEPS", "StepMap", "register_step", "unregister_step"]
