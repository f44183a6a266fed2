"""Fixed-point schemes. Add one by subclassing :class:`Scheme` (or, for a sliding-window update
rule, :class:`WindowedScheme`) and decorating it with :func:`register_scheme`; it is then
selectable as ``solve(..., method=name)``. :func:`parasolve.testing.check_scheme` checks it."""

from .base import SCHEMES, Scheme, register_scheme, resolve_scheme, unregister_scheme
from .engine import SafeguardedScheme, Update, Window, WindowedScheme
from .ledger import Ledger
from .picard import Picard
from .sequential import Sequential
from .anderson import Anderson
from .newton import Newton
from .parareal import Parareal

__all__ = ["SCHEMES", "Scheme", "register_scheme", "unregister_scheme", "resolve_scheme",
           "WindowedScheme", "SafeguardedScheme",
           "Window", "Update", "Ledger", "Picard", "Sequential", "Anderson", "Newton", "Parareal"]
