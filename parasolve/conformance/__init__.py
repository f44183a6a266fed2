"""The conformance kit: the numbered contracts of :class:`~parasolve.steps.StepMap` and
:class:`~parasolve.schemes.Scheme`, one check per rule, run on an extension like scikit-learn's
``check_estimator`` / ``parametrize_with_checks``.

* :func:`step_map_checks` / :func:`scheme_checks` yield ``(rule id, check)`` pairs -- ``check()``
  raises ``AssertionError("rule N (title) of the ... contract: ...")`` with the measured values
  when its rule is broken; :func:`parametrize_with_checks` makes one pytest test of each, with ids
  like ``rk4-rule5-carry``, so every broken rule shows at once.
* :func:`check_step_map` / :func:`check_scheme` run every check and raise one ``AssertionError``
  that starts with the first broken rule and lists the others (``None`` when all hold).

All are exported by :mod:`parasolve.testing`; docs/extending.md shows them at work.
"""

from __future__ import annotations

from typing import Iterator

import torch

from ..schemes.base import Scheme
from ..steps import STEPS, StepMap
from . import protocols, schemes as scheme_rules, steps as step_rules
from .counting import CountingDrift, CountingEvaluator
from .rules import bind, default_grid, failures, run_all, tanh_drift

__all__ = ["CountingDrift", "CountingEvaluator", "check_step_map", "check_scheme", "step_map_checks",
           "scheme_checks", "checks_for", "parametrize_with_checks", "failures", "STEP_MAP_RULES", "SCHEME_RULES"]

#: The StepMap contract's rules: 1-8 the map's own, 9-13 the optional capabilities; rule 8
#: (declarations) first, as the others read the declarations.
STEP_MAP_RULES = step_rules.RULES[7:] + step_rules.RULES[:7] + protocols.RULES
SCHEME_RULES = scheme_rules.RULES


def step_map_checks(step: StepMap, *, t: torch.Tensor | None = None, y0: torch.Tensor | None = None,
                    drift=None) -> Iterator[tuple[str, callable]]:
    """``(rule id, check)`` for each rule of the :class:`~parasolve.steps.StepMap` contract (1-13).

    ``t`` (default: a non-uniform 12-step grid on ``[0, 1]``), ``y0`` (default: 3 random float64
    entries) and ``drift`` (batched ``f(t, y)``; default: a smooth time-dependent tanh layer) are
    the problem the rules run on; a map built for one grid and state shape (an SDE's pre-drawn
    noise, a sampler's tables) must get its own. Rule 3 (declared order) runs on
    ``y' = cos(t) y`` for maps that declare ``ode_rhs``; rule 13 checks ``drift``'s compute dtype.
    """
    if not isinstance(step, StepMap):
        raise TypeError(f"check_step_map() needs a parasolve.steps.StepMap instance; got {type(step).__name__}.")
    t = default_grid() if t is None else t
    y0 = torch.randn(3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) if y0 is None else y0
    drift = tanh_drift(max(1, min(y0.numel(), 4)), y0.dtype) if drift is None else drift
    n = t.shape[0] - 1
    noise = 0.3 * torch.randn((n, *y0.shape), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    case = step_rules.StepCase(step, t, y0, drift, y0 + noise.to(y0.dtype))
    who = f"step map {step.name!r}"
    return iter([(rule.id, bind("StepMap", rule, who, case)) for rule in STEP_MAP_RULES])


def scheme_checks(scheme: Scheme, *, steps=None, n_steps: int = 24,
                  tol: float = 1e-8) -> Iterator[tuple[str, callable]]:
    """``(rule id, check)`` for each rule of the :class:`~parasolve.schemes.Scheme` contract (1-6).

    The scheme (an instance) runs with every map in ``steps`` (default: every registered explicit
    one in ``STEPS``; the implicit maps are checked with the schemes that serve them in
    tests/test_implicit.py) on a linear and a nonlinear problem of ``n_steps`` non-uniform steps
    at ``tol``, whole-grid and with a window of 5: typed refusals, the answer (recomputed defects,
    weighted by the map's gains as the stop rule weights them; equality with the sequential loop
    within ``S * defect_sum`` if ``scheme.discrete``), at most ``N`` sweeps, honest stats (the
    drift's own counts), ``max_iters``/``save``/re-use, typed errors for bad options. The solves
    are shared by rules 2-4 and run once.
    """
    if not isinstance(scheme, Scheme):
        raise TypeError(f"check_scheme() needs a parasolve.schemes.Scheme instance; got {type(scheme).__name__}.")
    maps = [s for s in STEPS.values() if not s.implicit] if steps is None else \
        [STEPS[s] if isinstance(s, str) else s for s in steps]
    case = scheme_rules.SchemeCase(scheme, maps, n_steps, tol)
    who = f"scheme {scheme.name!r} ({scheme!r})"
    return iter([(rule.id, bind("Scheme", rule, who, case)) for rule in SCHEME_RULES])


def checks_for(target, **options) -> Iterator[tuple[str, callable]]:
    """:func:`step_map_checks` of a step map or :func:`scheme_checks` of a scheme."""
    if isinstance(target, StepMap):
        return step_map_checks(target, **options)
    if isinstance(target, Scheme):
        return scheme_checks(target, **options)
    raise TypeError(f"the conformance kit checks a parasolve.steps.StepMap or parasolve.schemes.Scheme instance; "
                    f"got {type(target).__name__}.")


def check_step_map(step: StepMap, *, t: torch.Tensor | None = None, y0: torch.Tensor | None = None,
                   drift=None) -> None:
    """Run every rule of :func:`step_map_checks`; raise an ``AssertionError`` naming the first
    broken rule (and listing the others), or return ``None``."""
    run_all(step_map_checks(step, t=t, y0=y0, drift=drift))


def check_scheme(scheme: Scheme, *, steps=None, n_steps: int = 24, tol: float = 1e-8) -> None:
    """Run every rule of :func:`scheme_checks`; raise an ``AssertionError`` naming the first broken
    rule (and listing the others), or return ``None``."""
    run_all(scheme_checks(scheme, steps=steps, n_steps=n_steps, tol=tol))


def parametrize_with_checks(targets, *, argname: str = "check"):
    """A ``pytest.mark.parametrize`` over every (target, rule) pair, as scikit-learn's
    ``parametrize_with_checks``: one test per rule, with ids like ``rk4-rule5-carry``, so every
    broken rule shows at once. A target is a step map or a scheme instance (id: its ``name``), or a
    tuple ``(id, target)`` or ``(id, target, options)`` with the keywords of
    :func:`~parasolve.conformance.check_step_map` / :func:`~parasolve.conformance.check_scheme`::

        @parametrize_with_checks([MyStep(), ("mine-fine", MyScheme(), {"n_steps": 40})])
        def test_contract(check):
            check()
    """
    import pytest

    params = []
    for target in targets:
        label, obj, options = (target[0], target[1], target[2] if len(target) > 2 else {}) \
            if isinstance(target, tuple) else (target.name, target, {})
        params += [pytest.param(check, id=f"{label}-{rule}") for rule, check in checks_for(obj, **options)]
    return pytest.mark.parametrize(argname, params)
