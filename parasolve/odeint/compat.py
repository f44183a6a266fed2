"""torchdiffeq's ``odeint_adjoint`` keywords mapped onto parasolve's discrete adjoint.

torchdiffeq's adjoint integrates a second ODE backward in time with its own method, tolerances
and adaptive grid. parasolve's gradient is the exact gradient of the forward answer: the
discrete adjoint of the forward solve on the forward's final grid, a linear recurrence solved
parallel in time (docs/gradients.md). It has no grid, step method or error test of its own; the
one tolerance it has is the fixed-point tolerance of its Picard solve (the scan is direct).
"""

from __future__ import annotations

from .._checks import check_real
from ..adjoint import ADJOINT_OPTIONS

#: torchdiffeq ``adjoint_options`` keys accepted without effect (no error test runs backward).
IGNORED = {"norm"}


def adjoint_settings(method, adjoint_rtol, adjoint_atol, adjoint_method, adjoint_options) -> dict:
    """``solve``'s ``adjoint_options`` from torchdiffeq's ``adjoint_*`` keywords ({} when none apply)."""
    method = "dopri5" if method is None else method
    options = {}
    if adjoint_options is not None:
        if not isinstance(adjoint_options, dict):
            raise TypeError(f"`adjoint_options` must be a dict or None; got {type(adjoint_options).__name__}.")
        unknown = sorted(set(adjoint_options) - set(ADJOINT_OPTIONS) - IGNORED)
        if unknown:
            raise TypeError(f"Unknown `adjoint_options` {unknown}: parasolve's backward is the discrete adjoint "
                            f"on the forward grid, with no step method, grid or error test of its own. Valid: "
                            f"{sorted(ADJOINT_OPTIONS)} (parasolve's backward solve) and {sorted(IGNORED)} "
                            f"(torchdiffeq's, accepted without effect).")
        options = {k: v for k, v in adjoint_options.items() if k not in IGNORED}
    for name, value in (("adjoint_rtol", adjoint_rtol), ("adjoint_atol", adjoint_atol)):
        check_real(name, value, low=0.0, none_ok=True)
    if adjoint_rtol is not None:
        if options.get("tol") is not None and options["tol"] != adjoint_rtol:
            raise ValueError(f"`adjoint_rtol`={adjoint_rtol!r} and adjoint_options['tol']={options['tol']!r} "
                             f"name the same tolerance (the backward solve's, relative to the cotangents); give one.")
        options["tol"] = float(adjoint_rtol)
    if adjoint_method is not None and adjoint_method != method:
        hint = (f" To choose how the adjoint recurrence is solved, pass adjoint_options={{'method': "
                f"{adjoint_method!r}}}." if adjoint_method in ("auto", "picard", "scan") else "")
        raise ValueError(f"`adjoint_method`={adjoint_method!r} differs from method={method!r}: parasolve's gradient "
                         f"transposes the forward solve's own steps (the exact gradient of its answer), so the "
                         f"backward cannot use another method. Omit adjoint_method.{hint}")
    return {"adjoint_options": options} if options else {}
