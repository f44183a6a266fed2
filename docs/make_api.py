"""Write docs/api.md from the public docstrings: ``python docs/make_api.py``."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

#: (module, names); ``None`` takes the module's ``__all__``.
SECTIONS = [
    ("parasolve", ["solve", "solve_sde", "odeint", "odeint_adjoint", "Solution", "Stats", "Status", "SweepRecord", "ConvergenceError",
                   "NonFiniteError", "Scheme", "register_scheme", "StepMap", "register_step"]),
    ("parasolve.schemes", ["WindowedScheme", "SafeguardedScheme", "Picard", "Sequential", "Parareal", "Anderson", "Newton"]),
    ("parasolve.steps", ["ExplicitRK", "AdamsBashforth2"]),
    ("parasolve.odeint", ["OdeintResult", "OdeintStats", "PassRecord", "EmbeddedRK", "ErrorEstimate"]),
    ("parasolve.problems", ["ODEProblem", "SDEProblem", "linear", "harmonic", "logistic", "gaussian_decay",
                            "van_der_pol", "ornstein_uhlenbeck", "all_ode_problems"]),
    ("parasolve.diffusion", None),
    ("parasolve.zoo", None),
    ("parasolve.evaluators", None),
    ("parasolve.testing", None),
]


def _entry(qualname: str, obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        sig = ""
    kind = "class" if inspect.isclass(obj) else "function"
    doc = inspect.getdoc(obj) or "(no docstring)"
    return f"### `{qualname}{sig}`\n\n*{kind}*\n\n{doc}\n"


def render() -> str:
    """The whole of docs/api.md."""
    parts = ["# API reference\n", "Generated from the docstrings by `python docs/make_api.py`; "
             "`tests/test_docs.py` fails when this file is out of date.\n"]
    for module_name, names in SECTIONS:
        module = importlib.import_module(module_name)
        parts.append(f"## `{module_name}`\n")
        for name in names if names is not None else module.__all__:
            parts.append(_entry(f"{module_name}.{name}", getattr(module, name)))
    return "\n".join(parts)


if __name__ == "__main__":
    out = Path(__file__).with_name("api.md")
    out.write_text(render())
    print(f"wrote {out}")
