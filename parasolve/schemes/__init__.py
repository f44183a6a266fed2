"""Fixed-point schemes. Add one by subclassing :class:`Scheme` and decorating it with
:func:`register_scheme`; it is then selectable as ``solve(..., method=name)``."""

from .base import SCHEMES, Scheme, register_scheme, resolve_scheme
from .picard import Picard, SafeguardedScheme, WindowedScheme
from .sequential import Sequential
from .anderson import Anderson
from .newton import Newton
from .parareal import Parareal

__all__ = ["SCHEMES", "Scheme", "register_scheme", "resolve_scheme", "Picard", "WindowedScheme",
           "SafeguardedScheme", "Sequential", "Anderson", "Newton", "Parareal"]
