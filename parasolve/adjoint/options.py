"""What ``adjoint_options`` and ``adjoint_params`` may ask for, and when the adjoint refuses."""

from __future__ import annotations

import torch

from .. import _checks as checks
from ..errors import ParasolveError

#: ``adjoint_options`` keys and their defaults (``None``: taken from the forward solve).
ADJOINT_OPTIONS = {"method": "auto", "tol": None, "window": None, "max_iters": None,
                   "checkpoint": None, "max_dense": 32}


class AdjointError(ParasolveError, ValueError):
    """A gradient was asked of a solve in a way the adjoint cannot provide (the message says why)."""


def check_params(adjoint_params, callables) -> list:
    """``adjoint_params`` as a list of distinct tensors (default: the parameters of the
    ``callables`` that are ``nn.Module`` s)."""
    if adjoint_params is None:
        found = [p for c in callables if isinstance(c, torch.nn.Module) for p in c.parameters()]
    elif isinstance(adjoint_params, torch.Tensor):
        raise TypeError("`adjoint_params` must be a sequence of tensors (e.g. tuple(model.parameters())); "
                        "got a single tensor: wrap it as (tensor,).")
    else:
        try:
            found = list(adjoint_params)
        except TypeError:
            raise TypeError(f"`adjoint_params` must be an iterable of tensors; got "
                            f"{type(adjoint_params).__name__}.") from None
        bad = [type(p).__name__ for p in found if not isinstance(p, torch.Tensor)]
        if bad:
            raise TypeError(f"`adjoint_params` must hold only tensors; got {bad[:3]}.")
    unique, seen = [], set()
    for p in found:
        if id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    return unique


def check_options(options) -> dict:
    """``adjoint_options`` over the defaults of :data:`ADJOINT_OPTIONS`, each value checked."""
    opts = dict(ADJOINT_OPTIONS)
    if options is None:
        return opts
    if not isinstance(options, dict):
        raise TypeError(f"`adjoint_options` must be a dict; got {type(options).__name__}.")
    unknown = sorted(set(options) - set(ADJOINT_OPTIONS))
    if unknown:
        raise TypeError(f"Unknown `adjoint_options` {unknown}; valid: {sorted(ADJOINT_OPTIONS)}.")
    opts.update(options)
    checks.check_choice("adjoint_options['method']", opts["method"], ("auto", "picard", "scan"))
    for key in ("window", "max_iters", "checkpoint", "max_dense"):
        checks.check_positive_int(f"adjoint_options[{key!r}]", opts[key], none_ok=True)
    checks.check_real("adjoint_options['tol']", opts["tol"], low=0.0, none_ok=True)
    return opts


def deep_carry(problem) -> bool:
    """Whether a multistep map's carry reaches back more than one state (UniPC of order >= 2): the
    linearisation is then exact only over the whole grid at once (a window's lead step would
    need the states before it), so the adjoint is Picard with one window of every step."""
    return problem.step.multistep and problem.step.carry_depth > 1


def check_supported(problem, options) -> None:
    """Refuse (:class:`AdjointError`) what the options ask and this problem's map cannot give."""
    if options["method"] == "scan":
        scan_supported(problem, options["max_dense"], explicit=True)
    if deep_carry(problem):
        n, depth, name = problem.n_steps, problem.step.carry_depth, problem.step.name
        if options["method"] == "scan":
            raise AdjointError(f"adjoint_options['method']='scan' is not available for {name!r}: its steps use the "
                               f"{depth} states before them (a multistep carry deeper than one step, which the "
                               f"scan's two-step recurrence does not hold); use 'auto' or 'picard'.")
        if options["window"] is not None and options["window"] < n:
            raise AdjointError(f"adjoint_options['window']={options['window']} is not available for {name!r}: its "
                               f"steps use the {depth} states before them, so the adjoint is linearised over all "
                               f"{n} steps at once; drop 'window' (or pass {n}).")
    if problem.step.multistep and options["checkpoint"] is not None:
        raise AdjointError(f"adjoint_options['checkpoint'] is not supported for the multistep step map "
                           f"{problem.step.name!r}: a multistep map reads `prev` along consecutive steps "
                           f"only, so the segments cannot be recomputed side by side; drop 'checkpoint' "
                           f"to keep the whole trajectory.")


def scan_supported(problem, max_dense, explicit) -> bool:
    """Whether the dense scan can run on this problem's state; ``explicit`` (asked for by
    name): an :class:`AdjointError` saying why not, instead of ``False``."""
    size = problem.y0.numel()
    reason = None
    if problem.y0.is_complex():
        reason = "the state is complex; use method 'picard'"
    elif size > max_dense:
        reason = (f"the state has {size} entries > max_dense={max_dense} (the scan stores dense "
                  f"{size}x{size} Jacobians per step); raise 'max_dense' or use method 'picard'")
    if reason and explicit:
        raise AdjointError(f"adjoint_options['method']='scan' is not available: {reason}.")
    return reason is None
