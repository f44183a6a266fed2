"""The scheme contract and the registry that makes ``method="name"`` open to new schemes."""

from __future__ import annotations

import math

from ..errors import ParasolveTypeError, UnsupportedStepError
from ..registry import Registry
from ..discrete_problem import Problem
from ..solution import Solution
from ..steps import StepMap

SCHEMES: Registry = Registry("scheme")


def per_step(x, lead: int = 1):
    """``x`` with the state dimensions flattened into one: ``(*x.shape[:lead], state size)``.

    Unlike ``flatten(lead)`` this also works for 0-dimensional states (``x`` of shape ``(n,)``).
    """
    return x.reshape(*x.shape[:lead], math.prod(x.shape[lead:]))


def register_scheme(cls: type["Scheme"] | None = None, *, replace: bool = False):
    """Class decorator (``@register_scheme`` or ``@register_scheme(replace=True)``): make ``cls``
    selectable by ``method=cls.name``; a name taken by another class raises
    :class:`~parasolve.registry.DuplicateNameError` unless ``replace=True``."""
    def add(cls):
        if not (isinstance(cls, type) and issubclass(cls, Scheme)):
            raise ParasolveTypeError(f"register_scheme() takes a Scheme subclass; got {cls!r}. "
                                     f"Subclass parasolve.schemes.Scheme (or WindowedScheme) and decorate it.")
        return SCHEMES.add(cls.name, cls, replace=replace)
    return add if cls is None else add(cls)


def unregister_scheme(name: str) -> type["Scheme"]:
    """Undo :func:`register_scheme`: ``method=name`` is no longer selectable; returns the class."""
    return SCHEMES.remove(name)


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
    """A way to solve the discrete problem ``x_{i+1} = x_i + Phi_i(x_i)`` of a :class:`Problem`.

    The contract, numbered as :func:`parasolve.testing.check_scheme` reports it:

    1. **Refusal.** :meth:`check_step` raises :class:`~parasolve.errors.UnsupportedStepError` (a
       ``ValueError``) naming the scheme and the step map when the scheme cannot handle the map's
       declared capabilities; it never inspects the map's type. It holds by construction: the
       public :meth:`run` calls :meth:`check_step` and then the subclass's ``_run`` (a subclass
       implements ``_run``; one that overrides ``run`` is refused with a ``TypeError``).
    2. **Answer.** ``status`` is ``SUCCESS`` only when every step of the returned trajectory was
       accepted by the stop rule (:mod:`parasolve.stop_rule`, through the :class:`~parasolve.schemes.Ledger`). A
       ``discrete`` scheme's step ``i`` then has a defect ``d_i = max|x_{i+1} - x_i - Phi_i(x_i)|``
       whose weighted sum is within ``tol``: ``sum_i G_i d_i = stats.weighted_defect_sum <= tol``,
       where ``G_i`` is how much the later steps amplify a defect of step ``i`` in the returned
       states, from the map's declared ``gains()`` (``G_i = 1`` without them, and then the plain
       ``stats.defect_sum = sum_i d_i <= tol``; with gains the plain sum may exceed ``tol``). So
       ``max|x - x_seq| <= stats.weighted_defect_sum`` up to the gain model's error, and
       ``<= S * stats.defect_sum`` in any case (``S``: the stability constant, docs/tolerance.md).
       The one exception: steps accepted at the floating-point floor or at the measured noise
       floor of the drift's evaluations may take the weighted sum above ``tol``, and the solve
       then warns when it exceeds ``tol`` by more than ``stop_rule.FLOOR_SLACK``.
    3. **Sweeps.** ``stats.iterations <= min(len(t) - 1, max_iters)``; an iterative scheme's
       ``stats.history`` has one :class:`~parasolve.solution.SweepRecord` per iteration whose
       ``accepted`` steps add up to ``N`` when it converged.
    4. **Honest stats.** ``stats.nfe`` and ``stats.drift_calls`` are the drift's own counts; a
       ``windowed`` scheme makes ``stages`` batched calls per sweep over the record's
       ``[start, end)`` steps, :meth:`points_per_step` points per step in each (a non-iterative
       one ``stages`` calls of one point per step).
    5. **Settings.** ``max_iters`` stops it (status ``MAX_ITERS``, the partial answer returned),
       ``init`` is only a guess, and ``save`` says what is returned: with ``save="last"`` the end
       point of the ``save="all"`` answer, bit for bit where the map declares no gains (with gains
       the stop rule weighs defects by their effect on the returned states, so the two answers may
       differ within rule 2's bound). The scheme keeps no per-solve state on itself, so one
       instance may run many solves.
    6. **Bad input.** Options are constructor arguments, checked there: a bad one raises a
       ``ValueError``/``TypeError`` naming it.

    Declared capabilities: ``name``; ``iterative`` (counts sweeps; ``False``: one iteration per
    step, like the sequential loop); ``windowed`` (rule 4's cost model); ``discrete`` (rule 2:
    converges to the step map's discrete problem, not e.g. to glued odeint solutions).
    """

    name: str = ""
    iterative: bool = True
    windowed: bool = False
    discrete: bool = True

    def points_per_step(self, y0) -> int:
        """Drift evaluations per step and stage in each batched call (rule 4's cost model): 1, or
        more for a scheme that probes extra points in the same calls (the full-Jacobian Newton)."""
        return 1

    def check_step(self, step: StepMap) -> None:
        """Raise :class:`~parasolve.errors.UnsupportedStepError` if this scheme cannot use ``step``
        (rule 1); the default accepts every map."""

    def refuse(self, step: StepMap, why: str, fix: str) -> UnsupportedStepError:
        """The typed refusal of rule 1, naming the scheme, the map, the reason and the fix."""
        return UnsupportedStepError(f"method={self.name!r} cannot use step map {step.name!r}: {why}. {fix}",
                                    scheme=self.name, step=step.name)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "run" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides Scheme.run; implement _run(problem) instead: run checks "
                            f"the step map (check_step, rule 1) and then calls _run.")

    def run(self, problem: Problem) -> Solution:
        """Solve ``problem`` under the contract above: :meth:`check_step` (rule 1), then ``_run``."""
        self.check_step(problem.step)
        return self._run(problem)

    def _run(self, problem: Problem) -> Solution:
        """The scheme's own solve of ``problem``, whose step map :meth:`check_step` accepted."""
        raise NotImplementedError(f"{type(self).__name__} must implement _run(problem) -> Solution.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
