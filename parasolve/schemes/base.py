"""The scheme contract and the registry that makes ``method="name"`` open to new schemes."""

from __future__ import annotations

import math

from ..problem import Problem
from ..solution import Solution

SCHEMES: dict[str, type["Scheme"]] = {}


def per_step(x, lead: int = 1):
    """``x`` with the state dimensions flattened into one: ``(*x.shape[:lead], state size)``.

    Unlike ``flatten(lead)`` this also works for 0-dimensional states (``x`` of shape ``(n,)``).
    """
    return x.reshape(*x.shape[:lead], math.prod(x.shape[lead:]))


def register_scheme(cls: type["Scheme"]) -> type["Scheme"]:
    """Class decorator: make ``cls`` selectable by ``method=cls.name``."""
    SCHEMES[cls.name] = cls
    return cls


def resolve_scheme(method, options: dict | None) -> "Scheme":
    """A scheme from a registered name (built with ``options``), a Scheme subclass, or an instance."""
    options = dict(options or {})
    if isinstance(method, Scheme):
        if options:
            raise TypeError(f"`options` {sorted(options)} cannot be combined with a scheme instance; "
                            f"pass them to its constructor instead.")
        return method
    if isinstance(method, type) and issubclass(method, Scheme):
        cls = method
    elif isinstance(method, str) and method in SCHEMES:
        cls = SCHEMES[method]
    else:
        raise ValueError(f"Unknown `method` {method!r}; valid: {sorted(SCHEMES)} or a parasolve.schemes.Scheme.")
    try:
        return cls(**options)
    except TypeError as exc:
        raise TypeError(f"Invalid `options` {sorted(options)} for method {cls.name!r}: {exc}") from None


class Scheme:
    """A way to solve the discrete problem ``x_{i+1} = x_i + Phi_i(x_i)``.

    Subclasses set ``name`` and implement :meth:`run`, which must: return the solution of the
    discrete problem up to the tolerance's guarantee, never use more than ``len(t) - 1``
    sweeps, honour ``problem.max_iters`` and ``problem.save``, and report the cost in the
    returned :class:`~parasolve.solution.Stats`. Options are constructor arguments.
    """

    name: str = ""
    iterative: bool = True

    def run(self, problem: Problem) -> Solution:
        """Solve ``problem`` under the contract above."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
