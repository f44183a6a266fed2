"""parasolve: ODEs and SDEs solved parallel in time by fixed-point sweeps over the whole grid.

The layout (docs/architecture.md draws the data flow):

- core, the modules at this level: the entry points (``_api``), the straight solve (``_solve``),
  what it assembles (``drift``, ``steps``, ``sde``, ``discrete_problem``, ``solution``,
  ``stop_rule``, ``observers``, ``costs``, ``capabilities``, ``registry``, ``errors``, ``_checks``)
  and the packages ``schemes`` (the fixed-point iterations) and ``evaluators`` (who runs a batch
  of drift calls);
- features, each a package: ``odeint``, ``sdeint``, ``implicit``, ``adjoint`` (gradients),
  ``diffusion``, and ``tuning`` (``window="auto"``);
- the test kit: ``testing``, ``conformance`` (the contracts, one check per rule) and
  ``problems`` (reference problems with exact solutions);
- around it: ``zoo`` (shipped models) and ``apps`` (the command line).
"""

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
